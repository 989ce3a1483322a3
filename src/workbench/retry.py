"""The workbench's one way to retry: exponential backoff (tenacity), every failure logged
before the wait, the wait cut short when the caller is stopping.

Used where a failure is expected to pass and the caller must keep going: a model source
that cannot be reached yet (:class:`workbench.serving.ModelServer`, which stays up and not
ready meanwhile) and a stream's transport or event store (:func:`workbench.stream.consume`,
whose batch in hand is delivered again).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import tenacity

Log = Callable[[BaseException, float], None]
Errors = type[BaseException] | tuple[type[BaseException], ...]


class _Policy:
    """Backoff from ``first`` to ``most`` seconds on ``on``; ``log`` before each wait; a
    ``stop`` set during a wait ends it and raises the failure that started it."""

    def __init__(self, first: float, most: float, on: Errors, log: Log,
                 stop: threading.Event | None) -> None:
        self.log, self.stop = log, stop
        self.last: BaseException | None = None
        self.kwargs: dict[str, Any] = {
            "wait": tenacity.wait_exponential(multiplier=first, min=first, max=most),
            "retry": tenacity.retry_if_exception_type(on),
            "stop": tenacity.stop_when_event_set(stop) if stop else tenacity.stop_never,
            "before_sleep": self.before_sleep, "reraise": True}

    def before_sleep(self, state: tenacity.RetryCallState) -> None:
        self.last = state.outcome.exception() if state.outcome else None
        if self.last is not None:
            self.log(self.last, state.next_action.sleep if state.next_action else 0.0)

    def sleep(self, seconds: float) -> None:
        if self.stop is None:
            time.sleep(seconds)
        elif self.stop.wait(seconds) and self.last is not None:
            raise self.last

    async def sleep_async(self, seconds: float) -> None:
        await asyncio.to_thread(self.sleep, seconds)


def forever(first: float, most: float, *, log: Log, on: Errors = Exception,
            stop: threading.Event | None = None) -> tenacity.Retrying:
    """Retry a block raising ``on`` after ``first`` seconds, doubling up to ``most``, until
    it succeeds (or ``stop`` is set: the last failure is raised); ``log(exc, seconds)``
    before each wait::

        for attempt in retry.forever(2, 60, log=...):
            with attempt:
                load()
    """
    policy = _Policy(first, most, on, log, stop)
    return tenacity.Retrying(sleep=policy.sleep, **policy.kwargs)


def forever_async(first: float, most: float, *, log: Log, on: Errors = Exception,
                  stop: threading.Event | None = None) -> tenacity.AsyncRetrying:
    """:func:`forever` for ``async for``; the event loop keeps running while it waits."""
    policy = _Policy(first, most, on, log, stop)
    return tenacity.AsyncRetrying(sleep=policy.sleep_async, **policy.kwargs)
