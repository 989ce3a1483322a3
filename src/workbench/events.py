"""The event store: every served prediction and every outcome, durable and queryable.

SQLAlchemy Core over a SQLite file in WAL mode by default (``$WORKBENCH_HOME/events.db``,
``~/.workbench/events.db`` when unset) or any URL in ``WORKBENCH_DB_URL`` (PostgreSQL:
``postgresql+psycopg://user@host/db``). Predictions are written by
:class:`workbench.writer.EventWriter` (group commits, a local spool while the database is
unreachable, a dead-letter file for refused rows); outcomes synchronously by
:func:`record_outcome`. ``WORKBENCH_EVENT_LOG=off`` turns the writer into a no-op (nothing
is recorded, so feedback cannot find its request); it exists to measure the log's cost
(benchmarks/).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from workbench import jsonsafe, units
from workbench.errors import ConfigError
from workbench.home import default_url
from workbench.migrate import ensure
from workbench.schema import metadata, outcomes, predictions, registry
from workbench.settings import load

logger = logging.getLogger("workbench.events")


def log_enabled() -> bool:
    """False when ``WORKBENCH_EVENT_LOG`` is ``off`` (:mod:`workbench.settings`)."""
    return load().event_log


def engine(url: str | None = None) -> sa.Engine:
    """An engine with the tables created; SQLite gets WAL and a busy timeout."""
    url = url or default_url()
    if url.startswith("sqlite"):
        eng = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               hide_parameters=True,  # no event data in error messages
                               json_serializer=jsonsafe.dumps)

        @sa.event.listens_for(eng, "connect")
        def _pragmas(conn: Any, _: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            # Checkpoint the WAL into the database every 256 pages (1 MiB), not SQLite's
            # 1000: on a small or nearly full disk the WAL would otherwise fill the space a
            # full disk freed before the first checkpoint (tests/faults/test_disk_full.py).
            cur.execute("PRAGMA wal_autocheckpoint=256")
            cur.close()
    else:
        eng = sa.create_engine(url, pool_pre_ping=True, hide_parameters=True,
                               json_serializer=jsonsafe.dumps)
    ensure(eng)  # the tables of an empty store; a SchemaError for an outdated one
    return eng


def insert_ignoring(eng: sa.Engine, table: sa.Table) -> Any:
    """An INSERT that ignores rows whose key exists (idempotent feedback, retried writes)."""
    if eng.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
        return insert(table).on_conflict_do_nothing()
    if eng.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
        return insert(table).on_conflict_do_nothing()
    return table.insert()


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
    covariate: list[Any] = field(default_factory=list)  # sent with the feedback (CUPED)
    attributes: list[Any] = field(default_factory=list)  # the unit's (None where not sent)

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
         with_instances: bool = False, with_attributes: bool = True) -> Events:
    """Predictions of ``experiment`` with their outcomes (a shadow's is its parent's);
    their input rows only ``with_instances``, the units' attributes unless told not."""
    p, o = predictions, outcomes
    key = sa.func.coalesce(p.c.parent_id, p.c.request_id)
    cols = [p.c.request_id, p.c.parent_id, p.c.ts, p.c.arm, p.c.model_tag, p.c.unit,
            p.c.latency_ms, p.c.status, p.c.summary, o.c.outcome, p.c.fallback_from,
            o.c.covariate, sa.cast(p.c.attributes, sa.Text) if with_attributes
            else sa.null()]
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
        covariate=list(col[11]),
        attributes=[units.stored(v) for v in col[12]] if with_attributes else [],
        instances=[_json(v) for v in col[13]] if with_instances else [])


def experiments(eng: sa.Engine) -> list[str]:
    with eng.connect() as conn:
        return [r[0] for r in conn.execute(
            sa.select(predictions.c.experiment).distinct().order_by(predictions.c.experiment))]


def exists(eng: sa.Engine, request_id: str) -> str | None:
    """The experiment of a logged primary request, or None."""
    with eng.connect() as conn:
        return conn.execute(sa.select(predictions.c.experiment)
                            .where(predictions.c.request_id == request_id)).scalar()


BRIEF = ("experiment", "arm", "status", "n_rows", "parent_id")


def brief(row: dict[str, Any]) -> dict[str, Any]:
    """What :func:`prediction_of` says of a ``predictions`` row (its :data:`BRIEF` fields)."""
    return {k: row.get(k) for k in BRIEF}


def prediction_of(eng: sa.Engine, request_id: str) -> dict[str, Any] | None:
    """Experiment, served arm, status and row count of a logged primary request, or None."""
    p = predictions
    with eng.connect() as conn:
        row = conn.execute(sa.select(*(p.c[k] for k in BRIEF))
                           .where(p.c.request_id == request_id)).first()
    return None if row is None or row.parent_id is not None else dict(row._mapping)


def prediction_row(*, request_id: str, experiment: str, arm: str, model_tag: str,
                   unit: str, records: list[dict[str, Any]], status: str, latency_ms: float,
                   instances: Any, parent_id: str | None = None,
                   fallback_from: str | None = None,
                   attributes: dict[str, str] | None = None) -> dict[str, Any]:
    """One ``predictions`` row, as the gateway and stream consumers log it."""
    return {"request_id": request_id, "parent_id": parent_id, "ts": time.time(),
            "experiment": experiment, "arm": arm, "model_tag": model_tag, "unit": unit,
            "latency_ms": latency_ms, "status": status, "fallback_from": fallback_from,
            "n_rows": len(records), "summary": records, "instances": instances,
            "attributes": attributes}


INPUTS = ("raw", "hash", "none")  # what a prediction's row logs of its inputs


def check_inputs(mode: str) -> str:
    """``mode`` when it is one of :data:`INPUTS`, else :class:`ConfigError`."""
    if mode not in INPUTS:
        raise ConfigError(f"invalid event inputs setting {mode!r}",
                          detail={"expected one of": list(INPUTS)})
    return mode


def logged_inputs(rows: Any, mode: str) -> Any:
    """What ``mode`` (:data:`INPUTS`) logs of a request's input rows (lists, or an array):
    the rows, their SHA-256, or nothing."""
    if mode == "none":
        return None
    rows = rows.tolist() if isinstance(rows, np.ndarray) else rows
    if mode == "raw":
        return rows
    if mode == "hash":
        import hashlib
        import json

        return {"sha256": hashlib.sha256(json.dumps(rows).encode()).hexdigest()}
    return None


def record_outcome(eng: sa.Engine, row: dict[str, Any]) -> bool:
    """Insert one outcome now; False when its request already has one (the primary key is
    the de-duplication every replica shares)."""
    with eng.begin() as conn:  # RETURNING: a row only when inserted, on every dialect
        insert = insert_ignoring(eng, outcomes).returning(outcomes.c.request_id)
        inserted = conn.execute(insert, row)
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
            conn.execute(insert_ignoring(eng, metadata.tables[table]), rows)


def _json(value: Any) -> Any:
    """SQLAlchemy's JSON type decodes stored values; only raw bytes are decoded here (a
    stored string, such as a class name outcome, must not be parsed twice)."""
    return json.loads(value) if isinstance(value, bytes) else value


__all__: Sequence[str] = ["BRIEF", "Events", "brief", "check_inputs", "counts",
                          "default_url", "engine", "experiments", "exists", "insert_ignoring",
                          "load_config", "outcome_of", "prediction_of", "read",
                          "record_outcome", "save_config", "write_now"]
