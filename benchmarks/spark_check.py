"""A real local Spark run of the ``mapInPandas`` adapter (``workbench.score_spark``), kept
outside the test suite: pyspark is not a dependency of ``workbench`` and needs Java.

Install (once; nothing of it goes into pyproject.toml or uv.lock):

    java -version || apt-get install -y openjdk-17-jre-headless   # Debian 12's Java 17
    python3 -m pip install --target .workbench/pyspark pyspark     # ~456 MB download
    PYTHONPATH=.workbench/pyspark .venv/bin/python benchmarks/spark_check.py [--rows 100000]

What it does, in a work directory of its own (``.workbench/spark-check``, its own model
store): stores figure (a)'s posterior (``bench_score.stored_model``), writes a Parquet
file of random rows (``bench_score.make_rows``), scores it with the local engine
(``workbench.score_files.score_file``, the reference), starts a ``local[2]`` Spark session
on loopback (no UI), and runs ``score_dataframe(spark.read.parquet(...), tag)`` written to
Parquet twice: cold (Spark's Python workers start, load and compile the posterior) and
warm (the same workers, the posterior kept). Spark's output must equal the local engine's
to 1e-6 (ids, labels exact). Prints the figures as JSON: the session's start, each job,
the session's stop, and the local engine's time on the same rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[1]


def run(workdir: Path, rows: int = 100_000, chunk_rows: int = 8_192) -> dict[str, Any]:
    import pandas as pd
    import pyspark
    from bench_score import difference, make_rows, stored_model
    from pyspark.sql import SparkSession

    from workbench.score import batch_predictor
    from workbench.score_files import score_file
    from workbench.score_spark import score_dataframe

    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "load_average_at_start": os.getloadavg()[0], "rows": rows,
                           "chunk_rows": chunk_rows, "pyspark": pyspark.__version__}
    tag, posterior = stored_model()
    source = make_rows(workdir / "rows.parquet", rows, len(posterior.feature_names))
    out |= {"model": tag, "draws": posterior.n_draws}

    started = time.perf_counter()
    predictor = batch_predictor(posterior, chunk_rows)
    out["local_compile_s"] = time.perf_counter() - started
    report = score_file(predictor, tag, source, workdir / "local.parquet", chunk_rows=chunk_rows)
    out["local_s"] = report.seconds
    local = pd.read_parquet(workdir / "local.parquet")

    os.environ["PYSPARK_PYTHON"] = sys.executable  # executors run this interpreter
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    started = time.perf_counter()
    spark = (SparkSession.builder.master("local[2]").appName("workbench-spark-check")
             .config("spark.ui.enabled", "false")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1")
             # the file's two row groups as two partitions, one per core
             .config("spark.sql.files.maxPartitionBytes", str(8 << 20))
             .getOrCreate())
    out["session_start_s"] = time.perf_counter() - started
    out["java"] = spark.sparkContext._jvm.java.lang.System.getProperty("java.version")
    try:
        for run_name in ("cold", "warm"):
            target = workdir / f"spark-{run_name}"
            started = time.perf_counter()
            df = spark.read.parquet(str(source))
            out["partitions"] = df.rdd.getNumPartitions()
            score_dataframe(df, tag, chunk_rows=chunk_rows).write.mode("overwrite").parquet(
                str(target))
            out[f"job_{run_name}_s"] = time.perf_counter() - started
            got = pd.read_parquet(target).sort_values("customer_id", ignore_index=True)
            out[f"max_abs_difference_{run_name}"] = difference(local, got)
    finally:
        started = time.perf_counter()
        spark.stop()
        out["session_stop_s"] = time.perf_counter() - started
    out["load_average_at_end"] = os.getloadavg()[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workdir", default=str(ROOT / ".workbench" / "spark-check"))
    args = parser.parse_args()
    from run import fresh_workdir

    out = run(fresh_workdir(args.workdir), args.rows)
    print(json.dumps(out, indent=2))
    assert max(out["max_abs_difference_cold"], out["max_abs_difference_warm"]) < 1e-6


if __name__ == "__main__":
    main()
