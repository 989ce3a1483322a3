"""Continuous micro-batching for the predictive summary.

Requests are validated one by one *before* they reach the batcher, so a bad request never
shares a batch. The batcher keeps one computation in flight per model: while it runs, new
requests queue; when it finishes, everything queued (same model and interval mass, up to
``max_rows``) goes into the next call. At low load a request runs at once (no waiting
window); under load batches grow by themselves. This is why we do not use BentoML's
adaptive batching here: its dispatcher sheds requests with HTTP 503 when its latency
estimate exceeds ``max_latency_ms`` (32 concurrent clients saw 95% 503s in a trial),
and it validates after batching, so one malformed row would fail its whole batch.

If a batched call fails unexpectedly, its requests are retried one by one so that only
the culprit gets the error.

Prometheus (:mod:`workbench.metrics`) sees the rows waiting
(``workbench_batcher_queue_depth{model}``) and the rows of each model call
(``workbench_batcher_batch_size{model}``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.metrics import BATCH_QUEUE, BATCH_SIZE

INLINE_SECONDS = 0.001  # a model call cheaper than this (on average) may run on the loop


class Overloaded(Exception):
    """The queue is full: the server is past its capacity (answered with 503)."""


@dataclass
class _Item:
    key: Hashable
    X: np.ndarray
    future: asyncio.Future[Any]


@dataclass
class BatchStats:
    """What one batcher computed: model calls, requests and rows in them, and requests
    retried one by one. Prometheus counts per model tag, shared by every batcher of the
    process; these are this batcher's own (the tests tell replicas apart by them)."""

    calls: int = 0
    requests: int = 0
    rows: int = 0
    retried: int = 0


class MicroBatcher:
    """Group concurrent requests with the same ``key`` into one call of ``fn``.

    Parameters
    ----------
    fn
        ``fn(key, X) -> dict[str, np.ndarray]`` whose arrays have one entry per row of
        ``X`` (rows of every request stacked in order); runs on a worker thread.
    max_rows
        The most rows stacked into one call (a single larger request still runs alone).
    max_queue_rows
        Rows allowed to wait; past that :class:`Overloaded` is raised at once.
    name
        The ``model`` label of the batcher's metrics (the served model's tag).
    inline_rows
        A batch of one request of at most this many rows, with nothing else queued, runs on
        the event loop's thread, sparing the two thread hops of the worker (0: never), as
        long as the model's calls have been cheap (under :data:`INLINE_SECONDS` on
        average: a large posterior or a slow device never holds up the loop). Under load
        the requests that arrive together are batched on the worker as before; retries of
        a failed batch always run there.
    """

    def __init__(self, fn: Callable[[Hashable, np.ndarray], dict[str, np.ndarray]], *,
                 max_rows: int = 256, max_queue_rows: int = 65_536,
                 name: str = "unnamed", inline_rows: int = 0) -> None:
        self.fn = fn
        self.name = name
        self.inline_rows = inline_rows
        self._call_seconds = float("inf")  # a moving average of the model's call time
        self._waiting = BATCH_QUEUE.labels(model=name)
        self._sizes = BATCH_SIZE.labels(model=name)
        self.max_rows = max_rows
        self.max_queue_rows = max_queue_rows
        self.stats = BatchStats()
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._pending = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batcher")
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, key: Hashable, X: np.ndarray) -> dict[str, np.ndarray]:
        """Queue ``X`` (already validated) and wait for its rows' results."""
        loop = asyncio.get_running_loop()
        self._start(loop)
        if self._queued_rows + len(X) > self.max_queue_rows:
            raise Overloaded(f"{self._queued_rows} rows are already waiting")
        item = _Item(key, X, loop.create_future())
        self._queue.append(item)
        self._queued_rows += len(X)
        self._waiting.inc(len(X))
        assert self._wakeup is not None
        self._wakeup.set()
        self._pending += 1
        try:
            return await item.future
        finally:
            self._pending -= 1

    @property
    def pending(self) -> int:
        """Requests submitted and not answered yet (queued or being computed)."""
        return self._pending

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._task is None or self._loop is not loop or self._task.done():
            self._loop = loop
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._drain(), name="workbench-batcher")

    def _take(self) -> list[_Item]:
        """The oldest request and every queued one with its key that fits beside it."""
        first = self._queue.popleft()
        batch, rows, keep = [first], len(first.X), deque()
        while self._queue:
            item = self._queue.popleft()
            if item.key == first.key and rows + len(item.X) <= self.max_rows:
                batch.append(item)
                rows += len(item.X)
            else:
                keep.append(item)
        self._queue.extendleft(reversed(keep))
        self._queued_rows -= rows
        self._waiting.dec(rows)
        return batch

    async def _drain(self) -> None:
        assert self._wakeup is not None and self._loop is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._take()
                live = [item for item in batch if not item.future.cancelled()]
                if live:
                    await self._run(live)

    async def _run(self, batch: list[_Item], *, inline: bool = True) -> None:
        assert self._loop is not None
        key = batch[0].key
        X = batch[0].X if len(batch) == 1 else np.concatenate([i.X for i in batch])
        try:
            if inline and len(batch) == 1 and len(X) <= self.inline_rows and \
                    not self._queue and self._call_seconds < INLINE_SECONDS:
                out = self._timed(key, X)  # alone and cheap: on the loop, no thread hops
            else:
                out = await self._loop.run_in_executor(self._executor, self._timed, key, X)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0].future, exc=exc)
                return
            self.stats.retried += len(batch)
            for item in batch:  # isolate the request that failed, on the worker
                await self._run([item], inline=False)
            return
        self._count(batch, len(X))
        start = 0
        for item in batch:
            stop = start + len(item.X)
            _settle(item.future, result={k: v[start:stop] for k, v in out.items()})
            start = stop

    def _timed(self, key: Hashable, X: np.ndarray) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        out = self.fn(key, X)
        took = time.perf_counter() - started
        self._call_seconds = took if self._call_seconds == float("inf") else \
            0.8 * self._call_seconds + 0.2 * took
        return out

    def _count(self, batch: list[_Item], rows: int) -> None:
        s = self.stats
        s.calls += 1
        s.requests += len(batch)
        s.rows += rows
        self._sizes.observe(rows)

    def close(self) -> None:
        """Stop the batcher; callable from any thread (a retired model's is closed from the
        thread that follows aliases)."""
        task, loop = self._task, self._loop
        if task is not None and loop is not None and not loop.is_closed():
            with suppress(RuntimeError):  # the loop closed meanwhile: nothing to cancel
                loop.call_soon_threadsafe(self._stop, task)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _stop(self, task: asyncio.Task[None]) -> None:
        """On the loop's thread: cancel the drain; requests still queued are answered 503
        (a retry reaches what is served now) instead of waiting for their timeout."""
        task.cancel()
        while self._queue:
            _settle(self._queue.popleft().future, exc=Overloaded("the model was retired"))
        self._waiting.dec(self._queued_rows)
        self._queued_rows = 0


def _settle(future: asyncio.Future[Any], *, result: Any = None,
            exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
