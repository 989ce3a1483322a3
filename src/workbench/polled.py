"""Answers that pollers ask for every few seconds, computed at most once per ``ttl``
(``GET /analysis``, ``GET /analysis/segments``, the dashboard's segment read-out).

:meth:`Polled.get` keeps one answer per key and runs one computation at a time per key.
While one is in flight, other callers wait for it, or, with ``stale_while_busy``, get the
previous answer at once (a fit of seconds must not hold up every poller). Each caller
gets its own copy.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class Polled:
    """A cache of answers by key, each reused for ``ttl`` seconds (or, given ``counts``,
    while the inputs it summarises are unchanged and for at least ``ttl`` seconds)."""

    def __init__(self, *, stale_while_busy: bool = False) -> None:
        self.stale_while_busy = stale_while_busy
        self._answers: dict[Hashable, tuple[float, Any, Any]] = {}  # (when, counts, answer)
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Hashable, ttl: float, compute: Callable[[], Any], *,
            counts: Any = None) -> Any:
        """The answer of ``key``: the one kept if still good, else ``compute()``'s."""
        def due(hit: tuple[float, Any, Any] | None) -> bool:
            return hit is None or ((counts is None or hit[1] != counts) and
                                   time.monotonic() - hit[0] >= ttl)

        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
            hit = self._answers.get(key)
        if not due(hit):
            return copy.deepcopy(hit[2])
        if hit is not None and self.stale_while_busy:
            if not lock.acquire(blocking=False):  # another thread is computing
                return copy.deepcopy(hit[2])
        else:
            lock.acquire()
        try:
            hit = self._answers.get(key)
            if due(hit):
                hit = (time.monotonic(), counts, compute())
                self._answers[key] = hit
            return copy.deepcopy(hit[2])
        finally:
            lock.release()
