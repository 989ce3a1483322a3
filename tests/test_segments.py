"""Segment read-outs: the pooled model against the multiple-comparisons trap, on simulations
with one true effect in every segment; recovery of a known effect; closed forms; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from workbench import segments
from workbench.closed_forms import beta_chance_to_win
from workbench.errors import InputError

SEGMENTS = 20
# trials per arm and segment, 30 to 3000: a few small segments, a few large
SIZES = np.round(np.geomspace(30, 3000, SEGMENTS)).astype(int)
SIMULATIONS = 40  # per scenario
SMALL_EFFECT = 0.1  # log-odds: +1 to +2 points on base rates of 5% to 30%


@pytest.fixture(scope="module")
def fit():
    """One sampler for the module: it compiles once per shape of the counts."""
    return segments.sampler(warmup=300, samples=500)


def _expit(x):
    return 1 / (1 + np.exp(-x))


def _simulate(rng, effect, sizes=SIZES, arms=2):
    """Counts (segments, arms), control in column 0: base rates uniform on 5%..30% per
    segment, every treatment arm ``effect`` (log-odds, one per treatment arm) above it in
    every segment."""
    base = rng.uniform(0.05, 0.3, len(sizes))
    logit = np.log(base / (1 - base))
    effects = np.broadcast_to(np.concatenate([[0.0], np.atleast_1d(effect)]), (arms,))
    trials = np.repeat(np.asarray(sizes)[:, None], arms, axis=1)
    return rng.binomial(trials, _expit(logit[:, None] + effects)), trials


def _false_calls(effects, effect):
    """False segment calls of one read-out (``pooled`` or ``unpooled`` effects), given
    the one true effect of every segment.

    ``effect == 0``: every segment declared a winner (P(effect > 0) >= 0.95) is false;
    ``any`` also counts losers (P(effect > 0) <= 0.05), a false call of the other sign.
    ``effect > 0``: every segment is truly better, so a false call is a segment said to
    have a different effect: declared a loser (``sign``: the opposite sign) or with a 90%
    interval that excludes the true common effect (``any``, which includes ``sign``).
    """
    if effect == 0:
        return {"winner": sum(e.winner for e in effects),
                "any": sum(e.winner or e.loser for e in effects)}
    return {"sign": sum(e.loser for e in effects),
            "any": sum(not e.log_odds[1] <= effect <= e.log_odds[2] for e in effects)}


def _run(fit, effect, seed):
    """Per simulation: the false calls of both read-outs, true winners and d's coverage."""
    rows = []
    for i in range(SIMULATIONS):
        successes, trials = _simulate(np.random.default_rng([seed, i]), effect)
        out = segments.read_out(i, successes, trials, fit=fit)
        pooled = [e.pooled for e in out.effects]
        unpooled = [e.unpooled for e in out.effects]
        d = out.overall[0]["d"]
        rows.append({"pooled": _false_calls(pooled, effect),
                     "unpooled": _false_calls(unpooled, effect),
                     "wins": (sum(e.winner for e in pooled), sum(e.winner for e in unpooled)),
                     "covered": d[1] <= effect <= d[2],
                     "divergences": out.diagnostics["divergences"]})
    return rows


def _report_and_check(rows, effect, kind):
    pooled = np.array([r["pooled"][kind] for r in rows])
    unpooled = np.array([r["unpooled"][kind] for r in rows])
    calls = SIMULATIONS * SEGMENTS
    fewer, more = int((pooled < unpooled).sum()), int((pooled > unpooled).sum())
    sign_test = stats.binomtest(fewer, fewer + more, 0.5, alternative="greater").pvalue
    print(f"\neffect {effect}, false calls ({kind}) over {SIMULATIONS} simulations x "
          f"{SEGMENTS} segments: pooled {pooled.sum()} ({pooled.sum() / calls:.3f} of "
          f"segments; simulations with any: {(pooled > 0).sum()}), unpooled "
          f"{unpooled.sum()} ({unpooled.sum() / calls:.3f}; with any: {(unpooled > 0).sum()})"
          f"; pooled fewer in {fewer} simulations, more in {more} (sign test p "
          f"{sign_test:.1e})")
    assert pooled.sum() < unpooled.sum()
    assert sign_test < 1e-3  # the margin: pooled fewer in far more simulations than more
    return pooled, unpooled


@pytest.mark.slow
def test_no_effect_pooling_declares_fewer_false_segment_winners(fit):
    rows = _run(fit, 0.0, seed=1)
    _report_and_check(rows, 0.0, "winner")
    _report_and_check(rows, 0.0, "any")
    covered = sum(r["covered"] for r in rows)
    print(f"overall effect's 90% interval covers 0 in {covered} of {SIMULATIONS}; "
          f"divergences {sum(r['divergences'] for r in rows)}")
    assert covered >= stats.binom.ppf(0.001, SIMULATIONS, 0.9)


@pytest.mark.slow
def test_small_common_effect_pooling_singles_out_fewer_segments_wrongly(fit):
    rows = _run(fit, SMALL_EFFECT, seed=2)
    pooled, unpooled = _report_and_check(rows, SMALL_EFFECT, "any")
    sign = [sum(r[m]["sign"] for r in rows) for m in ("pooled", "unpooled")]
    wins = np.array([r["wins"] for r in rows]).sum(axis=0)
    covered = sum(r["covered"] for r in rows)
    print(f"opposite sign declared: pooled {sign[0]}, unpooled {sign[1]}; true winners "
          f"found: pooled {wins[0]}, unpooled {wins[1]} of {SIMULATIONS * SEGMENTS}; overall "
          f"effect's 90% interval covers {SMALL_EFFECT} in {covered} of {SIMULATIONS}")
    assert sign[0] <= sign[1]
    assert wins[0] > wins[1]  # and it is not by declaring nothing
    assert covered >= stats.binom.ppf(0.001, SIMULATIONS, 0.9)


def test_recovers_a_known_common_effect_per_arm_with_control_elsewhere(fit):
    rng = np.random.default_rng(7)
    truth = np.array([0.3, 0.0])  # arm 0: +0.3 log-odds; arm 2: no effect; control: arm 1
    successes, trials = _simulate(rng, truth, sizes=np.full(12, 800), arms=3)
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
