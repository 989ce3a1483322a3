"""Where the event writer's batches go: the database, else the local spool, and rows the
database refuses to the dead-letter file (see :mod:`workbench.writer` for who waits on it).

:meth:`Sink.write` says what became of each row: ``written`` (committed), ``spooled``
(fsync'd to the spool: the database was unreachable), ``dead`` (refused for its content:
kept in the dead-letter file, the rest of its batch written), or ``refused`` (neither the
database nor the spool could take it: never acknowledged). While the database is
unreachable, batches go straight to the spool and :meth:`Sink.replay` probes it and
replays the spool once it answers.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from workbench import metrics
from workbench.events import insert_ignoring
from workbench.schema import metadata
from workbench.spool import Row, Spool

logger = logging.getLogger("workbench.events")

OUTCOMES = ("written", "spooled", "replayed", "dead", "refused")


def unreachable(exc: BaseException) -> bool:
    """The database could not be reached or could not store anything (connection refused
    or dropped, a restart, a full disk), as opposed to refusing one row's content."""
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) or bool(
        getattr(exc, "connection_invalidated", False))


class Sink:
    """The database with a spool behind it.

    Parameters
    ----------
    eng
        The event store.
    spool
        Where batches go while the database is unreachable, and refused rows.
    on_replayed
        Called with the rows of each replayed segment (the writer forgets their briefs).
    """

    def __init__(self, eng: sa.Engine, spool: Spool, *,
                 on_replayed: Callable[[list[Row]], None] = lambda rows: None) -> None:
        self.engine = eng
        self.spool = spool
        self.on_replayed = on_replayed
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.written = {"predictions": 0, "outcomes": 0}
        self.up, self.down_since, self.last_error = True, None, None
        metrics.STORE_UP.set(1)

    def write(self, rows: list[Row]) -> list[str]:
        """Commit ``rows`` as one transaction, else spool or dead-letter them; what became
        of each row, in order."""
        if not self.up:  # the replayer probes the database meanwhile
            return self._spool(rows)
        try:
            self._insert(rows)
        except Exception as exc:
            if unreachable(exc):
                self._down(exc)
                return self._spool(rows)
            return self._isolate(rows, exc)
        return self._count(rows, "written")

    def _insert(self, rows: list[Row]) -> None:
        by_table: dict[str, list[dict[str, Any]]] = {}
        for table, row in rows:
            by_table.setdefault(table, []).append(row)
        with self.engine.begin() as conn:
            for table, group in by_table.items():
                conn.execute(insert_ignoring(self.engine, metadata.tables[table]), group)

    def _isolate(self, rows: list[Row], error: BaseException, ok: str = "written"
                 ) -> list[str]:
        """Write a refused batch row by row; the rows refused again are dead-lettered."""
        logger.warning("the database refused a batch of %d events (%s); writing them one "
                       "by one", len(rows), type(error).__name__)
        out: list[str] = []
        for k, row in enumerate(rows):
            try:
                self._insert([row])
            except Exception as exc:
                if unreachable(exc):
                    self._down(exc)
                    return out + self._spool(rows[k:])
                out += self._dead(row, exc)
                continue
            out += self._count([row], ok)
        return out

    def _dead(self, row: Row, error: BaseException) -> list[str]:
        try:
            self.spool.dead(row[0], row[1], error)
        except Exception:
            logger.exception("could not keep a refused event in the dead-letter file")
            return self._count([row], "refused")
        logger.error("the database refused an event (%s); kept in %s", type(error).__name__,
                     self.spool.dead_path)
        return self._count([row], "dead")

    def _spool(self, rows: list[Row]) -> list[str]:
        try:
            self.spool.append(rows)
        except Exception as exc:
            logger.error("the database is unreachable and the spool could not take %d "
                         "events: %s", len(rows), exc)
            return self._count(rows, "refused")
        metrics.SPOOL_BYTES.set(self.spool.bytes())
        return self._count(rows, "spooled")

    def _count(self, rows: list[Row], outcome: str) -> list[str]:
        for table, n in Counter(table for table, _ in rows).items():  # per table, not row
            metrics.EVENTS.labels(table=table, outcome=outcome).inc(n)
            if outcome == "written":
                self.written[table] = self.written.get(table, 0) + n
        self.counts[outcome] += len(rows)
        return [outcome] * len(rows)

    # -- the database's health, the spool's replay ------------------------------------------

    def _down(self, exc: BaseException) -> None:
        text = str(exc).splitlines()[0] if str(exc) else ""
        self.last_error = f"{type(exc).__name__}: {text}"[:300]
        if self.up:
            logger.error("the event store is unreachable (%s); spooling events to %s",
                         self.last_error, self.spool.directory)
            self.up, self.down_since = False, time.time()
            metrics.STORE_UP.set(0)

    def _mark_up(self) -> None:
        if not self.up:
            logger.warning("the event store answers again after %.1fs",
                           time.time() - (self.down_since or time.time()))
        self.up, self.down_since = True, None
        metrics.STORE_UP.set(1)

    def replay(self) -> int:
        """Probe an unreachable database, then replay the spool into it; the rows replayed."""
        segments = self.spool.segments()
        if not segments and self.up:
            return 0
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:
            self._down(exc)
            return 0
        self._mark_up()
        replayed = 0
        for segment in segments:
            claimed = self.spool.claim(segment)
            if claimed is None:  # another process took it
                continue
            rows = list(self.spool.rows(claimed))
            try:
                self._insert(rows)
                self._count(rows, "replayed")
            except Exception as exc:
                if unreachable(exc):
                    self.spool.release(claimed)
                    self._down(exc)
                    break
                self._isolate(rows, exc, ok="replayed")  # the refused ones: dead-lettered
            self.on_replayed(rows)  # before the segment goes: an empty spool means forgotten
            self.spool.done(claimed)
            replayed += len(rows)
        if replayed:
            logger.warning("replayed %d spooled events into the event store", replayed)
        metrics.SPOOL_BYTES.set(self.spool.bytes())
        return replayed

    def health(self) -> dict[str, Any]:
        """The database's and the spool's state."""
        return {"event_store": {"dialect": self.engine.dialect.name, "up": self.up,
                                "down_since": self.down_since, "last_error": self.last_error},
                "spool": {"path": str(self.spool.directory), "bytes": self.spool.bytes(),
                          "segments": len(self.spool.segments()),
                          "max_bytes": self.spool.max_bytes,
                          "dead_rows": self.spool.dead_rows()}}
