"""CUPED against known answers: the joint moments merge exactly, the fold carries them
through chunks and JSON, the lift's posterior standard deviation shrinks by sqrt(1 - rho^2)
with the same mean, and covariates travel from POST /feedback to the read-out (real
SQLite, a real in-process model server)."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from conftest import make_posterior
from numpyro.diagnostics import effective_sample_size

from workbench import arms, cuped, event_reads, events, experiments, folding, gateway, store
from workbench.aggregates import CoMoments, Fold
from workbench.config import parse
from workbench.errors import InputError
from workbench.events import Events
from workbench.feedback import check_covariate
from workbench.serving import ModelServer
from workbench.writer import EventWriter

ROW = {"mean": 50.0, "std": 10.0, "interval": [33.6, 66.4]}


def _events(arm: list[str], y: list[float], x: list[float | None] | None) -> Events:
    n = len(arm)
    return Events(request_id=np.array([str(i) for i in range(n)], dtype=object),
                  parent_id=np.array([None] * n, dtype=object), ts=np.arange(n, dtype=float),
                  arm=np.array(arm, dtype=object), model_tag=np.array(arm, dtype=object),
                  unit=np.array([str(i) for i in range(n)], dtype=object),
                  latency_ms=np.ones(n), status=np.array(["ok"] * n, dtype=object),
                  summary=[[ROW]] * n, outcome=list(y), covariate=list(x) if x else [])


def _simulate(rng: np.random.Generator, n: int, rho: float, means: dict[str, float]
              ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Outcomes of sd 10 per arm, with a pre-period covariate correlated at ``rho``."""
    arm = [a for a in means for _ in range(n)]
    x = rng.normal(50.0, 10.0, len(arm))
    noise = rng.normal(0.0, 10.0 * math.sqrt(1 - rho**2), len(arm))
    y = np.array([means[a] for a in arm]) + rho * (x - 50.0) + noise
    return arm, y, x


def _config(metric: str = "continuous"):
    return parse({"name": "cuped", "metric": metric,
                  "arms": [{"name": "a", "model": "m1"}, {"name": "b", "model": "m2"}]})


def _close(a: CoMoments, b: CoMoments) -> None:
    assert a.n == b.n
    assert a.to_list()[1:] == pytest.approx(b.to_list()[1:], rel=1e-10, abs=1e-9)


# -- the statistics --------------------------------------------------------------------------

def test_joint_moments_merge_to_those_of_the_whole():
    rng = np.random.default_rng(0)
    x, y = rng.normal(3, 2, 1001), rng.normal(-1, 5, 1001) + 0.5 * np.arange(1001) / 100
    whole = CoMoments.of(x, y)
    for cut in (0, 1, 17, 500, 1000, 1001):
        _close(CoMoments.of(x[:cut], y[:cut]).merge(CoMoments.of(x[cut:], y[cut:])), whole)
    assert whole.cxy == pytest.approx(float(np.cov(x, y, ddof=0)[0, 1]) * 1001, rel=1e-10)
    assert whole.m2_x == pytest.approx(float(x.var()) * 1001, rel=1e-10)


def test_a_fold_carries_the_covariates_whatever_the_chunks_and_through_json():
    rng = np.random.default_rng(1)
    arm, y, x = _simulate(rng, 5000, 0.6, {"a": 50.0, "b": 51.0})
    cov: list[float | None] = x.tolist()
    cov[3] = None  # an outcome without a covariate: not in the joint moments
    rows = [(a, a, "ok", [ROW], float(v), c) for a, v, c in zip(arm, y, cov, strict=True)]
    whole = folding.fold_rows(Fold(), rows)
    folder = folding.Folder(Fold())
    for lo, hi in ((0, 7), (7, 4103), (4103, 9999), (9999, 10000)):
        folder.add(rows[lo:hi])
    chunked = folder.close()
    halves = folding.fold_rows(Fold(), rows[:6000]).merge(folding.fold_rows(Fold(), rows[6000:]))
    back = Fold.from_json(whole.to_json())
    for arm_name in ("a", "b"):
        assert chunked.cuped[arm_name] == whole.cuped[arm_name]  # same rows, same blocks
        _close(halves.cuped[arm_name], whole.cuped[arm_name])
        assert back.cuped[arm_name] == whole.cuped[arm_name]
        xs = np.array([c for a, c in zip(arm, cov, strict=True) if a == arm_name and c is not None])
        ys = np.array([v for a, v, c in zip(arm, y, cov, strict=True)
                       if a == arm_name and c is not None])
        _close(whole.cuped[arm_name], CoMoments.of(xs, ys))
    assert whole.cuped["a"].n == 4999 and whole.continuous["a"].n == 5000
    assert Fold.from_json({k: v for k, v in whole.to_json().items() if k != "cuped"}).cuped == {}


# -- the read-out ----------------------------------------------------------------------------

def _lift(draws: np.ndarray) -> np.ndarray:
    return (draws[:, 1] - draws[:, 0]) / np.abs(draws[:, 0])


def test_cuped_shrinks_the_lifts_posterior_sd_by_sqrt_one_minus_rho_squared():
    rho, n, true_lift = 0.8, 5000, 0.01
    arm, y, x = _simulate(np.random.default_rng(2), n, rho, {"a": 50.0, "b": 50.5})
    config = _config()
    plain = folding.fold_events(_events(arm, y.tolist(), None))
    adjusted = folding.fold_events(_events(arm, y.tolist(), x.tolist()))
    assert plain.cuped == {} and adjusted.continuous == plain.continuous
    lift_plain = _lift(experiments.fold_draws(plain, config, seed=0)[0])
    lift_cuped = _lift(experiments.fold_draws(adjusted, config, seed=0)[0])
    ess = [float(effective_sample_size(v[None, :])) for v in (lift_plain, lift_cuped)]
    sd_plain, sd_cuped = float(lift_plain.std()), float(lift_cuped.std())
    ratio, predicted = sd_cuped / sd_plain, math.sqrt(1 - rho**2)
    # error of the ratio: each sd from its draws (relative se 1/sqrt(2 ESS)), and the
    # sample's rho about the true one (se (1 - rho^2) / sqrt(2n), through sqrt(1 - rho^2))
    rel_se = math.sqrt(sum(1 / (2 * e) for e in ess))
    rho_se = (1 - rho**2) / math.sqrt(2 * n)
    tolerance = 4 * math.hypot(predicted * rel_se, rho / predicted * rho_se)
    print(f"\nCUPED at rho {rho}: lift sd {sd_plain:.5f} -> {sd_cuped:.5f}, ratio "
          f"{ratio:.4f}, predicted sqrt(1 - rho^2) = {predicted:.4f} (tolerance "
          f"{tolerance:.4f}; ESS {ess[0]:.0f}, {ess[1]:.0f})")
    assert abs(ratio - predicted) < tolerance
    # the same mean: the two estimates differ by an error of sd sqrt(sd_plain^2 -
    # sd_cuped^2) (the adjustment removes the part of the noise that X explains), plus
    # each mean's Monte Carlo error
    mean_se = math.sqrt(sd_plain**2 - sd_cuped**2 + sd_plain**2 / ess[0]
                        + sd_cuped**2 / ess[1])
    assert abs(lift_cuped.mean() - lift_plain.mean()) < 4 * mean_se
    assert abs(lift_cuped.mean() - true_lift) < 4 * sd_cuped
    # the read-out says what it did; its lift is the adjusted one
    out = experiments.summarize(adjusted, config, seed=0)
    info = out.cuped
    assert info["applied"] and info["outcomes"] == 2 * n
    assert abs(info["rho"] - rho) < 4 * (1 - rho**2) / math.sqrt(2 * n)
    assert info["variance_reduction"] == pytest.approx(info["rho"] ** 2, rel=1e-9)
    # theta estimates rho (sd 10 for both): se sqrt(1 - rho^2) / sqrt(2n)
    assert info["theta"] == pytest.approx(rho, abs=4 * predicted / math.sqrt(2 * n))
    assert out.arms[1].lift["mean"] == pytest.approx(float(lift_cuped.mean()), rel=1e-6)
    assert cuped.adjust(plain, ["a", "b"], "continuous") == (None, None)  # left as it was


def test_cuped_is_not_applied_to_some_covariates_or_to_a_binary_metric():
    rng = np.random.default_rng(3)
    arm, y, x = _simulate(rng, 200, 0.7, {"a": 50.0, "b": 50.0})
    partial = folding.fold_events(_events(arm, y.tolist(), [*x[:-1].tolist(), None]))
    moments, info = cuped.adjust(partial, ["a", "b"], "continuous")
    assert moments is None and not info["applied"]
    assert info["reason"].startswith("only 399 of 400 outcomes came with a covariate")
    both = folding.fold_events(_events(arm, y.tolist(), x.tolist()))
    clicks = [int(v > 50) for v in y]
    binary = folding.fold_events(_events(arm, clicks, x.tolist()))
    moments, info = cuped.adjust(binary, ["a", "b"], "binary")
    assert moments is None and not info["applied"] and "binary read-out" in info["reason"]
    assert binary.cuped["a"].n == 200  # stored and folded all the same
    flat = folding.fold_events(_events(arm, y.tolist(), [1.0] * len(arm)))
    assert "does not vary" in cuped.adjust(flat, ["a", "b"], "continuous")[1]["reason"]
    assert cuped.adjust(both, ["a", "b"], "continuous")[1]["applied"]
    # a covariate stored before values were bounded: declined, never a NaN read-out
    huge = folding.fold_events(_events(arm, y.tolist(), [1e200, *x[1:].tolist()]))
    assert "overflow" in cuped.adjust(huge, ["a", "b"], "continuous")[1]["reason"]


# -- from POST /feedback to the read-out ---------------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), True, False, "1.5",
                                 [1.0], {"x": 1}, 10**400, 1e200, -2e15])
def test_bad_covariates_are_refused_saying_what_was_expected(bad):
    with pytest.raises(InputError, match="invalid covariate") as err:
        check_covariate(bad)
    assert "finite number" in err.value.detail["expected"]


def test_covariates_sent_with_feedback_reach_the_read_out(tmp_path):
    tag = store.save(make_posterior("regression", name="cuped-r", seed=3))
    server = ModelServer({"cuped-r": tag}, load=store.get, buckets=(1,))
    server.warmup()
    config = parse({"name": "cuped-gw", "metric": "continuous", "arms": [
        {"name": "a", "model": "cuped-r"}, {"name": "b", "model": "cuped-r"}]})
    eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    gw = gateway.Gateway(config, arms.arm_models(config, {"cuped-r": tag}, store.metadata),
                         lambda **kw: server.predict(**kw), engine=eng,
                         writer=EventWriter(eng), poll_seconds=0.05)
    rng = np.random.default_rng(4)

    async def run() -> None:
        ids = [(await gw.predict(f"u{i}", [[0.1, -0.2, 0.3, 0.0]]))["request_id"]
               for i in range(40)]
        for bad in (float("nan"), True, "3"):
            with pytest.raises(InputError, match="invalid covariate"):
                await gw.feedback(ids[0], 1.0, bad)
        for rid in ids[:30]:  # ids[0] first: nothing of the refused ones was stored
            x = float(rng.normal(5, 1))
            answer = await gw.feedback(rid, x + float(rng.normal(0, 0.5)), x)
            assert answer["status"] == "recorded"

    try:
        asyncio.run(run())
        gw.writer.close()
        data = events.read(eng, "cuped-gw")
        assert sum(c is not None for c in data.covariate) == 30
        folded = event_reads.fold(eng, "cuped-gw")
        in_memory = folding.fold_events(data)
        assert folded.cuped.keys() == in_memory.cuped.keys() and folded.cuped
        for a in folded.cuped:
            _close(folded.cuped[a], in_memory.cuped[a])
        assert cuped.adjust(folded, ["a", "b"], "continuous")[1]["applied"]
        assert gw.metadata()["feedback"]["covariate"].startswith("optional")
    finally:
        gw.close()
