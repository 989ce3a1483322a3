from __future__ import annotations

from collections import Counter

import numpy as np
from scipy import stats

from workbench.assignment import assign, bucket, thompson_weights


def test_assignment_is_deterministic_and_sticky():
    weights = {"a": 0.5, "b": 0.5}
    first = [assign("exp", f"user-{i}", weights) for i in range(500)]
    assert first == [assign("exp", f"user-{i}", weights) for i in range(500)]
    # another experiment (or salt) reshuffles independently
    other = [assign("exp2", f"user-{i}", weights) for i in range(500)]
    assert 0.35 < np.mean([x == y for x, y in zip(first, other, strict=True)]) < 0.65
    assert bucket("exp", "u", "s1") != bucket("exp", "u", "s2")


def test_split_follows_the_weights():
    weights = {"a": 0.2, "b": 0.3, "c": 0.5}
    n = 20_000
    counts = Counter(assign("split-test", str(i), weights) for i in range(n))
    observed = [counts[k] for k in weights]
    expected = [w * n for w in weights.values()]
    assert stats.chisquare(observed, expected).pvalue > 0.001


def test_thompson_weights_favour_the_better_arm_but_keep_the_floor():
    rng = np.random.default_rng(0)
    draws = np.stack([rng.beta(20, 80, 4000), rng.beta(40, 60, 4000)], axis=1)
    w = thompson_weights(draws, ["a", "b"], min_weight=0.1)
    assert w["b"] > 0.85 and w["a"] >= 0.1 and abs(sum(w.values()) - 1) < 1e-9
    w_brier = thompson_weights(draws, ["a", "b"], min_weight=0.1, higher_is_better=False)
    assert w_brier["a"] > w_brier["b"]
