"""An experiment's segment read-out: its binary metric by the unit attribute the config
names (``segment_by``; clients send it in ``/predict``'s ``attributes``), pooled beside
unpooled (:mod:`workbench.segments`), from the same fold of the event store as the main
read-out (:func:`workbench.event_reads.fold_all`, pruned events included).

Which rows count is the main read-out's rule (intention-to-treat, by assigned arm). The
answer says how many of the counted trials are in no segment and why: the unit sent no
such attribute (``unset``), its value came after the first
:data:`workbench.aggregates.MAX_SEGMENTS` (``other``), or they were folded before the
attribute was configured (``not_recorded``). Segments are ordered by their trials, the
largest first. The NUTS sampler compiles once per padded shape (segments rounded up to a
power of two; the padding holds no trials and changes no other segment's posterior); :func:`cached`
serves pollers one computation per ``ttl`` seconds, off the event loop.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from workbench import control, event_reads, segments
from workbench.aggregates import Fold
from workbench.config import ExperimentConfig
from workbench.errors import Conflict
from workbench.polled import Polled

TTL = 30.0  # seconds a cached segment read-out is served (a fit takes seconds)
SHOWN = 100  # the largest segments read out; the rest count as other
MIN_PAD = 4

_FIT: segments.Fit | None = None
_FIT_LOCK = threading.Lock()
_POLLED = Polled(stale_while_busy=True)  # a fit takes seconds: pollers get the last one


def table(fold: Fold, config: ExperimentConfig) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The :data:`SHOWN` largest segments' names (largest first) and their successes and
    trials, shaped (segments, arms) in the config's arm order; segments without trials in
    the config's arms are left out."""
    arms = [a.name for a in config.arms]
    names = sorted(fold.segments.values, key=lambda v: (-sum(
        fold.segments.values[v].get(a, [0, 0])[1] for a in arms), v))
    s = np.zeros((len(names), len(arms)))
    n = np.zeros((len(names), len(arms)))
    for i, value in enumerate(names):
        for j, arm in enumerate(arms):
            s[i, j], n[i, j] = fold.segments.values[value].get(arm, [0, 0])
    keep = np.flatnonzero(n.sum(axis=1) > 0)[:SHOWN]
    return [names[i] for i in keep], s[keep], n[keep]


def from_fold(fold: Fold, config: ExperimentConfig, *, seed: int = 0) -> dict[str, Any]:
    """The segment read-out of a fold made with ``segment_by=config.segment_by``."""
    if config.segment_by is None:
        raise Conflict(f"experiment {config.name!r} has no segment attribute", detail={
            "expected": "segment_by: ATTRIBUTE in the experiment config (metric: binary), "
                        "and that attribute in /predict's attributes"})
    names, s, n = table(fold, config)
    arms = [a.name for a in config.arms]
    control_index = arms.index(config.control_arm.name)
    counts = fold.segments

    def trials_of(cells: dict[str, list[int]]) -> int:  # in the config's arms
        return int(sum(cells.get(a, [0, 0])[1] for a in arms))

    kept = sum(trials_of(d) for d in counts.values.values())
    trials = {"in_segments": int(n.sum()), "unset": trials_of(counts.unset),
              "other": trials_of(counts.other) + kept - int(n.sum()),
              "dropped": int(counts.dropped)}
    trials["not_recorded"] = max(0, trials_of(fold.binary) - kept - trials["unset"]
                                 - trials_of(counts.other))
    out: dict[str, Any] = {"experiment": config.name, "attribute": config.segment_by,
                           "metric": config.metric, "control": config.control_arm.name,
                           "trials": trials, "seed": seed, "effects": [], "overall": [],
                           "diagnostics": {}}
    if not len(names) or not n[:, control_index].any():
        out["note"] = (f"no outcomes yet from units with a {config.segment_by!r} attribute"
                       if not len(names) else "the control arm has no outcomes in any segment")
        return out
    padded = max(MIN_PAD, 1 << (len(names) - 1).bit_length())
    pad = ((0, padded - len(names)), (0, 0))
    result = segments.read_out(seed, np.pad(s, pad), np.pad(n, pad), control=control_index,
                               segments=[*names, *(f"(pad {i})" for i in
                                                   range(padded - len(names)))],
                               arms=arms, fit=_sampler())
    body = result.to_dict()  # effects in segment order: the padding's come last
    body["effects"] = body["effects"][:len(names) * (len(arms) - 1)]
    return out | body


def read_out(eng: Any, config: ExperimentConfig, *, seed: int = 0) -> dict[str, Any]:
    """The segment read-out of ``config``'s experiment from the event store."""
    if config.segment_by is None:
        return from_fold(Fold(), config, seed=seed)  # says what to configure
    fold, _, _ = event_reads.fold_all(eng, config.name,
                                      timeline=control.weights_timeline(eng, config.name),
                                      segment_by=config.segment_by)
    return from_fold(fold, config, seed=seed)


def cached(eng: Any, config: ExperimentConfig, *, ttl: float = TTL) -> dict[str, Any]:
    """:func:`read_out`, computed at most once per ``ttl`` seconds per database and config
    (``GET /analysis/segments``)."""
    return _POLLED.get((str(eng.url), config.name, repr(config)), ttl,
                       lambda: read_out(eng, config))


def latest(fold: Fold, config: ExperimentConfig, *, source: str = "",
           ttl: float = TTL) -> dict[str, Any]:
    """:func:`from_fold` of ``source``'s (a database URL's) fold, refitted only when the
    segment counts changed and the last fit is older than ``ttl`` seconds (the dashboard
    folds on every refresh)."""
    counts = fold.segments.to_json() | {"binary": fold.binary}
    return _POLLED.get((f"fold {source}", config.name, repr(config)), ttl,
                       lambda: from_fold(fold, config), counts=counts)


def _sampler() -> segments.Fit:
    global _FIT
    with _FIT_LOCK:
        if _FIT is None:
            _FIT = segments.sampler()  # jitted: compiled once per padded shape
        return _FIT
