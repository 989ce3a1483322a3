"""Rate limits per principal and route group, with the ``limits`` library.

Each request is counted against its principal (``key:NAME``, ``jwt:SUBJECT``) and its
route group (the scope the route needs). The group's default comes from the design and can
be set by the environment, in the limits library's notation (several joined by ``;``):

===========  =================  ===================================
group        default            variable
===========  =================  ===================================
predict      ``1000/second``    ``WORKBENCH_RATE_LIMIT_PREDICT``
feedback     ``1000/second``    ``WORKBENCH_RATE_LIMIT_FEEDBACK``
batch        ``100/minute``     ``WORKBENCH_RATE_LIMIT_BATCH``
admin        ``10/second``      ``WORKBENCH_RATE_LIMIT_ADMIN``
===========  =================  ===================================

A key created with ``--rate-limit`` uses its own limit instead, in every group it may use
(each group counted apart). ``off`` (or ``0``) in a variable turns a group's limit off.

Windows are fixed and aligned to the clock (a ``1/second`` window is a whole second of
``time.time()``), so replicas on one Redis count the same window together and a client
told ``Retry-After: N`` gets in after N seconds.

Counters are in process memory by default, in Redis with ``WORKBENCH_REDIS_URL``
(``redis://host:port/db``): one shared limit for every replica. When Redis cannot be
reached, ``WORKBENCH_RATE_LIMIT_ON_REDIS_ERROR`` decides:

- ``local`` (default): fail open to this process's own counters. The service keeps
  answering (Redis is not made a single point of failure of the prediction path, and
  authentication still holds), each replica still enforces the limit on its own share, so
  the total is bounded by the limit times the number of replicas;
- ``open``: no limit while Redis is down;
- ``closed``: 503 with ``Retry-After`` while Redis is down.

Every storage error is counted (``counters`` and the ``workbench_rate_limit_storage_errors``
Prometheus counter) and logged (the first, then at most every 30 s); after an error Redis
is left alone for a second before it is tried again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from workbench.errors import ConfigError
from workbench.settings import Settings, load

logger = logging.getLogger("workbench.ratelimit")

DEFAULTS = {"predict": "1000/second", "feedback": "1000/second", "batch": "100/minute",
            "admin": "10/second"}
POLICIES = ("local", "open", "closed")
RETRY_REDIS_SECONDS = 1.0
LOG_EVERY_SECONDS = 30.0
OFF = ("", "off", "0", "none")


@dataclass(frozen=True)
class Decision:
    """Whether a request may go on; if not, when to retry and why."""

    allowed: bool
    retry_after: int = 0
    limit: str = ""
    unavailable: bool = False  # the shared counters are down and the policy is closed


def parse(text: str) -> list[Any]:
    """The limits library's items for ``text``; :class:`ConfigError` if it does not parse."""
    from limits import parse_many

    try:
        return parse_many(text)
    except ValueError:
        raise ConfigError(f"invalid rate limit {text!r}", detail={
            "expected": "e.g. '1000/second' or '100/minute;5000/hour'"}) from None


def redacted(url: str) -> str:
    """``url`` without credentials (for logs)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


def retry_after(expiry: int, now: float) -> int:
    """Whole seconds until the aligned window of ``expiry`` seconds that holds ``now``
    ends; at least 1."""
    return max(1, math.ceil((math.floor(now / expiry) + 1) * expiry - now))


class RateLimiter:
    """Counts requests per principal and route group.

    Parameters
    ----------
    defaults
        ``{group: limit}``; default :data:`DEFAULTS` overridden by the environment.
    storage_url
        ``redis://...`` to share counters between replicas; default ``WORKBENCH_REDIS_URL``,
        else process memory.
    on_error
        One of :data:`POLICIES`; default ``WORKBENCH_RATE_LIMIT_ON_REDIS_ERROR`` or
        ``local``.
    settings
        Where the defaults come from (:mod:`workbench.settings`; default: read now).
    """

    def __init__(self, defaults: Mapping[str, str] | None = None, *,
                 storage_url: str | None = None, on_error: str | None = None,
                 settings: Settings | None = None) -> None:
        from limits.aio.storage import MemoryStorage, RedisStorage
        from limits.aio.strategies import FixedWindowRateLimiter

        s = settings or load()  # WORKBENCH_RATE_LIMIT_*, WORKBENCH_REDIS_URL
        if defaults is None:
            defaults = {g: getattr(s, f"rate_limit_{g}") for g in DEFAULTS}
        self.defaults = {g: (None if v.strip().lower() in OFF else parse(v))
                         for g, v in defaults.items()}
        self.on_error = (on_error or s.rate_limit_on_redis_error).strip().lower()
        if self.on_error not in POLICIES:
            raise ConfigError(f"invalid WORKBENCH_RATE_LIMIT_ON_REDIS_ERROR {self.on_error!r}",
                              detail={"expected one of": list(POLICIES)})
        url = storage_url if storage_url is not None else (
            s.redis_url.get_secret_value() if s.redis_url else "")
        self.local = FixedWindowRateLimiter(MemoryStorage())
        self.shared = None
        self.where = "memory"
        if url:
            if not url.startswith(("redis://", "rediss://", "redis+unix://")):
                raise ConfigError(f"invalid WORKBENCH_REDIS_URL {redacted(url)!r}",
                                  detail={"expected": "redis://host:port/db"})
            storage = RedisStorage(f"async+{url}", implementation="redispy",
                                   wrap_exceptions=True, socket_timeout=0.5,
                                   socket_connect_timeout=0.5, key_prefix="workbench-limits")
            self.shared = FixedWindowRateLimiter(storage)
            self.where = redacted(url)
        self.counters = {"allowed": 0, "limited": 0, "storage_errors": 0}
        self._parsed: dict[str, list[Any]] = {}
        self._down_until = 0.0
        self._logged = 0.0
        self._metrics = _metrics()

    def limits_for(self, group: str, override: str | None) -> list[Any]:
        """The items that apply: the key's own limit, else the group's default."""
        if override:
            if override not in self._parsed:
                self._parsed[override] = parse(override)
            return self._parsed[override]
        return self.defaults.get(group) or []

    async def hit(self, principal: str, group: str, override: str | None = None,
                  *, now: float | None = None) -> Decision:
        """Count one request of ``principal`` in ``group``; allowed, or when to retry."""
        items = self.limits_for(group, override)
        if not items:
            return Decision(True)
        now = time.time() if now is None else now
        limiter = self.local
        if self.shared is not None:
            limiter = self._fallback() if now < self._down_until else self.shared
        for item in items:
            window = str(math.floor(now / item.get_expiry()))
            ok = True
            if limiter is self.shared:
                try:
                    ok = await limiter.hit(item, principal, group, window)
                except Exception as exc:  # the shared storage is down: apply the policy
                    self._storage_failed(exc, now)
                    limiter = self._fallback()
            if limiter is self.local:
                ok = await limiter.hit(item, principal, group, window)
            elif limiter is None:
                if self.on_error == "closed":
                    return Decision(False, math.ceil(RETRY_REDIS_SECONDS), unavailable=True)
                break  # open: nothing to count against
            if not ok:
                self.counters["limited"] += 1
                self._metrics["limited"].labels(group=group).inc()
                return Decision(False, retry_after(item.get_expiry(), now), str(item))
        self.counters["allowed"] += 1
        return Decision(True)

    def _fallback(self) -> Any:
        """The limiter to use while the shared one is down (None: none applies)."""
        return self.local if self.on_error == "local" else None

    def _storage_failed(self, exc: Exception, now: float) -> None:
        self.counters["storage_errors"] += 1
        self._metrics["storage_errors"].inc()
        self._down_until = now + RETRY_REDIS_SECONDS
        if now - self._logged >= LOG_EVERY_SECONDS:
            self._logged = now
            logger.warning("rate limits: Redis at %s failed (%s; %d error(s) so far); "
                           "policy %r: %s", self.where, type(exc).__name__,
                           self.counters["storage_errors"], self.on_error,
                           {"local": "this process's own counters apply meanwhile",
                            "open": "no limit applies meanwhile",
                            "closed": "requests are refused with 503 meanwhile"}
                           [self.on_error])


_METRICS: dict[str, Any] = {}


def _metrics() -> dict[str, Any]:
    """Prometheus counters (created once per process; BentoML's /metrics shows them)."""
    if not _METRICS:
        from prometheus_client import Counter

        _METRICS["limited"] = Counter("workbench_rate_limited",
                                      "Requests refused with 429 by the rate limits",
                                      ["group"])
        _METRICS["storage_errors"] = Counter("workbench_rate_limit_storage_errors",
                                             "Errors of the shared rate-limit storage")
    return _METRICS
