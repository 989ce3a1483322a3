"""Figure (b), in part: HTTP latency at 1 client and throughput at 64 clients for the
Predictor against the framework floor (a BentoML async endpoint doing no work), both
served by `bentoml serve` on loopback in the same run.

    .venv/bin/python benchmarks/bench_http.py [--requests 300] [--json out.json]

Needs a model aliased `champion` in $BENTOML_HOME (e.g. after `make demo`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from workbench.serving import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[1]
BENTOML = str(Path(sys.executable).parent / "bentoml")


def serve(target: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([BENTOML, "serve", target, "--working-dir", str(workdir),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, what=target)
    return proc, url


def one_client(url: str, body: dict[str, Any], n: int) -> dict[str, float]:
    times, errors = [], 0
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(20):
            http.post("/predict", json=body)
        for _ in range(n):
            start = time.perf_counter()
            r = http.post("/predict", json=body)
            times.append((time.perf_counter() - start) * 1e3)
            errors += r.status_code >= 500
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
            "errors": errors, "requests": n}


def many_clients(url: str, body: dict[str, Any], clients: int, per_client: int
                 ) -> dict[str, float]:
    async def run() -> tuple[list[float], int, float]:
        times: list[float] = []
        errors = 0
        limits = httpx.Limits(max_connections=clients)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
            async def client() -> None:
                nonlocal errors
                for _ in range(per_client):
                    start = time.perf_counter()
                    r = await http.post("/predict", json=body)
                    times.append((time.perf_counter() - start) * 1e3)
                    errors += r.status_code >= 500
            start = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            return times, errors, time.perf_counter() - start
    times, errors, wall = asyncio.run(run())
    return {"throughput_rps": len(times) / wall, "p99_ms": float(np.percentile(times, 99)),
            "errors": errors, "requests": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--json")
    args = parser.parse_args()
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    from workbench import store

    row = [round(float(v), 4) for v in store.get("champion").x_loc]
    body = {"instances": [row]}
    results: dict[str, Any] = {}
    for name, target, workdir in (("predictor", "service:Predictor", ROOT / "bentos/predictor"),
                                  ("floor", "floor:Floor", ROOT / "benchmarks/peers")):
        proc, url = serve(target, workdir)
        try:
            results[name] = {"1 client": one_client(url, body, args.requests),
                             "64 clients": many_clients(url, body, 64, 10)}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    p, f = results["predictor"], results["floor"]
    results["ratios"] = {
        "p50 at 1 client, predictor / floor": p["1 client"]["p50_ms"] / f["1 client"]["p50_ms"],
        "throughput at 64 clients, predictor / floor":
            p["64 clients"]["throughput_rps"] / f["64 clients"]["throughput_rps"]}
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
