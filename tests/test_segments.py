"""Segment read-outs: the pooled model against the multiple-comparisons trap, on simulations
with one true effect in every segment; recovery of a known effect; closed forms; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from workbench import segment_sim, segments
from workbench.closed_forms import beta_chance_to_win
from workbench.errors import InputError

SIMULATIONS = 40  # per scenario
SMALL_EFFECT = 0.1  # log-odds: +1 to +2 points on base rates of 5% to 30%


@pytest.fixture(scope="module")
def fit():
    """One sampler for the module: it compiles once per shape of the counts."""
    return segments.sampler(warmup=300, samples=500)


def _report_and_check(summary, kind):
    calls = summary["calls"][kind]
    pooled, unpooled = calls["pooled"], calls["unpooled"]
    print(f"\neffect {summary['effect']}, false calls ({kind}) over {SIMULATIONS} simulations "
          f"x {summary['segments']} segments: pooled {pooled['total']} ({pooled['share']:.3f}"
          f" of segments; simulations with any: {pooled['with_any']}), unpooled "
          f"{unpooled['total']} ({unpooled['share']:.3f}; with any: {unpooled['with_any']})"
          f"; pooled fewer in {calls['fewer']} simulations, more in {calls['more']} (sign "
          f"test p {calls['sign_test_p']:.1e})")
    assert pooled["total"] < unpooled["total"]
    assert calls["sign_test_p"] < 1e-3  # the margin: pooled fewer in far more simulations


@pytest.mark.slow
def test_no_effect_pooling_declares_fewer_false_segment_winners(fit):
    _, summary = segment_sim.run(0.0, simulations=SIMULATIONS, seed=1, fit=fit)
    _report_and_check(summary, "winner")
    _report_and_check(summary, "any")
    covered = summary["covered"]
    print(f"overall effect's 90% interval covers 0 in {covered} of {SIMULATIONS}; "
          f"divergences {summary['divergences']}")
    assert covered >= stats.binom.ppf(0.001, SIMULATIONS, 0.9)


@pytest.mark.slow
def test_small_common_effect_pooling_singles_out_fewer_segments_wrongly(fit):
    _, summary = segment_sim.run(SMALL_EFFECT, simulations=SIMULATIONS, seed=2, fit=fit)
    _report_and_check(summary, "any")
    sign = [summary["calls"]["sign"][m]["total"] for m in ("pooled", "unpooled")]
    wins = [summary["wins"][m] for m in ("pooled", "unpooled")]
    covered = summary["covered"]
    print(f"opposite sign declared: pooled {sign[0]}, unpooled {sign[1]}; true winners "
          f"found: pooled {wins[0]}, unpooled {wins[1]} of "
          f"{SIMULATIONS * summary['segments']}; overall effect's 90% interval covers "
          f"{SMALL_EFFECT} in {covered} of {SIMULATIONS}")
    assert sign[0] <= sign[1]
    assert wins[0] > wins[1]  # and it is not by declaring nothing
    assert covered >= stats.binom.ppf(0.001, SIMULATIONS, 0.9)


def test_recovers_a_known_common_effect_per_arm_with_control_elsewhere(fit):
    rng = np.random.default_rng(7)
    truth = np.array([0.3, 0.0])  # arm 0: +0.3 log-odds; arm 2: no effect; control: arm 1
    successes, trials = segment_sim.simulate(rng, truth, sizes=np.full(12, 800), arms=3)
    order = [1, 0, 2]  # the simulated control column to index 1
    successes, trials = successes[:, order], trials[:, order]
    out = segments.read_out(3, successes, trials, control=1, arms=["b", "a", "c"],
                            segments=[f"s{i}" for i in range(12)], fit=fit)
    assert out.control == "a" and [o["arm"] for o in out.overall] == ["b", "c"]
    assert [(e.segment, e.arm) for e in out.effects[:3]] == [("s0", "b"), ("s0", "c"),
                                                            ("s1", "b")]
    for overall, true in zip(out.overall, truth, strict=True):
        lo, hi = overall["d"][1:]
        assert lo <= true <= hi, (overall, true)
    assert out.overall[0]["prob_positive"] > 0.99
    # shrinkage: pooled segment effects lie closer to the truth than unpooled ones
    for k, true in enumerate(truth):
        mine = out.effects[k::2]
        err = [np.mean([(getattr(e, m).log_odds[0] - true) ** 2 for e in mine])
               for m in ("pooled", "unpooled")]
        assert err[0] < err[1] / 2, err
    # and the rate difference has the log-odds effect's sign and a sensible size
    b = out.effects[0]
    assert np.sign(b.pooled.rate_diff[0]) == np.sign(b.pooled.log_odds[0])
    assert abs(b.pooled.rate_diff[0]) < 0.1
    assert out.diagnostics["divergences"] < 5
    assert out.to_dict()["effects"][0]["pooled"]["winner"] == b.pooled.winner


def test_unpooled_is_the_beta_binomial_closed_form():
    successes = np.array([[30, 45], [5, 5]])
    trials = np.array([[200, 210], [50, 50]])
    rates = segments.unpooled_draws(0, successes, trials, samples=200_000)
    for s in range(2):
        exact = beta_chance_to_win(1 + successes[s, 0], 1 + trials[s, 0] - successes[s, 0],
                                   1 + successes[s, 1], 1 + trials[s, 1] - successes[s, 1])
        mc = (rates[:, s, 1] > rates[:, s, 0]).mean()
        assert abs(mc - exact) < 4 * np.sqrt(exact * (1 - exact) / 200_000) + 1e-4
    assert rates[:, 0, 0].mean() == pytest.approx(31 / 202, abs=1e-3)


@pytest.mark.parametrize(("successes", "trials", "extra", "message"), [
    ([[1, -2]], [[10, 10]], {}, "non-negative whole numbers"),
    ([[1, 2.5]], [[10, 10]], {}, "non-negative whole numbers"),
    ([[11, 2]], [[10, 10]], {}, "segment 0, arm 0 has 11 successes of 10 trials"),
    ([[1, 2]], [[10, 10], [10, 10]], {}, "same 2-D shape"),
    ([1, 2], [10, 10], {}, "same 2-D shape"),
    ([[1]], [[10]], {}, "at least one segment and two arms"),
    ([[1, np.nan]], [[10, 10]], {}, "NaN or infinity"),
    ([[1, "x"]], [[10, 10]], {}, "numeric arrays"),
    ([[1, 2]], [[10, 10]], {"control": 2}, "arm index in 0..1"),
    ([[1, 2]], [[10, 10]], {"arms": ["a"]}, "2 arm names"),
    ([[1, 2]], [[10, 10]], {"threshold": 1.5}, "threshold must be in"),
])
def test_bad_input_says_what_was_expected(successes, trials, extra, message):
    with pytest.raises(InputError, match=message):
        segments.read_out(0, successes, trials, **extra)
