"""Streaming inference: events from a source scored into a sink, at least once, each once.

The transport is behind two small protocols, :class:`Source` and :class:`Sink`; Redis
Streams implement them in :mod:`workbench.stream_redis` (a Kafka adapter would implement
the same four methods). :func:`consume` is the loop every transport shares:

1. read at most ``batch`` events (the backpressure: nothing more is in flight, and the
   next read comes only after this batch is written and acknowledged);
2. check each event on its own: a bad one becomes a refusal with its reason (dead-lettered
   by the sink, acknowledged, counted), never an error of the loop;
3. score the good ones through a :class:`~workbench.batching.MicroBatcher` per model (all
   events of a read share one compiled call of the Predictor's summary);
4. with an experiment (:mod:`workbench.stream_experiment`), route each event by its unit
   and make its prediction row durable in the event store;
5. write results and refusals to the sink, which de-duplicates by the event's id (a
   redelivered event is counted ``duplicate``, not written twice), then acknowledge.

What an event, a result and a refusal hold is :mod:`workbench.stream_format`'s.

Counted in :mod:`workbench.metrics`: ``workbench_stream_events_total{stream, outcome}``,
``workbench_stream_pending{stream}`` and ``workbench_stream_latency_seconds{stream}`` (from
the event's time in its stream to its result written).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from workbench import retry
from workbench.artifact import Posterior
from workbench.cache import compute
from workbench.errors import ConfigError, InputError, Unavailable
from workbench.lineup import serve
from workbench.metrics import STREAM_EVENTS, STREAM_LATENCY, STREAM_PENDING
from workbench.predict import DEFAULT_BUCKETS, DEFAULT_MASS, check_interval_mass
from workbench.settings import load
from workbench.stream_format import Event, Job, Result, prepare, refusal, result

logger = logging.getLogger("workbench.stream")

OUTCOMES = ("scored", "duplicate", "refused", "claimed")


class Source(Protocol):
    """Where events come from (a consumer group's share of a stream)."""

    name: str

    def read(self, count: int) -> list[Event]:
        """At most ``count`` events, waiting briefly (under a second) when there are none;
        raises :class:`~workbench.errors.Unavailable` when the transport is unreachable."""

    def ack(self, ids: Sequence[str]) -> None:
        """Mark events done: they are never delivered again."""

    def backlog(self) -> dict[str, int | None]:
        """``{"pending": delivered and not acknowledged, "lag": not delivered yet}``."""

    def close(self) -> None: ...


class Sink(Protocol):
    """Where results go, idempotently."""

    name: str

    def write(self, results: Sequence[Result]) -> list[bool]:
        """Write each result (refusals to the dead-letter place) unless one with its key
        was written before; per result, True when written now, False for a duplicate."""

    def close(self) -> None: ...


def stream_buckets(batch: int) -> tuple[int, ...]:
    """The Predictor's shape buckets up to ``batch``, and ``batch`` itself: a full read of
    one-row events is exactly one compiled call."""
    return tuple(sorted({b for b in DEFAULT_BUCKETS if b < batch} | {int(batch)}))


class Scorer:
    """The models a consumer scores with, by tag: a Predictor and a micro-batcher each.

    Parameters
    ----------
    posteriors
        ``{tag: posterior}``; the first is the default model.
    batch
        The most events per read (sets the shape buckets, :func:`stream_buckets`).
    """

    def __init__(self, posteriors: Mapping[str, Posterior], *, batch: int = 64) -> None:
        if not posteriors:
            raise ConfigError("no model to score with", detail={"expected": "a tag"})
        buckets, rows = stream_buckets(batch), load().max_rows  # WORKBENCH_MAX_ROWS
        self.served = {tag: serve(tag, p, buckets=buckets, max_rows=rows,
                                  max_queue_rows=batch * rows)
                       for tag, p in posteriors.items()}
        self.predictors = {tag: s.predictor for tag, s in self.served.items()}
        self.default = next(iter(posteriors))

    def warmup(self) -> float:
        """Compile every bucket of every model; the seconds it took."""
        return sum(p.warmup() for p in self.predictors.values())

    async def score(self, tag: str, X: np.ndarray, mass: float) -> list[dict[str, Any]]:
        """The ``POST /predict`` records of validated rows ``X``."""
        return await compute(self.served[tag], X, mass, 0)

    def close(self) -> None:
        for served in self.served.values():
            served.batcher.close()


@dataclass
class StreamStats:
    """What one consumer did; :meth:`summary` is what the command prints last."""

    stream: str
    consumer: str = ""
    scored: int = 0
    duplicate: int = 0
    refused: int = 0
    claimed: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))

    @property
    def handled(self) -> int:
        return self.scored + self.duplicate + self.refused

    def summary(self) -> dict[str, Any]:
        seconds = time.monotonic() - self.started
        lat = np.asarray(self.latencies) * 1000.0
        p50, p99 = (np.percentile(lat, [50, 99]).tolist() if len(lat) else (None, None))
        return {"stream": self.stream, "consumer": self.consumer, "scored": self.scored,
                "duplicate": self.duplicate, "refused": self.refused,
                "claimed": self.claimed, "batches": self.batches,
                "seconds": round(seconds, 3),
                "events_per_second": round(self.handled / seconds, 1) if seconds else 0.0,
                "latency_p50_ms": p50, "latency_p99_ms": p99}


async def consume(source: Source, sink: Sink, scorer: Scorer, *, batch: int = 64,
                  interval_mass: float = DEFAULT_MASS, experiment: Any = None,
                  consumer: str = "", max_events: int | None = None,
                  idle_exit: float | None = None, stop: threading.Event | None = None,
                  progress: Callable[[StreamStats, dict[str, Any]], None] | None = None,
                  report_every: float = 2.0) -> StreamStats:
    """Score ``source`` into ``sink`` until ``stop`` is set, ``max_events`` are handled or
    nothing arrived for ``idle_exit`` seconds; the batch in hand is always finished.

    ``experiment`` (a :class:`workbench.stream_experiment.StreamExperiment`) routes each
    event by its unit and logs its prediction row durably before the event is acknowledged.
    ``progress(stats, backlog)`` is called every ``report_every`` seconds and at the end.
    A transport or event store that cannot be reached is logged and retried with backoff;
    its batch stays unacknowledged, so it is delivered again.
    """
    if batch < 1:
        raise ConfigError(f"batch must be at least 1, got {batch}")
    mass = check_interval_mass(interval_mass)
    stop = stop or threading.Event()
    stats = StreamStats(stream=source.name, consumer=consumer)
    counters = {o: STREAM_EVENTS.labels(stream=source.name, outcome=o) for o in OUTCOMES}
    latency = STREAM_LATENCY.labels(stream=source.name)
    last_event = reported = time.monotonic()

    def failed(exc: BaseException, wait: float) -> None:
        logger.error("stream %s: %s; retrying in %.1fs (the batch in hand is delivered "
                     "again)", source.name, getattr(exc, "message", exc), wait)

    while not stop.is_set():
        want = batch if max_events is None else min(batch, max_events - stats.handled)
        if want <= 0:
            break
        try:
            async for attempt in retry.forever_async(0.1, 5.0, on=Unavailable, log=failed,
                                                     stop=stop):
                with attempt:
                    events = await asyncio.to_thread(source.read, want)
                    if events:
                        last_event = time.monotonic()
                        await _handle(events, source, sink, scorer, mass, experiment,
                                      consumer, stats, counters, latency)
        except Unavailable as exc:  # stopped while waiting to retry
            logger.warning("stream %s: stopped while retrying after %s (the batch in hand "
                           "is delivered again)", source.name, getattr(exc, "message", exc))
            break
        if idle_exit is not None and not events and \
                time.monotonic() - last_event >= idle_exit:
            break
        if time.monotonic() - reported >= report_every:
            reported = time.monotonic()
            await _report(source, stats, progress)
    await _report(source, stats, progress)
    return stats


async def _report(source: Source, stats: StreamStats,
                  progress: Callable[[StreamStats, dict[str, Any]], None] | None) -> None:
    try:
        backlog = await asyncio.to_thread(source.backlog)
    except Unavailable:
        backlog = {"pending": None, "lag": None}
    pending = backlog.get("pending")
    if pending is not None:
        STREAM_PENDING.labels(stream=source.name).set(pending)
    if progress is not None:
        progress(stats, backlog)
    else:
        logger.info("stream %s: %s, backlog %s", source.name, stats.summary(), backlog)


async def _handle(events: list[Event], source: Source, sink: Sink, scorer: Scorer,
                  mass: float, experiment: Any, consumer: str, stats: StreamStats,
                  counters: dict[str, Any], latency: Any) -> None:
    """One read: check, score, log, write, acknowledge."""
    started = time.perf_counter()
    jobs: list[Job] = []
    out: list[Result] = []
    for event in events:
        try:
            jobs.append(prepare(event, source.name, scorer, experiment))
        except Exception as exc:  # one event's problem (even a RecursionError) stays its own
            if not isinstance(exc, InputError):
                logger.warning("stream %s: event %s refused: %r", source.name, event.id, exc)
            out.append(refusal(event, source.name, exc, consumer))
    scored = await asyncio.gather(*(scorer.score(j.tag, j.X, mass) for j in jobs),
                                  return_exceptions=True)
    done: list[tuple[Job, list[dict[str, Any]]]] = []
    for job, records in zip(jobs, scored, strict=True):
        if isinstance(records, BaseException):  # the batcher isolates the event that failed
            logger.warning("stream %s: event %s failed to score: %r", source.name,
                           job.event.id, records)
            out.append(refusal(job.event, source.name, records, consumer))
        else:
            done.append((job, records))
    if experiment is not None and done:
        ms = (time.perf_counter() - started) * 1000.0
        await experiment.log([experiment.row(
            request_id=j.request_id, unit=j.unit or "", arm=j.arm, tag=j.tag, records=r,
            status=j.status, latency_ms=ms, instances=j.X, attributes=j.attributes)
            for j, r in done])
    out += [result(j, r, source.name, mass, consumer, experiment) for j, r in done]
    written = await asyncio.to_thread(sink.write, out)
    now = time.time()
    times = {e.id: e.time for e in events}
    for item, new in zip(out, written, strict=True):
        outcome = ("refused" if item.refused else "scored") if new else "duplicate"
        setattr(stats, outcome, getattr(stats, outcome) + 1)
        counters[outcome].inc()
        if outcome == "scored":
            seconds = max(now - times[item.fields["event_id"]], 0.0)
            stats.latencies.append(seconds)
            latency.observe(seconds)
    claimed = sum(e.claimed for e in events)
    stats.claimed += claimed
    counters["claimed"].inc(claimed)
    stats.batches += 1
    await asyncio.to_thread(source.ack, [e.id for e in events])


def open_source(url: str, *, group: str = "workbench", consumer: str | None = None,
                claim_idle: float = 30.0) -> Source:
    """The source at ``url`` (``redis://host:port/db/stream``)."""
    from workbench.stream_redis import RedisSource, check_scheme

    check_scheme(url, "--source")
    return RedisSource(url, group=group, consumer=consumer, claim_idle=claim_idle)


def open_sink(url: str) -> Sink:
    """The sink at ``url`` (``redis://host:port/db/stream[?dead=NAME&ttl=SECONDS]``)."""
    from workbench.stream_redis import RedisSink, check_scheme

    check_scheme(url, "--sink")
    return RedisSink(url)


__all__ = ["Event", "Result", "Scorer", "Sink", "Source", "StreamStats", "consume",
           "open_sink", "open_source", "stream_buckets"]
