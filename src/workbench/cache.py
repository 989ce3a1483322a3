"""The prediction cache: answers to rows already seen, kept in process (L1) and shared by
replicas in Redis (L2).

A served model's answer for a row depends on nothing but the model's version (its tag:
BentoML versions are immutable), the row's values after validation, the interval mass and
the number of draws returned (the draws' random keys are fixed per model, and a row's
result does not depend on the other rows of its batch: :mod:`workbench.predict`), and the
threshold of its ``ood`` flag (:mod:`workbench.ood`, set by ``WORKBENCH_OOD_RATE``). The key
is a hash of exactly these, so an answer from the cache is the answer the model would
compute again (to float32 rounding: the shape bucket a row is computed in can move its
last bit). :meth:`PredictionCache.records` answers the rows of a request that are in
the cache, sends only the others through the model's micro-batcher, keeps their answers
and returns every row's record in the request's order.

- **L1**: an in-process LRU (``cachetools.LRUCache``) of ``WORKBENCH_PREDICTION_CACHE``
  rows (0 or unset: off, the default);
- **L2**: Redis at ``WORKBENCH_PREDICTION_CACHE_REDIS`` (``redis://host:port/db``), shared
  by replicas, entries expiring after ``WORKBENCH_PREDICTION_CACHE_SECONDS`` (default
  3600). Keys are ``workbench:prediction:v1:{tag}:{hash}``: scoped by version. A Redis that
  does not answer (within 0.25 s) never fails a request: the row is computed, ``error`` is
  counted, and Redis is left alone for a second before it is tried again.

Rows sent by entity key bypass the cache (their features change in the online store under
the same key, and each answer carries a note about its features), as does the Open
Inference Protocol's path (raw arrays).

An alias that moves resolves to another tag, hence to other keys: it is never answered from
its previous version's entries. Those are dropped from L1 when the version stops being
served (:meth:`~workbench.serving.ModelServer.repoint` and ``retire`` call :meth:`drop`),
counted ``invalidated``; in L2 they are left to expire, since other replicas may still
serve that version.

Values are a record's compact JSON, the same bytes in both levels: every hit is a fresh
copy its caller may change, equal to the computed record bit for bit.

Prometheus (:mod:`workbench.metrics`): ``workbench_prediction_cache_total{level, outcome}``
per row looked up (``l1`` or ``l2``; ``hit``, ``miss``, ``error``, ``invalidated``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import struct
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.errors import ConfigError
from workbench.metrics import CACHE
from workbench.settings import Settings, load

if TYPE_CHECKING:
    from workbench.lineup import Served

logger = logging.getLogger("workbench.cache")

PREFIX = "workbench:prediction:v1:"  # v1: the records' format; bump it when that changes
TIMEOUT_SECONDS = 0.25  # a Redis slower than this is no faster than computing the row
RETRY_REDIS_SECONDS = 1.0
LOG_EVERY_SECONDS = 30.0


class PredictionCache:
    """The prediction cache of one :class:`~workbench.serving.ModelServer`.

    Parameters
    ----------
    rows
        Rows kept in process (L1, least recently used evicted first); 0: no L1.
    redis_url
        ``redis://...`` of the L2 shared by replicas; None: no L2.
    seconds
        How long an L2 entry lives (it bounds Redis's memory; entries never go stale).
    """

    def __init__(self, rows: int = 0, *, redis_url: str | None = None,
                 seconds: float = 3600.0) -> None:
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise ConfigError(f"the prediction cache's size must be a number of rows >= 0, "
                              f"got {rows!r}", detail={"expected": "e.g. 100000, or 0: off"})
        if not seconds > 0:
            raise ConfigError(f"the prediction cache's TTL must be > 0 seconds, got {seconds!r}")
        self.rows = rows
        self.redis_url = redis_url or None
        self.seconds = float(seconds)
        self.l1: Any = _lru(rows) if rows else None
        if self.redis_url:
            _require_redis()
        self.counts: Counter[tuple[str, str]] = Counter()  # (level, outcome): rows
        self._lock = threading.Lock()  # L1 is read on the event loop, dropped from others
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._skip_until = 0.0
        self._logged_at = -LOG_EVERY_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> PredictionCache:
        """``WORKBENCH_PREDICTION_CACHE`` (rows), ``..._REDIS`` (URL), ``..._SECONDS``
        (:mod:`workbench.settings`; default: read now)."""
        s = settings or load()
        return cls(s.prediction_cache, redis_url=s.prediction_cache_redis,
                   seconds=s.prediction_cache_seconds)

    @classmethod
    def configured(cls, setting: PredictionCache | int | None = None,
                   settings: Settings | None = None) -> PredictionCache:
        """``setting`` itself; an L1 of that many rows; or, for None, :meth:`from_settings`
        of ``settings``."""
        if isinstance(setting, PredictionCache):
            return setting
        return cls.from_settings(settings) if setting is None else cls(setting)

    @property
    def on(self) -> bool:
        return self.l1 is not None or self.redis_url is not None

    def describe(self) -> dict[str, Any]:
        """For ``/metadata``: the configuration and this process's counts."""
        from workbench.ratelimit import redacted

        return {"enabled": self.on, "rows": self.rows, "size": len(self.l1 or ()),
                "redis": redacted(self.redis_url) if self.redis_url else None,
                "seconds": self.seconds,
                "counts": {f"{level} {outcome}": n for (level, outcome), n in self.counts.items()}}

    # -- requests --------------------------------------------------------------------------

    async def records(self, served: Served, X: np.ndarray, mass: float, draws: int, *,
                      bypass: bool = False) -> list[dict[str, Any]]:
        """Each row's prediction record, in order: from the cache when it has the row, else
        computed by ``served``'s batcher (only those rows) and kept. ``bypass``: computed,
        the cache neither read nor written."""
        if bypass or not self.on:
            return await compute(served, X, mass, draws)
        tag = served.tag
        detector = served.predictor.ood
        keys = keys_of(tag, X, mass, draws, detector.threshold if detector else None)
        found = self._l1_get(tag, keys)
        if self.redis_url is not None:
            missed = [i for i, v in enumerate(found) if v is None]
            if missed:
                got = await self._l2_get(tag, [keys[i] for i in missed])
                hits = [(i, v) for i, v in zip(missed, got, strict=True) if v is not None]
                self._l1_put(tag, [keys[i] for i, _ in hits], [v for _, v in hits])
                for i, value in hits:
                    found[i] = value
        todo = [i for i, v in enumerate(found) if v is None]
        out = [None if v is None else json.loads(v) for v in found]
        if todo:
            fresh = await compute(served, X if len(todo) == len(X) else X[todo], mass, draws)
            values = [json.dumps(r, separators=(",", ":")).encode() for r in fresh]
            todo_keys = [keys[i] for i in todo]
            self._l1_put(tag, todo_keys, values)
            if self.redis_url is not None:
                await self._l2_put(tag, todo_keys, values)
            for i, record in zip(todo, fresh, strict=True):
                out[i] = record
        return out  # type: ignore[return-value]  (every row filled)

    def drop(self, *tags: str) -> int:
        """Drop the L1 entries of ``tags`` (versions no longer served); how many."""
        if self.l1 is None or not tags:
            return 0
        with self._lock:
            gone = [key for key in self.l1 if key[0] in tags]
            for key in gone:
                del self.l1[key]
        self._count("l1", "invalidated", len(gone))
        return len(gone)

    async def aclose(self) -> None:
        """Close the connection to Redis (a later request opens another)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- the two levels --------------------------------------------------------------------

    def _l1_get(self, tag: str, keys: list[bytes]) -> list[bytes | None]:
        if self.l1 is None:
            return [None] * len(keys)
        with self._lock:
            found = [self.l1.get((tag, key)) for key in keys]
        hits = sum(v is not None for v in found)
        self._count("l1", "hit", hits)
        self._count("l1", "miss", len(keys) - hits)
        return found

    def _l1_put(self, tag: str, keys: list[bytes], values: list[bytes]) -> None:
        if self.l1 is not None and keys:
            with self._lock:
                for key, value in zip(keys, values, strict=True):
                    self.l1[tag, key] = value

    async def _l2_get(self, tag: str, keys: list[bytes]) -> list[bytes | None]:
        names = [_name(tag, key) for key in keys]
        got = await self._redis("read", lambda r: r.mget(names))
        if got is None:
            self._count("l2", "error", len(keys))
            return [None] * len(keys)
        hits = sum(v is not None for v in got)
        self._count("l2", "hit", hits)
        self._count("l2", "miss", len(keys) - hits)
        return got

    async def _l2_put(self, tag: str, keys: list[bytes], values: list[bytes]) -> None:
        ttl_ms = max(1, int(self.seconds * 1000))

        async def write(client: Any) -> Any:
            async with client.pipeline(transaction=False) as pipe:
                for key, value in zip(keys, values, strict=True):
                    pipe.set(_name(tag, key), value, px=ttl_ms)
                return await pipe.execute()

        await self._redis("write", write)  # a failed write costs a later miss, nothing else

    async def _redis(self, what: str, call: Any) -> Any:
        """``await call(client)``, or None when Redis fails (or is being left alone)."""
        now = time.monotonic()
        if now < self._skip_until:
            return None
        try:
            return await call(self._connection())
        except Exception as exc:  # the L2 only saves work: never fail a request for it
            self._skip_until = time.monotonic() + RETRY_REDIS_SECONDS
            if now - self._logged_at >= LOG_EVERY_SECONDS:
                self._logged_at = now
                from workbench.ratelimit import redacted

                logger.warning("prediction cache: Redis %s failed (%s: %s) at %s; rows are "
                               "computed, Redis tried again in %.0fs", what, type(exc).__name__,
                               str(exc)[:200], redacted(self.redis_url or ""),
                               RETRY_REDIS_SECONDS)
            return None

    def _connection(self) -> Any:
        """The asyncio Redis client of the running event loop (one per loop: a client's
        connections belong to the loop that opened them)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._client = redis.asyncio.Redis.from_url(
                self.redis_url, socket_timeout=TIMEOUT_SECONDS,
                socket_connect_timeout=TIMEOUT_SECONDS, retry=Retry(NoBackoff(), 0))
            self._loop = loop
        return self._client

    def _count(self, level: str, outcome: str, rows: int) -> None:
        if rows:
            self.counts[level, outcome] += rows
            CACHE.labels(level=level, outcome=outcome).inc(rows)


async def compute(served: Served, X: np.ndarray, mass: float, draws: int
                  ) -> list[dict[str, Any]]:
    """The records of rows ``X`` computed by ``served``'s micro-batcher (no cache)."""
    arrays = await served.batcher.submit(mass, X)
    return served.predictor.prediction(arrays, mass, draws).records()


def keys_of(tag: str, X: np.ndarray, mass: float, draws: int,
            ood: float | None = None) -> list[bytes]:
    """Each row's key: a 128-bit BLAKE2b of the tag, the interval mass, the number of draws,
    the ``ood`` flag's threshold (a record carries the flag: another rate, another answer)
    and the row's float32 bytes (validated rows: lists and objects by feature name that
    carry the same values have the same key)."""
    head = tag.encode() + b"\0" + struct.pack("<dId", float(mass), int(draws),
                                               np.nan if ood is None else float(ood))
    rows = np.ascontiguousarray(X, np.float32)
    return [hashlib.blake2b(head + row.tobytes(), digest_size=16).digest() for row in rows]


def _name(tag: str, key: bytes) -> str:
    return f"{PREFIX}{tag}:{key.hex()}"


def _lru(rows: int) -> Any:
    from cachetools import LRUCache

    return LRUCache(maxsize=rows)


def _require_redis() -> None:
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        raise ConfigError("WORKBENCH_PREDICTION_CACHE_REDIS needs redis-py: pip install "
                          "'workbench[redis]'") from None
