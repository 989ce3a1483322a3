"""Mergeable sufficient statistics of an experiment's events: everything a read-out needs,
in memory bounded by the number of arms (and :data:`N_EXACT`), not by the number of events.

A :class:`Fold` holds, per arm:

- ``counts``: predictions and predictions with an outcome, by assigned arm and status
  (the served count, the sample-ratio test, the error rate of a guardrail);
- ``expected``: each arm's weight summed over the counted requests, at the weights in force
  when each came (the sample-ratio test under a ramp);
- per metric, over the counted observed rows by assigned arm: ``binary`` successes and
  trials; ``continuous`` count, mean and sum of squared deviations (merged by Chan et
  al.'s formula); ``scores`` (``log_score``, ``brier``) the same moments plus every value,
  in event order, while an arm has at most :data:`N_EXACT` of them (the exact Bayesian
  bootstrap needs them; above, :mod:`workbench.bootstrap` uses its large-sample limit);
  ``skipped``: stored outcomes the metric cannot take; ``cuped``: over the rows with a
  finite outcome and a pre-period covariate, their joint moments (:class:`CoMoments`, for
  :mod:`workbench.cuped`); ``segments``: the binary metric by the value of the segment
  attribute (:class:`SegmentCounts`, for :mod:`workbench.segments`);
- by serving arm, over every scored row: interval ``coverage`` (rows, inside, width sum)
  and ``reliability`` (per probability bin: rows, predicted sum, observed sum).

Folds merge (:meth:`Fold.merge`: folding two halves and merging equals folding the whole,
up to floating-point rounding) and round-trip through JSON (:meth:`Fold.to_json`), which
is how ``workbench events prune`` keeps what it deletes in the ``aggregates`` table. How
events become a fold is :mod:`workbench.folding` (in memory: ``fold_events``), and
:mod:`workbench.event_reads` from the event store, in chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

N_EXACT = 1000  # raw score values kept per arm; above, the bootstrap's Normal limit
COUNTED = ("ok", "fallback")
SCORED = ("ok", "fallback", "shadow", "paused", "concluded")
SCORES = ("log_score", "brier")
METRICS = ("binary", "continuous", *SCORES)
BINS = 10
MAX_SEGMENTS = 1000  # values of the segment attribute a fold keeps apart (memory bound)
EDGES = np.linspace(0.0, 1.0, BINS + 1).tolist()  # the reliability bins' edges

Timeline = list[tuple[float, dict[str, float]]]


# -- the statistics --------------------------------------------------------------------------

@dataclass
class Moments:
    """Count, mean and sum of squared deviations (``m2``) of a set of values."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> Moments:
        x = np.asarray(values, float)
        if not len(x):
            return cls()
        mean = float(x.mean())
        return cls(len(x), mean, float(((x - mean) ** 2).sum()))

    def merge(self, other: Moments) -> Moments:
        """Chan, Golub and LeVeque's pairwise update (exact in real arithmetic)."""
        if not other.n:
            return Moments(self.n, self.mean, self.m2)
        if not self.n:
            return Moments(other.n, other.mean, other.m2)
        n = self.n + other.n
        delta = other.mean - self.mean
        return Moments(n, self.mean + delta * other.n / n,
                       self.m2 + other.m2 + delta * delta * self.n * other.n / n)


@dataclass
class CoMoments:
    """Joint moments of pairs (x, y): count, means, sums of squared deviations and the sum
    of cross-deviations (``cxy``), what a regression of y on x needs (CUPED's theta)."""

    n: int = 0
    mean_x: float = 0.0
    mean_y: float = 0.0
    m2_x: float = 0.0
    m2_y: float = 0.0
    cxy: float = 0.0

    @classmethod
    def of(cls, x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
           ) -> CoMoments:
        xs, ys = np.asarray(x, float), np.asarray(y, float)
        if not len(xs):
            return cls()
        mx, my = float(xs.mean()), float(ys.mean())
        dx, dy = xs - mx, ys - my
        return cls(len(xs), mx, my, float((dx * dx).sum()), float((dy * dy).sum()),
                   float((dx * dy).sum()))

    def merge(self, other: CoMoments) -> CoMoments:
        """Chan et al.'s pairwise update, as :meth:`Moments.merge`, for the cross term too."""
        if not other.n:
            return CoMoments(*self.to_list())
        if not self.n:
            return CoMoments(*other.to_list())
        n = self.n + other.n
        dx, dy = other.mean_x - self.mean_x, other.mean_y - self.mean_y
        w = self.n * other.n / n
        return CoMoments(n, self.mean_x + dx * other.n / n, self.mean_y + dy * other.n / n,
                         self.m2_x + other.m2_x + dx * dx * w,
                         self.m2_y + other.m2_y + dy * dy * w, self.cxy + other.cxy + dx * dy * w)

    def to_list(self) -> list[Any]:
        return [self.n, self.mean_x, self.mean_y, self.m2_x, self.m2_y, self.cxy]


@dataclass
class Score:
    """A score's moments, and its values in event order while there are at most N_EXACT."""

    moments: Moments = field(default_factory=Moments)
    values: list[float] | None = field(default_factory=list)

    def merge(self, other: Score) -> Score:
        values = None
        if self.values is not None and other.values is not None and \
                len(self.values) + len(other.values) <= N_EXACT:
            values = self.values + other.values
        return Score(self.moments.merge(other.moments), values)


@dataclass
class SegmentCounts:
    """A binary metric's (successes, trials) by the value of one unit attribute (``by``,
    the experiment's ``segment_by``) and assigned arm, for :mod:`workbench.segments`.

    The first :data:`MAX_SEGMENTS` values with a trial are kept (memory stays bounded
    whatever clients send); later values are added up in ``other``, and rows whose unit had
    no such attribute in ``unset``. A fold of later events that starts from an earlier
    fold's values (``known`` in :func:`workbench.event_reads.fold_where`) merges into it
    exactly as if all had been folded at once. Counts by another attribute cannot be added
    up: a merge keeps the later fold's (the live events', which follow the current config)
    and counts the earlier one's trials as ``dropped``.
    """

    by: str | None = None
    values: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    other: dict[str, list[int]] = field(default_factory=dict)
    unset: dict[str, list[int]] = field(default_factory=dict)
    dropped: int = 0

    def add(self, value: str | None, arm: str, successes: int, trials: int) -> None:
        if value is None:
            target = self.unset
        elif value in self.values or len(self.values) < MAX_SEGMENTS:
            target = self.values.setdefault(value, {})
        else:
            target = self.other
        add_lists(target, {arm: [successes, trials]})

    def trials(self) -> int:
        return sum(n for d in self.values.values() for _, n in d.values())

    def merge(self, other: SegmentCounts) -> SegmentCounts:
        if self.by != other.by:
            out = SegmentCounts.from_json(other.to_json())
            out.dropped += self.dropped + self.trials() + sum(
                n for d in (self.other, self.unset) for _, n in d.values())
            return out
        out = SegmentCounts.from_json(self.to_json())
        for value, by_arm in other.values.items():
            for arm, (s, n) in by_arm.items():
                out.add(value, arm, s, n)
        add_lists(out.other, other.other)
        add_lists(out.unset, other.unset)
        out.dropped += other.dropped
        return out

    def to_json(self) -> dict[str, Any]:
        return {"by": self.by, "dropped": self.dropped,
                "values": {v: {a: list(c) for a, c in d.items()} for v, d in self.values.items()},
                "other": {a: list(c) for a, c in self.other.items()},
                "unset": {a: list(c) for a, c in self.unset.items()}}

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> SegmentCounts:
        raw = raw or {}
        return cls(by=raw.get("by"), dropped=int(raw.get("dropped", 0)),
                   values={v: {a: list(c) for a, c in d.items()}
                           for v, d in raw.get("values", {}).items()},
                   other={a: list(c) for a, c in raw.get("other", {}).items()},
                   unset={a: list(c) for a, c in raw.get("unset", {}).items()})


@dataclass
class Fold:
    """The sufficient statistics of a set of events (see the module's docstring).

    ``counted``: the statuses whose observed rows feed the metrics (the read-out's
    intention-to-treat rule, :data:`COUNTED`); folds merge only under the same rule.
    ``expected`` is None where the weights timeline was unknown.
    """

    counted: tuple[str, ...] = COUNTED
    counts: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    expected: dict[str, float] | None = field(default_factory=dict)
    binary: dict[str, list[int]] = field(default_factory=dict)
    continuous: dict[str, Moments] = field(default_factory=dict)
    scores: dict[str, dict[str, Score]] = field(
        default_factory=lambda: {m: {} for m in SCORES})
    skipped: dict[str, dict[str, int]] = field(
        default_factory=lambda: {m: {} for m in METRICS})
    coverage: dict[str, list[float]] = field(default_factory=dict)
    reliability: dict[str, list[list[float]]] = field(default_factory=dict)
    cuped: dict[str, CoMoments] = field(default_factory=dict)
    segments: SegmentCounts = field(default_factory=SegmentCounts)

    def merge(self, other: Fold) -> Fold:
        """The fold of both sets of events (``self``'s first, for the score values' order)."""
        if tuple(self.counted) != tuple(other.counted):
            raise ValueError(f"cannot merge folds counting {self.counted} and {other.counted}")
        out = Fold.from_json(self.to_json())
        for arm, by_status in other.counts.items():
            mine = out.counts.setdefault(arm, {})
            for status, (n, m) in by_status.items():
                old = mine.setdefault(status, [0, 0])
                old[0], old[1] = old[0] + n, old[1] + m
        out.expected = None if out.expected is None or other.expected is None else {
            a: out.expected.get(a, 0.0) + other.expected.get(a, 0.0)
            for a in {**out.expected, **other.expected}}
        add_lists(out.binary, other.binary)
        for arm, mom in other.continuous.items():
            out.continuous[arm] = out.continuous.get(arm, Moments()).merge(mom)
        for arm, co in other.cuped.items():
            out.cuped[arm] = out.cuped.get(arm, CoMoments()).merge(co)
        for metric, by_arm in other.scores.items():
            for arm, score in by_arm.items():
                mine_s = out.scores.setdefault(metric, {})
                mine_s[arm] = mine_s.get(arm, Score()).merge(score)
        for metric, by_arm in other.skipped.items():
            target = out.skipped.setdefault(metric, {})
            for arm, n in by_arm.items():
                target[arm] = target.get(arm, 0) + n
        add_lists(out.coverage, other.coverage)
        for arm, bins in other.reliability.items():
            mine_b = out.reliability.setdefault(arm, [[0, 0.0, 0.0] for _ in range(BINS)])
            for b, (rows, p, y) in enumerate(bins):
                mine_b[b] = [mine_b[b][0] + rows, mine_b[b][1] + p, mine_b[b][2] + y]
        out.segments = out.segments.merge(other.segments)
        return out

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (the ``aggregates`` table's ``stats``); :meth:`from_json` reads it."""
        return {"version": 1, "counted": list(self.counted),
                "counts": {a: {s: list(v) for s, v in d.items()} for a, d in self.counts.items()},
                "expected": None if self.expected is None else dict(self.expected),
                "binary": {a: list(v) for a, v in self.binary.items()},
                "continuous": {a: [m.n, m.mean, m.m2] for a, m in self.continuous.items()},
                "scores": {metric: {a: {"moments": [s.moments.n, s.moments.mean, s.moments.m2],
                                        "values": None if s.values is None else list(s.values)}
                                    for a, s in by_arm.items()}
                           for metric, by_arm in self.scores.items()},
                "skipped": {m: dict(d) for m, d in self.skipped.items()},
                "coverage": {a: list(v) for a, v in self.coverage.items()},
                "reliability": {a: [list(b) for b in v] for a, v in self.reliability.items()},
                "cuped": {a: c.to_list() for a, c in self.cuped.items()},
                "segments": self.segments.to_json()}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Fold:
        return cls(
            counted=tuple(raw["counted"]),
            counts={a: {s: list(v) for s, v in d.items()} for a, d in raw["counts"].items()},
            expected=None if raw["expected"] is None else dict(raw["expected"]),
            binary={a: list(v) for a, v in raw["binary"].items()},
            continuous={a: Moments(*v) for a, v in raw["continuous"].items()},
            scores={m: {} for m in SCORES} | {
                metric: {a: Score(Moments(*s["moments"]),
                                  None if s["values"] is None else list(s["values"]))
                         for a, s in by_arm.items()}
                for metric, by_arm in raw["scores"].items()},
            skipped={m: {} for m in METRICS} | {m: dict(d) for m, d in raw["skipped"].items()},
            coverage={a: list(v) for a, v in raw["coverage"].items()},
            reliability={a: [list(b) for b in v] for a, v in raw["reliability"].items()},
            cuped={a: CoMoments(*v) for a, v in raw.get("cuped", {}).items()},
            segments=SegmentCounts.from_json(raw.get("segments")))

    # -- what the read-out asks of it --

    def served(self, arm: str) -> int:
        """Counted predictions assigned to ``arm``."""
        return sum(n for s, (n, _) in self.counts.get(arm, {}).items() if s in self.counted)

    def total(self, *, outcomes: bool = False, shadow: bool = False) -> int:
        """Predictions (or predictions with an outcome) of every arm and status."""
        return sum(v[1 if outcomes else 0] for d in self.counts.values()
                   for s, v in d.items() if shadow or s != "shadow")

    def observed(self, metric: str, arm: str) -> int:
        """The rows of ``arm`` the metric takes (its outcomes)."""
        if metric == "binary":
            return self.binary.get(arm, [0, 0])[1]
        if metric == "continuous":
            return self.continuous.get(arm, Moments()).n
        return self.scores[metric].get(arm, Score()).moments.n

    def coverage_table(self) -> dict[str, dict[str, Any]]:
        """Per serving arm: the share of continuous outcomes inside their served interval."""
        return {a: {"rows": int(rows), "coverage": inside / rows, "mean_width": width / rows}
                for a, (rows, inside, width) in self.coverage.items() if rows}

    def reliability_table(self) -> dict[str, list[dict[str, float]]]:
        """Per serving arm (binary classifiers): predicted against observed, per bin."""
        return {a: [{"lo": EDGES[b], "hi": EDGES[b + 1], "rows": int(rows),
                     "predicted": p / rows, "observed": y / rows}
                    for b, (rows, p, y) in enumerate(bins) if rows]
                for a, bins in self.reliability.items() if any(b[0] for b in bins)}


def add_lists(into: dict[str, list[Any]], other: dict[str, list[Any]]) -> None:
    for arm, values in other.items():
        mine = into.setdefault(arm, [0] * len(values))
        into[arm] = [x + y for x, y in zip(mine, values, strict=True)]

# -- the weights timeline ----------------------------------------------------------------------

def expected_sums(segments: dict[int, int], timeline: Timeline) -> dict[str, float]:
    """Each arm's weight summed over counted requests, from their count per timeline
    segment (segment k: from the k-th change to the next; the first also before it)."""
    out: dict[str, float] = {}
    for k, n in segments.items():
        weights = timeline[k][1]
        norm = sum(weights.values()) or 1.0
        for arm, w in weights.items():
            out[arm] = out.get(arm, 0.0) + n * (w / norm)
    return out

