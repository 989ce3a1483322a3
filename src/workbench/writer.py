"""The event writer: what a request acknowledges is in the database or on local disk.

A request hands its event to :meth:`EventWriter.submit` and, by default
(``WORKBENCH_EVENT_ACK=durable``), gets its answer only once the event is **committed**, or
**spooled** (:mod:`workbench.spool`: fsync'd to local disk, replayed into the database when
it answers again), or, for a row the database refuses, in the **dead-letter** file. One
background thread writes everything queued as one transaction (group commit: the batch is
whatever arrived while the previous one was being written). Nothing is ever dropped
silently:

- the queue is bounded (``WORKBENCH_EVENT_QUEUE`` events); a request waits at most
  ``WORKBENCH_EVENT_QUEUE_WAIT_SECONDS`` for room, then gets a 503 (backpressure);
- a batch the database cannot take because it is unreachable (connection refused, a
  restart, a full disk) is spooled; while it stays unreachable, batches go straight to the
  spool and a second thread probes and replays every ``retry_seconds``;
- a batch the database refuses for a row's content is written row by row: the refused rows
  go to the dead-letter file, the others are committed;
- when neither the database nor the spool can take an event (spool full or unwritable),
  the request gets a 503: the event was never acknowledged;
- the writer's thread is supervised: any error escaping it restarts it (counted), and the
  batch in hand is handled again.

``WORKBENCH_EVENT_ACK=async`` answers as soon as the event is queued (faster under light
load, and how the log worked before): a crash (SIGKILL) then loses the queued events.
Every outcome is counted in :mod:`workbench.metrics` and in :meth:`EventWriter.health`.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from workbench import metrics
from workbench.acks import Acks, Expired
from workbench.errors import InputError, Unavailable
from workbench.events import brief, log_enabled
from workbench.schema import check_fits
from workbench.settings import Settings, load
from workbench.sink import Sink
from workbench.spool import Row, Spool, directory_for

logger = logging.getLogger("workbench.events")

ACKS = ("durable", "async")
_STOP = object()


@dataclass
class _Item:
    table: str
    row: dict[str, Any]
    future: asyncio.Future[str] | None = None  # None: nobody waits (a shadow row)


class EventWriter:
    """Group-committing, spooling, supervised writer of the event log (see the module).

    Parameters
    ----------
    eng
        The event store.
    spool
        Where events go while the database is unreachable (default: the store's own
        directory, :func:`workbench.spool.directory_for`).
    capacity
        The most events queued at once.
    ack
        ``durable`` (answer once committed, spooled or dead-lettered) or ``async``.
    ack_timeout
        How long a request waits for its event to become durable before a 503.
    queue_wait
        How long a request waits for room in a full queue before a 503.
    retry_seconds
        How often an unreachable database is probed and the spool replayed.
    down_after
        Seconds of unreachable database after which :meth:`ready` says no.
    max_batch
        Rows per transaction at most.
    flush_every
        ``async`` acknowledgements only: how long a batch may gather.
    enabled
        False: record nothing (default: ``WORKBENCH_EVENT_LOG``).
    """

    def __init__(self, eng: sa.Engine, *, spool: Spool | None = None, capacity: int = 10_000,
                 ack: str = "durable", ack_timeout: float = 10.0, queue_wait: float = 2.0,
                 retry_seconds: float = 2.0, down_after: float = 30.0, max_batch: int = 500,
                 flush_every: float = 0.2, enabled: bool | None = None) -> None:
        if ack not in ACKS:
            raise ValueError(f"ack must be one of {ACKS}, not {ack!r}")
        self.enabled = log_enabled() if enabled is None else enabled
        self.engine = eng
        self.ack, self.ack_timeout, self.queue_wait = ack, ack_timeout, queue_wait
        self._acks = Acks(ack_timeout)
        self.retry_seconds, self.down_after = retry_seconds, down_after
        self.capacity, self.max_batch, self.flush_every = capacity, max_batch, flush_every
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._pending: dict[str, dict[str, Any]] = {}  # request id -> row, until in the db
        self._lock = threading.Lock()
        self.counts = {"dropped": 0, "backpressure": 0, "restarts": 0}
        self._inflight: list[_Item] = []
        self._stop = threading.Event()
        self._closed = not self.enabled
        self._thread = threading.Thread(target=self._supervise, name="workbench-events",
                                        daemon=True)
        self._replayer = threading.Thread(target=self._replay_loop, name="workbench-replay",
                                          daemon=True)
        self.sink: Sink | None = None
        if self.enabled:
            spool = spool or Spool(directory_for(eng))
            self.sink = Sink(eng, spool, on_replayed=self._forget)
            self._thread.start()
            self._replayer.start()
        else:
            logger.warning("event log off (WORKBENCH_EVENT_LOG=off): predictions and "
                           "outcomes are not recorded")

    @classmethod
    def from_settings(cls, eng: sa.Engine, settings: Settings | None = None) -> EventWriter:
        """A writer configured by the ``WORKBENCH_EVENT_*``, ``WORKBENCH_SPOOL_*`` and
        ``WORKBENCH_DB_DOWN_SECONDS`` settings (:mod:`workbench.settings`; default: read
        now)."""
        s = settings or load()
        spool = Spool(directory_for(eng, s.spool_base),
                      max_bytes=s.spool_max_bytes) if s.event_log else None
        return cls(eng, spool=spool, enabled=s.event_log, capacity=s.event_queue,
                   ack=s.event_ack, ack_timeout=s.event_ack_timeout_seconds,
                   queue_wait=s.event_queue_wait_seconds, retry_seconds=s.event_retry_seconds,
                   down_after=s.db_down_seconds)

    @property
    def written(self) -> dict[str, int]:
        """Rows committed per table (straight from the queue)."""
        return dict(self.sink.written) if self.sink else {"predictions": 0, "outcomes": 0}

    # -- accepting ---------------------------------------------------------------------------

    async def submit(self, table: str, row: dict[str, Any]) -> None:
        """Hand over an event a client is about to be told about; returns once it is
        durable (``ack=durable``) or queued (``async``). :class:`Unavailable` (a 503) when it
        cannot be; :class:`InputError` when the database could not store it."""
        if not self.enabled:
            return
        check_fits(table, row)
        if self._closed:
            raise Unavailable("the service is shutting down", detail={"expected": "retry"})
        future = self._acks.expect() if self.ack == "durable" else None
        item = _Item(table, row, future)
        self._remember(table, row)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            try:
                await asyncio.to_thread(self._queue.put, item, True, self.queue_wait)
            except queue.Full:
                self._forget([(table, row)])
                self._count("backpressure")
                if future is not None and not future.cancel():
                    future.exception()  # expired meanwhile: retrieved, or asyncio warns
                raise Unavailable("the event log is overloaded", detail={
                    "queued": self._queue.qsize(), "expected": "retry shortly"}) from None
        if future is None:
            return
        try:  # expiry fails only this wait: the event is still written
            await future
        except Expired:
            self._count("backpressure")
            raise Unavailable("the event could not be made durable in time", detail={
                "timeout_seconds": self.ack_timeout, "expected": "retry shortly"}) from None

    def offer(self, table: str, row: dict[str, Any]) -> bool:
        """Queue an event nobody waits for (a shadow's); False, and counted as dropped, when
        the queue is full or the row cannot be stored."""
        if not self.enabled or self._closed:
            return False
        try:
            check_fits(table, row)
            self._remember(table, row)
            self._queue.put_nowait(_Item(table, row))
        except (queue.Full, InputError) as exc:
            self._forget([(table, row)])
            self._count("dropped")
            metrics.EVENTS.labels(table=table, outcome="dropped").inc()
            logger.warning("event not logged (%s): %s %s", type(exc).__name__, table,
                           row.get("request_id"))
            return False
        return True

    def pending(self, request_id: str) -> dict[str, Any] | None:
        """What :func:`events.prediction_of` will say of a prediction not yet in the
        database (queued, or spooled by this process)."""
        with self._lock:
            row = self._pending.get(request_id)
        return None if row is None else brief(row)

    def _remember(self, table: str, row: dict[str, Any]) -> None:
        if table == "predictions":
            with self._lock:
                self._pending[row["request_id"]] = row

    def _brief(self, rows: list[dict[str, Any]]) -> None:
        """Keep only the brief of spooled predictions (an outage may spool many)."""
        with self._lock:
            for row in rows:
                if row["request_id"] in self._pending:
                    self._pending[row["request_id"]] = brief(row)

    def _forget(self, rows: list[Row]) -> None:
        with self._lock:
            for table, row in rows:
                if table == "predictions":
                    self._pending.pop(row.get("request_id"), None)

    # -- writing -----------------------------------------------------------------------------

    def _supervise(self) -> None:
        while True:
            try:
                self._loop()
                return
            except BaseException:  # a bug: keep the events, count it, carry on
                self._count("restarts")
                logger.exception("the event writer failed; restarting it")
                batch, self._inflight = self._inflight, []
                if batch:
                    self._handle(batch)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                self._drain()
                return
            batch, stop = [item], False
            deadline = time.monotonic() + (self.flush_every if self.ack == "async" else 0.0)
            while len(batch) < self.max_batch:  # group commit: what is queued already
                wait = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=wait) if wait > 0 else \
                        self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._handle(batch)
            if stop:
                self._drain()
                return

    def _drain(self) -> None:
        """Write what was accepted behind the stop signal (a request racing the close)."""
        batch: list[_Item] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                batch.append(item)
        for start in range(0, len(batch), self.max_batch):
            self._handle(batch[start:start + self.max_batch])

    def _handle(self, batch: list[_Item]) -> None:
        assert self.sink is not None
        self._inflight = batch
        outcomes = self.sink.write([(i.table, i.row) for i in batch])
        self._inflight = []
        self._forget([(i.table, i.row) for i, outcome in zip(batch, outcomes, strict=True)
                      if outcome in ("written", "dead", "refused")])  # spooled: pending
        self._brief([i.row for i, outcome in zip(batch, outcomes, strict=True)
                     if outcome == "spooled" and i.table == "predictions"])
        Acks.settle([(item.future, outcome) for item, outcome in zip(batch, outcomes, strict=True)
                     if item.future is not None], _refused)
        metrics.EVENT_QUEUE.set(self._queue.qsize())

    def _count(self, what: str) -> None:
        self.counts[what] += 1
        if what == "restarts":
            metrics.WRITER_RESTARTS.inc()
        elif what == "backpressure":
            metrics.BACKPRESSURE.inc()

    def _replay_loop(self) -> None:
        assert self.sink is not None
        while True:
            try:
                self.sink.replay()
            except Exception:
                logger.exception("spool replay failed; trying again in %.1fs",
                                 self.retry_seconds)
            if self._stop.wait(self.retry_seconds):
                return

    # -- health ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The writer's, the database's and the spool's state (``/health/all``)."""
        writer = {"alive": self._thread.is_alive() or not self.enabled,
                  "enabled": self.enabled, "ack": self.ack, "queue": self._queue.qsize(),
                  "capacity": self.capacity, **self.counts}
        if self.sink is None:
            return {"writer": writer, "event_store": {"dialect": self.engine.dialect.name},
                    "spool": None}
        return {"writer": writer | self.sink.counts, **self.sink.health()}

    def ready(self) -> tuple[bool, str]:
        """(ready, why not): not when the database has been unreachable for longer than
        ``down_after``, the spool is full, or the writer's thread is gone."""
        if self.sink is None:
            return True, ""
        if not self._thread.is_alive() and not self._closed:
            return False, "the event writer is not running"
        down = self.sink.down_since
        if down is not None and time.time() - down > self.down_after:
            return False, f"the event store has been unreachable for {time.time() - down:.0f}s"
        if self.sink.spool.full():
            return False, "the event spool is full"
        return True, ""

    def close(self, timeout: float = 60) -> None:
        """Write (or spool) everything accepted, then stop."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._stop.set()
        self._replayer.join(timeout)
        assert self.sink is not None
        waiting = self.sink.spool.bytes()
        logger.info("event log closed: %s%s", self.sink.counts | self.counts,
                    f"; {waiting} bytes wait in the spool {self.sink.spool.directory} for "
                    "the next start" if waiting else "")


def _refused() -> Unavailable:
    return Unavailable("the event store is unreachable and the local spool cannot take the "
                       "event", detail={"expected": "retry later"})
