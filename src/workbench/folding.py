"""Folding events into sufficient statistics (:class:`workbench.aggregates.Fold`): how one
served row and its outcome become numbers (:func:`observe`, :func:`log_score`,
:func:`brier`), and how rows are added up, a chunk at a time (:class:`Folder`), or all at
once from events in memory (:func:`fold_events`).

Which rows count is :mod:`workbench.readout`'s rule (intention-to-treat): the metrics take
the rows of counted statuses under the arm the unit was assigned to; calibration takes
every scored row under the arm that served it. A row the metric cannot take is counted
in ``skipped``, never fatal.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.aggregates import (
    BINS,
    COUNTED,
    EDGES,
    METRICS,
    N_EXACT,
    SCORED,
    SCORES,
    CoMoments,
    Fold,
    Moments,
    Score,
    Timeline,
    add_lists,
    expected_sums,
)
from workbench.calibration import class_index

if TYPE_CHECKING:
    from workbench.events import Events

BLOCK = 4096  # values per arm whose moments are taken at once (then merged)
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))
_ERRORS = (TypeError, ValueError, IndexError, KeyError, AttributeError, OverflowError,
           ZeroDivisionError)


# -- per-row scores --------------------------------------------------------------------------

def log_score(row: dict[str, Any], value: Any) -> float:
    """Log predictive density of ``value`` under a served row."""
    if "probabilities" in row:
        p = list(row["probabilities"].values())[class_index(row, value)]
        return math.log(max(p, 1e-12))
    y, sd = float(value), max(row["std"], 1e-12)
    z = (y - row["mean"]) / sd
    return -z * z / 2.0 - _LOG_SQRT_2PI - math.log(sd)


def brier(row: dict[str, Any], value: Any) -> float:
    """Brier score of a classifier's probabilities against the observed class."""
    probs = list(row["probabilities"].values())
    k = class_index(row, value)
    return float(sum((p - (1.0 if j == k else 0.0)) ** 2 for j, p in enumerate(probs)))

class Folder:
    """Adds observed requests to a fold a chunk at a time (:meth:`add`), then
    :meth:`close`. The result depends on the rows and their order only, not on how they
    were chunked: sums run row by row, and moments are taken per block of :data:`BLOCK`
    values of an arm (numpy's pairwise sums within a block, Chan's merge between blocks).

    Rows are ``(assigned arm, serving arm, status, summary, outcome)``, decoded, with an
    optional sixth item: the request's pre-period covariate (None without). The
    metrics take the rows of counted statuses by assigned arm; calibration takes every
    ``scored`` status by serving arm. Rows the metric cannot take are counted in
    ``skipped``, never fatal.
    """

    def __init__(self, fold: Fold, *, scored: Sequence[str] = SCORED) -> None:
        self.fold = fold
        self.counted, self.scored = frozenset(fold.counted), frozenset(scored)
        self.arms: dict[str, _Sums] = {}

    def add(self, rows: Iterable[tuple[str, str, str, Any, Any]]) -> None:
        arms, counted, scored = self.arms, self.counted, self.scored
        for assigned, served, status, summary, outcome, *covariate in rows:
            if outcome is None or not isinstance(summary, list) or not summary:
                continue
            count, score = status in counted, status in scored
            if not (count or score):
                continue
            if isinstance(outcome, list):  # one per row; another length is unusable for all
                outs = outcome if len(outcome) == len(summary) else [None] * len(summary)
            else:
                outs = [outcome] * len(summary)
            mine = (arms.get(assigned) or arms.setdefault(assigned, _Sums())) if count \
                else None
            theirs = (arms.get(served) or arms.setdefault(served, _Sums())) if score else None
            x = _finite(covariate[0]) if covariate and mine is not None else None
            for row, value in zip(summary, outs, strict=True):
                if not isinstance(row, dict):
                    continue
                b, c, (log, brier_), reliable, covered = observe(row, value)
                if mine is not None:
                    mine.add(b, c, log, brier_)
                    if x is not None and c is not None:
                        mine.pairs[0].append(x)
                        mine.pairs[1].append(c)
                    if len(mine.values[0]) >= BLOCK or len(mine.values[1]) >= BLOCK or \
                            len(mine.values[2]) >= BLOCK or len(mine.pairs[0]) >= BLOCK:
                        mine.flush(self.fold, assigned)
                if theirs is not None and reliable is not None:
                    p, y = reliable
                    k = bisect.bisect_right(EDGES, p) - 1
                    k = 0 if k < 0 else BINS - 1 if k >= BINS else k
                    theirs.bins[k] += 1
                    theirs.p[k] += p
                    theirs.y[k] += y
                if theirs is not None and covered is not None:
                    theirs.coverage[0] += 1
                    theirs.coverage[1] += covered[0]
                    theirs.coverage[2] += covered[1]

    def snapshot(self) -> Fold:
        """A copy of the fold of the rows added so far (this one goes on unchanged)."""
        copy = Fold.from_json(self.fold.to_json())
        for arm, sums in self.arms.items():
            sums.into(copy, arm)
        return copy

    def close(self) -> Fold:
        for arm, sums in self.arms.items():
            sums.into(self.fold, arm)
        self.arms = {}
        return self.fold


def fold_rows(fold: Fold, rows: Iterable[tuple[str, str, str, Any, Any]], *,
              scored: Sequence[str] = SCORED) -> Fold:
    """Add observed requests to ``fold`` (in place; see :class:`Folder`)."""
    folder = Folder(fold, scored=scored)
    folder.add(rows)
    return folder.close()


class _Sums:
    """One arm's sums over the rows added to a :class:`Folder`."""

    __slots__ = ("binary", "values", "pairs", "skipped", "bins", "p", "y", "coverage")

    def __init__(self) -> None:
        self.binary = [0, 0]
        self.values: tuple[list[float], list[float], list[float]] = ([], [], [])
        self.pairs: tuple[list[float], list[float]] = ([], [])  # (covariate, outcome)
        self.skipped = [0, 0, 0, 0]  # binary, continuous, log_score, brier
        self.bins, self.p, self.y = [0] * BINS, [0.0] * BINS, [0.0] * BINS
        self.coverage = [0, 0.0, 0.0]

    def add(self, b: int | None, c: float | None, log: float | None,
            brier_: float | None) -> None:
        if b is None:
            self.skipped[0] += 1
        else:
            self.binary[0] += b
            self.binary[1] += 1
        for k, x in enumerate((c, log, brier_)):
            if x is None:
                self.skipped[k + 1] += 1
            else:
                self.values[k].append(x)

    def flush(self, fold: Fold, arm: str) -> None:
        """Move the values of every full block into the fold's moments."""
        for k, values in enumerate(self.values):
            if len(values) >= BLOCK:
                _moments(fold, arm, k, values[:BLOCK])
                del values[:BLOCK]
        if len(self.pairs[0]) >= BLOCK:
            _comoments(fold, arm, self.pairs[0][:BLOCK], self.pairs[1][:BLOCK])
            del self.pairs[0][:BLOCK], self.pairs[1][:BLOCK]

    def into(self, fold: Fold, arm: str) -> None:
        """Add these sums to ``fold`` (they stay as they are)."""
        if self.binary[1]:
            add_lists(fold.binary, {arm: self.binary})
        for metric, n in zip(METRICS, self.skipped, strict=True):
            if n:
                fold.skipped[metric][arm] = fold.skipped[metric].get(arm, 0) + n
        for k, values in enumerate(self.values):
            if values:
                _moments(fold, arm, k, values)
        if self.pairs[0]:
            _comoments(fold, arm, *self.pairs)
        if any(self.bins):
            bins = fold.reliability.setdefault(arm, [[0, 0.0, 0.0] for _ in range(BINS)])
            for k in range(BINS):
                bins[k] = [bins[k][0] + self.bins[k], bins[k][1] + self.p[k],
                           bins[k][2] + self.y[k]]
        if self.coverage[0]:
            add_lists(fold.coverage, {arm: self.coverage})


def _moments(fold: Fold, arm: str, k: int, values: list[float]) -> None:
    if k == 0:
        fold.continuous[arm] = fold.continuous.get(arm, Moments()).merge(Moments.of(values))
        return
    by_arm = fold.scores[SCORES[k - 1]]
    by_arm[arm] = by_arm.get(arm, Score()).merge(
        Score(Moments.of(values), list(values) if len(values) <= N_EXACT else None))


def _comoments(fold: Fold, arm: str, x: list[float], y: list[float]) -> None:
    fold.cuped[arm] = fold.cuped.get(arm, CoMoments()).merge(CoMoments.of(x, y))


def observe(row: dict[str, Any], value: Any) -> tuple[
        int | None, float | None, tuple[float | None, float | None],
        tuple[float, float] | None, tuple[float, float] | None]:
    """What one served row and its observed ``value`` give, None where they cannot:
    the binary outcome, the continuous outcome, the (log, Brier) scores, the (predicted
    probability, observed class) pair of a binary classifier, and the (inside, width) of
    a regression interval. The same as :func:`log_score`, :func:`brier` and
    :mod:`workbench.calibration`, with the row's class looked up once."""
    v = None
    if not isinstance(value, str):
        try:
            v = float(value)
        except _ERRORS:
            v = None
    b = int(v) if v is not None and v in (0.0, 1.0) else None
    c = v if v is not None and not isinstance(value, bool) and math.isfinite(v) else None
    if "probabilities" in row:
        try:
            probs = list(row["probabilities"].values())
            k = value if type(value) is int and 0 <= value < len(probs) else \
                class_index(row, value)
        except _ERRORS:
            return b, c, (None, None), None, None
        reliable = None
        try:
            log = _finite_or_none(math.log(max(probs[k], 1e-12)))
        except _ERRORS:
            log = None
        try:
            brier_ = 0.0
            for j, p in enumerate(probs):
                d = p - (1.0 if j == k else 0.0)
                brier_ += d * d  # in order, as numpy sums a few terms
            brier_ = _finite_or_none(float(brier_))
        except _ERRORS:
            brier_ = None
        if len(probs) == 2:
            try:
                p = float(row["mean"])
                reliable = (p, float(k)) if math.isfinite(p) else None
            except _ERRORS:
                reliable = None
        return b, c, (log, brier_), reliable, None
    covered = None
    try:
        y, sd = float(value), max(row["std"], 1e-12)
        z = (y - row["mean"]) / sd
        log = _finite_or_none(-z * z / 2.0 - _LOG_SQRT_2PI - math.log(sd))
    except _ERRORS:
        log = None
    y = _finite(value)
    if y is not None and "interval" in row:
        try:
            lo, hi = row["interval"][0], row["interval"][1]
            covered = (float(lo <= y <= hi), float(hi - lo))
        except _ERRORS:
            covered = None
    return b, c, (log, None), None, covered


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool | str) or not isinstance(value, int | float):
        return None
    try:
        y = float(value)
    except OverflowError:
        return None
    return y if math.isfinite(y) else None


def assigned_arms(data: Events) -> np.ndarray:
    """Each event's assigned arm: a fallback counts for the arm the unit was assigned to."""
    arm = data.arm
    fallback = data.status == "fallback"
    if fallback.any() and len(data.fallback_from) == len(data):
        arm = arm.copy()
        arm[fallback] = [f or a for f, a in zip(data.fallback_from[fallback], arm[fallback],
                                                strict=True)]
    return arm


def fold_events(data: Events, *, counted: Sequence[str] = COUNTED,
                timeline: Timeline | None = None, served: Events | None = None) -> Fold:
    """The fold of events in memory (notebooks, tests, :func:`workbench.experiments.analyze`).

    ``counted``: the statuses the metrics take. ``timeline``: the weights timeline for the
    expected shares (None: unknown). ``served``: the events to take calibration from
    (default ``data``), each by the arm that served it.
    """
    fold = Fold(counted=tuple(counted))
    arms = assigned_arms(data)
    has = np.array([o is not None for o in data.outcome], bool)
    for arm, status, outcome in zip(arms.tolist(), data.status.tolist(), has.tolist(),
                                    strict=True):
        c = fold.counts.setdefault(arm, {}).setdefault(status, [0, 0])
        c[0] += 1
        c[1] += outcome
    if timeline:
        starts = [ts for ts, _ in timeline]
        keep = np.isin(data.status, list(counted))
        seg = np.clip(np.searchsorted(starts, data.ts[keep], side="right") - 1, 0, None)
        values, n = np.unique(seg, return_counts=True)
        fold.expected = expected_sums(dict(zip(values.tolist(), n.tolist(), strict=True)),
                                      timeline)
    else:
        fold.expected = None
    idx = np.flatnonzero(has)
    covariate = data.covariate if len(data.covariate) == len(data) else [None] * len(data)
    fold_rows(fold, ((arms[i], data.arm[i], data.status[i], data.summary[i], data.outcome[i],
                      covariate[i]) for i in idx), scored=() if served is not None else SCORED)
    if served is not None:
        scores = Fold(counted=())
        fold_rows(scores, ((a, a, s, m, o) for a, s, m, o in zip(
            served.arm, served.status, served.summary, served.outcome, strict=True)
            if o is not None), scored=SCORED)
        fold.coverage, fold.reliability = scores.coverage, scores.reliability
    return fold
