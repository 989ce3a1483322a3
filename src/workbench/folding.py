"""Folding events into sufficient statistics (:class:`workbench.aggregates.Fold`): how
observed rows (each made numbers by :func:`workbench.observations.observe`) are added up,
a chunk at a time (:class:`Folder`), or all at once from events in memory
(:func:`fold_events`).

Which rows count is :mod:`workbench.readout`'s rule (intention-to-treat): the metrics take
the rows of counted statuses under the arm the unit was assigned to; calibration takes
every scored row under the arm that served it. A row the metric cannot take is counted
in ``skipped``, never fatal.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.aggregates import (
    BINS,
    COUNTED,
    EDGES,
    MAX_SEGMENTS,
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
from workbench.observations import finite, observe
from workbench.units import value_of

if TYPE_CHECKING:
    from workbench.events import Events

BLOCK = 4096  # values per arm whose moments are taken at once (then merged)
OTHER = object()  # a segment value past the MAX_SEGMENTS a fold keeps apart


class Folder:
    """Adds observed requests to a fold a chunk at a time (:meth:`add`), then
    :meth:`close`. The result depends on the rows and their order only, not on how they
    were chunked: sums run row by row, and moments are taken per block of :data:`BLOCK`
    values of an arm (numpy's pairwise sums within a block, Chan's merge between blocks).

    Rows are ``(assigned arm, serving arm, status, summary, outcome)``, decoded, with two
    optional items: the request's pre-period covariate and the value of its unit's segment
    attribute (None without; segments are counted when the fold's ``segments.by`` is
    set). The
    metrics take the rows of counted statuses by assigned arm; calibration takes every
    ``scored`` status by serving arm. Rows the metric cannot take are counted in
    ``skipped``, never fatal.
    """

    def __init__(self, fold: Fold, *, scored: Sequence[str] = SCORED) -> None:
        self.fold = fold
        self.counted, self.scored = frozenset(fold.counted), frozenset(scored)
        self.arms: dict[str, _Sums] = {}
        # (segment value, None for unset or OTHER past the values kept, arm): [s, n]
        self.segments: dict[tuple[Any, str], list[int]] = {}
        self.kept = set(fold.segments.values)  # values with a segment of their own

    def add(self, rows: Iterable[tuple[str, str, str, Any, Any]]) -> None:
        arms, counted, scored = self.arms, self.counted, self.scored
        by = self.fold.segments.by
        for assigned, served, status, summary, outcome, *extra in rows:
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
            x = finite(extra[0]) if extra and mine is not None else None
            attribute = extra[1] if len(extra) > 1 and by is not None else None
            segment = None  # the request's cell, made on its first trial (bounded memory)
            for row, value in zip(summary, outs, strict=True):
                if not isinstance(row, dict):
                    continue
                b, c, (log, brier_), reliable, covered = observe(row, value)
                if mine is not None:
                    mine.add(b, c, log, brier_)
                    if by is not None and b is not None:
                        segment = segment or self._segment(attribute, assigned)
                        segment[0] += b
                        segment[1] += 1
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
        _add_segments(copy, self.segments)
        return copy

    def close(self) -> Fold:
        for arm, sums in self.arms.items():
            sums.into(self.fold, arm)
        _add_segments(self.fold, self.segments)
        self.arms, self.segments = {}, {}
        return self.fold


    def _segment(self, value: str | None, arm: str) -> list[int]:
        """The (successes, trials) cell of ``value`` and ``arm``: a value of its own while
        fewer than MAX_SEGMENTS are kept (in order of first trial), else OTHER."""
        if value is not None and value not in self.kept:
            if len(self.kept) < MAX_SEGMENTS:
                self.kept.add(value)
            else:
                value = OTHER
        return self.segments.setdefault((value, arm), [0, 0])


def _add_segments(fold: Fold, cells: dict[tuple[Any, str], list[int]]) -> None:
    for (value, arm), (s, n) in cells.items():
        if value is OTHER:
            add_lists(fold.segments.other, {arm: [s, n]})
        else:
            fold.segments.add(value, arm, s, n)


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
                timeline: Timeline | None = None, served: Events | None = None,
                segment_by: str | None = None) -> Fold:
    """The fold of events in memory (notebooks, tests, :func:`workbench.experiments.analyze`).

    ``counted``: the statuses the metrics take. ``timeline``: the weights timeline for the
    expected shares (None: unknown). ``served``: the events to take calibration from
    (default ``data``), each by the arm that served it. ``segment_by``: the unit attribute
    to count the binary metric by (``fold.segments``).
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
    attributes = data.attributes if len(data.attributes) == len(data) else [None] * len(data)
    fold.segments.by = segment_by
    fold_rows(fold, ((arms[i], data.arm[i], data.status[i], data.summary[i], data.outcome[i],
                      covariate[i], value_of(attributes[i], segment_by)) for i in idx),
              scored=() if served is not None else SCORED)
    if served is not None:
        scores = Fold(counted=())
        fold_rows(scores, ((a, a, s, m, o) for a, s, m, o in zip(
            served.arm, served.status, served.summary, served.outcome, strict=True)
            if o is not None), scored=SCORED)
        fold.coverage, fold.reliability = scores.coverage, scores.reliability
    return fold
