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

**At scale**: the events are never all in memory. They are folded into sufficient
statistics (:mod:`workbench.aggregates`) a chunk at a time (:mod:`workbench.event_reads`),
and events pruned by ``workbench events prune`` live on as the experiment's stored
aggregate, which every read-out adds (``pruned`` in the read-out says up to when).
:func:`cached` serves pollers (``GET /analysis``) one computation per few seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench import aggregates, control, event_reads, events, experiments, folding
from workbench.config import ExperimentConfig, parse
from workbench.errors import ConfigError
from workbench.polled import Polled
from workbench.settings import load

COUNTED = aggregates.COUNTED
SCORED = aggregates.SCORED
FILTER = ("intention-to-treat: statuses ok and fallback, each counted for its assigned arm; "
          "shadow, paused and concluded traffic not counted")


def counted(data: events.Events) -> events.Events:
    """The events the read-out counts, each under the arm it was assigned to."""
    kept = data.mask(np.isin(data.status, COUNTED))
    kept.arm = folding.assigned_arms(kept)
    return kept


def config_of(eng: Any, experiment: str, data: events.Events | None = None, *,
              metric: str | None = None) -> ExperimentConfig:
    """The configuration the experiment ran with (recorded by its gateway), else one
    inferred from its events (arms in order of appearance, ``metric`` or binary)."""
    stored = events.load_config(eng, experiment)
    if stored:
        return parse(stored, source=f"recorded config of {experiment!r}")
    if data is not None:
        seen = [a for a, s in zip(data.arm, data.status, strict=True) if s in COUNTED]
    else:
        seen = event_reads.arms_in_order(eng, experiment)
        with eng.connect() as conn:
            pruned = event_reads.stored(conn, experiment)
        seen = [*(pruned[0].counts if pruned else []), *seen]
    arms = list(dict.fromkeys(seen)) or ["a", "b"]
    arms = arms if len(arms) > 1 else [*arms, "other"]
    return parse({"name": experiment, "metric": metric or "binary",
                  "arms": [{"name": a, "model": a} for a in arms]})


def read_out(eng: Any, experiment: str, *, config: ExperimentConfig | None = None,
             data: events.Events | None = None, samples: int = experiments.DRAWS,
             seed: int = 0, fold: aggregates.Fold | None = None,
             pruned: dict[str, Any] | None = None) -> experiments.Readout:
    """The read-out of ``experiment`` from the event store (see the module's docstring).

    By default the store's events are folded in chunks and added to what was pruned
    (:func:`workbench.event_reads.fold_all`). ``data``: events already in memory, folded
    instead of the store's (plus what was pruned). ``fold``: a fold made already (with
    ``pruned``, the aggregate it includes), as the dashboard does.
    """
    timeline = control.weights_timeline(eng, experiment)
    if fold is None and data is not None:
        fold = folding.fold_events(data, timeline=timeline)
        with eng.connect() as conn:
            stored = event_reads.stored(conn, experiment)
        if stored is not None:
            fold, pruned = stored[0].merge(fold), stored[1]
    elif fold is None:
        fold, pruned, _ = event_reads.fold_all(eng, experiment, timeline=timeline)
    if not fold.total(shadow=True) and config is None and \
            events.load_config(eng, experiment) is None:
        raise ConfigError(f"no events for experiment {experiment!r}",
                          detail={"experiments": events.experiments(eng)})
    config = config or config_of(eng, experiment, data)
    state = control.get(eng, experiment)
    names = [a.name for a in config.arms]
    expected = None
    if len(timeline) >= 2 and fold.expected is not None and \
            any(fold.served(a) for a in fold.counts):
        expected = {a: fold.expected.get(a, 0.0) for a in names}
    readout = experiments.summarize(
        fold, config, weights=state.weights if state else None, samples=samples, seed=seed,
        expected=expected)
    readout.counted = FILTER
    readout.state = state.to_dict() if state else None
    readout.pruned = pruned
    return readout


# -- a short-lived cache for callers that poll --------------------------------------------------

_POLLED = Polled()  # one read-out per database, experiment and config per ttl


def ttl_seconds() -> float:
    """``WORKBENCH_ANALYSIS_TTL_SECONDS`` (:mod:`workbench.settings`; 0 turns it off)."""
    return load().analysis_ttl_seconds


def cached(eng: Any, experiment: str, *, config: ExperimentConfig | None = None,
           ttl: float | None = None) -> dict[str, Any]:
    """``read_out(eng, experiment, config=config).to_dict()``, computed at most once per
    ``ttl`` seconds (default :func:`ttl_seconds`) per database, experiment and config:
    for ``GET /analysis``, which dashboards poll every few seconds. Concurrent callers
    wait for the one computation in flight instead of starting their own. The answer can
    be up to ``ttl`` seconds old (its ``state`` included); each caller gets its own copy.
    """
    ttl = ttl_seconds() if ttl is None else ttl
    if ttl <= 0:
        return read_out(eng, experiment, config=config).to_dict()
    return _POLLED.get((str(eng.url), experiment, repr(config)), ttl,
                       lambda: read_out(eng, experiment, config=config).to_dict())
