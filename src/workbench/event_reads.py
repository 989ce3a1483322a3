"""Bounded-memory reads of the event store: what the read-out, the guardrails, the bandit
and the dashboard read instead of every event.

- :func:`fold`: an experiment's events folded into sufficient statistics
  (:class:`workbench.aggregates.Fold`): predictions counted by SQL ``GROUP BY`` (arm,
  status, weights segment); observed requests (those with an outcome, joined to it)
  streamed in event order in chunks of :data:`CHUNK` rows, their JSON decoded one chunk
  at a time. Memory: a chunk, plus what a fold keeps. Two passes over the experiment's
  rows; the time grows linearly with them (benchmarks/RESULTS.md).
- :func:`fold_all`: the same plus what ``workbench events prune`` folded into the
  ``aggregates`` table, read consistently (retried if a prune moved events meanwhile).
- :func:`latency_quantile`: an order statistic of latency, computed by the database.
- :func:`recent`: the most recent events (at most :data:`SAMPLE`), for plots.
- :func:`exists`, :func:`signature`, :func:`arms_in_order`, :func:`span`: small questions
  answered by SQL.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from workbench import events, units
from workbench.aggregates import COUNTED, Fold, Timeline, expected_sums
from workbench.folding import Folder
from workbench.schema import aggregates, outcomes, predictions

CHUNK = 2000  # observed requests decoded at a time
SAMPLE = 20_000  # the most recent events the dashboard's plots draw

p, o = predictions, outcomes
KEY = sa.func.coalesce(p.c.parent_id, p.c.request_id)  # a shadow's outcome is its parent's


def conditions(experiment: str, since: float | None = None) -> list[Any]:
    """The rows of ``experiment`` (from ``since`` on)."""
    conds: list[Any] = [p.c.experiment == experiment]
    if since is not None:
        conds.append(p.c.ts >= since)
    return conds


def assigned(arm: str, status: str, fallback_from: str | None) -> str:
    """The arm a request counts for: a fallback's is the arm its unit was assigned to."""
    return (fallback_from or arm) if status == "fallback" else arm


def fold(eng: sa.Engine, experiment: str, *, timeline: Timeline | None = None,
         since: float | None = None) -> Fold:
    """The fold of ``experiment``'s events in the event store (from ``since`` on)."""
    with eng.connect() as conn:
        return fold_where(conn, conditions(experiment, since), timeline)[0]


def fold_where(conn: sa.Connection, conds: Sequence[Any], timeline: Timeline | None, *,
               cuts: Sequence[float] = (), segment_by: str | None = None,
               base: Fold | None = None) -> tuple[Fold, list[Fold]]:
    """The fold of the prediction rows matching ``conds``; with ``cuts`` (increasing
    times), also the fold of the rows up to each cut (their metrics only, for history);
    with ``segment_by``, the binary metric by that unit attribute too (``fold.segments``),
    starting from the values ``base`` (the stored fold it will be merged into) keeps
    apart, so that the merge is exact."""
    out = Fold(counted=COUNTED)
    out.counts, out.expected = _counts(conn, conds, timeline)
    out.segments.by = segment_by
    if segment_by and base is not None and base.segments.by == segment_by:
        out.segments.values = {v: {} for v in base.segments.values}
    folder = Folder(out)
    snapshots: list[Fold] = []
    pending = list(cuts)
    for chunk in _observed(conn, conds, segment_by):
        for row in chunk:  # predictions with an outcome, by assigned arm and status
            out.counts.setdefault(row[1], {}).setdefault(row[3], [0, 0])[1] += 1
        start = 0
        while pending:
            end = int(np.searchsorted([r[0] for r in chunk], pending[0], side="right"))
            if end >= len(chunk):
                break
            folder.add(r[1:] for r in chunk[start:end])
            snapshots.append(folder.snapshot())
            pending.pop(0)
            start = end
        folder.add(r[1:] for r in chunk[start:])
    snapshots += [folder.snapshot() for _ in pending]
    return folder.close(), snapshots


def _counts(conn: sa.Connection, conds: Sequence[Any], timeline: Timeline | None
            ) -> tuple[dict[str, dict[str, list[int]]], dict[str, float] | None]:
    starts = [ts for ts, _ in timeline or []]
    seg = sa.case(*[(p.c.ts >= starts[k], sa.literal(k, sa.Integer))
                    for k in range(len(starts) - 1, 0, -1)],
                  else_=sa.literal(0, sa.Integer)) if len(starts) > 1 else sa.literal(0)
    query = (sa.select(p.c.arm, p.c.status, p.c.fallback_from, seg, sa.func.count())
             .where(*conds).group_by(sa.text("1"), sa.text("2"), sa.text("3"), sa.text("4")))
    counts: dict[str, dict[str, list[int]]] = {}  # [predictions, 0]: the stream adds outcomes
    segments: dict[int, int] = {}
    for arm, status, fallback_from, k, n in conn.execute(query):
        mine = assigned(arm, status, fallback_from)
        c = counts.setdefault(mine, {}).setdefault(status, [0, 0])
        c[0] += n
        if status in COUNTED:
            segments[int(k)] = segments.get(int(k), 0) + n
    return counts, expected_sums(segments, timeline) if timeline else None


def _observed(conn: sa.Connection, conds: Sequence[Any], segment_by: str | None = None
              ) -> Iterator[list[tuple[Any, ...]]]:
    """Observed requests in chunks, in event order: (ts, assigned arm, serving arm,
    status, summary, outcome, covariate, the value of the unit's ``segment_by``
    attribute), JSON decoded (the attributes are read only with a ``segment_by``)."""
    attributes = sa.cast(p.c.attributes, sa.Text) if segment_by else sa.null()
    query = (sa.select(p.c.ts, p.c.arm, p.c.status, p.c.fallback_from,
                       sa.cast(p.c.summary, sa.Text), sa.cast(o.c.outcome, sa.Text),
                       o.c.covariate, attributes)
             .select_from(p.join(o, o.c.request_id == KEY)).where(*conds)
             .order_by(p.c.ts, p.c.request_id))
    result = conn.execute(query.execution_options(yield_per=CHUNK))
    seen: dict[str, Any] = {}  # outcomes repeat (0, 1, class names): decode each once
    segment_of: dict[str, str | None] = {}  # so do a unit's attributes
    for part in result.partitions():
        chunk = []
        for ts, arm, status, fallback_from, summary, outcome, covariate, attrs in part:
            if isinstance(outcome, str) and outcome in seen:
                value = seen[outcome]
            else:
                value = _json(outcome)
                if isinstance(outcome, str) and len(seen) < 1024 and \
                        not isinstance(value, list | dict):
                    seen[outcome] = value
            segment = None
            if attrs:
                segment = segment_of[attrs] if attrs in segment_of else \
                    units.value_of(units.stored(attrs), segment_by)
                if len(segment_of) < 4096:
                    segment_of[attrs] = segment
            chunk.append((ts, assigned(arm, status, fallback_from), arm, status,
                          _json(summary), value, covariate, segment))
        yield chunk


_scan = json.JSONDecoder().scan_once


def _json(text: Any) -> Any:
    """Decode JSON text (the scanner directly: a third faster than json.loads)."""
    if isinstance(text, bytes):
        text = text.decode()
    if not isinstance(text, str):
        return text
    try:
        value, end = _scan(text, 0)
    except StopIteration:  # leading whitespace, or not JSON: let json.loads say
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


# -- with what was pruned -------------------------------------------------------------------

def stored(conn: sa.Connection, experiment: str) -> tuple[Fold, dict[str, Any]] | None:
    """What ``workbench events prune`` folded for ``experiment``: its fold, and when (the
    events before ``upto`` are in it), or None."""
    row = conn.execute(sa.select(aggregates).where(aggregates.c.experiment == experiment)
                       ).first()
    if row is None:
        return None
    fold_ = Fold.from_json(_json(row.stats))
    return fold_, {"upto": float(row.upto), "updated": float(row.updated),
                   "predictions": fold_.total(shadow=True)}


def fold_all(eng: sa.Engine, experiment: str, *, timeline: Timeline | None,
             cuts: Sequence[float] = (), segment_by: str | None = None
             ) -> tuple[Fold, dict[str, Any] | None, list[Fold]]:
    """The fold of every event of ``experiment``: those in the store and those pruned into
    its aggregate; the aggregate's description (None when nothing was pruned); and, with
    ``cuts``, the cumulative folds up to each cut (for history plots). ``segment_by``: as
    :func:`fold_where` (pruned counts by another attribute are ``segments.dropped``)."""
    for _ in range(5):
        with eng.connect() as conn:
            before = stored(conn, experiment)
            live, snapshots = fold_where(conn, conditions(experiment), timeline, cuts=cuts,
                                         segment_by=segment_by,
                                         base=before[0] if before else None)
            after = stored(conn, experiment)
        if (before and before[1]) == (after and after[1]):  # no prune committed meanwhile
            break
    if after is None:
        return live, None, snapshots
    base, meta = after
    return base.merge(live), meta, [base.merge(s) for s in snapshots]


# -- small reads ------------------------------------------------------------------------------

def exists(eng: sa.Engine, experiment: str) -> bool:
    """Whether ``experiment`` has events, in the store or pruned into its aggregate."""
    with eng.connect() as conn:
        return conn.execute(sa.select(p.c.request_id).where(p.c.experiment == experiment)
                            .limit(1)).first() is not None or stored(conn, experiment) is not None


def signature(eng: sa.Engine, experiment: str) -> tuple[int, int]:
    """Predictions and outcomes of ``experiment`` (their indexes counted, not the rows):
    what a poller compares to learn that something was logged, cheaply."""
    with eng.connect() as conn:
        return (conn.execute(sa.select(sa.func.count()).where(p.c.experiment == experiment))
                .scalar() or 0,
                conn.execute(sa.select(sa.func.count()).where(o.c.experiment == experiment))
                .scalar() or 0)


def arms_in_order(eng: sa.Engine, experiment: str) -> list[str]:
    """The serving arms of counted requests, in order of first appearance."""
    query = (sa.select(p.c.arm, sa.func.min(p.c.ts)).where(
        p.c.experiment == experiment, p.c.status.in_(COUNTED))
        .group_by(p.c.arm).order_by(sa.func.min(p.c.ts)))
    with eng.connect() as conn:
        return [arm for arm, _ in conn.execute(query)]


def span(eng: sa.Engine, experiment: str, arms: Sequence[str]) -> tuple[float, float, int]:
    """First and last time, and number, of counted requests assigned to ``arms``."""
    mine = sa.case((sa.and_(p.c.status == "fallback",
                            sa.func.coalesce(p.c.fallback_from, "") != ""), p.c.fallback_from),
                   else_=p.c.arm)
    query = sa.select(sa.func.min(p.c.ts), sa.func.max(p.c.ts), sa.func.count()).where(
        p.c.experiment == experiment, p.c.status.in_(COUNTED), mine.in_(list(arms)))
    with eng.connect() as conn:
        lo, hi, n = conn.execute(query).one()
    return (math.nan if lo is None else float(lo)), (math.nan if hi is None else float(hi)), n


def latency_quantile(eng: sa.Engine, experiment: str, arm: str, q: float, *,
                     since: float | None = None) -> tuple[float, int]:
    """The ``q`` quantile of the latency of counted requests assigned to ``arm`` (linear
    interpolation between order statistics, as ``numpy.nanquantile``), and how many there
    were; the database sorts, Python holds two numbers."""
    mine = sa.case((sa.and_(p.c.status == "fallback",
                            sa.func.coalesce(p.c.fallback_from, "") != ""), p.c.fallback_from),
                   else_=p.c.arm)
    conds = [*conditions(experiment, since), p.c.status.in_(COUNTED), mine == arm,
             p.c.latency_ms.is_not(None)]
    with eng.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).where(*conds)).scalar() or 0
        if not n:
            return math.nan, 0
        h = (n - 1) * q
        i = int(math.floor(h))
        lo_hi = [float(v) for v in conn.execute(
            sa.select(p.c.latency_ms).where(*conds).order_by(p.c.latency_ms)
            .offset(i).limit(2)).scalars()]
    if len(lo_hi) < 2 or h == i:
        return lo_hi[0], n
    return lo_hi[0] + (h - i) * (lo_hi[1] - lo_hi[0]), n


def recent(eng: sa.Engine, experiment: str, *, limit: int = SAMPLE,
           with_instances: bool = False) -> events.Events:
    """The most recent ``limit`` events of ``experiment`` (all of them when fewer), oldest
    first, as :func:`workbench.events.read` returns them."""
    query = (sa.select(p.c.ts).where(p.c.experiment == experiment)
             .order_by(p.c.ts.desc()).offset(limit - 1).limit(1))
    with eng.connect() as conn:
        since = conn.execute(query).scalar()
    return events.read(eng, experiment, since=since, with_instances=with_instances,
                       with_attributes=False)
