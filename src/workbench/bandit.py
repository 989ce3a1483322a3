"""Thompson-sampling allocation for experiments in ``mode: bandit``.

Every ``bandit.update_seconds`` the weights become each arm's posterior probability to be
best (floored at ``bandit.min_weight``), computed on the read-out's counted events (their
sufficient statistics, pruned ones included: :func:`workbench.event_reads.fold_all`) and
written to the experiment's state, so every replica allocates alike. Replicas race to
update; the state's version lets one win and the others skip.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from workbench import assignment, control, event_reads, experiments
from workbench.config import ExperimentConfig


def reallocate(eng: Any, config: ExperimentConfig, state: control.State, *,
               now: float | None = None) -> control.State | None:
    """New weights when the last ones are ``update_seconds`` old; None when not due, not
    running, or another replica updated first."""
    now = time.time() if now is None else now
    if state.status != "running" or now - state.updated < config.bandit.update_seconds:
        return None
    fold, _, _ = event_reads.fold_all(eng, config.name, timeline=None)
    draws, _ = experiments.fold_draws(fold, config, samples=4000, seed=int(now))
    weights = assignment.thompson_weights(
        np.nan_to_num(draws, nan=0.0), [a.name for a in config.arms],
        min_weight=config.bandit.min_weight, higher_is_better=config.metric != "brier")
    return control.allocate(eng, config.name, weights, expect_version=state.version)
