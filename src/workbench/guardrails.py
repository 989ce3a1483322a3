"""Guardrails and automatic decisions: the checks that act on an experiment by themselves.

Every ``check_seconds`` each gateway replica runs :func:`check` (``workbench experiment
check`` runs it once, e.g. from cron). On the recent window of traffic
(``guardrails.window_seconds``), a treatment arm that breaches a bound is paused: its share
goes to control, and the audit row says which bound, by how much, on how many requests.
The bounds (all optional, see :class:`workbench.config.Guardrails`):

- ``error_rate``: the share of the arm's requests answered by the fallback;
- ``p99_latency_ms``: the 99th percentile of the arm's request latency;
- ``coverage``: the share of regression outcomes inside the arm's served interval;
- ``calibration_error``: the expected calibration error of the arm's probabilities.

The window is read as sufficient statistics (:func:`workbench.event_reads.fold`) and the
latency percentile is computed by the database, so a check's memory does not grow with
the traffic. Then, when ``auto_conclude.enabled``, the rule of :mod:`workbench.decision`
is evaluated on the read-out and may conclude the experiment. Actions carry the state
version they were decided on, so N replicas checking at once act once (the others find
the state moved on).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench import calibration, control, decision, event_reads, readout
from workbench.aggregates import Fold
from workbench.config import ExperimentConfig

logger = logging.getLogger("workbench.guardrails")


@dataclass(frozen=True)
class Breach:
    arm: str
    bound: str
    value: float
    limit: float
    samples: int

    @property
    def reason(self) -> str:
        above = self.bound in ("error_rate", "p99_latency_ms", "calibration_error")
        return (f"guardrail {self.bound}: {self.value:.4g} {'>' if above else '<'} "
                f"{self.limit:g} over the arm's last {self.samples} "
                f"{'outcomes' if self.bound in ('coverage', 'calibration_error') else 'requests'}")


def breaches(window: Fold, config: ExperimentConfig, weights: dict[str, float], *,
             p99: Callable[[str], float] | None = None) -> list[Breach]:
    """The bounds each live treatment arm breaches in ``window``, the fold of the recent
    events (one breach per arm). ``p99``: an arm's 99th percentile of request latency
    (:func:`workbench.event_reads.latency_quantile`), asked only where that bound is set."""
    g = config.guardrails
    control_arm = config.control_arm.name
    live = [a.name for a in config.arms if a.name != control_arm and weights.get(a.name, 0) > 0]
    cover = window.coverage_table() if g.coverage is not None else {}
    tables = window.reliability_table() if g.calibration_error is not None else {}
    out = []
    for arm in live:
        n = window.served(arm)
        found: list[Breach] = []
        if n >= g.min_samples and g.error_rate is not None:
            rate = window.counts.get(arm, {}).get("fallback", [0, 0])[0] / n
            if rate > g.error_rate:
                found.append(Breach(arm, "error_rate", rate, g.error_rate, n))
        if n >= g.min_samples and g.p99_latency_ms is not None and p99 is not None:
            value = p99(arm)
            if value > g.p99_latency_ms:
                found.append(Breach(arm, "p99_latency_ms", value, g.p99_latency_ms, n))
        c = cover.get(arm)
        if g.coverage is not None and c and c["rows"] >= g.min_samples \
                and c["coverage"] < g.coverage:
            found.append(Breach(arm, "coverage", c["coverage"], g.coverage, c["rows"]))
        if g.calibration_error is not None and arm in tables:
            ece, rows = calibration.calibration_error(tables[arm])
            if rows >= g.min_samples and ece > g.calibration_error:
                found.append(Breach(arm, "calibration_error", ece, g.calibration_error, rows))
        out.extend(found[:1])
    return out


def check(eng: Any, config: ExperimentConfig, *, now: float | None = None) -> list[str]:
    """Evaluate the guardrails and the auto-conclude rule once; act on them (audited).
    Returns a line per action taken."""
    now = time.time() if now is None else now
    state = control.require(eng, config.name)
    actions: list[str] = []
    if state.status != "running":
        return actions
    if config.guardrails.active:
        since = now - config.guardrails.window_seconds
        window = event_reads.fold(eng, config.name, since=since)

        def p99(arm: str) -> float:
            return event_reads.latency_quantile(eng, config.name, arm, 0.99, since=since)[0]

        for breach in breaches(window, config, state.weights, p99=p99):
            moved = control.pause_arm(eng, config.name, breach.arm, config.control_arm.name,
                                      actor="guardrail", reason=breach.reason,
                                      expect_version=state.version)
            if moved is None:  # another replica (or a person) acted first
                return actions
            state = moved
            actions.append(f"paused arm {breach.arm}: {breach.reason}")
            logger.warning("experiment %r: paused arm %r (%s)", config.name, breach.arm,
                           breach.reason)
    rule = config.auto_conclude
    if rule.enabled:
        result = readout.read_out(eng, config.name, config=config)
        arms = result.arms
        if all(a.prob_best is not None for a in arms):
            control_mean = next(a.mean for a in arms if a.is_control) or 0.0
            best, why = decision.should_conclude(
                np.array([a.prob_best for a in arms]), np.array([a.expected_loss for a in arms]),
                [a.outcomes for a in arms], control_mean, rule, names=[a.arm for a in arms])
            if best is not None and control.conclude(
                    eng, config.name, arms[best].arm, actor="auto-conclude", reason=why,
                    expect_version=state.version) is not None:
                actions.append(f"concluded: {arms[best].arm} ({why})")
                logger.warning("experiment %r concluded automatically: %s", config.name, why)
    return actions
