"""Figure (h): ``workbench score`` over a 1,000,000-row Parquet file, on the local engine and
on Ray, against ``jax.jit(Predictive)`` over the same rows.

Setup (in this run): figure (a)'s posterior (``bench_compute.posterior``: a 30-feature
logistic regression, 1000 draws) in the run's model store, and Parquet files of random rows
(``customer_id``, ``x0..x29`` as float32, row groups of 65,536 rows) of 1,000,000, 100,000
and 1,000 rows (the last shows the process's fixed cost: imports, compilation).

Every ``workbench score`` is a subprocess measured from outside: wall time, and peak RSS
from ``os.wait4``. Throughput (rows/s, rows × draws/s) of the local engine at two chunk
sizes and of ``--engine ray --workers 2`` (a local cluster on loopback), from the scoring
time the command reports and from wall time; the peer is figure (a)'s classic template
(``bench_compute.classic``: ``jax.jit`` of NumPyro ``Predictive``, then ``jnp.quantile``)
in this process over the same file read in the same chunks, compiled first, writing
nothing, its answers checked against the local engine's to 1e-5. Memory: peak RSS at two
chunk sizes on two file sizes. Checks: the output against ``workbench.predict.Predictor``
on 1,000 random rows (1e-6); Ray's output against the local engine's (1e-6, labels exact,
order reported); a run sent SIGINT once a third of its parts exist, then run again: it
reports the parts it found as "N chunk(s) already done", scores only the rest, and its
output equals an uninterrupted run's.

    .venv/bin/python benchmarks/bench_score.py [--quick] [--json out.json] [--markdown out.md]
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROWS, SMALL, TINY = 1_000_000, 100_000, 1_000
CHUNKS = (16_384, 131_072)
ROW_GROUP = 65_536
QUICK = {"rows": 200_000, "small": 20_000}
TIMEOUT = 1_200


# -- setup ---------------------------------------------------------------------------------

def stored_model() -> tuple[str, Any]:
    """Figure (a)'s posterior, stored in the current model store: (tag, posterior)."""
    import bench_compute

    from workbench import store

    # Independent draws, no sampler: R-hat 1 and ESS the draws' count by construction.
    diagnostics = {"ok": True, "max_rhat": 1.0, "min_ess_bulk": float(bench_compute.DRAWS),
                   "divergences": 0, "failures": []}
    posterior = dataclasses.replace(bench_compute.posterior(), name="bench-score",
                                    diagnostics=diagnostics)
    return store.save(posterior), posterior


def make_rows(path: Path, rows: int, features: int, *, seed: int = 0) -> Path:
    """``rows`` random rows (``customer_id``, ``x0..``) written as Parquet, a row group at
    a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    names = ["customer_id"] + [f"x{i}" for i in range(features)]
    writer = None
    try:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            X = rng.normal(size=(n, features)).astype(np.float32)
            table = pa.table([pa.array(np.arange(start, start + n, dtype=np.int64))]
                             + [pa.array(X[:, j]) for j in range(features)], names=names)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=ROW_GROUP)
    finally:
        if writer is not None:
            writer.close()
    return path


# -- running the command -------------------------------------------------------------------

@dataclasses.dataclass
class Finished:
    """A finished ``workbench score`` process, as seen from outside."""

    rc: int
    wall_s: float
    peak_rss_mib: float
    stdout: str
    lines: list[tuple[float, str]]  # stderr lines with their seconds since the start

    @property
    def stderr(self) -> str:
        return "\n".join(line for _, line in self.lines)

    @property
    def reported_s(self) -> float:
        """The scoring seconds the command reports ("... in 12.3s")."""
        return float(re.findall(r" in ([0-9.]+)s", self.stderr)[-1])

    @property
    def resumed(self) -> int:
        found = re.findall(r"\((\d+) chunk\(s\) already done\)", self.stderr)
        return int(found[-1]) if found else 0

    @property
    def chunks(self) -> int:
        return int(re.findall(r"rows in (\d+) chunk\(s\)", self.stderr)[-1])


def start(tag: str, source: Path, output: Path, *extra: str) -> tuple[subprocess.Popen, Any]:
    """``workbench score`` started in its own process group, its stderr read by a thread."""
    args = [str(BIN / "workbench"), "score", tag, "--input", str(source), "--output",
            str(output), *extra]
    began = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=os.environ | {"COLUMNS": "100"})
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in proc.stderr:
            lines.append((time.perf_counter() - began, line.rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return proc, (began, lines, reader)


def finish(proc: subprocess.Popen, state: Any, timeout: float = TIMEOUT) -> Finished:
    """Wait for ``proc`` (killing its process group past ``timeout``); its figures."""
    began, lines, reader = state
    timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    return Finished(proc.returncode, wall, usage.ru_maxrss / 1024, stdout, lines)


def score(tag: str, source: Path, output: Path, *extra: str) -> Finished:
    proc, state = start(tag, source, output, *extra)
    done = finish(proc, state)
    if done.rc != 0:
        raise RuntimeError(f"workbench score {' '.join(extra)} failed ({done.rc}):\n"
                           f"{done.stderr[-3000:]}")
    return done


def score_ray(tag: str, source: Path, output: Path, chunk: int, workers: int,
              log: Callable[[str], None], attempts: int = 3) -> tuple[Finished, list[str]]:
    """``--engine ray``, started again when the local cluster fails to start: under CPU
    contention Ray's raylet gives its dashboard agent a fixed 15 s to come up
    (ray-project/ray#65983). Returns the run and the failed starts' last lines."""
    failures: list[str] = []
    for _ in range(attempts):
        proc, state = start(tag, source, output, "--engine", "ray", "--workers", str(workers),
                            "--chunk-rows", str(chunk))
        done = finish(proc, state)
        if done.rc == 0:
            return done, failures
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "(no output)"
        if "timed out during startup" not in last:
            raise RuntimeError(f"workbench score --engine ray failed ({done.rc}):\n"
                               f"{done.stderr[-3000:]}")
        failures.append(last)
        log(f"  (h) Ray's local cluster did not start ({last[:80]}...); again")
    raise RuntimeError(f"Ray's local cluster did not start in {attempts} attempts")


def interrupt_and_resume(tag: str, source: Path, output: Path, chunk: int, at: int
                         ) -> tuple[dict[str, Any], Finished]:
    """Start a run, SIGINT it once ``at`` parts exist, then run it again."""
    parts = output.with_name(output.name + ".parts")
    # A job started in the background ignores SIGINT, and so would the command it starts:
    # a handler of ours (reset to the default by exec) makes the command's SIGINT default.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc, state = start(tag, source, output, "--chunk-rows", str(chunk))
    finally:
        signal.signal(signal.SIGINT, previous)
    while proc.poll() is None and len(list(parts.glob("part-*.parquet"))) < at:
        time.sleep(0.05)  # a benchmark polling a directory, not a test waiting
    if proc.poll() is not None:
        stopped = finish(proc, state)
        raise RuntimeError(f"the run to interrupt ended by itself ({stopped.rc}) before "
                           f"{at} parts existed:\n{stopped.stderr[-3000:]}")
    proc.send_signal(signal.SIGINT)  # as Ctrl+C
    stopped = finish(proc, state)
    found = len(list(parts.glob("part-*.parquet")))
    existed = output.exists()
    if existed or found < at:
        raise RuntimeError(f"SIGINT did not stop the run ({stopped.rc}; {found} parts, "
                           f"output {'written' if existed else 'absent'})")
    resumed = score(tag, source, output, "--chunk-rows", str(chunk))
    return {"interrupted_rc": stopped.rc, "interrupted_after_s": stopped.wall_s,
            "parts_at_interrupt": found, "output_existed": existed,
            "reported_already_done": resumed.resumed, "chunks_scored_on_resume": resumed.chunks,
            "resume_wall_s": resumed.wall_s, "resume_reported_s": resumed.reported_s}, resumed


# -- the peer ------------------------------------------------------------------------------

def peer(posterior: Any, source: Path, chunk: int, rows: int | None) -> dict[str, Any]:
    """``jit(Predictive)`` + ``jnp.quantile`` over the file's first ``rows`` rows (all:
    None), read in chunks of ``chunk``; compiled for both chunk shapes before timing."""
    import bench_compute
    import jax
    import pyarrow.parquet as pq

    fn = bench_compute.classic(posterior)
    key = jax.random.PRNGKey(0)
    features = list(posterior.feature_names)
    total = min(rows or ROWS * 10, pq.ParquetFile(source).metadata.num_rows)
    for n in sorted({chunk, total % chunk} - {0}):
        jax.block_until_ready(fn(key, np.zeros((n, len(features)), np.float32)))
    out: list[list[np.ndarray]] = [[], [], [], []]
    done = 0
    started = time.perf_counter()
    for batch in pq.ParquetFile(source).iter_batches(batch_size=chunk, columns=features):
        X = np.column_stack([batch.column(f).to_numpy() for f in features])[:total - done]
        for acc, a in zip(out, fn(key, X), strict=True):
            acc.append(np.asarray(a))
        done += len(X)
        if done >= total:
            break
    seconds = time.perf_counter() - started
    return {"rows": done, "seconds": seconds,
            "arrays": [np.concatenate(a) for a in out]}  # mean, std, lower, upper


# -- checks --------------------------------------------------------------------------------

def against_predictor(posterior: Any, source: Path, scored: Any, sample: int,
                      seed: int = 1) -> float:
    """The largest difference between the output and the Predictor on ``sample`` rows."""
    import pyarrow.parquet as pq

    from workbench.predict import Predictor

    table = pq.read_table(source)
    idx = np.sort(np.random.default_rng(seed).choice(table.num_rows, sample, replace=False))
    X = np.column_stack([table.column(f).to_numpy()[idx] for f in posterior.feature_names])
    p = Predictor(posterior).predict(X)
    got = scored.iloc[idx]
    assert (got.customer_id.to_numpy() == idx).all()
    assert got.label.tolist() == [posterior.target_names[i] for i in p.label]
    return max(float(np.max(np.abs(got[c].to_numpy() - v))) for c, v in (
        ("mean", p.mean), ("std", p.std), ("lower", p.lower), ("upper", p.upper),
        ("p_yes", p.probabilities[:, 1])))


def same_order(a: Any, b: Any) -> bool:
    """Whether two outputs hold the same ids in the same order."""
    return bool((a.customer_id.to_numpy() == b.customer_id.to_numpy()).all())


def difference(a: Any, b: Any) -> float:
    """Largest difference between two outputs, row by row (ids and labels must be equal)."""
    assert list(a.columns) == list(b.columns)
    assert same_order(a, b)
    assert (a.label.to_numpy() == b.label.to_numpy()).all()
    numbers = [c for c in a.columns if c not in ("customer_id", "label")]
    return float(np.max(np.abs(a[numbers].to_numpy() - b[numbers].to_numpy())))


# -- the run -------------------------------------------------------------------------------

def run(workdir: Path, *, rows: int = ROWS, small: int = SMALL,
        chunks: tuple[int, int] = CHUNKS, workers: int = 2, sample: int = 1_000,
        peer_rows: int | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Setup, the local runs, the checks, Ray, the peer; the figures (see the module)."""
    import pandas as pd

    started = time.time()
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "load_average_at_start": os.getloadavg()[0], "rows": rows,
                           "small": small, "chunks": list(chunks), "workers": workers,
                           "row_group": ROW_GROUP, "sample": sample}
    work = workdir / "score"
    work.mkdir(parents=True, exist_ok=True)
    tag, posterior = stored_model()
    features = len(posterior.feature_names)
    files = {n: make_rows(work / f"rows-{n}.parquet", n, features, seed=n)
             for n in (TINY, small, rows)}
    out |= {"model": tag, "draws": posterior.n_draws, "features": features,
            "file_mib": {str(n): round(f.stat().st_size / 2**20, 1)
                         for n, f in files.items()}}
    log(f"  (h) {tag}; files of {', '.join(f'{n:,}' for n in files)} rows in {work}")

    def figures(done: Finished, n: int, chunk: int) -> dict[str, Any]:
        return {"rows": n, "chunk_rows": chunk, "wall_s": done.wall_s,
                "reported_s": done.reported_s, "peak_rss_mib": done.peak_rss_mib,
                "chunks": done.chunks}

    local = []
    for n, chunk in [(TINY, chunks[0])] + [(n, c) for c in chunks for n in (small, rows)]:
        done = score(tag, files[n], work / f"out-{n}-{chunk}.parquet", "--chunk-rows",
                     str(chunk))
        local.append(figures(done, n, chunk))
        log(f"  (h) local, {n:,} rows in chunks of {chunk:,}: {done.wall_s:.1f} s "
            f"({done.reported_s:.1f} s scoring), peak RSS {done.peak_rss_mib:.0f} MiB")
    out["local"] = local
    reference = pd.read_parquet(work / f"out-{rows}-{chunks[0]}.parquet")
    out["chunk_sizes_max_abs_difference"] = difference(
        reference, pd.read_parquet(work / f"out-{rows}-{chunks[1]}.parquet"))
    out["predictor_max_abs_difference"] = against_predictor(posterior, files[rows], reference,
                                                            sample)
    log(f"  (h) against the Predictor on {sample:,} rows: max difference "
        f"{out['predictor_max_abs_difference']:.1e}")

    total_chunks = -(-rows // chunks[0])
    resume, _ = interrupt_and_resume(tag, files[rows], work / "out-resumed.parquet",
                                     chunks[0], total_chunks // 3)
    resume |= {"total_chunks": total_chunks, "max_abs_difference_to_uninterrupted":
               difference(reference, pd.read_parquet(work / "out-resumed.parquet"))}
    out["resume"] = resume
    log(f"  (h) interrupted with {resume['parts_at_interrupt']} of {total_chunks} parts "
        f"done; the resumed run said {resume['reported_already_done']} already done and "
        f"scored {resume['chunks_scored_on_resume']}")

    done, failures = score_ray(tag, files[rows], work / "out-ray.parquet", chunks[0],
                               workers, log)
    distributed = pd.read_parquet(work / "out-ray.parquet")
    ordered = same_order(reference, distributed)
    if not ordered:  # compare row by row all the same, by id, and say so
        first = int(distributed.customer_id.iloc[0])
        distributed = distributed.sort_values("customer_id", ignore_index=True)
    out["ray"] = figures(done, rows, chunks[0]) | {
        "failed_starts": failures,
        "same_order": ordered, "first_id": None if ordered else first,
        "max_abs_difference_to_local": difference(reference, distributed)}
    log(f"  (h) ray, {workers} workers: {done.wall_s:.1f} s ({done.reported_s:.1f} s "
        f"reported), same as local to {out['ray']['max_abs_difference_to_local']:.1e}"
        + ("" if ordered else f", but in another order (first id {first:,})"))

    theirs = peer(posterior, files[rows], chunks[0], peer_rows)
    n = theirs["rows"]
    mine = reference.iloc[:n]
    out["peer"] = {"rows": n, "seconds": theirs["seconds"], "max_abs_difference_to_local": max(
        float(np.max(np.abs(mine[c].to_numpy() - a))) for c, a in
        zip(("mean", "std", "lower", "upper"), theirs["arrays"], strict=True))}
    assert out["peer"]["max_abs_difference_to_local"] < 1e-5, out["peer"]
    log(f"  (h) jit(Predictive), {n:,} rows in chunks of {chunks[0]:,}: "
        f"{theirs['seconds']:.1f} s")
    out["load_average_at_end"] = os.getloadavg()[0]
    out["minutes"] = round((time.time() - started) / 60, 1)
    return out


# -- RESULTS.md ----------------------------------------------------------------------------

def render(r: dict[str, Any], command: str) -> str:
    """The section of benchmarks/RESULTS.md."""
    from run import machine_note, table

    rows, draws, (c0, c1) = r["rows"], r["draws"], r["chunks"]
    by = {(x["rows"], x["chunk_rows"]): x for x in r["local"]}
    peer_rate = r["peer"]["rows"] / r["peer"]["seconds"]
    tiny = by[(TINY, c0)]

    def rate(n: int, seconds: float | None) -> list[str]:
        if not seconds:
            return ["—", "—", "—"]
        per_s = n / seconds
        return [f"{per_s:,.0f}", f"{per_s * draws / 1e6:,.1f} M",
                f"{per_s / peer_rate:.2f}×"]

    ray = r["ray"]
    subjects = [[f"local, chunks of {c:,}", f"{by[(rows, c)]['reported_s']:.1f} s",
                 *rate(rows, by[(rows, c)]["reported_s"]), f"{by[(rows, c)]['wall_s']:.1f} s",
                 *rate(rows, by[(rows, c)]["wall_s"])[:1]] for c in (c0, c1)]
    subjects.append([f"Ray, {r['workers']} workers, chunks of {c0:,}",
                     f"{ray['reported_s']:.1f} s", *rate(rows, ray["reported_s"]),
                     f"{ray['wall_s']:.1f} s", *rate(rows, ray["wall_s"])[:1]])
    subjects.append([f"peer: jit(Predictive)+jnp.quantile, chunks of {c0:,}",
                     f"{r['peer']['seconds']:.1f} s", *rate(r["peer"]["rows"],
                                                          r["peer"]["seconds"]), "—", "—"])
    memory = [[f"{x['rows']:,}", f"{r['file_mib'][str(x['rows'])]} MiB",
               f"{x['chunk_rows']:,}", str(x["chunks"]), f"{x['peak_rss_mib']:.0f} MiB",
               f"{x['wall_s']:.1f} s"] for x in r["local"]]
    res = r["resume"]
    fails = len(ray["failed_starts"])
    retried = RETRIED.format(fails) if fails else ""
    order = ("in the same order" if ray["same_order"] else
             f"**but not in the input's order**: its first row is id {ray['first_id']:,}")
    return f"""
## (h) Batch scoring a 1,000,000-row file (local, Ray) against jit(Predictive)

Command: `{command}` ({'**quick run**: smaller files; ' if r.get('quick') else ''}\
{r['date']}, {r['minutes']} min; load average {r['load_average_at_start']:.2f} at the start,
{r['load_average_at_end']:.2f} at the end{machine_note(r, "jax", "numpyro", "ray")}).
Model: figure (a)'s posterior ({r['features']}-feature logistic regression, {draws} draws),
stored as `{r['model']}`. Input: Parquet files of random rows made in this run
(`customer_id` + {r['features']} float32 features, row groups of {r['row_group']:,} rows):
{rows:,} rows ({r['file_mib'][str(rows)]} MiB), {r['small']:,} and {TINY:,}. Each
`workbench score` is a subprocess measured from outside (wall time; peak RSS from
`os.wait4`). "Scoring" is the time the command reports: for the local engine reading,
scoring, writing the parts and joining them (not the process's start, imports and
compilation: the {TINY:,}-row run took {tiny['wall_s']:.1f} s in all); for Ray, all of
`score_with_ray`, the local cluster's start included. The peer is figure (a)'s classic
template, `jax.jit` of NumPyro `Predictive` then `jnp.quantile`, in the benchmark's process
over the first {r['peer']['rows']:,} rows of the same file read in the same chunks (compiled
for both chunk shapes first; it writes nothing); its answers equal the local engine's to
{r['peer']['max_abs_difference_to_local']:.1e}.

""" + table(["subject", f"scoring {rows:,} rows", "rows/s", "rows × draws/s",
              "to jit(Predictive)", "process wall", "rows/s (wall)"], subjects) + """

Memory: peak RSS of the local engine's process by file and chunk size.

""" + table(["rows in the file", "file", "chunk rows", "chunks", "peak RSS", "wall"],
             memory) + f"""

Checks, all in this run:

- **Same numbers as the Predictor**: the {rows:,}-row output against
  `workbench.predict.Predictor` on {r['sample']:,} random rows: max difference
  {r['predictor_max_abs_difference']:.1e} (mean, std, interval, P(yes); labels equal).
  Chunks of {c0:,} and of {c1:,} give the same output to
  {r['chunk_sizes_max_abs_difference']:.1e}.
- **Resume**: a run in chunks of {c0:,} was sent SIGINT once {res['total_chunks'] // 3} of
  its {res['total_chunks']} parts existed; it stopped (exit {res['interrupted_rc']}) after
  {res['interrupted_after_s']:.1f} s with {res['parts_at_interrupt']} parts written and no
  output. Run again with the same arguments it said "{res['reported_already_done']} chunk(s)
  already done", scored the other {res['chunks_scored_on_resume']} in
  {res['resume_reported_s']:.1f} s ({res['resume_wall_s']:.1f} s in all), and its output
  equals an uninterrupted run's (max difference
  {res['max_abs_difference_to_uninterrupted']:.1e}, ids in order).
- **Ray**: `--engine ray --workers {r['workers']}` (a local cluster on loopback, started and
  stopped by the command) wrote the same rows as `--engine local`: max difference
  {ray['max_abs_difference_to_local']:.1e} row by row by id, labels equal; {order}.{retried}
"""


RETRIED = """
  Its local cluster failed to start {} time(s) first, and the command was run again: the
  raylet gives Ray's dashboard agent a fixed 15 s to start, which a loaded 2-core machine
  can miss (ray-project/ray#65983)."""


def main() -> None:
    from run import standalone

    standalone("bench_score.py", run, render, QUICK, "bench-score")


if __name__ == "__main__":
    main()
