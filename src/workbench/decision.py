"""The automatic decision rule: when an experiment may conclude on its own.

Under continuous monitoring the rule is evaluated again and again as outcomes arrive, so
a rule that is safe once ("P(best) >= 0.95") is not safe when checked at every batch: an
A/A experiment (no difference between the arms) drifts across any fixed threshold sooner
or later. The rule therefore asks for three things at once:

- every arm has at least ``min_outcomes`` outcomes;
- the leading arm's posterior probability to be best is at least ``prob_best``;
- its expected loss (E[max over arms - this arm], GrowthBook's "risk") is at most
  ``max_expected_loss`` *relative to the control arm's posterior mean*.

The defaults are chosen by :func:`simulate_aa`, which runs the rule at every batch on
simulated A/A experiments (and on experiments with a planted lift) and reports the share
that conclude falsely; ``benchmarks/RESULTS.md`` records the figures.

.. code-block:: yaml

    auto_conclude: {enabled: true, prob_best: 0.999, max_expected_loss: 0.001,
                    min_outcomes: 2000}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
from scipy import special, stats

from workbench.errors import ConfigError
from workbench.experiments import beta_posterior, expected_loss, prob_best


@dataclass(frozen=True)
class AutoConclude:
    """When an experiment concludes by itself.

    Parameters
    ----------
    enabled
        Whether the monitoring loop acts on the rule. :func:`should_conclude` evaluates
        the thresholds either way, so that a dashboard can show how far an experiment is
        from concluding.
    prob_best
        The leading arm's posterior probability to be best must reach this, in (0.5, 1).
    max_expected_loss
        The leading arm's expected loss must be at most this fraction of the control
        arm's posterior mean (0.001: 0.1% of control's rate). Greater than 0.
    min_outcomes
        Every arm needs at least this many outcomes before the rule is evaluated.
    false_rate_bound
        The A/A false-conclusion rate the defaults are checked against: under
        :func:`simulate_aa`'s default schedule (2 arms at a 10% rate, a check every 100
        outcomes per arm up to 10,000) the default rule concludes falsely in at most this
        share of experiments (``tests/test_decision.py`` asserts it).

    Notes
    -----
    Why these defaults (``benchmarks/aa_autoconclude.py``, 1000 experiments a row): under
    100 checks an A/A experiment concludes falsely in ~2.5% of experiments (at 2%, 10% and
    30% base rates alike; <1% with 3 arms; ~4% with 500 checks of 20), against ~63% for
    "P(best) >= 0.95" alone. A +10% lift on a 10% rate is concluded for the right arm in
    ~75% of experiments within 20,000 outcomes per arm (~40% within 10,000, where even a
    single fixed-horizon test at 5% has only ~64% power). ``prob_best`` and
    ``min_outcomes`` carry the false-rate control; at ``prob_best`` 0.999 the expected
    loss is already ~0.001-0.003% of control when the rule passes, so the 0.1% loss limit
    is a guard for wide or skewed posteriors, not what keeps A/A tests from concluding.
    The false rate grows slowly with more checks and a longer horizon: no fixed threshold
    stays safe if monitored forever.
    """

    enabled: bool = False
    prob_best: float = 0.999
    max_expected_loss: float = 0.001
    min_outcomes: int = 2000
    false_rate_bound: float = 0.05


def parse(raw: Any, *, source: str = "auto_conclude") -> AutoConclude:
    """Validate a YAML mapping into an :class:`AutoConclude`; ``None`` gives the default.

    ``source`` prefixes every message (the config file and key, for example).

    Raises
    ------
    ConfigError
        Naming the key that was wrong, with ``detail={"expected": ...}``.
    """
    def fail(message: str, expected: Any) -> ConfigError:
        return ConfigError(f"{source}: {message}", detail={"expected": expected})

    if raw is None:
        return AutoConclude()
    known = [f.name for f in fields(AutoConclude)]
    if not isinstance(raw, dict):
        raise fail(f"must be a mapping, got {raw!r}", known)
    if unknown := sorted(set(raw) - set(known)):
        raise fail(f"unknown keys {unknown}", known)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "enabled":
            if not isinstance(value, bool):
                raise fail(f"enabled must be true or false, got {value!r}", "true or false")
        elif key == "min_outcomes":
            if isinstance(value, bool) or not isinstance(value, int):
                raise fail(f"min_outcomes must be an integer, got {value!r}",
                           "an integer >= 1")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(f"{key} must be a number, got {value!r}", _RANGES[key])
        else:
            value = float(value)
        values[key] = value
    rule = AutoConclude(**values)
    checks = {"prob_best": 0.5 < rule.prob_best < 1,
              "max_expected_loss": rule.max_expected_loss > 0,
              "min_outcomes": rule.min_outcomes >= 1,
              "false_rate_bound": 0 < rule.false_rate_bound < 1}
    for key, ok in checks.items():
        if not ok:
            raise fail(f"{key} {getattr(rule, key)!r} is out of range", _RANGES[key])
    return rule


_RANGES = {"prob_best": "a probability in (0.5, 1)",
           "max_expected_loss": "a fraction of control's mean > 0 (0.001 is 0.1%; .inf: none)",
           "min_outcomes": "an integer >= 1",
           "false_rate_bound": "a rate in (0, 1)"}


def should_conclude(prob: np.ndarray, loss: np.ndarray, outcomes: Sequence[int],
                    control_mean: float, rule: AutoConclude, *,
                    names: Sequence[str] | None = None) -> tuple[int | None, str]:
    """Whether the rule concludes now, and why (or why not), in one line.

    Parameters
    ----------
    prob, loss
        Per arm (arms are columns of the posterior draws): the probability to be best and
        the expected loss in metric units, as :func:`workbench.experiments.prob_best` and
        :func:`workbench.experiments.expected_loss` give them.
    outcomes
        Outcomes observed per arm.
    control_mean
        The control arm's posterior mean metric; the loss is compared relative to it.
    rule
        The thresholds (``rule.enabled`` is the caller's to check).
    names
        Arm names for the reason; default ``arm 0``, ``arm 1``, ...

    Returns
    -------
    tuple
        The winner's index, or ``None``, and the reason.
    """
    prob, loss = np.asarray(prob, float), np.asarray(loss, float)
    names = list(names) if names is not None else [f"arm {k}" for k in range(len(prob))]
    fewest = int(np.min(outcomes))
    if fewest < rule.min_outcomes:
        return None, (f"waiting for {rule.min_outcomes} outcomes per arm "
                      f"(fewest so far: {fewest})")
    best = int(np.argmax(prob))
    p, risk = float(prob[best]), float(loss[best])
    relative = risk / abs(control_mean) if control_mean else (0.0 if risk == 0 else np.inf)
    said = (f"P({names[best]} is best) = {p:.4f}", f"expected loss {risk:.4g} "
            f"({relative:.2%} of control)", f"{rule.max_expected_loss:.2%}")
    if p < rule.prob_best:
        return None, f"{said[0]} < {rule.prob_best}; {said[1]}"
    if relative > rule.max_expected_loss:
        return None, f"{said[0]} >= {rule.prob_best} but {said[1]} > {said[2]}"
    return best, f"{said[0]} >= {rule.prob_best} and {said[1]} <= {said[2]}"


def simulate_aa(rule: AutoConclude, *, experiments: int = 400, rate: float = 0.1,
                arms: int = 2, batch: int = 100, horizon: int = 10_000, lift: float = 0.0,
                samples: int = 4000, seed: int = 0, screen: bool = True) -> dict[str, Any]:
    """The rule under continuous monitoring, on simulated binary experiments.

    Each experiment receives ``batch`` Bernoulli outcomes per arm at a time (arm 0 is the
    control; the last arm's rate is ``rate * (1 + lift)``, the others ``rate``), and after
    every batch the rule is evaluated on the Beta(1 + s, 1 + n - s) posteriors with
    ``samples`` Monte Carlo draws, until it concludes or ``horizon`` outcomes per arm
    have arrived (``horizon // batch`` checks at most). ``rule.enabled`` is ignored: the
    thresholds are what is simulated.

    Parameters
    ----------
    screen
        Skip the Monte Carlo evaluation at checks where no arm can reach
        ``rule.prob_best``: the normal approximation of the best pairwise probability
        ``P(arm k > arm j)`` (an upper bound of P(k is best)) is below ``prob_best`` by a
        wide margin (its tail probability over twice the allowed one plus 0.02). It only
        saves time: the Monte Carlo draws of each (experiment, check) come from their own
        random stream, so with ``screen=False`` the result is the same unless the
        approximation missed a pass (a test checks it does not).

    Returns
    -------
    dict
        ``false_rate`` (A/A: any conclusion; with a lift: a conclusion for an arm that is
        not the best) with its 95% Clopper-Pearson interval ``false_rate_ci``,
        ``correct_rate`` (``None`` for A/A), ``concluded``, the outcomes per arm at
        conclusion (``outcomes_mean``, ``outcomes_median``), ``posterior_loss`` (mean
        relative expected loss the rule saw when it concluded), the realised loss of the
        chosen arm (``realised_loss``: true best rate - chosen rate, and
        ``realised_loss_relative``: over control's true rate), ``checks_mean`` and
        ``checks_max``, and the settings.
    """
    if arms < 2 or batch < 1 or horizon < batch or experiments < 1 or samples < 1:
        raise ValueError("need arms >= 2, 1 <= batch <= horizon, experiments and samples >= 1")
    true = np.full(arms, float(rate))
    true[-1] = rate * (1 + lift)
    if not ((true > 0) & (true < 1)).all():
        raise ValueError(f"rates {true.tolist()} must lie in (0, 1)")
    checks = horizon // batch
    data = np.random.default_rng([seed, 0])
    successes = data.binomial(batch, true, size=(experiments, checks, arms)).cumsum(axis=1)
    winner = np.full(experiments, -1)
    stopped = np.full(experiments, checks)  # checks run per experiment
    seen_loss = np.full(experiments, np.nan)
    active = np.ones(experiments, bool)
    for c in range(checks):
        n = (c + 1) * batch
        if n < rule.min_outcomes:
            continue
        alpha, beta = beta_posterior(successes[:, c], np.full(arms, n))
        todo = np.flatnonzero(active)
        if screen:
            todo = todo[_may_pass(alpha[todo], beta[todo], rule.prob_best)]
        for e in todo:
            draws = np.random.default_rng([seed, 1, e, c]).beta(alpha[e], beta[e],
                                                                size=(samples, arms))
            loss = expected_loss(draws)
            control_mean = alpha[e, 0] / (alpha[e, 0] + beta[e, 0])
            k, _ = should_conclude(prob_best(draws), loss, [n] * arms, control_mean, rule)
            if k is not None:
                winner[e], stopped[e], active[e] = k, c + 1, False
                seen_loss[e] = loss[k] / control_mean
    return _summary(rule, winner, stopped, seen_loss, true, lift=lift, batch=batch,
                    checks=checks, experiments=experiments, arms=arms, rate=rate,
                    horizon=horizon, samples=samples, seed=seed)


def _may_pass(alpha: np.ndarray, beta: np.ndarray, threshold: float) -> np.ndarray:
    """Rows (experiments) where some arm's normal-approximate P(k > j) for every other
    arm j is close enough to ``threshold`` that the Monte Carlo check could pass."""
    mean = alpha / (alpha + beta)
    var = mean * (1 - mean) / (alpha + beta + 1)
    z = (mean[:, :, None] - mean[:, None, :]) / np.sqrt(var[:, :, None] + var[:, None, :])
    arms = mean.shape[1]
    z[:, np.arange(arms), np.arange(arms)] = np.inf
    tail = special.ndtr(-z.min(axis=2).max(axis=1))  # 1 - the best pairwise bound
    return tail <= 2 * (1 - threshold) + 0.02


def _summary(rule: AutoConclude, winner: np.ndarray, stopped: np.ndarray,
             seen_loss: np.ndarray, true: np.ndarray, *, lift: float, batch: int,
             checks: int, **settings: Any) -> dict[str, Any]:
    experiments = len(winner)
    done = winner >= 0
    best = np.flatnonzero(true == true.max())
    wrong = done & (True if lift == 0 else ~np.isin(winner, best))
    n_false = int(wrong.sum())
    lo, hi = stats.binomtest(n_false, experiments).proportion_ci(0.95, method="exact")
    at = stopped[done] * batch
    realised = true.max() - true[winner[done]]
    return {
        **settings, "lift": lift, "batch": batch, "rule": asdict(rule),
        "concluded": float(done.mean()),
        "false_conclusions": n_false,
        "false_rate": n_false / experiments,
        "false_rate_ci": (float(lo), float(hi)),
        "correct_rate": None if lift == 0 else float((done & ~wrong).mean()),
        "outcomes_mean": float(at.mean()) if done.any() else None,
        "outcomes_median": float(np.median(at)) if done.any() else None,
        "posterior_loss": float(seen_loss[done].mean()) if done.any() else None,
        "realised_loss": float(realised.mean()) if done.any() else None,
        "realised_loss_relative": float(realised.mean() / true[0]) if done.any() else None,
        "checks_mean": float(stopped.mean()),
        "checks_max": checks,
    }


def describe(result: dict[str, Any]) -> str:
    """One line of :func:`simulate_aa`'s figures, for test output and logs."""
    lo, hi = result["false_rate_ci"]
    rule = replace(AutoConclude(**result["rule"]), enabled=True)
    parts = [f"{result['experiments']} experiments, {result['arms']} arms, rate "
             f"{result['rate']}, lift {result['lift']:+.0%}: false {result['false_rate']:.3f} "
             f"[{lo:.3f}, {hi:.3f}]"]
    if result["correct_rate"] is not None:
        parts.append(f"correct {result['correct_rate']:.3f}")
    if result["outcomes_mean"] is not None:
        parts.append(f"outcomes/arm at conclusion mean {result['outcomes_mean']:.0f} "
                     f"median {result['outcomes_median']:.0f}")
        parts.append(f"expected loss seen {result['posterior_loss']:.4%} of control, "
                     f"realised {result['realised_loss']:.4g} "
                     f"({result['realised_loss_relative']:.2%})")
    parts.append(f"checks {result['checks_mean']:.1f}/{result['checks_max']}")
    parts.append(f"rule P>={rule.prob_best} loss<={rule.max_expected_loss:.2%} "
                 f"n>={rule.min_outcomes}")
    return "; ".join(parts)
