"""Redis Streams as a :class:`~workbench.stream.Source` and a :class:`~workbench.stream.Sink`.

A stream is named by one URL: ``redis://[user:password@]host:port/DB/STREAM`` (``rediss://``
for TLS; the stream name URL-encoded when it holds ``/`` or ``?``). A sink's URL may add
``?dead=NAME`` (where refusals go; default ``STREAM.dead``) and ``?ttl=SECONDS`` (how long
an event id is remembered as done; default one day: it only has to outlast the longest
time an event can wait to be delivered again).

The source is one consumer of a consumer group (created with ``MKSTREAM`` at the start of
the stream when missing), so N consumers share a stream: ``XREADGROUP`` hands each event to
one of them. An event is acknowledged (``XACK``) only after its result is written. Entries
that a consumer was given and did not acknowledge for ``claim_idle`` seconds (it died, or
hung) are taken over with ``XAUTOCLAIM`` by whichever consumer reads next; a consumer that
restarts under the same name first reads its own unacknowledged entries again.

The sink is idempotent: one Lua script per result sets ``DONE_PREFIX + key`` with ``NX``
and appends the result only if that key was new, atomically; a redelivered event is a
duplicate, never a second entry.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from workbench import redact
from workbench.errors import ConfigError, Unavailable
from workbench.stream_format import Event, Result

SCHEMES = ("redis", "rediss")
EXPECTED = "redis://host:port/db/stream (rediss:// for TLS)"
DONE_TTL = 24 * 3600
BLOCK_SECONDS = 0.5

# KEYS[1]: the done key; KEYS[2]: the stream to append to; ARGV[1]: the done key's TTL in
# seconds; ARGV[2..]: field, value, ... Returns the new entry's id, or nil for a duplicate.
_WRITE_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
end
return false
"""


@dataclass(frozen=True)
class StreamURL:
    """A parsed stream URL: what to connect to, the stream, the options, and a form fit
    for logs (no credentials)."""

    connection: str
    stream: str
    options: dict[str, str]
    shown: str


def check_scheme(url: str, what: str) -> None:
    scheme = urlsplit(url).scheme if isinstance(url, str) else ""
    if scheme not in SCHEMES:
        raise ConfigError(f"{what}: unsupported stream URL {_shown(url)!r}",
                          detail={"expected": EXPECTED})


def parse_url(url: str, *, options: Sequence[str] = ()) -> StreamURL:
    """Split ``redis://host:port/db/stream?opt=v``; a :class:`ConfigError` saying what was
    expected for anything else (options other than ``options`` included)."""
    shown = _shown(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except (ValueError, TypeError, AttributeError):
        raise ConfigError(f"invalid stream URL {shown!r}", detail={"expected": EXPECTED}) \
            from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ConfigError(f"invalid stream URL {shown!r}: needs a redis:// scheme and a host",
                          detail={"expected": EXPECTED})
    db, _, stream = parts.path.lstrip("/").partition("/")
    if not db.isdigit() or not stream:
        raise ConfigError(f"invalid stream URL {shown!r}: the path must be /DB/STREAM",
                          detail={"expected": EXPECTED})
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if unknown := sorted(set(query) - set(options)):
        raise ConfigError(f"unknown stream URL options {unknown} in {shown!r}",
                          detail={"expected": list(options) or "no options"})
    host = f"{parts.hostname}:{port or 6379}"
    return StreamURL(connection=f"{parts.scheme}://{parts.netloc}/{int(db)}",
                     stream=unquote(stream), options=query,
                     shown=f"{parts.scheme}://{host}/{int(db)}/{stream}")


def connect(target: StreamURL, *, timeout: float = 5.0) -> Any:
    """A client of ``target``'s Redis that answered PING; :class:`Unavailable` otherwise."""
    import redis

    client = redis.Redis.from_url(target.connection, socket_connect_timeout=timeout,
                                  socket_timeout=timeout + BLOCK_SECONDS,
                                  health_check_interval=30)
    with _guard(target):
        client.ping()
    return client


@contextlib.contextmanager
def _guard(target: StreamURL) -> Iterator[None]:
    """Redis's connection errors as :class:`Unavailable` naming the server (not its
    credentials); a refused command as :class:`ConfigError`."""
    import redis

    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise Unavailable(f"cannot reach Redis at {target.shown}: "
                          f"{redact.text(str(exc))}",
                          detail={"expected": "a running Redis (6.2 or newer)"}) from None
    except redis.ResponseError as exc:
        raise ConfigError(f"Redis refused a command on {target.shown}: {exc}",
                          detail={"expected": "a Redis 6.2+ stream"}) from None


def default_consumer() -> str:
    """``HOSTNAME-PID``: unique among the consumers of a group."""
    return f"{socket.gethostname()}-{os.getpid()}"


class RedisSource:
    """One consumer in a consumer group of a Redis stream (see the module).

    Parameters
    ----------
    url
        ``redis://host:port/db/stream``.
    group, consumer
        The consumer group (created if missing) and this consumer's name in it.
    claim_idle
        Seconds after which another consumer's unacknowledged entries are taken over;
        longer than a batch ever takes, or a slow batch gets scored twice (the sink keeps
        one result).
    """

    def __init__(self, url: str, *, group: str = "workbench", consumer: str | None = None,
                 claim_idle: float = 30.0) -> None:
        if not group or not isinstance(claim_idle, int | float) or claim_idle < 0:
            raise ConfigError("a source needs a group name and claim_idle >= 0 seconds")
        self.target = parse_url(url)
        self.name = self.target.stream
        self.group = group
        self.consumer = consumer or default_consumer()
        self.claim_idle = float(claim_idle)
        self.client = connect(self.target)
        self._own_pending = True  # first, what this consumer name was given before
        self._cursor = "0-0"
        self._next_claim = 0.0
        self._ensure_group()

    def _ensure_group(self) -> None:
        import redis

        with _guard(self.target):
            try:
                self.client.xgroup_create(self.name, self.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def read(self, count: int) -> list[Event]:
        import redis

        events: list[Event] = []
        with _guard(self.target):
            try:
                if time.monotonic() >= self._next_claim:
                    events += self._claim(count)
                if len(events) < count:
                    events += self._read(count - len(events), block=not events)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):  # the stream or group was deleted: recreate
                    raise
                self._ensure_group()
        unique = {e.id: e for e in events}
        return list(unique.values())

    def _claim(self, count: int) -> list[Event]:
        cursor, entries, *_ = self.client.xautoclaim(
            self.name, self.group, self.consumer, int(self.claim_idle * 1000),
            start_id=self._cursor, count=count)
        self._cursor = _text(cursor)
        more = self._cursor != "0-0"  # the scan is not through: claim again on next read
        self._next_claim = time.monotonic() + (0 if more else min(self.claim_idle / 2, 5.0))
        return self._events(entries, claimed=True)

    def _read(self, count: int, *, block: bool) -> list[Event]:
        start = "0" if self._own_pending else ">"
        reply = self.client.xreadgroup(
            self.group, self.consumer, {self.name: start}, count=count,
            block=int(BLOCK_SECONDS * 1000) if block and not self._own_pending else None)
        entries = reply[0][1] if reply else []
        if self._own_pending and not entries:
            self._own_pending = False
            return self._read(count, block=block)
        return self._events(entries, claimed=False)

    def _events(self, entries: list[Any], *, claimed: bool) -> list[Event]:
        out, gone = [], []
        for entry_id, fields in entries:
            entry_id = _text(entry_id)
            if not fields:  # deleted from the stream while pending: nothing to score
                gone.append(entry_id)
                continue
            out.append(Event(id=entry_id, time=int(entry_id.split("-")[0]) / 1000.0,
                             fields={k.decode("utf-8", "replace"): v
                                     for k, v in fields.items()},
                             claimed=claimed))
        if gone:
            self.client.xack(self.name, self.group, *gone)
        return out

    def ack(self, ids: Sequence[str]) -> None:
        if ids:
            with _guard(self.target):
                self.client.xack(self.name, self.group, *ids)

    def backlog(self) -> dict[str, int | None]:
        with _guard(self.target):
            groups = self.client.xinfo_groups(self.name)
        mine: dict[str, Any] = next((g for g in groups if _text(g["name"]) == self.group),
                                    {})
        return {"pending": mine.get("pending"), "lag": mine.get("lag")}

    def close(self) -> None:
        self.client.close()


class RedisSink:
    """A Redis stream that takes each event's result once (see the module).

    Parameters
    ----------
    url
        ``redis://host:port/db/stream[?dead=NAME&ttl=SECONDS]``.
    """

    def __init__(self, url: str) -> None:
        self.target = parse_url(url, options=("dead", "ttl"))
        self.name = self.target.stream
        self.dead = self.target.options.get("dead") or f"{self.name}.dead"
        ttl = self.target.options.get("ttl", str(DONE_TTL))
        if not ttl.isdigit() or int(ttl) < 1:
            raise ConfigError(f"invalid ttl {ttl!r} in {self.target.shown!r}",
                              detail={"expected": "a whole number of seconds >= 1"})
        self.ttl = int(ttl)
        self.done_prefix = f"{self.name}:done:"
        self.client = connect(self.target)
        self._script = self.client.register_script(_WRITE_ONCE)

    def write(self, results: Sequence[Result]) -> list[bool]:
        if not results:
            return []
        with _guard(self.target):
            pipe = self.client.pipeline(transaction=False)
            for result in results:
                args = [self.ttl, *(x for kv in result.fields.items() for x in kv)]
                self._script(keys=[self.done_prefix + result.key,
                                   self.dead if result.refused else self.name],
                             args=args, client=pipe)
            replies = pipe.execute()
        return [reply is not None for reply in replies]

    def close(self) -> None:
        self.client.close()


def _shown(url: Any) -> str:
    """``url`` fit for an error message: no credentials, no query string."""
    return redact.url(str(url))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
