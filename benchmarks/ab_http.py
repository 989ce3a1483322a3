"""Interleaved A/B of servers' p50 at one client (or throughput at ``--clients`` N): what
one setting or change is worth.

    .venv/bin/python benchmarks/ab_http.py [--rounds 10] [--clients 64] \\
        NAME=SERVER[:VAR~VALUE,...] ...

Each NAME is a server of ``bench_http.py`` (``predictor``, ``gateway``, ``floor``, ...)
with extra environment variables, e.g.::

    WORKBENCH_AUTH=off .venv/bin/python benchmarks/ab_http.py \\
        off=predictor: on=predictor:WORKBENCH_TRACING~on floor=floor:

All start together (on the model store of the last ``make bench``, ``.workbench/bench``);
then every round measures each server once (300 requests on one kept-alive connection),
in a rotating order, alone (the others paused, as in ``make bench``; with ``--clients``:
N clients for ``--seconds``, from :func:`bench_http.load_generator`). Prints each round's
figures, their medians, and every server's paired difference from (or, for throughput,
ratio to) the first one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import bench_http as b

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("servers", nargs="+", metavar="NAME=SERVER[:VAR~VALUE,...]")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workdir", default=str(ROOT / ".workbench" / "ab"))
    args = parser.parse_args()
    home = ROOT / ".workbench" / "bench"
    os.environ.setdefault("BENTOML_HOME", str(home / "bentoml"))
    os.environ.setdefault("WORKBENCH_HOME", str(home))
    from workbench import store

    row = [round(float(v), 4) for v in store.get("champion").x_loc]
    work = Path(args.workdir)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    known = {s.name: s for s in b.specs(row, work)}
    variants = []
    for arg in args.servers:
        name, _, rest = arg.partition("=")
        server, _, extra = rest.partition(":")
        if server not in known:
            sys.exit(f"unknown server {server!r}; one of {sorted(known)}")
        spec = known[server]
        env = spec.env | dict(kv.split("~", 1) for kv in extra.split(",") if kv)
        variants.append(b.Spec(name, spec.argv, spec.body, env=env))
    running: list[b.Running] = []
    try:
        for spec in variants:
            running.append(b.start(spec, work / "logs"))
            print(f"{spec.name} ready in {running[-1].ready_s:.1f}s", flush=True)
        for server in running:
            b.warm(server, 50)
        many = args.clients > 1
        what = f"req/s at {args.clients} clients ({b.load_generator()})" if many else \
            "p50 ms"
        fig: dict[str, list[float]] = {s.spec.name: [] for s in running}
        for r in range(args.rounds):
            for server in running[r % len(running):] + running[:r % len(running)]:
                alone = b.alone(server, running)
                fig[server.spec.name].append(
                    b.many_clients(alone, args.clients, args.seconds)["throughput_rps"]
                    if many else b.one_client(alone, 300, 6)["p50_ms"])
            print(f"round {r + 1}: " + ", ".join(f"{n} {v[-1]:.3f}" for n, v in fig.items()),
                  flush=True)
        print(f"median {what}: " + ", ".join(f"{n} {statistics.median(v):.3f}"
                                             for n, v in fig.items()))
        first, *others = fig
        for name in others:
            pairs = zip(fig[name], fig[first], strict=True)
            if many:
                ratio = statistics.median(x / y for x, y in pairs)
                print(f"paired {name} / {first}: {ratio:.3f}")
            else:
                diff = statistics.median(x - y for x, y in pairs)
                print(f"paired {name} - {first}: {diff:+.3f} ms")
    finally:
        for server in running:
            b.stop(server.process)


if __name__ == "__main__":
    main()
