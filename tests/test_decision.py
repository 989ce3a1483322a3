"""The automatic decision rule: closed-form cases, parsing, and the rule evaluated at every
check on simulated experiments (A/A and a planted lift). Run with ``-s`` to see the figures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from workbench import experiments
from workbench.decision import AutoConclude, describe, parse, should_conclude, simulate_aa
from workbench.errors import ConfigError

RULE = AutoConclude()
NAIVE = AutoConclude(prob_best=0.95, max_expected_loss=float("inf"), min_outcomes=100)


@pytest.fixture(scope="module")
def aa() -> dict:
    """The default rule on 400 A/A experiments: 2 arms at 10%, a check every 100 outcomes
    per arm up to 10,000 (100 checks)."""
    return simulate_aa(RULE, experiments=400, seed=0)


def test_default_rule_keeps_the_aa_false_rate_within_its_bound(aa):
    print(f"\ndefault rule, A/A: {describe(aa)}")
    assert aa["experiments"] >= 300 and aa["checks_max"] == 100
    assert aa["false_rate"] <= RULE.false_rate_bound, describe(aa)
    assert aa["correct_rate"] is None and aa["realised_loss"] in (0.0, None)
    if aa["false_conclusions"]:
        assert aa["outcomes_median"] >= RULE.min_outcomes
        assert aa["posterior_loss"] <= RULE.max_expected_loss


def test_naive_rule_concludes_falsely_far_more_often_under_continuous_monitoring(aa):
    """P(best) >= 0.95 alone, checked at every batch: each check alone is wrong ~10% of
    the time in an A/A test, and 100 checks compound it."""
    naive = simulate_aa(NAIVE, experiments=400, seed=0)
    no_loss = simulate_aa(AutoConclude(max_expected_loss=float("inf")), experiments=400,
                          seed=0)
    print(f"\nnaive rule, A/A:               {describe(naive)}"
          f"\ndefault without loss limit, A/A: {describe(no_loss)}"
          f"\ndefault rule, A/A:              {describe(aa)}")
    assert naive["false_rate"] > max(3 * aa["false_rate"], RULE.false_rate_bound), (
        f"naive: {describe(naive)}; default: {describe(aa)}")
    # Run once, the same naive rule stays near its nominal 2 x 5% (the last check alone).
    once = simulate_aa(NAIVE, experiments=400, seed=0, batch=10_000)
    print(f"naive rule checked once:        {describe(once)}")
    assert once["false_rate"] < naive["false_rate"] / 3


def test_planted_lift_is_concluded_for_the_right_arm():
    """A 10% relative lift on a 10% rate: a fixed-horizon z of ~2.3 at 10,000 outcomes per
    arm, ~3.3 at 20,000; the rule concludes for the lifted arm in most experiments within
    20,000 (100 checks of 200) and never for the control. (2000 draws per check: a lift
    keeps many checks near the threshold, each evaluated by Monte Carlo.)"""
    lifted = simulate_aa(RULE, experiments=300, lift=0.1, batch=200, horizon=20_000,
                         samples=2000, seed=1)
    print(f"\ndefault rule, +10% lift: {describe(lifted)}")
    assert lifted["correct_rate"] > 0.6, describe(lifted)
    assert lifted["false_rate"] <= RULE.false_rate_bound, describe(lifted)
    assert lifted["realised_loss"] == 0.0


@pytest.mark.parametrize(("arms", "rate"), [(2, 0.1), (3, 0.02)])
def test_screen_only_saves_time(arms, rate):
    """The screen skips checks no arm can pass; with it off, every check is evaluated by
    Monte Carlo and the result is the same (each check has its own random stream)."""
    for rule in (NAIVE, AutoConclude(min_outcomes=500)):
        kwargs = dict(experiments=30, arms=arms, rate=rate, horizon=2000, samples=2000, seed=5)
        assert simulate_aa(rule, **kwargs) == simulate_aa(rule, screen=False, **kwargs)


def test_simulation_rejects_impossible_settings():
    with pytest.raises(ValueError, match="arms >= 2"):
        simulate_aa(RULE, arms=1)
    with pytest.raises(ValueError, match="must lie in"):
        simulate_aa(RULE, rate=0.6, lift=1.0)


# -- should_conclude ------------------------------------------------------------------------

def test_waits_until_every_arm_has_min_outcomes():
    winner, reason = should_conclude(np.array([0.0, 1.0]), np.array([0.01, 0.0]),
                                     [1999, 5000], 0.1, RULE, names=["control", "treatment"])
    assert winner is None
    assert reason == "waiting for 2000 outcomes per arm (fewest so far: 1999)"


def test_closed_form_normal_posteriors_conclude_for_the_better_arm():
    """Two Normal posteriors 0.100 and 0.110 with sd 0.002 each: P(B > A) = Phi(d / s) and
    the loss of B is s * (phi(z) - z * (1 - Phi(z))), z = d / s, s = 0.002 * sqrt(2)."""
    d, s = 0.01, 0.002 * np.sqrt(2)
    z = d / s
    exact_prob = stats.norm.cdf(z)
    exact_loss = s * (stats.norm.pdf(z) - z * stats.norm.sf(z))
    draws = np.random.default_rng(0).normal([0.10, 0.11], 0.002, size=(200_000, 2))
    prob, loss = experiments.prob_best(draws), experiments.expected_loss(draws)
    assert prob[1] == pytest.approx(exact_prob, abs=5e-4)
    assert loss[1] == pytest.approx(exact_loss, abs=2e-6)
    winner, reason = should_conclude(prob, loss, [20_000, 20_000], 0.10, RULE,
                                     names=["control", "treatment"])
    assert winner == 1
    assert reason.startswith(f"P(treatment is best) = {prob[1]:.4f} >= 0.999 and expected loss")
    assert reason.endswith("of control) <= 0.10%")


def test_a_loss_above_the_threshold_keeps_it_running():
    # P(best) is high, but the expected loss is 0.3% of control's 0.1: above 0.1%.
    winner, reason = should_conclude(np.array([0.0005, 0.9995]), np.array([0.02, 0.0003]),
                                     [5000, 5000], 0.1, RULE)
    assert winner is None
    assert reason == ("P(arm 1 is best) = 0.9995 >= 0.999 but expected loss 0.0003 "
                      "(0.30% of control) > 0.10%")
    # The same loss relative to a larger control mean is within the threshold.
    assert should_conclude(np.array([0.0005, 0.9995]), np.array([0.02, 0.0003]),
                           [5000, 5000], 0.5, RULE)[0] == 1


def test_a_probability_below_the_threshold_keeps_it_running():
    winner, reason = should_conclude(np.array([0.03, 0.97]), np.array([0.01, 1e-5]),
                                     [5000, 5000], 0.1, RULE)
    assert winner is None and reason.startswith("P(arm 1 is best) = 0.9700 < 0.999;")


def test_three_arms_and_a_zero_control_mean():
    prob, loss = np.array([0.0002, 0.9995, 0.0003]), np.array([0.2, 1e-6, 0.2])
    assert should_conclude(prob, loss, [3000] * 3, 0.2, RULE)[0] == 1
    # a control mean of 0 makes any positive loss infinitely large relative to it
    winner, reason = should_conclude(prob, loss, [3000] * 3, 0.0, RULE)
    assert winner is None and "inf% of control" in reason
    assert should_conclude(prob, np.zeros(3), [3000] * 3, 0.0, RULE)[0] == 1


# -- parse ----------------------------------------------------------------------------------

def test_parse_fills_defaults_and_coerces_numbers():
    assert parse(None) == AutoConclude()
    rule = parse({"enabled": True, "prob_best": 0.99, "max_expected_loss": 1,
                  "min_outcomes": 500})
    assert rule == AutoConclude(enabled=True, prob_best=0.99, max_expected_loss=1.0,
                                min_outcomes=500)
    assert isinstance(rule.max_expected_loss, float)


@pytest.mark.parametrize(("raw", "message", "expected"), [
    ([0.99], "must be a mapping", "prob_best"),
    ({"prob_bets": 0.99}, "unknown keys ['prob_bets']", "prob_best"),
    ({"enabled": "yes"}, "enabled must be true or false", "true or false"),
    ({"prob_best": "high"}, "prob_best must be a number", "(0.5, 1)"),
    ({"prob_best": 1.0}, "prob_best 1.0 is out of range", "(0.5, 1)"),
    ({"prob_best": 0.5}, "prob_best 0.5 is out of range", "(0.5, 1)"),
    ({"max_expected_loss": 0}, "max_expected_loss 0.0 is out of range", "> 0"),
    ({"max_expected_loss": -0.01}, "max_expected_loss -0.01 is out of range", "> 0"),
    ({"min_outcomes": 0}, "min_outcomes 0 is out of range", ">= 1"),
    ({"min_outcomes": 1.5}, "min_outcomes must be an integer", ">= 1"),
    ({"min_outcomes": True}, "min_outcomes must be an integer", ">= 1"),
    ({"false_rate_bound": 1.5}, "false_rate_bound 1.5 is out of range", "(0, 1)"),
])
def test_parse_names_what_was_wrong_and_what_was_expected(raw, message, expected):
    with pytest.raises(ConfigError) as info:
        parse(raw)
    assert message in info.value.message
    assert info.value.message.startswith("auto_conclude: ")
    assert expected in str(info.value.detail["expected"])
