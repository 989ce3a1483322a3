"""API keys: shown once, stored only as a peppered hash, scoped, rate-limited, revocable.

A key reads ``wb_<id>_<secret>``: ``id`` is a short public id (12 hex characters) that
finds the key's row, ``secret`` is ``secrets.token_urlsafe(32)`` (256 random bits). The
event store's ``api_keys`` table (:mod:`workbench.schema`) keeps the name, the id, the
scopes, an optional rate limit and ``HMAC-SHA256(pepper, key)``, never the key itself; a
presented key is hashed the same way and compared with :func:`hmac.compare_digest`.

The pepper is ``WORKBENCH_KEY_PEPPER``: a secret kept apart from the database (a Kubernetes
Secret, say), so that a copy of the database alone cannot be used to test guesses. A
missing pepper is allowed for local use and logged once as a warning. Changing the pepper
invalidates every key: rotate by creating new keys, moving clients, revoking the old ones.

Scopes (none implies another): ``predict`` (predictions, metadata, read-outs, docs),
``feedback`` (outcomes), ``batch`` (batch jobs), ``admin`` (the lifecycle routes).

:class:`KeyCache` answers repeated verifications from memory for
``WORKBENCH_KEY_CACHE_SECONDS`` (default 5): a revoked key stops working on every replica
within that time. Nothing here logs a key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from workbench.errors import Conflict, InputError, KeyNotFound
from workbench.schema import api_keys
from workbench.settings import load

logger = logging.getLogger("workbench.keys")

SCOPES = ("predict", "feedback", "batch", "admin")
PREFIX = "wb"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
KEY = re.compile(r"wb_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})")
_warned = threading.Event()


@dataclass(frozen=True)
class Principal:
    """Who is calling (``key:NAME`` or ``jwt:SUBJECT``), what they may do, and their own
    rate limit, in the limits library's notation (None: the route group's default)."""

    name: str
    scopes: frozenset[str]
    rate_limit: str | None = None


def pepper() -> bytes:
    """``WORKBENCH_KEY_PEPPER`` as bytes; empty (and a warning, once) when unset."""
    value = load().key_pepper.get_secret_value()
    if not value and not _warned.is_set():
        _warned.set()
        logger.warning("WORKBENCH_KEY_PEPPER is not set: API key hashes are not peppered. "
                       "Fine on a laptop; set it (from a secret store) in production.")
    return value.encode()


def digest(key: str, pepper_bytes: bytes | None = None) -> str:
    """The stored form of ``key``: HMAC-SHA256 under the pepper (default: :func:`pepper`,
    read now), hex."""
    return hmac.new(pepper() if pepper_bytes is None else pepper_bytes, key.encode(),
                    hashlib.sha256).hexdigest()


def key_id(key: str) -> str | None:
    """The public id inside a well-formed key, else None."""
    found = KEY.fullmatch(key) if isinstance(key, str) else None
    return found.group(1) if found else None


def check_scopes(scopes: Iterable[str]) -> list[str]:
    """``scopes`` deduplicated in canonical order; :class:`InputError` on an unknown one."""
    given = list(scopes)
    unknown = [s for s in given if s not in SCOPES]
    if unknown or not given:
        raise InputError(f"unknown scope(s) {unknown}" if unknown else "no scope given",
                         detail={"expected one or more of": list(SCOPES)})
    return [s for s in SCOPES if s in given]


def check_rate_limit(text: str | None) -> str | None:
    """``text`` if the limits library parses it (``10/second``, ``100 per minute``,
    several joined by ``;``), None when empty; :class:`InputError` otherwise."""
    if text is None or not text.strip():
        return None
    from limits import parse_many

    try:
        parse_many(text)
    except ValueError:
        raise InputError(f"invalid rate limit {text!r}", detail={
            "expected": "the limits library's notation, e.g. '10/second' or "
                        "'100/minute;5000/hour'"}) from None
    return text.strip()


def create(eng: sa.Engine, name: str, scopes: Iterable[str], *,
           rate_limit: str | None = None) -> str:
    """Store a new key named ``name`` and return it: the only time it is ever shown."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InputError(f"invalid key name {name!r}", detail={
            "expected": "1-128 letters, digits, '.', '_', '@' or '-', starting with a letter "
                        "or digit"})
    granted, limit = check_scopes(scopes), check_rate_limit(rate_limit)
    public = secrets.token_hex(6)
    key = f"{PREFIX}_{public}_{secrets.token_urlsafe(32)}"
    try:
        with eng.begin() as conn:
            conn.execute(api_keys.insert().values(
                name=name, key_id=public, hash=digest(key), scopes=granted, rate_limit=limit,
                created=time.time(), revoked=None))
    except sa.exc.IntegrityError:
        raise Conflict(f"an API key named {name!r} exists already", detail={
            "expected": "a new name (a revoked key keeps its name for the record)"}) from None
    return key


def list_keys(eng: sa.Engine) -> list[dict[str, Any]]:
    """Every key's name, public id, scopes, rate limit, created and revoked; no hashes."""
    columns = [c for c in api_keys.c if c.name != "hash"]
    with eng.connect() as conn:
        rows = conn.execute(sa.select(*columns).order_by(api_keys.c.created))
        return [dict(r._mapping) for r in rows]


def revoke(eng: sa.Engine, name: str) -> dict[str, Any]:
    """Revoke ``name`` (again is a no-op); returns its row, without the hash."""
    with eng.begin() as conn:
        conn.execute(api_keys.update().where(api_keys.c.name == name,
                                             api_keys.c.revoked.is_(None))
                     .values(revoked=time.time()))
    found = next((k for k in list_keys(eng) if k["name"] == name), None)
    if found is None:
        raise KeyNotFound(f"no API key named {name!r}",
                          detail={"keys": [k["name"] for k in list_keys(eng)]})
    return found


def verify(eng: sa.Engine, key: str, pepper_bytes: bytes | None = None) -> Principal | None:
    """The principal of a valid, unrevoked ``key`` (hashed under ``pepper_bytes``, default
    :func:`pepper`); None for anything else."""
    public = key_id(key)
    if public is None:
        return None
    with eng.connect() as conn:
        row = conn.execute(sa.select(api_keys).where(api_keys.c.key_id == public)).first()
    if row is None or row.revoked is not None:
        return None
    if not hmac.compare_digest(row.hash.encode(), digest(key, pepper_bytes).encode()):
        return None
    return Principal(f"key:{row.name}", frozenset(row.scopes), row.rate_limit)


class KeyCache:
    """:func:`verify` with a short memory: answers (valid or not) are kept for ``ttl``
    seconds, keyed by the key's hash (the key itself is not kept).

    Parameters
    ----------
    engine
        The event store's engine, or a function returning it (created on first use).
    ttl
        Seconds an answer is reused: the longest a revoke takes to reach this process.
    max_entries
        The cache is emptied when it grows past this (random keys cannot exhaust memory).

    The pepper is read once, here: every request hashes its key, and must not parse the
    settings to do it.
    """

    def __init__(self, engine: Any, *, ttl: float | None = None,
                 max_entries: int = 10_000) -> None:
        self._engine = engine
        self.ttl = load().key_cache_seconds if ttl is None else ttl
        self._pepper = pepper()
        self.max_entries = max_entries
        self._answers: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def engine(self) -> sa.Engine:
        with self._lock:
            if callable(self._engine) and not isinstance(self._engine, sa.Engine):
                self._engine = self._engine()
            return self._engine

    def cached(self, key: str) -> tuple[bool, Principal | None]:
        """``(True, answer)`` when a fresh answer for ``key`` is in memory."""
        found = self._answers.get(digest(key, self._pepper))
        if found is None or found[0] < time.monotonic():
            return False, None
        return True, found[1]

    def verify(self, key: str) -> Principal | None:
        """The key's principal (from memory when fresh, else from the database)."""
        hit, answer = self.cached(key)
        if hit:
            return answer
        answer = verify(self.engine(), key, self._pepper)
        if len(self._answers) >= self.max_entries:
            self._answers.clear()
        self._answers[digest(key, self._pepper)] = (time.monotonic() + self.ttl, answer)
        return answer
