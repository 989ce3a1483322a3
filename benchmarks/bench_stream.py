"""Streaming inference on Redis Streams: event-to-result latency and throughput of
``workbench stream`` consumers sharing one stream.

Setup (in this run): Debian's ``redis-server`` on a free loopback port (in memory), a model
from the store (``--model``) or, by default, ``logistic`` fitted to ``breast_cancer`` with
the demo's sampler settings (30 features, 2,000 draws) into a temporary model store, and
``--consumers`` ``workbench stream`` processes in one consumer group (``--batch`` events
per read), each in its own process group.

Two phases, each on fresh streams:

- ``paced``: a producer adds ``--rate`` events per second (in groups every 10 ms) for
  ``--seconds``: the latency of a stream that keeps up, p50/p99 from each result's id time
  in the sink minus its event's id time in the source (Redis's clock, millisecond ids);
- ``burst``: ``--burst`` events added at once (one pipeline): throughput is the events over
  the time from the first event's id to the last result's id; latency then measures the
  queue, not the consumer.

One-row events of the model's features (rows drawn from the dataset). Prints a JSON
document and, with ``--markdown``, a table.

    .venv/bin/python benchmarks/bench_stream.py [--model REF] [--consumers 2] [--batch 64]
        [--rate 1000] [--seconds 10] [--burst 10000] [--json out.json] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("BENTOML_HOME", tempfile.mkdtemp(prefix="bench-stream-home-"))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from workbench.background import BackgroundServer, launch, redis_server  # noqa: E402

CLI = [sys.executable, "-m", "workbench.cli"]


def model_and_rows(ref: str | None) -> tuple[str, np.ndarray]:
    from workbench import datasets, store
    from workbench.fit import SamplerConfig, fit

    data = datasets.load("breast_cancer")
    if ref is None:
        posterior = fit("logistic", data, config=SamplerConfig(), progress=False)
        ref = store.save(posterior)
    tag = store.resolve(ref)
    features = store.get(tag).feature_names
    if len(features) != data.X.shape[1]:  # another model: rows of its width
        rows = np.random.default_rng(0).normal(size=(1000, len(features)))
    else:
        rows = data.X
    return tag, np.asarray(rows, np.float64)


def start_consumers(tag: str, source: str, sink: str, n: int, batch: int,
                    workdir: Path) -> list[BackgroundServer]:
    import redis

    consumers = [launch([*CLI, "stream", tag, "--source", source, "--sink", sink,
                         "--consumer", f"c{i}", "--batch", str(batch)], port=0,
                        log=workdir / f"consumer-{i}-{uuid.uuid4().hex[:6]}.log",
                        ready_path=None) for i in range(n)]
    client = redis.Redis.from_url(source.rsplit("/", 1)[0])
    stream = source.rsplit("/", 1)[1]
    deadline = time.monotonic() + 300
    while True:
        try:
            if len(client.xinfo_consumers(stream, "workbench")) == n:
                return consumers
        except redis.ResponseError:
            pass
        if time.monotonic() > deadline or not all(c.running() for c in consumers):
            raise RuntimeError("consumers did not start:\n" + "\n".join(
                c.output()[-2000:] for c in consumers))
        time.sleep(0.1)


def phase(redis_url: str, tag: str, rows: np.ndarray, *, consumers: int, batch: int,
          total: int, rate: float | None, workdir: Path) -> dict[str, Any]:
    import redis

    name = uuid.uuid4().hex[:8]
    source, sink = f"{redis_url}/events-{name}", f"{redis_url}/scores-{name}"
    client = redis.Redis.from_url(redis_url)
    procs = start_consumers(tag, source, sink, consumers, batch, workdir)
    try:
        bodies = [json.dumps([r]) for r in rows.tolist()]
        group = max(1, int(rate / 100)) if rate else total
        started = time.monotonic()
        for sent in range(0, total, group):
            pipe = client.pipeline(transaction=False)
            for i in range(sent, min(sent + group, total)):
                pipe.xadd(f"events-{name}", {"instances": bodies[i % len(bodies)]})
            pipe.execute()
            if rate:
                wait = started + (sent + group) / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
        deadline = time.monotonic() + 600
        while client.xlen(f"scores-{name}") < total:
            if time.monotonic() > deadline:
                raise RuntimeError("results missing")
            time.sleep(0.05)
    finally:
        for proc in procs:
            proc.stop()
    results = client.xrange(f"scores-{name}")
    ms = lambda entry_id: int(entry_id.decode().split("-")[0])  # noqa: E731
    latency = np.array([ms(rid) - ms(f[b"event_id"]) for rid, f in results], float)
    first = min(ms(f[b"event_id"]) for _, f in results)
    span = (max(ms(rid) for rid, _ in results) - first) / 1000.0
    p50, p99 = np.percentile(latency, [50, 99])
    return {"events": total, "consumers": consumers, "batch": batch, "rate": rate,
            "latency_p50_ms": float(p50), "latency_p99_ms": float(p99),
            "latency_max_ms": float(latency.max()), "seconds": span,
            "events_per_second": total / span if span else None,
            "unique_events": len({f[b"event_id"] for _, f in results})}


def run(ref: str | None = None, *, consumers: int = 2, batch: int = 64, rate: float = 1000,
        seconds: float = 10, burst: int = 10_000) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    tag, rows = model_and_rows(ref)
    server, url = redis_server(log=workdir / "redis.log")
    try:
        common = {"consumers": consumers, "batch": batch, "workdir": workdir}
        return {"model": tag,
                "paced": phase(url, tag, rows, total=int(rate * seconds), rate=rate, **common),
                "burst": phase(url, tag, rows, total=burst, rate=None, **common)}
    finally:
        server.stop()


def markdown(result: dict[str, Any]) -> str:
    lines = ["| phase | events | consumers | batch | offered/s | p50 ms | p99 ms | events/s |",
             "|---|---|---|---|---|---|---|---|"]
    for name in ("paced", "burst"):
        r = result[name]
        lines.append(f"| {name} | {r['events']:,} | {r['consumers']} | {r['batch']} | "
                     f"{r['rate'] or 'all at once'} | {r['latency_p50_ms']:.0f} | "
                     f"{r['latency_p99_ms']:.0f} | {r['events_per_second']:,.0f} |")
    return "\n".join(lines)


def render(result: dict[str, Any], command: str) -> str:
    """Figure (i) of RESULTS.md: the setup, then :func:`markdown`'s table."""
    paced, burst = result["paced"], result["burst"]
    return (f"Command: `{command}` (`benchmarks/bench_stream.py`). Debian's `redis-server` on "
            f"loopback (in memory), `{result['model']}`, {paced['consumers']} `workbench "
            f"stream` consumers in one group, `--batch {paced['batch']}`, one-row events. "
            "Latency is each result's id time in the sink minus its event's id time in the "
            "source (Redis's clock). **paced**: events added at a steady rate (a stream that "
            "keeps up); **burst**: every event added at once (throughput; the latency is then "
            "the queue's).\n\n" + markdown(result) + "\n\n"
            f"At {paced['rate']:,.0f} events/s offered the consumers kept up with a p99 of "
            f"{paced['latency_p99_ms']:.0f} ms; a burst drained at "
            f"{burst['events_per_second']:,.0f} events/s. Per batch the model call is the "
            "small part; the rest is reading, writing the results once per event id (a Lua "
            "script) and acknowledging, plus Python work per event.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    args = parser.parse_args()
    result = run(args.model, consumers=args.consumers, batch=args.batch, rate=args.rate,
                 seconds=args.seconds, burst=args.burst)
    print(json.dumps(result, indent=2))
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(markdown(result) + "\n")


if __name__ == "__main__":
    main()
