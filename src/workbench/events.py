"""The event store: every served prediction and every outcome, durable and queryable.

SQLAlchemy Core over a SQLite file in WAL mode by default (``$WORKBENCH_HOME/events.db``,
``~/.workbench/events.db`` when unset) or any URL in ``WORKBENCH_DB_URL`` (PostgreSQL:
``postgresql+psycopg://user@host/db``). Writes go through :class:`EventWriter`: a request
only enqueues; a background thread inserts in batches; :meth:`EventWriter.close` (called
on a clean shutdown, SIGTERM included) flushes everything accepted before it returns.
``WORKBENCH_EVENT_LOG=off`` turns the writer into a no-op (nothing is recorded, so
feedback cannot find its request); it exists to measure the log's cost (benchmarks/).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from workbench.schema import metadata, outcomes, predictions, registry

logger = logging.getLogger("workbench.events")


def default_url() -> str:
    """``WORKBENCH_DB_URL``, else the SQLite file under ``WORKBENCH_HOME``."""
    if url := os.environ.get("WORKBENCH_DB_URL"):
        return url
    home = Path(os.environ.get("WORKBENCH_HOME") or Path.home() / ".workbench")
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'events.db'}"


def log_enabled() -> bool:
    """False when ``WORKBENCH_EVENT_LOG`` is ``off`` (or ``0``, ``false``, ``no``)."""
    return os.environ.get("WORKBENCH_EVENT_LOG", "on").strip().lower() not in (
        "off", "0", "false", "no")


def engine(url: str | None = None) -> sa.Engine:
    """An engine with the tables created; SQLite gets WAL and a busy timeout."""
    url = url or default_url()
    if url.startswith("sqlite"):
        eng = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               hide_parameters=True)  # no event data in error messages

        @sa.event.listens_for(eng, "connect")
        def _pragmas(conn: Any, _: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    else:
        eng = sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)
    metadata.create_all(eng)
    return eng


def _insert(eng: sa.Engine, table: sa.Table) -> Any:
    """An INSERT that ignores rows whose key exists (idempotent feedback, retried writes)."""
    if eng.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
        return insert(table).on_conflict_do_nothing()
    if eng.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
        return insert(table).on_conflict_do_nothing()
    return table.insert()


class EventWriter:
    """Batches inserts on a background thread; nothing enqueued is lost on close.

    Parameters
    ----------
    eng
        Where to write.
    flush_every
        Seconds between flushes when traffic is light.
    max_batch
        Rows per INSERT statement.
    enabled
        False: record nothing (default: :func:`log_enabled`, i.e. ``WORKBENCH_EVENT_LOG``).
    """

    def __init__(self, eng: sa.Engine, *, flush_every: float = 0.2, max_batch: int = 500,
                 enabled: bool | None = None) -> None:
        self.enabled = log_enabled() if enabled is None else enabled
        self.engine = eng
        self.flush_every = flush_every
        self.max_batch = max_batch
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        # request id -> what feedback needs of it, for predictions enqueued but not written
        self._pending: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.written = {"predictions": 0, "outcomes": 0}
        self.failures = 0
        self._thread = threading.Thread(target=self._loop, name="workbench-events", daemon=True)
        self._closed = not self.enabled
        if self.enabled:
            self._thread.start()
        else:
            logger.warning("event log off (WORKBENCH_EVENT_LOG=off): predictions and "
                           "outcomes are not recorded")

    def prediction(self, row: dict[str, Any]) -> None:
        """Enqueue one prediction row (see :data:`predictions`)."""
        if not self.enabled:
            return
        with self._lock:
            self._pending[row["request_id"]] = {k: row.get(k) for k in _BRIEF}
        self._queue.put(("predictions", row))

    def outcome(self, row: dict[str, Any]) -> None:
        if self.enabled:
            self._queue.put(("outcomes", row))

    def is_pending(self, request_id: str) -> bool:
        with self._lock:
            return request_id in self._pending

    def pending(self, request_id: str) -> dict[str, Any] | None:
        """What :func:`prediction_of` will say of a prediction still in the queue."""
        with self._lock:
            return self._pending.get(request_id)

    def close(self, timeout: float = 60) -> None:
        """Flush everything enqueued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        logger.info("event log flushed and closed: %s", self.written)

    def _loop(self) -> None:
        batch: list[tuple[str, dict[str, Any]]] = []
        stop = False
        while not stop:
            deadline = time.monotonic() + self.flush_every
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            if stop:  # drain what is left behind the sentinel
                while not self._queue.empty():
                    item = self._queue.get_nowait()
                    if item is not None:
                        batch.append(item)
            if batch:
                self._write(batch)
                batch = []

    def _write(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        by_table: dict[str, list[dict[str, Any]]] = {"predictions": [], "outcomes": []}
        for table, row in batch:
            by_table[table].append(row)
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    for name, rows in by_table.items():
                        if rows:
                            conn.execute(_insert(self.engine, metadata.tables[name]), rows)
                break
            except sa.exc.OperationalError:  # a locked SQLite file, a restarting server
                self.failures += 1
                logger.warning("event write failed (attempt %d); retrying", attempt + 1,
                               exc_info=True)
                time.sleep(0.2 * 2**attempt)
        else:
            logger.error("dropping %d events after repeated failures", len(batch))
            return
        for name, rows in by_table.items():
            self.written[name] += len(rows)
        with self._lock:
            for r in by_table["predictions"]:
                self._pending.pop(r["request_id"], None)


# -- reads ---------------------------------------------------------------------------------

@dataclass
class Events:
    """One experiment's events as columns (one entry per logged prediction)."""

    request_id: np.ndarray
    parent_id: np.ndarray
    ts: np.ndarray
    arm: np.ndarray
    model_tag: np.ndarray
    unit: np.ndarray
    latency_ms: np.ndarray
    status: np.ndarray
    summary: list[Any]
    outcome: list[Any]  # None where no feedback arrived
    instances: list[Any] = field(default_factory=list)  # empty unless read with_instances
    fallback_from: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))

    def __len__(self) -> int:
        return len(self.request_id)

    def mask(self, keep: np.ndarray) -> Events:
        idx = np.flatnonzero(keep)
        n = len(self)

        def take(v: Any) -> Any:
            if len(v) != n:  # an optional column that was not read
                return v[:0]
            return v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx]
        return Events(**{k: take(v) for k, v in self.__dict__.items()})


def read(eng: sa.Engine, experiment: str, *, since: float | None = None,
         with_instances: bool = False) -> Events:
    """Predictions of ``experiment`` with their outcomes (a shadow's is its parent's)."""
    p, o = predictions, outcomes
    key = sa.func.coalesce(p.c.parent_id, p.c.request_id)
    cols = [p.c.request_id, p.c.parent_id, p.c.ts, p.c.arm, p.c.model_tag, p.c.unit,
            p.c.latency_ms, p.c.status, p.c.summary, o.c.outcome, p.c.fallback_from]
    if with_instances:
        cols.append(p.c.instances)
    query = (sa.select(*cols).select_from(p.outerjoin(o, o.c.request_id == key))
             .where(p.c.experiment == experiment).order_by(p.c.ts))
    if since is not None:
        query = query.where(p.c.ts >= since)
    with eng.connect() as conn:
        rows = conn.execute(query).all()
    col = list(zip(*rows, strict=True)) if rows else [()] * len(cols)
    return Events(
        request_id=np.asarray(col[0], dtype=object), parent_id=np.asarray(col[1], dtype=object),
        ts=np.asarray(col[2], dtype=float), arm=np.asarray(col[3], dtype=object),
        model_tag=np.asarray(col[4], dtype=object), unit=np.asarray(col[5], dtype=object),
        latency_ms=np.asarray([np.nan if v is None else v for v in col[6]], dtype=float),
        status=np.asarray(col[7], dtype=object), summary=[_json(v) for v in col[8]],
        outcome=[_json(v) for v in col[9]], fallback_from=np.asarray(col[10], dtype=object),
        instances=[_json(v) for v in col[11]] if with_instances else [])


def experiments(eng: sa.Engine) -> list[str]:
    with eng.connect() as conn:
        return [r[0] for r in conn.execute(
            sa.select(predictions.c.experiment).distinct().order_by(predictions.c.experiment))]


def exists(eng: sa.Engine, request_id: str) -> str | None:
    """The experiment of a logged primary request, or None."""
    with eng.connect() as conn:
        return conn.execute(sa.select(predictions.c.experiment)
                            .where(predictions.c.request_id == request_id)).scalar()


_BRIEF = ("experiment", "arm", "status", "n_rows", "parent_id")


def prediction_of(eng: sa.Engine, request_id: str) -> dict[str, Any] | None:
    """Experiment, served arm, status and row count of a logged primary request, or None."""
    p = predictions
    with eng.connect() as conn:
        row = conn.execute(sa.select(*(p.c[k] for k in _BRIEF))
                           .where(p.c.request_id == request_id)).first()
    return None if row is None or row.parent_id is not None else dict(row._mapping)


def record_outcome(eng: sa.Engine, row: dict[str, Any]) -> bool:
    """Insert one outcome now; False when its request already has one (the primary key is
    the de-duplication every replica shares)."""
    with eng.begin() as conn:  # RETURNING: a row only when inserted, on every dialect
        inserted = conn.execute(_insert(eng, outcomes).returning(outcomes.c.request_id), row)
        return inserted.first() is not None


def outcome_of(eng: sa.Engine, request_id: str) -> Any:
    with eng.connect() as conn:
        return _json(conn.execute(sa.select(outcomes.c.outcome)
                                  .where(outcomes.c.request_id == request_id)).scalar())


def counts(eng: sa.Engine, experiment: str) -> dict[str, dict[str, int]]:
    """Per arm: logged predictions and outcomes."""
    p, o = predictions, outcomes
    key = sa.func.coalesce(p.c.parent_id, p.c.request_id)
    query = (sa.select(p.c.arm, sa.func.count(), sa.func.count(o.c.request_id))
             .select_from(p.outerjoin(o, o.c.request_id == key))
             .where(p.c.experiment == experiment).group_by(p.c.arm))
    with eng.connect() as conn:
        return {arm: {"predictions": n, "outcomes": m} for arm, n, m in conn.execute(query)}


def save_config(eng: sa.Engine, name: str, config: dict[str, Any]) -> None:
    """Record an experiment's configuration (the gateway does at startup)."""
    with eng.begin() as conn:
        conn.execute(registry.delete().where(registry.c.name == name))
        conn.execute(registry.insert().values(name=name, config=config, updated=time.time()))


def load_config(eng: sa.Engine, name: str) -> dict[str, Any] | None:
    """The configuration an experiment last ran with, or None."""
    with eng.connect() as conn:
        return _json(conn.execute(sa.select(registry.c.config)
                                  .where(registry.c.name == name)).scalar())


def write_now(eng: sa.Engine, table: str, rows: Iterable[dict[str, Any]]) -> None:
    """Insert synchronously (tests, backfills); duplicates are ignored."""
    rows = list(rows)
    if rows:
        with eng.begin() as conn:
            conn.execute(_insert(eng, metadata.tables[table]), rows)


def _json(value: Any) -> Any:
    """SQLAlchemy's JSON type decodes stored values; only raw bytes are decoded here (a
    stored string, such as a class name outcome, must not be parsed twice)."""
    return json.loads(value) if isinstance(value, bytes) else value


__all__: Sequence[str] = ["EventWriter", "Events", "counts", "default_url", "engine",
                          "experiments", "exists", "load_config", "outcome_of",
                          "prediction_of", "read", "record_outcome", "save_config",
                          "write_now"]
