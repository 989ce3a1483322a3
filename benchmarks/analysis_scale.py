"""The read-out at scale: ``workbench.readout.read_out`` wall time and peak memory on
synthetic event stores of growing size, for this checkout and for a peer checkout (the
read-out before issue 14: every event in memory, a draws x rows Dirichlet matrix).

    git -C . archive HEAD src | tar -x -C /tmp/old_workbench   # the peer, once
    .venv/bin/python benchmarks/analysis_scale.py --peer /tmp/old_workbench/src \\
        [--sizes 10000,100000,1000000] [--repeats 3] [--cap-gb 8] [--json out.json]
    .venv/bin/python benchmarks/analysis_scale.py --prune [--sizes ...]

Stores (SQLite files under a temporary directory, written once per size and metric by
bulk ``INSERT``s into the schema ``workbench.events.engine`` creates): one experiment of N
prediction events, 3 arms (34/33/33%), binary-classifier summaries (mean, std, interval,
class probabilities, label; the inputs as a hash), 1% fallbacks, a shadow beside 10% of
requests, outcomes (0/1) for 50% of requests; metric ``binary`` or ``log_score`` (2 arms).

Every measurement is a fresh Python process (imports excluded from the time, included in
the peak RSS: ``VmHWM``) with its address space capped at ``--cap-gb`` (RLIMIT_AS); a
process that fails to allocate is reported as out of memory at the cap. Medians over ``--repeats``
(runs of the two implementations alternate); a peer run out of memory is not repeated.
Prints a Markdown table. With ``--prune``: ``workbench events prune`` (the Python call) of
the older half of each store, folded into the aggregate, timed in a fresh process, with a
read-out before and after (same decision and counts?).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"
T0 = 1_700_000_000.0

WORKER = r"""
import json, resource, sys, time

def peak_mb():  # VmHWM: this process's peak RSS since exec (ru_maxrss would include the
    # parent's RSS at fork: Linux carries the old address space's high-water mark over exec)
    with open("/proc/self/status") as fh:
        return next(int(x.split()[1]) for x in fh if x.startswith("VmHWM:")) / 1024

cap = int(float(sys.argv[3]) * 2**30)
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
out = {}
try:
    from workbench import events, readout
    eng = events.engine(sys.argv[1])
    out["rss_before_mb"] = peak_mb()
    start = time.perf_counter()
    result = readout.read_out(eng, sys.argv[2])
    out["seconds"] = time.perf_counter() - start
    out["decision"] = result.decision["status"]
    out["outcomes"] = [a.outcomes for a in result.arms]
except MemoryError:
    out["oom"] = True
out["peak_rss_mb"] = peak_mb()
print("RESULT " + json.dumps(out))
"""


def synthesize(path: Path, n: int, metric: str, seed: int = 0) -> str:
    """Write a store of ``n`` events of one experiment; returns its URL."""
    url = f"sqlite:///{path}"
    sys.path.insert(0, str(SRC))
    from workbench import events  # the schema of this checkout

    eng = events.engine(url)
    name = f"scale-{metric}"
    arms = ["a", "b", "c"] if metric == "binary" else ["a", "b"]
    events.save_config(eng, name, {"name": name, "metric": metric,
                                   "arms": [{"name": a, "model": f"m-{a}"} for a in arms]})
    eng.dispose()
    rng = np.random.default_rng(seed)
    arm = rng.choice(arms, size=n, p=None if len(arms) == 2 else [0.34, 0.33, 0.33])
    rate = {"a": 0.10, "b": 0.11, "c": 0.105}
    p = np.clip(rng.beta(2, 8, n) + np.vectorize(rate.get)(arm) - 0.2, 0.01, 0.99)
    y = rng.random(n) < p
    observed = rng.random(n) < 0.5
    fallback = (arm != "a") & (rng.random(n) < 0.01)
    shadow = rng.random(n) < 0.1
    latency = rng.gamma(2.0, 4.0, n)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    preds, outs = [], []

    def summary(q: float) -> str:
        return json.dumps([{"mean": q, "std": 0.05, "interval": [max(q - 0.08, 0.0),
                                                                min(q + 0.08, 1.0)],
                            "probabilities": {"no": 1 - q, "yes": q}, "label": "yes"}])

    for i in range(n):
        rid = f"{i:032x}"
        served = "a" if fallback[i] else arm[i]
        q = float(p[i])
        preds.append((rid, None, T0 + i * 0.01, name, served, f"m-{served}:1", f"u{i}",
                      float(latency[i]), "fallback" if fallback[i] else "ok",
                      arm[i] if fallback[i] else None, 1, summary(q),
                      json.dumps({"sha256": rid * 2})))
        if shadow[i]:
            preds.append((f"s{rid[1:]}", rid, T0 + i * 0.01 + 0.001, name, "shadow",
                          "m-shadow:1", f"u{i}", 1.0, "shadow", None, 1,
                          summary(min(max(q + 0.05, 0.01), 0.99)), None))
        if observed[i]:
            outs.append((rid, T0 + i * 0.01 + 60, name, json.dumps(int(y[i]))))
        if len(preds) >= 50_000 or i == n - 1:
            con.executemany("INSERT INTO predictions (request_id, parent_id, ts, experiment, "
                            "arm, model_tag, unit, latency_ms, status, fallback_from, n_rows, "
                            "summary, instances) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", preds)
            con.executemany("INSERT INTO outcomes (request_id, ts, experiment, outcome) "
                            "VALUES (?,?,?,?)", outs)
            con.commit()
            preds, outs = [], []
    con.close()
    return url


PRUNE = r"""
import json, sys, time
from workbench import events, readout, retention

def peak_mb():
    with open("/proc/self/status") as fh:
        return next(int(x.split()[1]) for x in fh if x.startswith("VmHWM:")) / 1024

def key(r):
    return r.decision["status"], [(a.predictions, a.outcomes) for a in r.arms], r.totals

eng = events.engine(sys.argv[1])
before = readout.read_out(eng, sys.argv[2])
start = time.perf_counter()
done = retention.prune(eng, sys.argv[2], float(sys.argv[3]))
out = {"seconds": time.perf_counter() - start, "deleted": done["predictions"]}
start = time.perf_counter()
after = readout.read_out(eng, sys.argv[2])
out |= {"after_seconds": time.perf_counter() - start, "same": key(before) == key(after),
        "same_means": [a.mean for a in before.arms] == [a.mean for a in after.arms],
        "peak_rss_mb": peak_mb()}
print("RESULT " + json.dumps(out))
"""


def measure(src: Path, url: str, experiment: str, cap_gb: float, *,
            prune_before: float | None = None) -> dict[str, Any]:
    """One read-out (or, with ``prune_before``, a prune and the read-outs around it) in a
    fresh process with ``src`` first on its path."""
    env = os.environ | {"PYTHONPATH": str(src), "JAX_PLATFORMS": "cpu"}
    argv = ([sys.executable, "-c", WORKER, url, experiment, str(cap_gb)] if prune_before is None
            else [sys.executable, "-c", PRUNE, url, experiment, repr(prune_before)])
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:  # killed, or an allocation failed outside Python's MemoryError
        oom = "MemoryError" in done.stderr or "bad_alloc" in done.stderr or \
            done.returncode < 0
        return {"oom": oom, "error": None if oom else done.stderr[-2000:]}
    return json.loads(line[len("RESULT "):])


def cell(runs: list[dict[str, Any]], cap_gb: float) -> tuple[str, str]:
    if any(r.get("oom") for r in runs):
        return f"out of memory at the {cap_gb:g} GB cap", "—"
    if any(r.get("error") for r in runs):
        return "failed: " + runs[0]["error"].splitlines()[-1], "—"
    secs = [r["seconds"] for r in runs]
    rss = [r["peak_rss_mb"] for r in runs]
    spread = f" ({min(secs):.2f}–{max(secs):.2f})" if len(secs) > 1 else ""
    return f"{statistics.median(secs):.2f} s{spread}", f"{statistics.median(rss):,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", type=Path,
                        help="src/ of the checkout to compare with (git archive HEAD src)")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--metrics", default="binary,log_score")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cap-gb", type=float, default=8.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--prune", action="store_true",
                        help="Measure `workbench events prune` of the older half instead "
                             "(this checkout only; with the read-outs before and after)")
    args = parser.parse_args()
    if args.peer is None and not args.prune:
        parser.error("--peer is required (unless --prune)")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="analysis-scale-") as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            for metric in args.metrics.split(","):
                start = time.perf_counter()
                url = synthesize(Path(tmp) / f"{metric}-{n}.db", n, metric)
                size = (Path(tmp) / f"{metric}-{n}.db").stat().st_size / 2**20
                print(f"store {metric} {n}: {size:,.0f} MB in "
                      f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
                if args.prune:
                    got = measure(SRC, url, f"scale-{metric}", args.cap_gb,
                                  prune_before=T0 + n * 0.01 / 2)
                    print(f"  prune: {got}", file=sys.stderr)
                    results.append({"events": n, "metric": metric, "store_mb": size, **got})
                    Path(tmp, f"{metric}-{n}.db").unlink()
                    continue
                runs: dict[str, list[dict[str, Any]]] = {"workbench": [], "peer": []}
                for _ in range(args.repeats):
                    for impl, src in (("workbench", SRC), ("peer", args.peer)):
                        if runs[impl] and (runs[impl][-1].get("oom") or
                                           runs[impl][-1].get("error")):
                            continue
                        runs[impl].append(measure(src, url, f"scale-{metric}", args.cap_gb))
                        print(f"  {impl}: {runs[impl][-1]}", file=sys.stderr)
                results.append({"events": n, "metric": metric, "store_mb": size, **runs})
                Path(tmp, f"{metric}-{n}.db").unlink()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.prune:
        print("| events | metric | store | pruned (older half) | prune time | read-out after "
              "| same decision and counts | peak RSS |")
        print("|---|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['events']:,} | {r['metric']} | {r['store_mb']:,.0f} MB | "
                  f"{r['deleted']:,} predictions | {r['seconds']:.1f} s | "
                  f"{r['after_seconds']:.2f} s | {'yes' if r['same'] else 'NO'} | "
                  f"{r['peak_rss_mb']:,.0f} MB |")
        return
    print("| events | metric | store | workbench: time | workbench: peak RSS "
          "| peer: time | peer: peak RSS | same decision |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        new_t, new_m = cell(r["workbench"], args.cap_gb)
        old_t, old_m = cell(r["peer"], args.cap_gb)
        same = ("—" if any(x.get("oom") or x.get("error") for x in r["peer"] + r["workbench"])
                else "yes" if all(x["decision"] == r["peer"][0]["decision"] and
                                  x["outcomes"] == r["peer"][0]["outcomes"]
                                  for x in r["workbench"]) else "NO")
        print(f"| {r['events']:,} | {r['metric']} | {r['store_mb']:,.0f} MB | {new_t} | "
              f"{new_m} | {old_t} | {old_m} | {same} |")


if __name__ == "__main__":
    main()
