"""Drift of served inputs (PSI per feature) against the training inputs, from the event log
(real SQLite)."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import numpy as np
import pytest
from conftest import make_posterior

from workbench import datasets, drift, events, ood


def test_psi_matches_its_formula_and_is_zero_for_equal_shares():
    expected = np.full(10, 0.1)
    actual = np.array([0.2, 0.2] + [0.075] * 8)
    by_hand = sum((a - e) * np.log(a / e) for a, e in zip(actual, expected, strict=True))
    assert drift.psi(expected, actual) == pytest.approx(by_hand)
    assert drift.psi(expected, expected) == 0.0
    assert drift.psi(expected, actual) == pytest.approx(drift.psi(actual, expected))
    assert np.isfinite(drift.psi(expected, np.eye(10)[0]))  # empty bins: large, finite


@pytest.fixture
def posterior():
    """A model whose artifact summarises 2,000 training rows of 4 features."""
    rng = np.random.default_rng(0)
    base = make_posterior("binary", n_features=4)
    X = rng.normal(base.x_loc, base.x_scale, size=(2000, 4))
    loc, scale = X.mean(axis=0), X.std(axis=0)
    return replace(base, x_loc=loc, x_scale=scale, inputs=ood.summarize((X - loc) / scale))


def _log(eng, tag: str, rows: np.ndarray, *, per_request: int = 4) -> None:
    now = time.time()
    events.write_now(eng, "predictions", [
        {"request_id": uuid.uuid4().hex, "parent_id": None, "ts": now + k, "experiment": "exp",
         "arm": tag.split(":")[0], "model_tag": tag, "unit": f"u{k}", "latency_ms": 1.0,
         "status": "ok", "fallback_from": None, "n_rows": per_request, "summary": [],
         "instances": rows[k:k + per_request].tolist()}
        for k in range(0, len(rows), per_request)])


def test_a_planted_shift_in_served_traffic_is_found_in_its_feature_alone(tmp_path, posterior):
    rng = np.random.default_rng(1)
    eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    same = rng.normal(posterior.x_loc, posterior.x_scale, size=(2000, 4))
    shifted = rng.normal(posterior.x_loc, posterior.x_scale, size=(2000, 4))
    shifted[:, 2] += 1.0 * posterior.x_scale[2]  # one feature moved by one sd
    _log(eng, "steady:1", same)
    _log(eng, "moved:1", shifted)
    _log(eng, "unknown:1", same[:40])  # a model no longer in the store: passed over
    data = events.read(eng, "exp", with_instances=True)
    table = drift.served(data, {"steady:1": posterior, "moved:1": posterior}.get)
    levels = {(r["model"], r["feature"]): r["level"] for r in table}
    print("\n" + "\n".join(f"{r['model']:9s} {r['feature']} PSI {r['psi']:.3f} "
                           f"({r['level']}; {r['by_chance']:.4f} by chance)" for r in table))
    assert levels == {("steady:1", f): "stable" for f in posterior.feature_names} | {
        ("moved:1", f): "major" if f == "x2" else "stable" for f in posterior.feature_names}
    assert all(r["rows"] == 2000 and r["since"] < r["until"] for r in table)


def test_too_few_rows_are_not_called_drift_and_unlogged_rows_are_skipped(tmp_path, posterior):
    rng = np.random.default_rng(2)
    eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    few = rng.normal(posterior.x_loc, posterior.x_scale, size=(12, 4))
    _log(eng, "m:1", few)
    events.write_now(eng, "predictions", [{  # inputs kept as a hash: nothing to count
        "request_id": uuid.uuid4().hex, "parent_id": None, "ts": time.time(),
        "experiment": "exp", "arm": "m", "model_tag": "m:1", "unit": "u", "latency_ms": 1.0,
        "status": "ok", "fallback_from": None, "n_rows": 1, "summary": [],
        "instances": {"sha256": "0" * 64}}])
    table = drift.served(events.read(eng, "exp", with_instances=True), {"m:1": posterior}.get)
    assert {r["rows"] for r in table} == {12}
    assert {r["level"] for r in table} == {"too few rows"}  # noise, whatever the PSI
    assert drift.features(make_posterior("binary"), few) == []  # no summary: no table


@pytest.mark.parametrize("name", ["diabetes", "iris"])
def test_serving_the_training_rows_again_is_no_drift_even_for_discrete_features(name):
    """Diabetes' ``sex`` takes two values: every decile edge is one of them, and the rows
    the gateway logs (float32) land a hair beside the training values (float64)."""
    train = datasets.split(datasets.load(name), test_fraction=0.2, seed=0)[0]
    loc, scale = train.X.mean(axis=0), train.X.std(axis=0)
    posterior = replace(make_posterior("binary", n_features=len(train.feature_names)),
                        feature_names=train.feature_names, x_loc=loc, x_scale=scale,
                        inputs=ood.summarize(((train.X - loc) / scale).astype(np.float32)))
    logged = np.asarray(train.X, np.float32).tolist()  # what the event log keeps
    table = drift.features(posterior, np.asarray(logged))
    assert {r["level"] for r in table} == {"stable"}, \
        [(r["feature"], round(r["psi"], 3)) for r in table if r["level"] != "stable"]
    assert max(r["psi"] for r in table) < 1e-9  # the same rows: the same bins
