"""Figure (g): the prediction cache on a repeated-row workload, cache on and off.

The workload: requests of one row each, drawn with Zipf(1) popularity from a set of
distinct rows (1,000 rows for 20,000 requests), the rows around the model's training
means (``x_loc + x_scale * N(0, 1)``, 4 decimals). Each measurement gets rows of its own
(seeded by round and load), so the cache starts it cold and its hit rate is the workload's,
not the previous round's; the servers of one round get the same sequence.

``bentoml serve`` Predictors of one model (the run's ``champion``, else the demo's model
fitted here), each in its own process group with a ``BENTOML_HOME`` of its own
(:func:`workbench.background.own_home`, so that each ``/metrics`` is its own):

- ``cache off``: ``WORKBENCH_PREDICTION_CACHE=0`` (the default);
- ``cache on (L1)``: ``WORKBENCH_PREDICTION_CACHE=100000`` (more than the rows: no evictions);
- ``L2 only (Redis)``: no L1, ``WORKBENCH_PREDICTION_CACHE_REDIS`` on a local
  ``redis-server`` (skipped without one): every lookup is a Redis round trip, what a
  replica pays for a row another replica computed.

Loads, the servers taking turns so that a slow spell of the shared machine hits them
alike (each still sees the whole sequence in order): 1 client, one kept-alive connection
per server (``http.client``), turns request by request, a shorter sequence of the same
shape (4,000 requests over 200 rows); ``clients`` concurrent aiohttp clients taking the
next body as each answer comes, turns by chunks of 1,000 requests (``hey`` sends one body
over and over; this workload is a sequence). The order of the turns rotates. The hit rate
is from each server's ``/metrics`` (``workbench_prediction_cache_total``) scraped before
and after each measurement; beside it, the best possible (every repeat a hit).

    .venv/bin/python benchmarks/bench_cache.py [--quick] [--json out.json] [--markdown out.md]
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from workbench.background import own_home

sys.path.insert(0, str(Path(__file__).parent))

import bench_http  # noqa: E402
from bench_http import Running, Spec, spread  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OFF, ON, L2 = "cache off", "cache on (L1)", "L2 only (Redis)"
ROWS_KEPT = 100_000
QUICK = {"rounds": 2, "requests": 4_000, "distinct": 200, "single": 1_000,
         "single_distinct": 50}


def workload(posterior: Any, distinct: int, requests: int, seed: int) -> list[bytes]:
    """``requests`` bodies of one row each, Zipf(1) over ``distinct`` fresh rows."""
    rng = np.random.default_rng(seed)
    rows = np.round(posterior.x_loc + np.asarray(posterior.x_scale)
                    * rng.normal(size=(distinct, len(posterior.x_loc))), 4)
    weights = 1.0 / np.arange(1, distinct + 1)
    picks = rng.choice(distinct, size=requests, p=weights / weights.sum())
    bodies = [json.dumps({"instances": [row]}).encode() for row in rows.tolist()]
    return [bodies[i] for i in picks]


def possible(bodies: list[bytes]) -> float:
    """The hit rate of a cache that keeps everything: every repeat is a hit."""
    return 1.0 - len(set(bodies)) / len(bodies)


def model(log: Callable[[str], None]) -> str:
    """The run's ``champion``, else the demo's model fitted and stored here."""
    from workbench import store
    from workbench.errors import ModelNotFound

    try:
        return store.resolve("champion")
    except ModelNotFound:
        import bench_fit

        started = time.perf_counter()
        tag = store.save(bench_fit.ours(), alias="champion", force=True)
        log(f"  (g) fitted and stored {tag} in {time.perf_counter() - started:.0f}s")
        return tag


def redis(workdir: Path) -> tuple[Any, str] | None:
    """A local ``redis-server`` (in memory) and its URL; None when not installed."""
    from workbench.background import REDIS, redis_server

    return None if REDIS is None else redis_server(log=workdir / "logs" / "redis.log")


def specs(tag: str, workdir: Path, redis_url: str | None, warm_row: list[float]) -> list[Spec]:
    def predictor(name: str, env: dict[str, str]) -> Spec:
        return Spec(name, lambda p: [str(bench_http.BIN / "bentoml"), "serve",
                                     "service:Predictor", "--working-dir",
                                     str(ROOT / "bentos/predictor"), "--arg", f"models={tag}",
                                     "--host", "127.0.0.1", "--port", str(p)],
                    lambda i: {"instances": [warm_row]},
                    env={"BENTOML_HOME": str(own_home(workdir / "homes", name)),
                         "WORKBENCH_PREDICTION_CACHE": "0",
                         "WORKBENCH_PREDICTION_CACHE_REDIS": ""} | env)

    servers = [predictor(OFF, {}), predictor(ON, {"WORKBENCH_PREDICTION_CACHE":
                                                  str(ROWS_KEPT)})]
    if redis_url:
        servers.append(predictor(L2, {"WORKBENCH_PREDICTION_CACHE_REDIS": redis_url}))
    return servers


# -- load and metrics ----------------------------------------------------------------------

def one_client(servers: list[Running], bodies: list[bytes]) -> dict[str, dict[str, Any]]:
    """The sequence, one request at a time on one kept-alive connection per server; the
    servers take turns request by request (the order rotating), so that a slow spell of
    the shared machine hits them alike."""
    conns = {s.spec.name: http.client.HTTPConnection("127.0.0.1", s.port, timeout=120)
             for s in servers}
    times: dict[str, list[float]] = {name: [] for name in conns}
    errors = dict.fromkeys(conns, 0)
    names = list(conns)
    for i, body in enumerate(bodies):
        for name in names[i % len(names):] + names[:i % len(names)]:
            t = time.perf_counter()
            conns[name].request("POST", "/predict", body, {"content-type": "application/json"})
            response = conns[name].getresponse()
            response.read()
            errors[name] += response.status != 200
            times[name].append((time.perf_counter() - t) * 1e3)
    for conn in conns.values():
        conn.close()
    return {n: figures(times[n], errors[n], sum(times[n]) / 1e3) for n in names}


def many_clients(servers: list[Running], bodies: list[bytes], clients: int,
                 chunk: int = 1_000) -> dict[str, dict[str, Any]]:
    """The sequence shared by ``clients`` concurrent clients, each taking the next body;
    cut into chunks that the servers take in turns (the order rotating), each server
    seeing the whole sequence in order."""
    times: dict[str, list[float]] = {s.spec.name: [] for s in servers}
    errors = dict.fromkeys(times, 0)
    walls = dict.fromkeys(times, 0.0)
    for k, start in enumerate(range(0, len(bodies), chunk)):
        for server in servers[k % len(servers):] + servers[:k % len(servers)]:
            got, failed, wall = asyncio.run(burst(server, bodies[start:start + chunk],
                                                  clients))
            name = server.spec.name
            times[name] += got
            errors[name] += failed
            walls[name] += wall
    return {n: figures(times[n], errors[n], walls[n]) for n in times}


async def burst(server: Running, bodies: list[bytes], clients: int
                ) -> tuple[list[float], int, float]:
    import aiohttp

    times: list[float] = []
    errors = 0
    queue = iter(bodies)
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(server.url, connector=aiohttp.TCPConnector(limit=clients),
                                     timeout=aiohttp.ClientTimeout(total=300)) as session:
        started = time.perf_counter()

        async def client() -> None:
            nonlocal errors
            for body in queue:
                t = time.perf_counter()
                try:
                    async with session.post("/predict", data=body, headers=headers) as response:
                        await response.read()
                        errors += response.status != 200
                except (TimeoutError, aiohttp.ClientError):
                    errors += 1
                times.append((time.perf_counter() - t) * 1e3)

        await asyncio.gather(*(client() for _ in range(clients)))
        return times, errors, time.perf_counter() - started


def figures(times: list[float], errors: int, wall: float) -> dict[str, Any]:
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
            "throughput_rps": len(times) / wall, "requests": len(times), "errors": errors}


def scrape(port: int) -> dict[str, float]:
    """``workbench_prediction_cache_total`` by ``level outcome``."""
    from prometheus_client.parser import text_string_to_metric_families

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return {f"{s.labels['level']} {s.labels['outcome']}": s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "workbench_prediction_cache_total"}


def hit_rates(servers: list[Running], fn: Callable[[], dict[str, dict[str, Any]]]
              ) -> dict[str, dict[str, Any]]:
    """``fn()``'s figures per server, with its hit rate from its metrics during ``fn``."""
    before = {s.spec.name: scrape(s.port) for s in servers}
    results = fn()
    for server in servers:
        name = server.spec.name
        after = scrape(server.port)
        d = {k: after[k] - before[name].get(k, 0.0) for k in after}
        hits = d.get("l1 hit", 0.0) + d.get("l2 hit", 0.0)
        results[name] |= {"hit_rate": hits / results[name]["requests"], "metrics": d}
    return results


def same_answers(a: Running, b: Running, bodies: list[bytes]) -> float:
    """The largest difference in mean or interval between two servers' answers, each body
    sent twice to ``b`` (the second from its cache)."""
    worst = 0.0
    conns = {s.port: http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
             for s in (a, b)}
    for body in bodies:
        answers = []
        for port in (a.port, b.port, b.port):
            conns[port].request("POST", "/predict", body, {"content-type": "application/json"})
            response = conns[port].getresponse()
            answers.append(json.loads(response.read())["predictions"][0])
        first = answers[0]
        for other in answers[1:]:
            worst = max(worst, abs(first["mean"] - other["mean"]), float(np.max(np.abs(
                np.subtract(first["interval"], other["interval"])))))
    for conn in conns.values():
        conn.close()
    return worst


# -- the run -------------------------------------------------------------------------------

def run(workdir: Path, *, rounds: int = 3, requests: int = 20_000, distinct: int = 1_000,
        single: int = 4_000, single_distinct: int = 200, clients: int = 16,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Start the servers, then 1-client and ``clients``-client rounds; the figures."""
    from workbench import store

    started = time.time()
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "load_average_at_start": os.getloadavg()[0]}
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    tag = model(log)
    posterior = store.get(tag)
    out |= {"model": tag, "features": len(posterior.x_loc), "draws": posterior.n_draws,
            "requests": requests, "distinct": distinct, "single": single,
            "single_distinct": single_distinct, "clients": clients, "rows_kept": ROWS_KEPT}
    shared = redis(workdir)
    warm_row = np.round(posterior.x_loc, 4).tolist()
    running: dict[str, Running] = {}
    try:
        for spec in specs(tag, workdir, shared[1] if shared else None, warm_row):
            running[spec.name] = bench_http.start(spec, workdir / "logs")
            log(f"  (g) {spec.name} ready in {running[spec.name].ready_s:.1f}s")
        names = list(running)
        out["ready_s"] = {n: round(s.ready_s, 2) for n, s in running.items()}
        out["max_abs_difference"] = same_answers(
            running[OFF], running[ON], workload(posterior, 50, 50, seed=10_000))
        for server in running.values():
            bench_http.warm(server, 30)
        loads = {"one_client": (single, single_distinct, one_client),
                 "many_clients": (requests, distinct,
                                  lambda ss, b: many_clients(ss, b, clients))}
        results: dict[str, dict[str, list[dict[str, Any]]]] = {
            load: {n: [] for n in names} for load in loads}
        out["possible_hit_rate"] = {load: [] for load in loads}
        for r in range(rounds):
            for li, (load, (n_requests, n_rows, fn)) in enumerate(loads.items()):
                bodies = workload(posterior, n_rows, n_requests, seed=100 * r + li)
                out["possible_hit_rate"][load].append(possible(bodies))
                servers = [running[n] for n in names[r % len(names):] + names[:r % len(names)]]
                got = hit_rates(servers, lambda ss=servers, b=bodies, f=fn: f(ss, b))
                for name, figure in got.items():
                    results[load][name].append(figure)
                log(f"  (g) {load.replace('_', ' ')}, round {r + 1}/{rounds}: " + ", ".join(
                    f"{n} p50 {v[-1]['p50_ms']:.2f} ms, {v[-1]['throughput_rps']:.0f} req/s, "
                    f"hits {100 * v[-1]['hit_rate']:.1f}%" for n, v in results[load].items()))
    finally:
        for server in running.values():
            bench_http.stop(server.process)
        if shared:
            shared[0].stop()
    out["servers"] = names
    for load, by_server in results.items():
        out[load] = {n: {k: spread([x[k] for x in v]) for k in
                         ("p50_ms", "p99_ms", "throughput_rps", "hit_rate")}
                     | {"requests": sum(x["requests"] for x in v),
                        "errors": sum(x["errors"] for x in v)}
                     for n, v in by_server.items()}
        out[load]["paired"] = {f"{OFF} / {n} p50": spread([
            a["p50_ms"] / b["p50_ms"] for a, b in zip(by_server[OFF], v, strict=True)])
            for n, v in by_server.items() if n != OFF}
        out["possible_hit_rate"][load] = spread(out["possible_hit_rate"][load])
    out["load_average_at_end"] = os.getloadavg()[0]
    out["minutes"] = round((time.time() - started) / 60, 1)
    return out


# -- RESULTS.md ----------------------------------------------------------------------------

def render(r: dict[str, Any], command: str) -> str:
    """The section of benchmarks/RESULTS.md."""
    from run import machine_note, table

    clients = r["clients"]

    def cell(s: dict[str, Any], digits: int = 2, unit: str = " ms") -> str:
        return f"{s['median']:.{digits}f}{unit} (IQR {s['iqr']:.{digits}f})"

    def pct(s: dict[str, Any]) -> str:
        return f"{100 * s['median']:.1f}%"

    rows = []
    for load, label in (("one_client", "1"), ("many_clients", str(clients))):
        for n in r["servers"]:
            x = r[load][n]
            rows.append([n, label, pct(x["hit_rate"]), cell(x["p50_ms"]),
                         cell(x["p99_ms"], 1), cell(x["throughput_rps"], 0, " req/s"),
                         f"{x['errors']} / {x['requests']}"])
    paired = "; ".join(f"{k} at {'1 client' if load == 'one_client' else f'{clients} clients'}"
                       f": {x['median']:.2f}× (IQR {x['iqr']:.2f})"
                       for load in ("one_client", "many_clients")
                       for k, x in r[load]["paired"].items())
    ready = ", ".join(f"{n} {s:.1f} s" for n, s in r["ready_s"].items())
    one_off, one_on = (r["one_client"][n]["p50_ms"]["median"] for n in (OFF, ON))
    return f"""
## (g) Prediction cache: repeated rows, cache on and off

Command: `{command}` ({'**quick run**: few rounds, wide spreads; ' if r.get('quick') else ''}\
{r['date']}, {r['minutes']} min; load average {r['load_average_at_start']:.2f} at the start,
{r['load_average_at_end']:.2f} at the end{machine_note(r, "bentoml", "jax", "aiohttp")}).
Predictors of `{r['model']}` ({r['features']} features, {r['draws']} draws), each `bentoml
serve service:Predictor --working-dir bentos/predictor --arg models=TAG` with a
`BENTOML_HOME` of its own, ready after {ready}:
**{OFF}** (`WORKBENCH_PREDICTION_CACHE=0`, the default), **{ON}**
(`WORKBENCH_PREDICTION_CACHE={r['rows_kept']}`: no evictions) and, where `redis-server` is
installed, **{L2}** (no L1; `WORKBENCH_PREDICTION_CACHE_REDIS` on a local Redis: each lookup
a Redis round trip, what a replica pays for a row another replica computed).

The workload: requests of one row each, Zipf(1) popularity over distinct rows drawn around
the training means, fresh rows for every measurement (the cache starts each one cold; the
servers of a round get the same sequence, taking turns: request by request at 1 client,
by chunks of 1,000 requests at {clients}). 1 client: {r['single']:,} requests over
{r['single_distinct']:,} rows, one kept-alive connection per server (throughput: requests
over the time spent in them); {clients} clients: {r['requests']:,} requests over
{r['distinct']:,} rows, concurrent `aiohttp` clients taking the next body as each answer
comes. Medians over rounds (IQR); the hit rate from each server's
`workbench_prediction_cache_total` (hits / requests); a cache that kept every row could
reach {pct(r['possible_hit_rate']['one_client'])} (1 client) and
{pct(r['possible_hit_rate']['many_clients'])} ({clients} clients). Answers from the cache
equal the computed ones (largest difference in mean or interval over 50 rows, each asked
twice of the cache: {r['max_abs_difference']:.1e}).

""" + table(["server", "clients", "hit rate", "p50", "p99", "throughput", "errors"],
             rows) + f"""

Paired per round (p50 without the cache over p50 with it): {paired}.

A hit skips the hop to the model's batcher thread and the compiled summary over every
draw: {one_off - one_on:.2f} ms off the p50 at 1 client. What stays is BentoML's own
per-request work, which at {clients} clients bounds the throughput (figure (b)'s floor), so
the cache gains less there. The L2 alone pays
a Redis round trip per lookup and a write per miss, on the same 2 cores as everything else:
it spares a replica the computation of a row another replica made, and pays off where that
computation costs more than a round trip (more draws, more rows per request, a busier
model); beside an L1 it is asked only for the L1's misses.
"""


def summary(r: dict[str, Any]) -> list[list[str]]:
    """Figure (g)'s rows of RESULTS.md's summary (figure, workbench, peer, ratio, target,
    verdict)."""
    one, many = r["one_client"], r["many_clients"]
    hits = f"{100 * one[ON]['hit_rate']['median']:.0f}% hits"
    rps_on, rps_off = (many[n]["throughput_rps"]["median"] for n in (ON, OFF))
    return [
        ["(g) p50 repeated rows, 1 client", f"{one[ON]['p50_ms']['median']:.2f} ms "
         f"(cache, {hits})", f"cache off {one[OFF]['p50_ms']['median']:.2f} ms",
         f"{one['paired'][f'{OFF} / {ON} p50']['median']:.2f}× faster (paired)", "—", "—"],
        [f"(g) throughput repeated rows, {r['clients']} clients", f"{rps_on:.0f} req/s "
         "(cache)", f"cache off {rps_off:.0f} req/s", f"{rps_on / rps_off:.2f}×", "—", "—"],
    ]


def main() -> None:
    from run import standalone

    standalone("bench_cache.py", run, render, QUICK, "bench-cache")


if __name__ == "__main__":
    main()
