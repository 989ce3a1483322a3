"""What a request waits on until its event is durable: a future, settled from the event
writer's thread a batch at a time, and a deadline.

The deadlines are swept a few times a second while requests wait, not given a timer each:
a timer per request (``asyncio.timeout``) cost ~4 us of the event loop's time per logged
prediction, and the gateway's event loop is what bounds its throughput
(benchmarks/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any


class Expired(Exception):
    """The event was not made durable within the deadline (it may still be written)."""


class Acks:
    """Futures with deadlines, per event loop.

    Parameters
    ----------
    timeout
        How long a request waits for its event before :class:`Expired`.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.every = min(0.5, timeout / 4)  # how often the deadlines are swept
        self._waiting: dict[asyncio.AbstractEventLoop, deque[tuple[float, Any]]] = {}

    def expect(self) -> asyncio.Future[str]:
        """A future for an event about to be queued (in the running loop), due within
        :attr:`timeout`."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        waiting = self._waiting.get(loop)
        if waiting is None:  # nobody waited in this loop: sweep from now on
            waiting = self._waiting[loop] = deque()
            loop.call_later(self.every, self._sweep, loop)
        waiting.append((loop.time() + self.timeout, future))
        return future

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Expire the futures past their deadline (they come in deadline order); sweep
        again while any wait, else forget the loop."""
        waiting, now = self._waiting[loop], loop.time()
        while waiting and (waiting[0][1].done() or waiting[0][0] <= now):
            _, future = waiting.popleft()
            if not future.done():
                future.set_exception(Expired())
        if waiting:
            loop.call_later(self.every, self._sweep, loop)
        else:
            del self._waiting[loop]

    @staticmethod
    def settle(outcomes: list[tuple[asyncio.Future[str], str]],
               refused: Callable[[], Exception]) -> None:
        """From the writer's thread: each future's outcome, in one wake-up per event loop;
        a ``refused`` outcome raises ``refused()`` in its request."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[str], str]]] = {}
        for future, outcome in outcomes:
            by_loop.setdefault(future.get_loop(), []).append((future, outcome))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, settled, refused)


def _settle(settled: list[tuple[asyncio.Future[str], str]],
            refused: Callable[[], Exception]) -> None:
    """Answer the requests waiting on a written batch (in their event loop)."""
    for future, outcome in settled:
        if future.done():  # expired, or the request went away
            continue
        if outcome == "refused":
            future.set_exception(refused())
        else:
            future.set_result(outcome)
