"""Retention: prune old events, keeping what the read-out needs of them.

:func:`prune` deletes an experiment's predictions older than a cutoff, with their outcomes
and their shadows' predictions, in batches of :data:`BATCH` rows, oldest first (keyset
pagination on the time index: each batch costs the same, however many rows are left). By
default each batch is first folded into the experiment's row of the ``aggregates`` table
(:class:`workbench.aggregates.Fold`, merged with what is there), **in the same
transaction as the delete**: a crash leaves every event either in the event tables or in
the aggregate, never both or neither. Every read-out adds the aggregate to the events
still in the store (:func:`workbench.event_reads.fold_all`), so its counts and decision do
not change (segment counts are kept by the ``segment_by`` the experiment was last run
with). With ``aggregate=False`` the events are deleted without folding: the
read-out forgets them.

What is lost with the rows either way: the events themselves (the dashboard's latency and
interval plots, ``events.read``), and feedback for a pruned request, which is answered
404 (its prediction is unknown). Prune only what no feedback is expected for any more. On
SQLite a batch holds the write lock from its first statement, so feedback cannot slip in
between the fold and the delete; on PostgreSQL an outcome committed for a request of the
batch in that instant would be deleted without being folded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from workbench import control, event_reads, events
from workbench.schema import aggregates, outcomes, predictions

BATCH = 2000  # rows looked at per transaction (and the shadows of their requests)

p = predictions


def candidates(eng: sa.Engine, experiment: str, before: float) -> int:
    """How many predictions of ``experiment`` are older than ``before``."""
    with eng.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).where(
            p.c.experiment == experiment, p.c.ts < before)).scalar() or 0


def prune(eng: sa.Engine, experiment: str, before: float, *, aggregate: bool = True,
          batch: int = BATCH, progress: Callable[[int], None] | None = None
          ) -> dict[str, Any]:
    """Delete ``experiment``'s predictions older than ``before`` (epoch seconds), their
    outcomes and their shadows; unless ``aggregate`` is False, fold them into the
    experiment's aggregate first, batch by batch. ``progress`` gets the running count of
    deleted predictions after each batch. Returns what was done."""
    timeline = control.weights_timeline(eng, experiment) if aggregate else None
    recorded = events.load_config(eng, experiment) if aggregate else None
    segment_by = recorded.get("segment_by") if isinstance(recorded, dict) else None
    deleted = {"predictions": 0, "outcomes": 0}
    after: tuple[float, str] | None = None  # the last row looked at (keyset pagination)
    while True:
        with eng.begin() as conn:
            # A write first: on SQLite the batch then holds the write lock while it reads.
            conn.execute(aggregates.update().where(aggregates.c.experiment == experiment)
                         .values(updated=aggregates.c.updated))
            ids, after = _next_batch(conn, experiment, before, batch, after)
            if after is None:
                break
            if not ids:
                continue
            if aggregate:
                _fold_into(conn, experiment, ids, before, timeline, segment_by)
            deleted["outcomes"] += conn.execute(
                outcomes.delete().where(outcomes.c.request_id.in_(ids))).rowcount
            deleted["predictions"] += conn.execute(
                p.delete().where(p.c.request_id.in_(ids))).rowcount
        if progress is not None:
            progress(deleted["predictions"])
    return {"experiment": experiment, "before": before, "aggregated": aggregate, **deleted}


def _next_batch(conn: sa.Connection, experiment: str, before: float, batch: int,
                after: tuple[float, str] | None) -> tuple[list[str], tuple[float, str] | None]:
    """The next ``batch`` rows before the cutoff, oldest first, from ``after`` on: their
    primary requests with all their shadows, and shadows whose primary is gone; and the
    last row looked at (None when there are no more)."""
    # coalesce() keeps the planner on the ts index: with an index on experiment (or on
    # parent_id, for "IS NULL") every batch would scan the experiment's rows.
    query = sa.select(p.c.request_id, p.c.parent_id, p.c.ts).where(
        sa.func.coalesce(p.c.experiment, "") == experiment, p.c.ts < before)
    if after is not None:
        query = query.where(p.c.ts >= after[0], sa.or_(
            p.c.ts > after[0], p.c.request_id > after[1]))
    rows = conn.execute(query.order_by(p.c.ts, p.c.request_id).limit(batch)).all()
    if not rows:
        return [], None
    ids = [r.request_id for r in rows if r.parent_id is None]
    if ids:
        ids += conn.execute(sa.select(p.c.request_id).where(p.c.parent_id.in_(ids))).scalars()
    waiting = [(r.parent_id, r.request_id) for r in rows if r.parent_id is not None]
    alive = set(conn.execute(sa.select(p.c.request_id).where(
        p.c.request_id.in_({parent for parent, _ in waiting}))).scalars()) if waiting else set()
    ids += [shadow for parent, shadow in waiting if parent not in alive]
    return list(dict.fromkeys(ids)), (rows[-1].ts, rows[-1].request_id)


def _fold_into(conn: sa.Connection, experiment: str, ids: list[str], before: float,
               timeline: Any, segment_by: str | None) -> None:
    current = event_reads.stored(conn, experiment)
    live, _ = event_reads.fold_where(conn, [p.c.request_id.in_(ids)], timeline,
                                     segment_by=segment_by,
                                     base=current[0] if current else None)
    now = time.time()
    if current is None:
        conn.execute(aggregates.insert().values(experiment=experiment, upto=before,
                                                stats=live.to_json(), updated=now))
        return
    merged, meta = current[0].merge(live), current[1]
    conn.execute(aggregates.update().where(aggregates.c.experiment == experiment).values(
        upto=max(meta["upto"], before), stats=merged.to_json(),
        updated=max(now, meta["updated"] + 1e-6)))  # a change every reader notices
