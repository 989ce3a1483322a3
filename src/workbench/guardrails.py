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

Then, when ``auto_conclude.enabled``, the rule of :mod:`workbench.decision` is evaluated on
the read-out and may conclude the experiment. Actions carry the state version they were
decided on, so N replicas checking at once act once (the others find the state moved on).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench import calibration, control, decision, events, readout
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


def breaches(data: events.Events, config: ExperimentConfig, weights: dict[str, float]
             ) -> list[Breach]:
    """The bounds each live treatment arm breaches on ``data`` (one breach per arm)."""
    g = config.guardrails
    control_arm = config.control_arm.name
    live = [a.name for a in config.arms if a.name != control_arm and weights.get(a.name, 0) > 0]
    mine = readout.counted(data)
    served = data.mask(np.isin(data.status, readout.SCORED))
    cover = calibration.coverage(served) if g.coverage is not None else {}
    tables = calibration.reliability(served) if g.calibration_error is not None else {}
    out = []
    for arm in live:
        sel = mine.arm == arm
        n = int(sel.sum())
        found: list[Breach] = []
        if n >= g.min_samples and g.error_rate is not None:
            rate = float(np.mean(mine.status[sel] == "fallback"))
            if rate > g.error_rate:
                found.append(Breach(arm, "error_rate", rate, g.error_rate, n))
        if n >= g.min_samples and g.p99_latency_ms is not None:
            p99 = float(np.nanquantile(mine.latency_ms[sel], 0.99))
            if p99 > g.p99_latency_ms:
                found.append(Breach(arm, "p99_latency_ms", p99, g.p99_latency_ms, n))
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
        data = events.read(eng, config.name, since=now - config.guardrails.window_seconds)
        for breach in breaches(data, config, state.weights):
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
