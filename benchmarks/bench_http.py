"""Figures (b), (c) and (e): HTTP latency, throughput and cold start of the Predictor and
the experiment gateway against their peers, every server started in the same run.

Servers (each on a free loopback port, in its own process group, stopped in a finally):

- ``predictor``: ``bentoml serve`` of bentos/predictor (the model aliased ``champion``);
- ``gateway``: ``bentoml serve`` of bentos/experiment (a 50/50 experiment whose two arms
  are the same model, so that the gateway's own cost is what differs from ``predictor``),
  its arms' models in its own process, with its SQLite event log; ``gateway (log off)``
  the same with ``WORKBENCH_EVENT_LOG=off``, ``gateway (async acks)`` with
  ``WORKBENCH_EVENT_ACK=async``, and ``gateway (arms via Predictor)`` with
  ``WORKBENCH_ARMS=predictor`` (the arms in a Predictor process, through bentoml.depends);
- the peers in benchmarks/peers: ``floor`` (BentoML, no work), ``starlette echo`` (no
  framework), ``fastapi classic`` (Predictive per request) and ``naive bento``.

Cold start: process start until ``/readyz`` answers 200, each server alone; the first
start with an empty JAX compilation cache of the server's own, the later ones (restarts)
with the cache it filled. Latency: one client on one kept-alive connection; throughput: 64
concurrent clients (``hey``, else aiohttp) for a fixed time. Each server is measured
alone: the others' process groups are paused (SIGSTOP) and it is resumed and sent a few
requests first, so nine idle servers' timers do not land in its figures on two cores.
Rounds alternate between the servers (ABAB...), so slow spells of the shared machine hit
every server alike; medians and interquartile ranges are over rounds.

    BENTOML_HOME=<store with champion> .venv/bin/python benchmarks/bench_http.py [--quick]

``benchmarks/run.py`` (``make bench``) fits and stores the model first, then runs this.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "benchmarks" / "peers"
BIN = Path(sys.executable).parent
EXPERIMENT = """name: bench
arms:
  - {name: a, model: champion, weight: 0.5}
  - {name: b, model: challenger, weight: 0.5}
metric: binary
"""


@dataclass
class Spec:
    """How to start one server and what to send it."""

    name: str
    argv: Callable[[int], list[str]]
    body: Callable[[int], dict[str, Any]]
    env: dict[str, str] = field(default_factory=dict)
    heavy: bool = False  # seconds per request: fewer requests per round


@dataclass
class Running:
    spec: Spec
    process: subprocess.Popen[bytes]
    url: str
    port: int
    ready_s: float


GATEWAYS = ("gateway", "gateway (log off)", "gateway (async acks)",
            "gateway (arms via Predictor)")


def specs(row: list[float], workdir: Path) -> list[Spec]:
    """Every server of the run, subjects first."""
    bentoml = str(BIN / "bentoml")
    uvicorn = [sys.executable, "-m", "uvicorn", "--app-dir", str(PEERS), "--host",
               "127.0.0.1", "--log-level", "warning"]
    plain = lambda i: {"instances": [row]}  # noqa: E731
    config = workdir / "experiment.yaml"
    config.write_text(EXPERIMENT)

    def gateway(name: str, log: str, ack: str = "durable", arms: str = "in-process") -> Spec:
        db = workdir / f"events-{log}-{ack}-{arms}.db"
        return Spec(name, lambda p: [bentoml, "serve", "service:Experiment", "--working-dir",
                                     str(ROOT / "bentos/experiment"), "--host", "127.0.0.1",
                                     "--port", str(p)],
                    lambda i: {"unit": f"user-{i}", "instances": [row]},
                    env={"WORKBENCH_EXPERIMENT": str(config), "WORKBENCH_EVENT_LOG": log,
                         "WORKBENCH_EVENT_ACK": ack, "WORKBENCH_ARMS": arms,
                         "WORKBENCH_DB_URL": f"sqlite:///{db}"})

    return [
        Spec("predictor", lambda p: [bentoml, "serve", "service:Predictor", "--working-dir",
                                     str(ROOT / "bentos/predictor"), "--arg", "models=champion",
                                     "--host", "127.0.0.1", "--port", str(p)], plain),
        gateway("gateway", "on"),
        gateway("gateway (log off)", "off"),
        gateway("gateway (async acks)", "on", "async"),
        gateway("gateway (arms via Predictor)", "on", arms="predictor"),
        Spec("floor", lambda p: [bentoml, "serve", "floor:Floor", "--working-dir", str(PEERS),
                                 "--host", "127.0.0.1", "--port", str(p)], plain),
        Spec("starlette echo", lambda p: [*uvicorn, "--port", str(p), "starlette_echo:app"],
             plain),
        Spec("fastapi classic", lambda p: [*uvicorn, "--port", str(p), "fastapi_classic:app"],
             plain, env={"BENCH_MODEL": "champion"}, heavy=True),
        Spec("naive bento", lambda p: [bentoml, "serve", "naive_bento:Naive", "--working-dir",
                                       str(PEERS), "--host", "127.0.0.1", "--port", str(p)],
             plain, env={"BENCH_MODEL": "champion"}),
    ]


# -- servers -------------------------------------------------------------------------------

def start(spec: Spec, logdir: Path, timeout: float = 240) -> Running:
    """Start ``spec`` and time process start until ``/readyz`` answers 200. Each server
    keeps its JAX compilation cache in ``logdir/../jax-cache/<server>``."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_MODELS"} | spec.env
    env["WORKBENCH_COMPILATION_CACHE"] = str(compile_cache(spec, logdir.parent))
    log = open(logdir / f"{spec.name.replace(' ', '_')}.log", "ab")  # noqa: SIM115
    started = time.perf_counter()
    process = subprocess.Popen(spec.argv(port), env=env, cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    log.close()  # the child has its own copy
    url = f"http://127.0.0.1:{port}"
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{spec.name} exited with {process.returncode}; see {log.name}")
        if time.perf_counter() - started > timeout:
            stop(process)
            raise TimeoutError(f"{spec.name} not ready in {timeout:.0f}s; see {log.name}")
        if status(port, "GET", "/readyz") == 200:
            return Running(spec, process, url, port, time.perf_counter() - started)
        time.sleep(0.05)


def status(port: int, method: str, path: str, body: bytes | None = None) -> int:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request(method, path, body, {"content-type": "application/json"})
        code = conn.getresponse().status
        conn.close()
        return code
    except OSError:
        return 0


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (continued first: it may be paused), SIGKILL it
    if it lingers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGCONT)  # a stopped process would not see it
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        except ProcessLookupError:
            pass


def pause(server: Running) -> None:
    """SIGSTOP the server's process group: a server not being measured takes no CPU (its
    timers, pollers and the event writer's flushes would land in the measured one's
    latency on two cores)."""
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGSTOP)


def resume(server: Running) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGCONT)


def alone(server: Running, running: Iterable[Running]) -> Running:
    """Resume ``server`` with every other one of ``running`` paused, and send it a few
    requests (its connections and caches warm again); returns it."""
    for other in running:
        if other is not server:
            pause(other)
    resume(server)
    warm(server, 1 if server.spec.heavy else 10)
    return server


def warm(server: Running, n: int) -> None:
    """A few requests first (the naive bento compiles on its first; connections open)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    for i in range(n):
        conn.request("POST", "/predict", json.dumps(server.spec.body(i)),
                     {"content-type": "application/json"})
        response = conn.getresponse()
        text = response.read()
        if response.status != 200:
            raise RuntimeError(f"{server.spec.name} answered {response.status}: {text[:300]!r}")
    conn.close()


# -- load ----------------------------------------------------------------------------------

def one_client(server: Running, requests: int, seconds: float) -> dict[str, Any]:
    """Sequential requests on one kept-alive connection: ``requests`` or ``seconds``."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    bodies = [json.dumps(server.spec.body(i)).encode() for i in range(64)]
    times: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    for i in range(requests):
        start = time.perf_counter()
        try:
            conn.request("POST", "/predict", bodies[i % 64], {"content-type":
                                                              "application/json"})
            response = conn.getresponse()
            response.read()
            errors += response.status != 200
        except OSError:
            errors += 1
            conn.close()
        times.append((time.perf_counter() - start) * 1e3)
        if time.perf_counter() > deadline:
            break
    conn.close()
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
            "requests": len(times), "errors": errors}


def load_generator() -> str:
    """What makes the 64-client load: ``hey`` (Debian's Go load generator, which leaves
    more of the 2 cores to the server than a Python client would) when installed."""
    return "hey" if shutil.which("hey") else "aiohttp"


def many_clients(server: Running, clients: int, seconds: float, *,
                 generator: str | None = None) -> dict[str, Any]:
    """``clients`` concurrent clients for ``seconds`` (``generator``: ``hey``, every
    client sending the first body, or ``aiohttp``, one body each; default
    :func:`load_generator`)."""
    if (generator or load_generator()) == "hey":
        return _hey(server, clients, seconds)
    return _aiohttp(server, clients, seconds)


def _hey(server: Running, clients: int, seconds: float) -> dict[str, Any]:
    """hey's per-request CSV: response time (s) and status code of each request."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as body:
        body.write(json.dumps(server.spec.body(0)))
        body.flush()
        out = subprocess.run(["hey", "-z", f"{seconds}s", "-c", str(clients), "-m", "POST",
                              "-T", "application/json", "-D", body.name, "-o", "csv",
                              f"{server.url}/predict"], capture_output=True, text=True,
                             check=True, timeout=seconds + 120).stdout
    rows = [line.split(",") for line in out.splitlines()[1:] if line]
    times = [float(r[0]) * 1e3 for r in rows]
    wall = max(float(r[7]) + float(r[0]) for r in rows)  # offset + time of the last answer
    return {"throughput_rps": len(times) / wall, "p99_ms": float(np.percentile(times, 99)),
            "p50_ms": float(np.percentile(times, 50)), "requests": len(times),
            "errors": sum(r[6] != "200" for r in rows), "seconds": wall}


def _aiohttp(server: Running, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` concurrent aiohttp clients; requests in flight then finish."""
    import aiohttp

    bodies = [json.dumps(server.spec.body(i)).encode() for i in range(clients)]
    headers = {"content-type": "application/json"}

    async def main() -> tuple[list[float], int, float]:
        times: list[float] = []
        errors = 0
        timeout = aiohttp.ClientTimeout(total=300)
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(server.url, connector=connector,
                                         timeout=timeout) as session:
            started = time.perf_counter()
            deadline = started + seconds

            async def client(body: bytes) -> None:
                nonlocal errors
                while time.perf_counter() < deadline:
                    t = time.perf_counter()
                    try:
                        async with session.post("/predict", data=body,
                                                headers=headers) as response:
                            await response.read()
                            errors += response.status != 200
                    except (TimeoutError, aiohttp.ClientError):
                        errors += 1
                    times.append((time.perf_counter() - t) * 1e3)

            await asyncio.gather(*(client(b) for b in bodies))
            return times, errors, time.perf_counter() - started

    times, errors, wall = asyncio.run(main())
    return {"throughput_rps": len(times) / wall, "p99_ms": float(np.percentile(times, 99)),
            "p50_ms": float(np.percentile(times, 50)), "requests": len(times),
            "errors": errors, "seconds": wall}


def compile_cache(spec: Spec, workdir: Path) -> Path:
    return workdir / "jax-cache" / spec.name.replace(" ", "_").replace("(", "").replace(")", "")


# -- the run -------------------------------------------------------------------------------

def spread(values: list[float]) -> dict[str, Any]:
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return {"median": float(med), "iqr": float(q3 - q1), "n": len(values)}


def run(row: list[float], workdir: Path, *, rounds: int = 5, cold_rounds: int = 3,
        requests: int = 300, seconds: float = 4.0, clients: int = 64,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Cold start, then latency and throughput rounds over every server; the raw figures."""
    logdir = workdir / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    servers = specs(row, workdir)
    cold: dict[str, list[float]] = {s.name: [] for s in servers}
    running: dict[str, Running] = {}
    out: dict[str, Any] = {"servers": [s.name for s in servers]}
    for spec in servers:  # the first start compiles everything
        shutil.rmtree(compile_cache(spec, workdir), ignore_errors=True)
    try:
        for r in range(cold_rounds):  # each server alone; the last round stays up
            for spec in servers:
                server = start(spec, logdir)
                cold[spec.name].append(server.ready_s)
                log(f"  (c) cold start {r + 1}/{cold_rounds}: {spec.name} ready in "
                    f"{server.ready_s:.1f}s")
                if r < cold_rounds - 1:
                    stop(server.process)
                else:  # kept for the load rounds, paused while the next ones start
                    running[spec.name] = server
                    pause(server)
        out["cold_start_s"] = {name: spread(v[1:] or v) | {
            "first": round(v[0], 2), "all": [round(x, 2) for x in v]}
            for name, v in cold.items()}  # the median is over restarts
        for server in running.values():
            resume(server)
        for name in GATEWAYS:  # both arms' model ready behind it
            deadline = time.monotonic() + 120
            while status(running[name].port, "GET", "/health/all") != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: /health/all not 200 after 120s")
                time.sleep(0.2)
        for server in running.values():
            warm(server, 3 if server.spec.heavy else 30)

        single: dict[str, list[dict[str, Any]]] = {n: [] for n in running}
        for r in range(rounds):
            order = list(running.values())
            order = order[r % len(order):] + order[:r % len(order)]
            for server in order:
                if server.spec.heavy and r >= max(1, rounds // 3):
                    continue  # seconds per request: fewer rounds
                res = one_client(alone(server, running.values()), 15 if server.spec.heavy
                                 else requests, seconds * (3 if server.spec.heavy else 2))
                single[server.spec.name].append(res)
            log(f"  (b) 1 client, round {r + 1}/{rounds}: " + ", ".join(
                f"{n} {v[-1]['p50_ms']:.2f}" for n, v in single.items() if v) + " ms p50")
        many: dict[str, list[dict[str, Any]]] = {n: [] for n in running}
        for r in range(max(1, rounds // 2 + 1)):
            order = list(running.values())
            order = order[r % len(order):] + order[:r % len(order)]
            for server in order:
                if server.spec.heavy and r >= 1:
                    continue
                many[server.spec.name].append(many_clients(alone(server, running.values()),
                                                           clients, seconds))
            log(f"  (b) {clients} clients, round {r + 1}: " + ", ".join(
                f"{n} {v[-1]['throughput_rps']:.0f}" for n, v in many.items() if v) + " req/s")
        out["one_client"] = {n: summarize_single(v) for n, v in single.items()}
        out["many_clients"] = {n: summarize_many(v) for n, v in many.items()}
        out["paired"] = paired(single)
        out["clients"] = clients
        out["load_generator"] = load_generator()
    finally:
        for server in running.values():
            stop(server.process)
    return out


def summarize_single(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {"p50_ms": spread([r["p50_ms"] for r in rounds]),
            "p99_ms": spread([r["p99_ms"] for r in rounds]),
            "requests": sum(r["requests"] for r in rounds),
            "errors": sum(r["errors"] for r in rounds), "rounds": len(rounds)}


def summarize_many(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {"throughput_rps": spread([r["throughput_rps"] for r in rounds]),
            "p99_ms": spread([r["p99_ms"] for r in rounds]),
            "requests": sum(r["requests"] for r in rounds),
            "errors": sum(r["errors"] for r in rounds), "rounds": len(rounds)}


def paired(single: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per-round differences and ratios of p50 between servers measured in the same round."""
    def per_round(a: str, b: str, fn: Callable[[float, float], float]) -> dict[str, Any]:
        pairs = list(zip(single[a], single[b], strict=False))
        return spread([fn(x["p50_ms"], y["p50_ms"]) for x, y in pairs])

    return {
        "gateway - predictor p50 ms": per_round("gateway", "predictor", lambda a, b: a - b),
        "gateway (arms via Predictor) - predictor p50 ms": per_round(
            "gateway (arms via Predictor)", "predictor", lambda a, b: a - b),
        "predictor / floor p50": per_round("predictor", "floor", lambda a, b: a / b),
        "gateway / gateway (log off) p50": per_round("gateway", "gateway (log off)",
                                                     lambda a, b: a / b),
        "gateway / gateway (async acks) p50": per_round("gateway", "gateway (async acks)",
                                                        lambda a, b: a / b),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--workdir", default=str(ROOT / ".workbench" / "bench"))
    args = parser.parse_args()
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    from workbench import store

    row = [round(float(v), 4) for v in store.get("champion").x_loc]
    out = run(row, Path(args.workdir), **({"rounds": 2, "cold_rounds": 2, "requests": 150,
                                            "seconds": 2.0} if args.quick else {}))
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
