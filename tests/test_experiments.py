"""The A/B read-out against known answers: closed forms, A/A simulations, planted effects."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from workbench import calibration, experiments
from workbench.closed_forms import beta_chance_to_win
from workbench.config import parse
from workbench.events import Events


def _events(arms: list[str], outcomes: list[float], summaries=None) -> Events:
    n = len(arms)
    summaries = summaries or [[{"mean": 0.5, "std": 0.1, "interval": [0.3, 0.7],
                                "probabilities": {"0": 0.5, "1": 0.5}, "label": "1"}]] * n
    return Events(request_id=np.array([str(i) for i in range(n)], dtype=object),
                  parent_id=np.array([None] * n, dtype=object), ts=np.arange(n, dtype=float),
                  arm=np.array(arms, dtype=object), model_tag=np.array(arms, dtype=object),
                  unit=np.array([str(i) for i in range(n)], dtype=object),
                  latency_ms=np.ones(n), status=np.array(["ok"] * n, dtype=object),
                  summary=list(summaries), outcome=list(outcomes))


def _config(metric="binary", **extra):
    return parse({"name": "t", "metric": metric,
                  "arms": [{"name": "a", "model": "m1"}, {"name": "b", "model": "m2"}]} | extra)


def _binary(rng, n, rates):
    arms, outs = [], []
    for arm, p in rates.items():
        arms += [arm] * n
        outs += rng.binomial(1, p, n).tolist()
    return _events(arms, outs)


def test_closed_form_agrees_with_monte_carlo():
    rng = np.random.default_rng(0)
    for (sa, na), (sb, nb) in [((30, 200), (45, 210)), ((5, 50), (5, 50)), ((80, 100), (70, 100))]:
        a1, b1 = experiments.beta_posterior(sa, na)
        a2, b2 = experiments.beta_posterior(sb, nb)
        exact = beta_chance_to_win(a1, b1, a2, b2)
        draws = np.stack([rng.beta(a1, b1, 200_000), rng.beta(a2, b2, 200_000)], axis=1)
        mc = experiments.prob_best(draws)[1]
        assert abs(exact - mc) < 4 * np.sqrt(exact * (1 - exact) / 200_000) + 1e-4
    # and the read-out's posterior is the conjugate Beta: mean (1 + s) / (2 + n)
    events = _binary(np.random.default_rng(1), 400, {"a": 0.2, "b": 0.3})
    readout = experiments.analyze(events, _config(), samples=100_000)
    for k, arm in enumerate(("a", "b")):
        s = sum(o for a, o in zip(events.arm, events.outcome, strict=True) if a == arm)
        alpha, beta = 1 + s, 1 + 400 - s
        assert readout.arms[k].mean == pytest.approx(alpha / (alpha + beta), abs=1e-3)
        lo, hi = stats.beta.ppf([0.05, 0.95], alpha, beta)
        assert readout.arms[k].interval == pytest.approx((lo, hi), abs=3e-3)


def test_aa_experiments_declare_a_winner_no_more_often_than_the_threshold_allows():
    """A/A: both arms the same. With the rule "declare the arm whose P(best) >= 0.95",
    each of the 2 arms reaches it about 5% of the time under the null, so at most 10%
    of experiments may name a winner. Over 300 simulated A/A experiments the observed
    rate must stay under 10% + 3 binomial standard errors (= 15.2%)."""
    rng = np.random.default_rng(42)
    config = _config(decision={"prob_best": 0.95, "min_outcomes": 50})
    runs, winners = 300, 0
    for _ in range(runs):
        readout = experiments.analyze(_binary(rng, 500, {"a": 0.1, "b": 0.1}), config,
                                      samples=4000, seed=int(rng.integers(1 << 30)))
        winners += readout.decision["winner"] is not None
    allowed = 2 * (1 - 0.95)
    assert winners / runs <= allowed + 3 * np.sqrt(allowed * (1 - allowed) / runs)
    assert winners > 0  # the test can see false positives at all


def test_planted_effect_is_detected():
    rng = np.random.default_rng(7)
    readout = experiments.analyze(_binary(rng, 3000, {"a": 0.10, "b": 0.13}), _config())
    assert readout.decision["winner"] == "b"
    b = readout.arms[1]
    assert b.prob_best > 0.95 and b.expected_loss < readout.arms[0].expected_loss
    assert b.lift["lo"] > 0 and b.lift["lo"] < 0.3 < b.lift["hi"] + 0.2  # true lift +30%


def test_decision_waits_for_enough_outcomes():
    readout = experiments.analyze(_binary(np.random.default_rng(0), 20, {"a": 0.1, "b": 0.9}),
                                  _config())
    assert readout.decision["status"] == "collecting"


def test_continuous_model_matches_the_conjugate_answer():
    rng = np.random.default_rng(3)
    a, b = rng.normal(10.0, 2.0, 400), rng.normal(10.5, 2.0, 400)
    events = _events(["a"] * 400 + ["b"] * 400, np.concatenate([a, b]).tolist())
    readout = experiments.analyze(events, _config("continuous"), samples=2000)
    for arm, data in zip(readout.arms, (a, b), strict=True):
        se = data.std() / np.sqrt(len(data))
        assert abs(arm.mean - data.mean()) < 0.2 * se + 0.01  # flat-prior posterior mean
        width = arm.interval[1] - arm.interval[0]
        assert abs(width - 2 * 1.645 * se) < 0.2 * (2 * 1.645 * se)  # 90% interval width
    assert readout.arms[1].prob_best > 0.99


def test_log_score_prefers_the_better_calibrated_model():
    rng = np.random.default_rng(5)
    n = 600
    y = rng.binomial(1, 0.8, 2 * n)

    def row(p):
        return [{"mean": p, "std": 0.05, "interval": [p - 0.1, p + 0.1],
                 "probabilities": {"0": 1 - p, "1": p}, "label": "1"}]

    summaries = [row(0.8)] * n + [row(0.55)] * n  # arm a is calibrated, arm b is not
    events = _events(["a"] * n + ["b"] * n, y.tolist(), summaries)
    for metric in ("log_score", "brier"):
        readout = experiments.analyze(events, _config(metric))
        assert readout.arms[0].prob_best > 0.99, metric
        expected = np.mean(np.log(np.where(y[:n] == 1, 0.8, 0.2)))
        if metric == "log_score":
            assert abs(readout.arms[0].mean - expected) < 1e-6 + 3 * 0.02


def test_srm_flags_a_broken_split():
    assert experiments.srm({"a": 500, "b": 500}, {"a": 0.5, "b": 0.5})["mismatch"] is False
    broken = experiments.srm({"a": 560, "b": 440}, {"a": 0.5, "b": 0.5})
    assert broken["mismatch"] is True and broken["p_value"] < 0.001


def test_coverage_and_reliability():
    rows = [[{"mean": 5.0, "std": 1.0, "interval": [3.0, 7.0]}]] * 10
    events = _events(["a"] * 10, [4.0] * 9 + [9.0], rows)
    assert calibration.coverage(events)["a"]["coverage"] == pytest.approx(0.9)
    probs = np.linspace(0.05, 0.95, 200)
    y = np.random.default_rng(0).binomial(1, probs)
    summaries = [[{"mean": float(p), "std": 0.0, "interval": [p, p],
                   "probabilities": {"0": 1 - float(p), "1": float(p)}}] for p in probs]
    table = calibration.reliability(_events(["a"] * 200, y.tolist(), summaries))["a"]
    predicted = np.array([b["predicted"] for b in table])
    observed = np.array([b["observed"] for b in table])
    assert stats.pearsonr(predicted, observed)[0] > 0.8  # a calibrated model lines up
