"""The segment simulation's counting, on hand-made read-outs (its use on real ones, at 40
simulations per scenario, is ``tests/test_segments.py``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench import segment_sim
from workbench.segments import Effect


def _effect(lo: float, hi: float, p: float) -> Effect:
    return Effect((0.5 * (lo + hi), lo, hi), (0.0, 0.0, 0.0), p, p >= 0.95, p <= 0.05)


def test_simulate_is_seeded_shaped_and_puts_the_effect_on_every_segment():
    a = segment_sim.simulate(np.random.default_rng(1), 0.0)
    b = segment_sim.simulate(np.random.default_rng(1), 0.0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    successes, trials = a
    assert successes.shape == trials.shape == (segment_sim.SEGMENTS, 2)
    assert trials[:, 0].tolist() == segment_sim.SIZES.tolist() == trials[:, 1].tolist()
    assert (segment_sim.SIZES[0], segment_sim.SIZES[-1]) == (30, 3000)
    successes, trials = segment_sim.simulate(np.random.default_rng(2), [3.0, -3.0],
                                             sizes=[100_000] * 4, arms=3)
    rates = successes / trials
    assert (rates[:, 1] > rates[:, 0] + 0.3).all() and (rates[:, 2] < rates[:, 0]).all()


def test_false_calls_with_no_effect_count_winners_and_losers():
    effects = [_effect(0.1, 0.5, 0.99), _effect(-0.5, -0.1, 0.01), _effect(-0.2, 0.2, 0.5)]
    assert segment_sim.false_calls(effects, 0.0) == {"winner": 1, "any": 2}


def test_false_calls_with_an_effect_count_intervals_that_miss_it_and_losers():
    effects = [_effect(0.0, 0.2, 0.97), _effect(0.2, 0.4, 0.99),  # misses 0.1
               _effect(-0.5, -0.1, 0.01), _effect(-0.3, 0.05, 0.2)]  # loser; misses
    assert segment_sim.false_calls(effects, 0.1) == {"sign": 1, "any": 3}


def test_summarize_totals_the_rows_with_a_sign_test():
    rows = [{"pooled": {"winner": 0, "any": 1}, "unpooled": {"winner": 2, "any": 1},
             "wins": [0, 2], "covered": True, "divergences": 1},
            {"pooled": {"winner": 1, "any": 1}, "unpooled": {"winner": 0, "any": 1},
             "wins": [1, 0], "covered": False, "divergences": 0},
            {"pooled": {"winner": 0, "any": 0}, "unpooled": {"winner": 3, "any": 4},
             "wins": [0, 3], "covered": True, "divergences": 2}]
    s = segment_sim.summarize(rows, 0.0, segment_count=10)
    winner = s["calls"]["winner"]
    assert winner["pooled"] == {"total": 1, "share": pytest.approx(1 / 30), "with_any": 1}
    assert winner["unpooled"] == {"total": 5, "share": pytest.approx(5 / 30), "with_any": 2}
    assert (winner["fewer"], winner["more"]) == (2, 1)
    assert winner["sign_test_p"] == pytest.approx(0.5)  # P(X >= 2), X ~ Binomial(3, 1/2)
    assert s["calls"]["any"]["fewer"] + s["calls"]["any"]["more"] == 1
    assert (s["covered"], s["divergences"], s["wins"]) == (2, 3, {"pooled": 1,
                                                                    "unpooled": 5})
    assert json.loads(json.dumps(s)) == s
    same = [r | {"unpooled": r["pooled"]} for r in rows]
    assert segment_sim.summarize(same, 0.0)["calls"]["winner"]["sign_test_p"] == 1.0
    assert set(segment_sim.summarize([{**r, "pooled": {"sign": 0, "any": 0},
                                       "unpooled": {"sign": 0, "any": 0}} for r in rows],
                                     0.1)["calls"]) == {"sign", "any"}
