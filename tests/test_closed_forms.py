"""GrowthBook's formulas (workbench.closed_forms) against independent computations
(quadrature, Monte Carlo), and the read-out's chance to win, risk and P(lift > minimum
effect) against them, within the read-out's own Monte Carlo error."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from workbench import closed_forms as cf
from workbench import experiments
from workbench.aggregates import Fold, Moments, Score
from workbench.config import parse
from workbench.events import Events

BETAS = [(1 + 30, 1 + 170, 1 + 45, 1 + 165),   # B ahead
         (1 + 5, 1 + 45, 1 + 5, 1 + 45),       # A/A
         (1 + 80, 1 + 20, 1 + 70, 1 + 30),     # A ahead
         (1 + 1200, 1 + 8800, 1 + 1290, 1 + 8710)]  # large, close
Z = 4.0  # Monte Carlo tolerances: Z standard errors (fails by chance ~6e-5 per check)


def _quad(f, lo=0.0, hi=1.0) -> float:
    return integrate.quad(f, lo, hi, limit=400, epsabs=1e-13, epsrel=1e-11)[0]


# -- (a) each formula against an independent computation ------------------------------------

@pytest.mark.parametrize(("aa", "ba", "ab", "bb"), BETAS)
def test_evan_millers_sum_is_the_integral_of_p_b_beyond_p_a(aa, ba, ab, bb):
    a, b = stats.beta(aa, ba), stats.beta(ab, bb)
    exact = _quad(lambda x: b.pdf(x) * a.cdf(x))  # P(B > A) = E_B[F_A(B)]
    assert cf.beta_chance_to_win(aa, ba, ab, bb) == pytest.approx(exact, abs=1e-9)
    assert cf.beta_chance_to_win(aa, ba, ab, bb) + cf.beta_chance_to_win(
        ab, bb, aa, ba) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(("aa", "ba", "ab", "bb"), BETAS)
def test_stucchios_expected_loss_is_the_integral_and_the_monte_carlo(aa, ba, ab, bb):
    a, b = stats.beta(aa, ba), stats.beta(ab, bb)
    b_up = stats.beta(ab + 1, bb)  # E[B 1{B < x}] = mean_B F_{B+1}(x)
    # E[max(A - B, 0)] = E_A[ A F_B(A) - E[B 1{B < A}] ], one dimension, by quadrature
    loss_b = _quad(lambda x: a.pdf(x) * (x * b.cdf(x) - b.mean() * b_up.cdf(x)))
    loss_a, got_b = cf.beta_expected_loss(aa, ba, ab, bb)
    assert got_b == pytest.approx(loss_b, abs=1e-9)
    assert loss_a - got_b == pytest.approx(b.mean() - a.mean(), abs=1e-12)  # E[B - A]
    rng = np.random.default_rng(7)
    n = 1_000_000
    diff = rng.beta(aa, ba, n) - rng.beta(ab, bb, n)
    for got, sample in ((got_b, np.maximum(diff, 0)), (loss_a, np.maximum(-diff, 0))):
        assert abs(got - sample.mean()) < Z * sample.std() / np.sqrt(n)


def test_evan_millers_sum_needs_an_integer_alpha():
    with pytest.raises(ValueError, match="positive integer"):
        cf.beta_prob_greater(2.5, 3, 2, 3)


@pytest.mark.parametrize(("mean", "sd"), [(0.0, 1.0), (0.3, 0.2), (-0.05, 0.01), (2.0, 0.5)])
def test_gbstats_chance_to_win_and_risk_are_the_normal_integrals(mean, sd):
    pdf = stats.norm(mean, sd).pdf
    lo, hi = mean - 40 * sd, mean + 40 * sd
    win = _quad(pdf, 0.0, max(hi, 0.0)) if hi > 0 else 0.0
    assert cf.gaussian_chance_to_win(mean, sd) == pytest.approx(win, abs=1e-9)
    assert cf.gaussian_chance_to_win(mean, sd, inverse=True) == pytest.approx(1 - win, abs=1e-9)
    risk_control = _quad(lambda x: x * pdf(x), 0.0, max(hi, 0.0)) if hi > 0 else 0.0
    risk_treatment = -_quad(lambda x: x * pdf(x), min(lo, 0.0), 0.0) if lo < 0 else 0.0
    got = cf.gaussian_risk(mean, sd)
    assert got == pytest.approx((risk_control, risk_treatment), abs=1e-9)
    assert got[0] - got[1] == pytest.approx(mean, abs=1e-12)  # E[max(d,0)] - E[max(-d,0)]


def test_truncated_normal_mean_is_the_conditional_mean():
    pdf = stats.norm(0.4, 1.5).pdf
    for lo, hi in ((0.0, np.inf), (-np.inf, 0.0), (-1.0, 2.0)):
        a, b = max(lo, -60.0), min(hi, 60.0)
        expected = _quad(lambda x: x * pdf(x), a, b) / _quad(pdf, a, b)
        assert cf.truncated_normal_mean(0.4, 1.5, lo, hi) == pytest.approx(expected, abs=1e-9)


# -- (b) the read-out's numbers agree with them ---------------------------------------------

def _config(metric: str, **decision):
    return parse({"name": "cf", "metric": metric, "decision": decision or None,
                  "arms": [{"name": "a", "model": "m1"}, {"name": "b", "model": "m2"}]})


def _binary_fold(sa: int, na: int, sb: int, nb: int) -> Fold:
    return Fold(counts={"a": {"ok": [na, na]}, "b": {"ok": [nb, nb]}},
                binary={"a": [sa, na], "b": [sb, nb]})


def _se_of_mean(values: np.ndarray, n: int) -> float:
    """The standard error of a mean of ``n`` draws, the spread taken from ``values``."""
    return float(values.std()) / np.sqrt(n)


@pytest.mark.parametrize(("aa", "ba", "ab", "bb"), BETAS)
def test_binary_read_out_is_the_beta_closed_forms_within_monte_carlo_error(aa, ba, ab, bb):
    samples = 100_000
    fold = _binary_fold(aa - 1, aa + ba - 2, ab - 1, ab + bb - 2)
    out = experiments.summarize(fold, _config("binary"), samples=samples, seed=3)
    win = cf.beta_chance_to_win(aa, ba, ab, bb)
    loss_a, loss_b = cf.beta_expected_loss(aa, ba, ab, bb)
    p_se = np.sqrt(win * (1 - win) / samples)
    assert abs(out.arms[1].prob_best - win) < Z * p_se + 1e-12
    assert out.arms[0].prob_best == pytest.approx(1 - out.arms[1].prob_best, abs=1e-12)
    assert abs(out.arms[1].prob_min_effect - win) < Z * p_se + 1e-12  # min_effect 0
    # the spread of each loss, from independent draws, for its standard error
    rng = np.random.default_rng(11)
    diff = rng.beta(aa, ba, 400_000) - rng.beta(ab, bb, 400_000)
    assert abs(out.arms[1].expected_loss - loss_b) < Z * _se_of_mean(
        np.maximum(diff, 0), samples)
    assert abs(out.arms[0].expected_loss - loss_a) < Z * _se_of_mean(
        np.maximum(-diff, 0), samples)


def test_binary_read_out_from_events_and_a_minimum_effect_against_quadrature():
    rng = np.random.default_rng(5)
    outcomes = {"a": rng.binomial(1, 0.20, 3000), "b": rng.binomial(1, 0.23, 3000)}
    arms = ["a"] * 3000 + ["b"] * 3000
    n = len(arms)
    events = Events(
        request_id=np.array([str(i) for i in range(n)], dtype=object),
        parent_id=np.array([None] * n, dtype=object), ts=np.arange(n, dtype=float),
        arm=np.array(arms, dtype=object), model_tag=np.array(arms, dtype=object),
        unit=np.array([str(i) for i in range(n)], dtype=object), latency_ms=np.ones(n),
        status=np.array(["ok"] * n, dtype=object),
        summary=[[{"mean": 0.5, "std": 0.5, "probabilities": {"0": 0.5, "1": 0.5}}]] * n,
        outcome=[*outcomes["a"].tolist(), *outcomes["b"].tolist()])
    samples, m = 100_000, 0.12  # the sample's lift is +14.9%
    out = experiments.analyze(events, _config("binary", min_effect=m), samples=samples, seed=1)
    (sa, sb) = (int(outcomes[k].sum()) for k in "ab")
    aa, ba, ab, bb = 1 + sa, 1 + 3000 - sa, 1 + sb, 1 + 3000 - sb
    win = cf.beta_chance_to_win(aa, ba, ab, bb)
    assert abs(out.arms[1].prob_best - win) < Z * np.sqrt(win * (1 - win) / samples)
    # P((B - A) / A > m) = E_A[1 - F_B((1 + m) A)], by quadrature
    a, b = stats.beta(aa, ba), stats.beta(ab, bb)
    beyond = _quad(lambda x: a.pdf(x) * b.sf((1 + m) * x))
    assert 0.05 < beyond < 0.95 and beyond < win  # a case that tells them apart
    assert abs(out.arms[1].prob_min_effect - beyond) < Z * np.sqrt(
        beyond * (1 - beyond) / samples)
    assert out.arms[0].prob_min_effect is None and out.min_effect == m


def _score_fold(metric: str, a: tuple[int, float, float], b: tuple[int, float, float]
                ) -> Fold:
    """Scores above N_EXACT values per arm: the read-out's Normal posteriors of the means."""
    fold = Fold(counts={"a": {"ok": [a[0], a[0]]}, "b": {"ok": [b[0], b[0]]}})
    fold.scores[metric] = {"a": Score(Moments(*a), None), "b": Score(Moments(*b), None)}
    return fold


@pytest.mark.parametrize("metric", ["log_score", "brier"])
def test_score_read_out_is_gbstats_gaussian_chance_to_win_and_risk(metric):
    samples = 200_000
    a, b = (5000, 0.300, 5000 * 0.04), (5000, 0.304, 5000 * 0.05)
    out = experiments.summarize(_score_fold(metric, a, b),
                                _config(metric, min_effect=0.002), samples=samples, seed=2)
    sd = [np.sqrt(m2 / (n * (n + 1.0))) for n, _, m2 in (a, b)]
    mu, sigma = b[1] - a[1], float(np.hypot(*sd))  # the lift B - A ~ Normal(mu, sigma)
    inverse = metric == "brier"
    win = cf.gaussian_chance_to_win(mu, sigma, inverse=inverse)
    risk_control, risk_treatment = cf.gaussian_risk(mu, sigma)
    if inverse:  # gbstats swaps the risks of an inverse metric
        risk_control, risk_treatment = risk_treatment, risk_control
    assert 0.05 < win < 0.95
    assert abs(out.arms[1].prob_best - win) < Z * np.sqrt(win * (1 - win) / samples)
    d = np.random.default_rng(4).normal(mu, sigma, 400_000)
    worse, better = (np.maximum(d, 0), np.maximum(-d, 0))
    if inverse:
        worse, better = better, worse
    assert abs(out.arms[0].expected_loss - risk_control) < Z * _se_of_mean(worse, samples)
    assert abs(out.arms[1].expected_loss - risk_treatment) < Z * _se_of_mean(better, samples)
    # P(improvement > 0.002): lift above it, or (brier, lower is better) below -0.002
    beyond = float(stats.norm.sf(0.002, mu, sigma) if not inverse
                   else stats.norm.cdf(-0.002, mu, sigma))
    assert abs(out.arms[1].prob_min_effect - beyond) < Z * np.sqrt(
        beyond * (1 - beyond) / samples)
