"""The one read-out of an experiment, shared by ``GET /analysis``, ``workbench analyze``,
the dashboard and the notebooks, so that all of them give the same verdict.

**Which events count** (intention-to-treat): every prediction served while the experiment
was *running* (status ``ok``), and every request whose assigned arm failed and was answered
by the control (status ``fallback``), **counted for the arm the unit was assigned to**. A
failing arm is judged by what its users got: dropping its fallbacks would flatter it, and
moving them to control would mix units that were never randomised to control.

Not counted: ``shadow`` predictions (never shown to anyone; their calibration is reported
beside the arms), and predictions served while the experiment was ``paused`` or
``concluded`` (everyone got the control or the winner by the state's routing, not by
randomisation). Calibration (interval coverage, reliability) is scored on every served
prediction with feedback, by the arm whose model served it.

The sample-ratio test compares the counted split with the weights in force when each
request came (the audit trail's weights timeline), so a ramp is not mistaken for a broken
split. Draws and seed are fixed, so the same store gives the same numbers everywhere.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np

from workbench import control, events, experiments
from workbench.config import ExperimentConfig, parse
from workbench.errors import ConfigError

COUNTED = ("ok", "fallback")
SCORED = ("ok", "fallback", "shadow", "paused", "concluded")
FILTER = ("intention-to-treat: statuses ok and fallback, each counted for its assigned arm; "
          "shadow, paused and concluded traffic not counted")


def counted(data: events.Events) -> events.Events:
    """The events the read-out counts, each under the arm it was assigned to."""
    kept = data.mask(np.isin(data.status, COUNTED))
    fallback = kept.status == "fallback"
    if fallback.any() and len(kept.fallback_from) == len(kept):
        kept.arm = kept.arm.copy()
        kept.arm[fallback] = [f or a for f, a in zip(kept.fallback_from[fallback],
                                                     kept.arm[fallback], strict=True)]
    return kept


def config_of(eng: Any, experiment: str, data: events.Events | None = None, *,
              metric: str | None = None) -> ExperimentConfig:
    """The configuration the experiment ran with (recorded by its gateway), else one
    inferred from its events (arms in order of appearance, ``metric`` or binary)."""
    stored = events.load_config(eng, experiment)
    if stored:
        return parse(stored, source=f"recorded config of {experiment!r}")
    data = data if data is not None else events.read(eng, experiment)
    arms = list(dict.fromkeys(a for a, s in zip(data.arm, data.status, strict=True)
                              if s in COUNTED)) or ["a", "b"]
    arms = arms if len(arms) > 1 else [*arms, "other"]
    return parse({"name": experiment, "metric": metric or "binary",
                  "arms": [{"name": a, "model": a} for a in arms]})


def expected_shares(data: events.Events, timeline: list[tuple[float, dict[str, float]]],
                    arms: list[str]) -> dict[str, float] | None:
    """Each arm's weight summed over the counted requests, at the weights in force when each
    came; None when the weights never changed (the configured weights then apply)."""
    if len(timeline) < 2 or not len(data):
        return None
    starts = [ts for ts, _ in timeline]
    total = dict.fromkeys(arms, 0.0)
    for ts in data.ts:
        weights = timeline[max(0, bisect.bisect_right(starts, ts) - 1)][1]
        norm = sum(weights.values()) or 1.0
        for arm in arms:
            total[arm] += weights.get(arm, 0.0) / norm
    return total


def read_out(eng: Any, experiment: str, *, config: ExperimentConfig | None = None,
             data: events.Events | None = None, samples: int = experiments.DRAWS,
             seed: int = 0) -> experiments.Readout:
    """The read-out of ``experiment`` from the event store (see the module's docstring)."""
    data = data if data is not None else events.read(eng, experiment)
    if not len(data) and config is None and events.load_config(eng, experiment) is None:
        raise ConfigError(f"no events for experiment {experiment!r}",
                          detail={"experiments": events.experiments(eng)})
    config = config or config_of(eng, experiment, data)
    state = control.get(eng, experiment)
    arms = [a.name for a in config.arms]
    mine = counted(data)
    expected = expected_shares(mine, control.weights_timeline(eng, experiment), arms)
    readout = experiments.analyze(
        mine, config, weights=state.weights if state else None, samples=samples, seed=seed,
        expected=expected, served=data.mask(np.isin(data.status, SCORED)))
    readout.counted = FILTER
    readout.state = state.to_dict() if state else None
    return readout
