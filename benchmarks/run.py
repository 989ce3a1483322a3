"""``make bench``: every figure of benchmarks/RESULTS.md in one run, then rewrite it.

    .venv/bin/python benchmarks/run.py [--quick] [--out benchmarks/RESULTS.md]

1. (d) fit the demo's model with the demo's settings, against NumPyro alone; the fitted
   posterior is stored (aliases ``champion`` and ``challenger``) in a fresh model store
   under ``.workbench/bench`` and served by everything below;
2. (a) the predictive summary in process, against ``jit(Predictive)`` + ``jnp.quantile``;
3. (c), (b), (e) the servers: cold start, latency at 1 client, throughput at 64 clients
   (``bench_http.py``);
4. (f) the Predictor by entity key (Feast) against the same rows as raw features, and the
   feature lookup's share, cache on and off (``bench_features.py``; skipped without Feast);
5. (g) the prediction cache on a repeated-row workload, on and off (``bench_cache.py``);
6. (i) streaming inference on Redis Streams: ``workbench stream`` consumers' latency and
   throughput (``bench_stream.py``; skipped without ``redis-server``);
7. (j) simulation-based calibration of every shipped model at 1,000 simulations
   (``bench_sbc.py``);
8. (k) segment read-outs, pooled against unpooled, on simulated experiments
   (``bench_segments.py``).

Sections of RESULTS.md that no figure here writes (hand-written studies) are kept as they
are, after the generated ones.

Raw numbers go to ``.workbench/bench/results.json``; RESULTS.md is written from them.
``--quick`` takes fewer repeats (a smoke run; its spreads are wide).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))


def log(message: str) -> None:
    print(message, flush=True)


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    packages = ("jax", "numpyro", "bentoml", "fastapi", "uvicorn", "starlette", "aiohttp") + tuple(
        p for p in ("feast", "ray") if importlib.util.find_spec(p))
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                / 2**30, 1),
            "versions": {p: version(p) for p in packages} | {"workbench": version("workbench")},
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                     capture_output=True, text=True).stdout.strip(),
            "load_average_at_start": os.getloadavg()}


def fresh_workdir(path: str) -> Path:
    """An emptied work directory that holds the run's model store and state, set as
    ``BENTOML_HOME``/``WORKBENCH_HOME`` for this process and the servers it starts."""
    workdir = Path(path)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    os.environ["BENTOML_HOME"] = str(workdir / "bentoml")
    os.environ["WORKBENCH_HOME"] = str(workdir)
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    # The figures are the serving path's; the peers have no access control to match, and
    # the load generator has no key (access control is tested in tests/e2e/test_access.py).
    os.environ["WORKBENCH_AUTH"] = "off"
    return workdir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--workdir", default=str(ROOT / ".workbench" / "bench"))
    parser.add_argument("--render", metavar="RESULTS_JSON",
                        help="only rewrite RESULTS.md from a run's results.json")
    args = parser.parse_args()
    if args.render:
        Path(args.out).write_text(render(json.loads(Path(args.render).read_text()),
                                         kept=_read(args.out)))
        return
    workdir = fresh_workdir(args.workdir)
    os.environ.pop("WORKBENCH_MODELS", None)
    started = time.time()
    command = "make bench" + (" BENCH_ARGS=--quick" if args.quick else "")
    results: dict[str, Any] = {"command": command, "machine": machine(),
                               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "quick": args.quick}
    log(f"bench: {results['machine']['cpu']}, {results['machine']['cores']} cores; "
        f"store and logs in {workdir}")

    import bench_compute
    import bench_fit
    import bench_http

    from workbench import store

    log("(d) MCMC fit time of the demo model (demo settings), workbench.fit vs NumPyro alone")
    results["fit"], posterior = bench_fit.run(1 if args.quick else 2, log=log)
    tag = store.save(posterior, alias="champion", force=True)
    store.set_alias("challenger", tag, force=True)
    log(f"  stored {tag} as champion and challenger")

    log("(a) summary compute in process, workbench.predict vs jit(Predictive)+jnp.quantile")
    results["compute"] = bench_compute.run(20 if args.quick else 50)["figures"]
    for name, fig in results["compute"].items():
        log(f"  {name}: {fig['speedup']:.1f}x")

    log("(c), (b), (e) servers: cold start, 1 client, 64 clients")
    row = [round(float(v), 4) for v in posterior.x_loc]
    results["http"] = bench_http.run(
        row, workdir, log=log, **({"rounds": 2, "cold_rounds": 2, "requests": 150,
                                   "seconds": 2.0} if args.quick else {}))
    log("(f) Predictor by entity key (Feast) against raw features; the lookup's share")
    if importlib.util.find_spec("feast") is None:
        log("  skipped: Feast is not installed (pip install 'workbench[features]')")
    else:
        import bench_features

        results["features"] = bench_features.run(
            workdir, log=log, **(bench_features.QUICK if args.quick else {})
        ) | {"quick": args.quick}
    log("(g) prediction cache: repeated rows, cache on and off")
    import bench_cache

    results["cache"] = bench_cache.run(
        workdir, log=log, **(bench_cache.QUICK if args.quick else {})) | {"quick": args.quick}
    log("(i) streaming inference on Redis Streams (workbench stream)")
    if shutil.which("redis-server") is None and not Path("/usr/sbin/redis-server").exists():
        log("  skipped: redis-server is not installed (apt-get install redis-server)")
    else:
        import bench_stream

        results["stream"] = bench_stream.run(
            "champion", **({"seconds": 3, "burst": 3_000} if args.quick else {}))
    log("(j) simulation-based calibration of the shipped models (workbench.sbc)")
    import bench_sbc

    results["sbc"] = bench_sbc.run(workdir / "sbc", log=log,
                                   **(bench_sbc.QUICK if args.quick else {}))
    log("(k) segment read-outs, pooled against unpooled (workbench.segment_sim)")
    import bench_segments

    results["segments"] = bench_segments.run(workdir / "segments", log=log,
                                             **(bench_segments.QUICK if args.quick else {}))
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["minutes"] = round((time.time() - started) / 60, 1)
    (workdir / "results.json").write_text(json.dumps(results, indent=2))
    Path(args.out).write_text(render(results, kept=_read(args.out)))
    log(f"bench: done in {results['minutes']} min; wrote {args.out} and "
        f"{workdir / 'results.json'}")
    for row_ in summary(results):
        log("  " + " | ".join(str(c) for c in row_))


# -- RESULTS.md ----------------------------------------------------------------------------

def ms(spread: dict[str, Any], digits: int = 2) -> str:
    return f"{spread['median']:.{digits}f} ms (IQR {spread['iqr']:.{digits}f})"


def summary(r: dict[str, Any]) -> list[list[str]]:
    """Rows: figure, subject, peer, ratio, target, verdict."""
    c, h, f = r["compute"], r["http"], r["fit"]
    one, many, cold = h["one_client"], h["many_clients"], h["cold_start_s"]
    big = c["256 rows x 1000 draws"]
    p50 = {n: v["p50_ms"]["median"] for n, v in one.items()}
    rps = {n: v["throughput_rps"]["median"] for n, v in many.items()}
    gw = h["paired"]["gateway - predictor p50 ms"]["median"]
    ours_errors = sum(one[n]["errors"] + many[n]["errors"] for n in
                      ("predictor", "gateway", "gateway (log off)", "gateway (async acks)",
                       "gateway (arms via Predictor)") if n in one)

    def verdict(ok: bool, miss: str) -> str:
        return "met" if ok else f"**missed** ({miss})"

    ratio_p50 = p50["predictor"] / p50["floor"]
    ratio_rps = rps["predictor"] / rps["floor"]
    classic = rps["predictor"] / rps["fastapi classic"]
    return [
        ["(a) compute 256×1000", f"{big['workbench']['median_ms']:.2f} ms",
         f"jit(Predictive)+jnp.quantile {big['jit(Predictive)+jnp.quantile']['median_ms']:.1f} ms",
         f"{big['speedup']:.1f}× faster", "≥ 10× faster, equal to 1e-5",
         verdict(big["speedup"] >= 10 and big["max_abs_difference"] < 1e-5,
                 f"{10 / big['speedup']:.2f}× short")
         + f"; max difference {big['max_abs_difference']:.1e}"],
        ["(a) compute 1×1000", f"{c['1 rows x 1000 draws']['workbench']['median_ms']:.2f} ms",
         f"{c['1 rows x 1000 draws']['jit(Predictive)+jnp.quantile']['median_ms']:.2f} ms",
         f"{c['1 rows x 1000 draws']['speedup']:.2f}× faster", "—", "—"],
        ["(b) Predictor p50, 1 client", f"{p50['predictor']:.2f} ms",
         f"floor {p50['floor']:.2f} ms", f"{ratio_p50:.2f}×", "≤ 1.5× floor",
         verdict(ratio_p50 <= 1.5, f"by {ratio_p50 / 1.5:.2f}×, "
                                   f"{p50['predictor'] - 1.5 * p50['floor']:.2f} ms")],
        ["(b) Predictor throughput, 64 clients", f"{rps['predictor']:.0f} req/s",
         f"floor {rps['floor']:.0f} req/s", f"{ratio_rps:.2f}×", "≥ 0.7× floor",
         verdict(ratio_rps >= 0.7, f"{ratio_rps / 0.7:.2f} of target")],
        ["(b) Predictor throughput vs classic", f"{rps['predictor']:.0f} req/s",
         f"FastAPI+Predictive {rps['fastapi classic']:.2f} req/s", f"{classic:.0f}×",
         "≥ 100×", verdict(classic >= 100, f"{classic / 100:.2f} of target")],
        ["(b) gateway overhead, p50 1 client (arms in process)", f"+{gw:.2f} ms",
         f"Predictor direct {p50['predictor']:.2f} ms",
         f"{p50['gateway'] / p50['predictor']:.2f}×", "≤ +1.0 ms",
         verdict(gw <= 1.0, f"by {gw - 1.0:.2f} ms")],
        ["(b) gateway throughput, 64 clients (arms in process)", f"{rps['gateway']:.0f} req/s",
         f"Predictor direct {rps['predictor']:.0f} req/s",
         f"{rps['gateway'] / rps['predictor']:.2f}×", "≥ 0.8× Predictor",
         verdict(rps["gateway"] >= 0.8 * rps["predictor"],
                 f"{rps['gateway'] / rps['predictor'] / 0.8:.2f} of target")],
    ] + ([
        ["(b) gateway overhead, p50 1 client (arms via Predictor)",
         f"+{h['paired']['gateway (arms via Predictor) - predictor p50 ms']['median']:.2f} ms",
         f"Predictor direct {p50['predictor']:.2f} ms",
         f"{p50['gateway (arms via Predictor)'] / p50['predictor']:.2f}×", "—", "—"],
        ["(b) gateway throughput, 64 clients (arms via Predictor)",
         f"{rps['gateway (arms via Predictor)']:.0f} req/s",
         f"Predictor direct {rps['predictor']:.0f} req/s",
         f"{rps['gateway (arms via Predictor)'] / rps['predictor']:.2f}×", "—", "—"],
    ] if "gateway (arms via Predictor)" in p50 else []) + [

        ["(b) errors (Predictor, gateway)", str(ours_errors), "—", "—", "0",
         verdict(ours_errors == 0, f"{ours_errors} errors")],
    ] + [row for name, target in (("predictor", 10), ("gateway", 12)) for row in (
        [f"(c) first start to ready, {name} (empty compilation cache)",
         f"{cold[name].get('first', cold[name]['median']):.1f} s",
         f"floor {cold['floor'].get('first', cold['floor']['median']):.1f} s",
         f"{cold[name].get('first', 1) / cold['floor'].get('first', 1):.1f}×", "reported",
         "—"],
        [f"(c) restart to ready, {name} (compilation cache warm)",
         f"{cold[name]['median']:.1f} s", f"floor {cold['floor']['median']:.1f} s",
         f"{cold[name]['median'] / cold['floor']['median']:.1f}×", f"≤ {target} s",
         verdict(cold[name]["median"] <= target,
                 f"by {cold[name]['median'] - target:.1f} s")])] + [
        ["(d) MCMC fit, demo model and settings", f"{f['workbench.fit']['median_s']:.1f} s",
         f"NumPyro MCMC alone {f['numpyro MCMC alone']['median_s']:.1f} s",
         f"{f['ratio']:.2f}×", "—", "—"],
        ["(e) event log, gateway p50 1 client", f"{p50['gateway']:.2f} ms (on)",
         f"{p50['gateway (log off)']:.2f} ms (off)",
         f"{p50['gateway'] / p50['gateway (log off)']:.2f}×", "—", "—"],
        ["(e) event log, gateway throughput 64 clients", f"{rps['gateway']:.0f} req/s (on)",
         f"{rps['gateway (log off)']:.0f} req/s (off)",
         f"{rps['gateway'] / rps['gateway (log off)']:.2f}×", "—", "—"],
    ] + ([["(e) durable acks, gateway p50 1 client", f"{p50['gateway']:.2f} ms (durable)",
           f"{p50['gateway (async acks)']:.2f} ms (async)",
           f"{p50['gateway'] / p50['gateway (async acks)']:.2f}×", "—", "—"],
          ["(e) durable acks, gateway throughput 64 clients",
           f"{rps['gateway']:.0f} req/s (durable)",
           f"{rps['gateway (async acks)']:.0f} req/s (async)",
           f"{rps['gateway'] / rps['gateway (async acks)']:.2f}×", "—", "—"]]
         if "gateway (async acks)" in p50 else []) + features_summary(r) + cache_summary(r)


def features_summary(r: dict[str, Any]) -> list[list[str]]:
    """Figure (f)'s rows: by entity key, cache on / off, against raw features."""
    if "features" not in r:
        return []
    from bench_features import CACHED, RAW, UNCACHED

    x = r["features"]
    p50 = {n: v["p50_ms"]["median"] for n, v in x["one_client"].items()}
    rps = {n: v["throughput_rps"]["median"] for n, v in x["many_clients"].items()}
    return [
        ["(f) p50 by entity key, 1 client", f"{p50[CACHED]:.2f} ms (cache) / "
         f"{p50[UNCACHED]:.2f} ms (no cache)", f"raw features {p50[RAW]:.2f} ms",
         f"{p50[CACHED] / p50[RAW]:.2f}× / {p50[UNCACHED] / p50[RAW]:.2f}×", "—", "—"],
        [f"(f) throughput by entity key, {x['clients']} clients",
         f"{rps[CACHED]:.0f} req/s (cache) / {rps[UNCACHED]:.0f} req/s (no cache)",
         f"raw features {rps[RAW]:.0f} req/s",
         f"{rps[CACHED] / rps[RAW]:.2f}× / {rps[UNCACHED] / rps[RAW]:.2f}×", "—", "—"],
    ]


def cache_summary(r: dict[str, Any]) -> list[list[str]]:
    if "cache" not in r:
        return []
    import bench_cache

    return bench_cache.summary(r["cache"])


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


LOADGEN = {"hey": " (Debian's Go load generator; every client sends the first body, a row "
                  "with one unit: it leaves more of the cores to the server than a Python "
                  "client would)",
           "aiohttp": " (`hey` not installed: a Python client sharing the cores with the "
                      "server)"}
LABELS = {"jax": "JAX", "numpyro": "NumPyro", "bentoml": "BentoML", "feast": "Feast",
          "ray": "Ray"}


def machine_note(r: dict[str, Any], *packages: str) -> str:
    """The machine and ``packages``' versions, for a figure's module run alone (``make
    bench`` states them at the top); empty when ``r`` has no machine."""
    m = r.get("machine")
    if not m:
        return ""
    names = ", ".join(f"{LABELS.get(p, p)} {m['versions'].get(p, '?')}" for p in packages)
    return (f"; {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, working tree on "
            f"`{m['commit']}`; {names}")


def standalone(script: str, run: Callable[..., dict[str, Any]],
               render: Callable[[dict[str, Any], str], str], quick: dict[str, Any],
               workdir: str) -> None:
    """``main`` of a figure's module: run it alone (``--quick``, ``--json``, ``--markdown``,
    ``--workdir``, default ``.workbench/WORKDIR``), print its figures and its section."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--markdown", help="write the RESULTS.md section here")
    parser.add_argument("--workdir", default=str(ROOT / ".workbench" / workdir))
    args = parser.parse_args()
    path = fresh_workdir(args.workdir)
    os.environ.pop("WORKBENCH_MODELS", None)
    out = run(path, **(quick if args.quick else {})) | {"quick": args.quick,
                                                         "machine": machine()}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    section = render(out, f".venv/bin/python benchmarks/{script}" + " --quick" * args.quick)
    print(section)
    if args.markdown:
        Path(args.markdown).write_text(section)


def _read(path: str) -> str:
    return Path(path).read_text() if Path(path).exists() else ""


def kept_sections(previous: str, generated: str) -> str:
    """The ``## `` sections of ``previous`` whose titles ``generated`` does not have."""
    titles = set(re.findall(r"^## (.+)$", generated, flags=re.M))
    parts = re.split(r"^(?=## )", previous, flags=re.M)
    return "".join(p for p in parts[1:] if p.split("\n", 1)[0][3:] not in titles)


def render(r: dict[str, Any], kept: str = "") -> str:
    """RESULTS.md from a run's results, then the sections of ``kept`` (the file as it was)
    that the run does not write."""
    text = _render(r)
    extra = kept_sections(kept, text)
    return text + ("\n" + extra.rstrip() + "\n" if extra else "")


def _render(r: dict[str, Any]) -> str:
    m, h, f, c = r["machine"], r["http"], r["fit"], r["compute"]
    v = m["versions"]
    one, many, cold = h["one_client"], h["many_clients"], h["cold_start_s"]
    per_round = one["predictor"]["requests"] // max(1, one["predictor"]["rounds"])
    rounds1, rounds64 = one["predictor"]["rounds"], many["predictor"]["rounds"]
    settings = f["settings"]
    rps_on = many["gateway"]["throughput_rps"]["median"]
    rps_off = many["gateway (log off)"]["throughput_rps"]["median"]
    rps_async = many.get("gateway (async acks)", {}).get("throughput_rps", {}).get("median")
    out = [f"""# Benchmark results

Written by `{r['command']}` (`benchmarks/run.py`) on {r['date']}, commit `{m['commit']}`,
in {r['minutes']} minutes{' (**quick run**: few repeats, wide spreads)' if r['quick'] else ''}.
Every figure is measured against its peer **in the same run**; medians with interquartile
ranges (IQR) over repeats or rounds, which alternate between subject and peers.

Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, no GPU; {m['platform']}.
Shared with other engineers' test suites: load average {m['load_average_at_start'][0]:.2f} at
the start, {m['load_average_at_end'][0]:.2f} at the end. Python {m['python']}, JAX {v['jax']},
NumPyro {v['numpyro']}, BentoML {v['bentoml']}, FastAPI {v['fastapi']}, uvicorn
{v['uvicorn']}, Starlette {v['starlette']}, aiohttp {v['aiohttp']} (a load generator),
{f"Feast {v['feast']}, " if 'feast' in v else ''}workbench {v['workbench']}.

## Summary

""" + table(["figure", "workbench", "peer", "ratio", "target", "verdict"], summary(r)),
        """
## (a) Posterior-predictive summary compute

Command: `.venv/bin/python benchmarks/bench_compute.py --repeats 50` (run by `make bench`).
Per row: mean, std and central 90% interval of P(positive) over 1000 draws of a
30-feature logistic regression, in process. Peer: `jax.jit` of NumPyro `Predictive`
(a deterministic `p` site) followed by `jnp.quantile`; the two answers are checked to agree
to 1e-5. Calls alternate between the two.

""" + table(["rows × draws", "workbench.predict", "jit(Predictive) + jnp.quantile",
             "speed-up", "max abs. difference"],
            [[k.replace(" rows x ", " × ").replace(" draws", ""),
              f"{x['workbench']['median_ms']:.2f} ms (IQR {x['workbench']['iqr_ms']:.2f})",
              f"{x['jit(Predictive)+jnp.quantile']['median_ms']:.2f} ms "
              f"(IQR {x['jit(Predictive)+jnp.quantile']['iqr_ms']:.2f})",
              f"{x['speedup']:.1f}×", f"{x['max_abs_difference']:.1e}"]
             for k, x in c.items()]) + """

Why: XLA's sort on CPU is the peer's cost (sorting 256 × 1000 float32 takes tens of ms in
XLA against ~1 ms in NumPy's SIMD sort), so on CPU the workbench computes the draws and
moments in one jitted call and takes the quantiles with `np.sort` on the host (same linear
interpolation); on a GPU the quantiles stay on device. At one row both are dominated by
dispatch overhead.
""",
        f"""
## (b) HTTP latency and throughput

Command: `make bench` (`benchmarks/bench_http.py`, servers from the store that
`benchmarks/run.py` fills). Every server runs on loopback in its own process group, all
started in this run, and is measured alone: the others are paused (SIGSTOP) meanwhile, so
their idle timers stay out of its figures; the load generator runs on the same
{m['cores']} cores. 1 client: one
kept-alive connection (`http.client`), up to {per_round} requests per round, {rounds1}
rounds; {h['clients']} clients: `{h.get('load_generator', 'aiohttp')}`{LOADGEN.get(
    h.get('load_generator'), '')}, a fixed time per round, {rounds64} rounds (the classic
template: one round each, as it takes seconds per request).
Body: one row of 30 features (the training mean); the gateway's also carries a `unit`.
Errors: any answer other than 200, or a failed connection.

- **predictor**: `bentoml serve service:Predictor --working-dir bentos/predictor
  --arg models=champion`
- **gateway**: `bentoml serve service:Experiment --working-dir bentos/experiment`, a 50/50
  experiment whose two arms are the same model, served in the gateway's process (so it
  differs from *predictor* only by the gateway: assignment, validation, the event log);
  **gateway (log off)**: the same with `WORKBENCH_EVENT_LOG=off`; **gateway (async acks)**
  with `WORKBENCH_EVENT_ACK=async`; **gateway (arms via Predictor)** with
  `WORKBENCH_ARMS=predictor` (the arms in a Predictor process: one more HTTP hop)
- **floor** (`peers/floor.py`): a BentoML async endpoint doing no work, same request and
  response shape, same declared media type as the Predictor
- **starlette echo** (`peers/starlette_echo.py`): bare Starlette under uvicorn, no framework
- **fastapi classic** (`peers/fastapi_classic.py`): the classic template, FastAPI + uvicorn
  calling NumPyro `Predictive` per request on the same posterior
- **naive bento** (`peers/naive_bento.py`): BentoML defaults, synchronous API,
  `jit(Predictive)` + `jnp.quantile`, no shape buckets

""" + table(["server", "p50, 1 client", "p99, 1 client", "errors, 1 client",
             f"throughput, {h['clients']} clients", f"p99, {h['clients']} clients",
             f"errors, {h['clients']} clients"],
            [[n, ms(one[n]["p50_ms"]), ms(one[n]["p99_ms"], 1),
              f"{one[n]['errors']} / {one[n]['requests']}",
              f"{many[n]['throughput_rps']['median']:.1f} req/s "
              f"(IQR {many[n]['throughput_rps']['iqr']:.1f})",
              f"{many[n]['p99_ms']['median']:.0f} ms",
              f"{many[n]['errors']} / {many[n]['requests']}"] for n in h["servers"]])
        + "\n\nPaired per round (servers measured back to back): " + "; ".join(
            f"{k}: {x['median']:.2f} (IQR {x['iqr']:.2f})" for k, x in h["paired"].items())
        + ".\n" + CLASSIC_ERRORS * bool(many["fastapi classic"]["errors"]),
        """
## (c) Cold start to ready

Process start (`Popen`) until `/readyz` first answers 200 (polled every 50 ms), each server
started alone. The Predictor is ready only once every shape bucket is compiled (or loaded
from JAX's persistent compilation cache); the naive bento and the classic template are
ready before compiling anything (their first request pays it); the gateway compiles its
arms' models in its own process, or waits for its Predictor process (arms via Predictor).
**First start**: each server with an empty compilation cache of its own; **restart**: the
later starts, with the cache the first one filled (median and IQR over restarts).

""" + table(["server", "first start", "restart, median", "IQR", "all runs (s)"],
            [[n, f"{x.get('first', x['all'][0]):.1f} s", f"{x['median']:.1f} s",
              f"{x['iqr']:.1f} s", ", ".join(f"{s:.1f}" for s in x["all"])]
             for n, x in cold.items()]),
        f"""
## (d) MCMC fit time

Command: `.venv/bin/python benchmarks/bench_fit.py --repeats 2` (run by `make bench`). The
demo's model with the demo's settings: logistic regression on breast_cancer (455 training
rows, 30 features), NUTS, {settings['chains']} chains × {settings['warmup']} warmup +
{settings['samples']} draws, chains {settings['chain_method']} (one CPU device). Peer: NumPyro's
`MCMC(NUTS)` alone on the same standardised rows; `workbench.fit` also computes R-hat and
ESS (ArviZ) and held-out scores (which compiles a Predictor). Alternating runs.

""" + table(["", "median", "IQR", "runs (s)"],
            [[k, f"{f[k]['median_s']:.1f} s", f"{f[k]['iqr_s']:.1f} s",
              ", ".join(f"{s:.1f}" for s in f[k]["all_s"])]
             for k in ("workbench.fit", "numpyro MCMC alone")])
        + f"\n\nRatio {f['ratio']:.2f}×. Diagnostics of the fitted posterior: "
        + ", ".join(f"{k} {x:.3g}" for k, x in f["diagnostics"].items()) + ".\n",
        """
## (e) The event log's cost on the gateway

The same gateway with its SQLite event log on (default: durable acknowledgements, a
request is answered once its event is committed, group-committed by one writer thread),
with `WORKBENCH_EVENT_ACK=async` (answered once queued: the log's behaviour before the
durable pipeline; a SIGKILL loses what was queued) and off (`WORKBENCH_EVENT_LOG=off`,
which makes `workbench.writer.EventWriter` a no-op), measured in the same rounds as (b).

""" + table(["", "durable (default)", "async acks", "log off", "durable / off"],
            [["p50, 1 client", ms(one["gateway"]["p50_ms"]),
              ms(one["gateway (async acks)"]["p50_ms"]) if "gateway (async acks)" in one
              else "—", ms(one["gateway (log off)"]["p50_ms"]),
              f"{h['paired']['gateway / gateway (log off) p50']['median']:.2f}× (paired)"],
             [f"throughput, {h['clients']} clients",
              f"{rps_on:.1f} req/s", f"{rps_async:.1f} req/s" if rps_async else "—",
              f"{rps_off:.1f} req/s", f"{rps_on / rps_off:.2f}×"]]),
        features_section(r),
        cache_section(r),
        stream_section(r),
        sbc_section(r),
        segments_section(r),
        "\n" + notes(r),
        "\n## On a GPU\n\nNot part of `make bench` (this machine has no GPU): "
        "`benchmarks/gpu_check.sh` on a lent NVIDIA H100, results in `benchmarks/GPU.md`.\n"]
    return "\n".join(out)


def features_section(r: dict[str, Any]) -> str:
    """Figure (f), or why it is missing."""
    if "features" not in r:
        return ("\n## (f) Rows by entity key (Feast) against raw features\n\nNot measured in "
                "this run (Feast is not installed: `pip install 'workbench[features]'`).\n")
    import bench_features

    return bench_features.render(r["features"], r["command"])


def cache_section(r: dict[str, Any]) -> str:
    """Figure (g), when measured."""
    if "cache" not in r:
        return ""
    import bench_cache

    return bench_cache.render(r["cache"], r["command"])


def stream_section(r: dict[str, Any]) -> str:
    """Figure (i), or why it is missing."""
    title = "\n## (i) Streaming inference on Redis Streams (`workbench stream`)\n\n"
    if "stream" not in r:
        return title + "Not measured in this run (`redis-server` is not installed).\n"
    import bench_stream

    return title + bench_stream.render(r["stream"], r["command"])


def sbc_section(r: dict[str, Any]) -> str:
    """Figure (j), when measured."""
    if "sbc" not in r:
        return ""
    import bench_sbc

    return bench_sbc.render(r["sbc"], r["command"])


def segments_section(r: dict[str, Any]) -> str:
    """Figure (k), when measured."""
    if "segments" not in r:
        return ""
    import bench_segments

    return bench_segments.render(r["segments"], r["command"])


CLASSIC_ERRORS = """
The classic template's errors at 64 clients are its own, not the load generator's: its
endpoint is a plain `def`, so FastAPI runs requests on a thread pool, and NumPyro's
effect-handler stack is a module-level global, so concurrent `Predictive` calls corrupt
each other's traces (HTTP 500, "all sites must have unique names but got `intercept`
duplicated" in its log). The workbench traces once per shape bucket at start and calls
compiled code afterwards, so it has no such race.
"""


def notes(r: dict[str, Any]) -> str:
    """What was profiled and fixed, and, for each target this run missed, why and what
    would close it."""
    rows = {row[0]: row for row in summary(r)}
    missed = [name for name, row in rows.items() if row[-1].startswith("**missed**")]
    text = [PROFILE]
    if missed:
        text.append("### Targets missed in this run\n")
        for name in missed:
            why = next((v for k, v in WHY.items() if name.startswith(k)), "")
            row = rows[name]
            text.append(f"- **{name}**: {row[1]} against {row[2]} ({row[3]}); target "
                        f"{row[4]}; missed {row[5][len('**missed** '):]}. {why}\n")
    else:
        text.append("Every target was met in this run.\n")
    return "\n".join(text)


PROFILE = """## Profile and fixes

**Profiled** with py-spy (as root) on the Predictor's worker process while one client sent
requests in a loop (`bentoml serve` forks the worker: its pid is the child of the
`bentoml` process), and the same on the gateway's two workers under gateway traffic:

    .venv/bin/py-spy record -p <worker pid> -d 18 -r 200 -f raw -o pred.raw --threads --idle

*Predictor, before the fix*: the event loop's thread was busy ~65% of the wall time, the
batcher thread computing the summary ~2%. Of the loop's busy time, ~17% was BentoML
building a JSON schema for **every response** (`IOMixin.to_http_response` → `mime_type()`
→ `IORootModel.model_json_schema()` → pydantic `TypeAdapter.json_schema`) only to learn
that a `dict` is `application/json`; ~10% the socket write of the response; the hop to the
batcher thread and back (`run_in_executor`, then `call_soon_threadsafe`'s self-pipe)
~8% of the batcher thread's time; validation and `records()` ~2% each; the rest BentoML,
uvicorn, OpenTelemetry, Prometheus and access-log middleware, which the floor pays too.

**Fixed**: the `/predict` endpoints of the Predictor and the gateway declare their media
type (`Annotated[dict[str, Any], ContentType("application/json")]`, BentoML's public
validator), which skips that schema generation; nothing else changes (same JSON, same
validation, same errors). The floor declares it too, so its ratio is not flattered.

**Tried, undone, then done right** (issue 17): running a small request on the event loop
instead of hopping to the batcher's thread. First tried at submit time, whenever the
batcher was idle: with nine servers up, A/B runs disagreed in sign. With the servers
measured alone (the others paused), it gained 0.146 ms at one client (Predictor p50 0.626
against 0.769 ms, 10 of 10 rounds) but cost 37% of the Predictor's and the gateway's
throughput at 64 clients (hey: each request found the batcher idle for an instant and ran
alone, so nothing batched). Now the choice is made by the batcher's drain, after the
requests that arrived together have queued: a batch of one request of at most 8 rows, with
nothing queued behind it, runs on the loop (`MicroBatcher(inline_rows=)`); a crowd is
batched on the worker as before. A/B (`benchmarks/ab_http.py`, hey, 8 rounds): one client
−0.134 ms (0.643 against 0.775 ms); 64 clients unchanged (Predictor 1507 against 1504
req/s; gateway 1188 against 1118, with the next two fixes).

**Fixed** (issue 17), from a py-spy profile at 64 clients:
- BentoML computes `inspect.signature` of the API function on every request
  (`APIMethod.__get__`); both services set each API function's `__signature__` once
  (`predictor_service.signatures`), ~10 µs a request. The floor, a plain BentoML service,
  does not.
- With its arms in process, the gateway handed the Predictor its checked rows as lists,
  which it converted and checked again; it now passes the float32 array (over HTTP,
  `arms.over_http` turns it into lists), and routes by weights computed once per state
  read, not per request.

**Found by this benchmark and fixed**: at 64 clients the gateway logged dozens of
retried Predictor calls ("Connector is closed") and one request whose answer never came,
a 503 after 30 s. BentoML 1.4's client behind `bentoml.depends` replaces its aiohttp
session every 100 requests by closing the old one while other requests are in flight on
it. The gateway now keeps one session (`workbench.arms.keep_one_session`, with a unit
test that notices if BentoML moves it); checked after the fix (3 × 4 s at 64 clients):
no retries, no errors, p99 0.7–0.85 s where the run before had 1.2–1.4 s.

**Found and fixed** (issue 17), the largest cost of all: **garbage collection**. Under 64
clients, both services stopped the world for a full collection every ~800 requests, each
~170 ms long: it walked the ~320,000 objects that importing JAX, NumPyro and BentoML and
compiling the models had made, which never die. The p99 at 64 clients (~230 ms) was one
such pause. Objects of the requests in flight (64 at once) live through young collections
and fill the oldest generation, which is what triggered them so often. Found with
`gc.callbacks` timing each collection and `gc.get_objects()` counting the tracked objects
by type in the gateway's worker. Three changes:
- `workbench.gc_tuning.freeze_startup`, called once the models are compiled: one
  collection, then `gc.freeze()`, so later collections skip everything alive at startup (a
  full collection now takes ~3 ms), and young collections every 10,000 allocations instead
  of 700. A/B (`ab_http.py`, hey, 64 clients, 5 rounds): the Predictor 1705 → 2883 req/s,
  the gateway 1368 → 2039 req/s with the freeze alone; the young threshold then added ~10%
  to the gateway and ~5% to the Predictor. The p99 fell from ~230 ms to ~30 ms. The floor,
  a plain BentoML service, has neither this nor the next fix: it keeps its ~230 ms p99,
  and part of the Predictor's throughput lead over it in (b) is these fixes.
- BentoML's `TimeoutMiddleware` schedules a timer per request (`loop.call_later(timeout,
  ...)`) and never cancels it: each answered request left a timer, a future and a context
  alive for the whole `traffic.timeout` (60 s on the gateway, 30 s on the Predictor), i.e.
  ~120,000 objects at 2,000 req/s, which every full collection walked.
  `workbench.bentoml_fixes` cancels it once the response has started (same 504 behaviour;
  `tests/test_bentoml_fixes.py` fails without it).
- The event writer: a request's wait for its event to become durable had a timer of its
  own (`asyncio.timeout`, ~4 µs of the event loop per request); the deadlines are now swept
  a few times a second (`workbench.acks`); the writer's per-row metric updates are one per
  batch, and an event not yet written is kept as its row, not copied. With the gateway's
  per-(arm, status) request counter looked up once, the gateway's throughput went from
  0.819× to 0.852× the Predictor's (`ab_http.py`, hey, 64 clients, 8 rounds of 8 s).

*Gateway*, with its arms in process: its event loop spends its time in BentoML's
per-request machinery (the Predictor's too), in the gateway's own code (unit check,
assignment, validation, the event row: ~15 µs a request, timed with `time.thread_time`
around each step in the worker under 64 clients) and in the durable event log: without it
(*gateway (log off)*) the gateway served ~0.87–0.90× the Predictor in A/B runs where the
full gateway served ~0.82×. Calling the in-process model straight from the API function,
past the gateway, served ~0.97–1.0× the Predictor: what the gateway costs is its own work.
"""

WHY = {
    "(a) compute": "Both sides are in one process on the shared cores; the peer's XLA sort "
    "and our NumPy sort suffer differently from other processes' load. On a quiet run the "
    "ratio was 13–16× (the same script run alone earlier today, and the run recorded before "
    "this one).",
    "(b) Predictor p50": "What is left over the floor is the Predictor's real work per "
    "request, which the floor does not do: validation, the jitted summary (figure (a): "
    "1 row × 1000 draws in process), host quantiles and the response records (a lone small "
    "request no longer hops to the batcher's thread). Closing it would take a one-row "
    "path without `jax.jit`'s Python dispatch (an ahead-of-time compiled executable) and a "
    "faster event loop and JSON encoder for the whole service (uvloop, orjson: BentoML's "
    "choice, not ours). The ratio moves with the machine's load: 1.4–1.6× in the three-server "
    "A/B runs before this one, ~2× per round in full runs with all nine processes up; it "
    "was 2.40× before the media-type fix, against a floor that then paid the schema cost "
    "too.",
    "(b) Predictor throughput": "At 64 clients the load generator, the server's event loop "
    "and XLA's compute threads share the same 2 cores; the floor does no work, so every "
    "cycle the Predictor spends computing (padded to its shape bucket: a batch of 17 rows "
    "computes 64) or encoding a larger response is taken from request handling. Closing it: "
    "finer buckets between 16 and 64 rows (e.g. 32, 48; each costs compile time at start), "
    "the load generator on another machine, or more cores.",
    "(b) Predictor throughput vs classic": "The classic template's throughput is a few "
    "requests per second because `Predictive` re-traces the model on every call; the ratio "
    "is bounded by our own throughput on 2 shared cores (see the row above).",
    "(b) gateway overhead": "With the arms in the gateway's process the hop is gone; what "
    "is left over the Predictor is the gateway's own work (unit check, assignment, the "
    "event row) and, above all, the durable acknowledgement: the answer waits for the "
    "writer thread to commit the request's event (one more thread wake-up each way on "
    "2 shared cores). Compare *gateway (log off)* and *gateway (async acks)* in the table: "
    "they sit at the Predictor's p50. `WORKBENCH_EVENT_ACK=async` trades that wait for a "
    "window in which an acknowledged event is only in memory.",
    "(b) gateway throughput": "At 64 clients the gateway's event loop is the bottleneck, "
    "as the Predictor's is, and it does the Predictor's work plus its own: ~15 µs a request "
    "of its own code (unit check, assignment, the event row) and the durable event log "
    "(the enqueue, the wait and the writer thread's commits, under the GIL on the same 2 "
    "cores): compare *gateway (log off)* in the table. The ratio moves with the machine: "
    "0.78–0.89 per round in the run that met it. Garbage collection set for serving "
    "(`workbench.gc_tuning`) raised both services' throughput ~1.6×; see Profile and "
    "fixes.",
    "(b) errors": "See the server logs under `.workbench/bench/logs`.",
    "(c) restart": "A restart loads every shape bucket from JAX's persistent compilation "
    "cache instead of compiling it; what is left is importing JAX, NumPyro and BentoML, "
    "loading the posterior and BentoML's own start (the floor's time).",
}


if __name__ == "__main__":
    main()
