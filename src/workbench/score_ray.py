"""``workbench score --engine ray``: the same scoring on Ray Data.

The input is read with ``ray.data.read_parquet``/``read_csv`` and scored by
``map_batches`` with one actor per worker; each actor loads the posterior once (its
artifact travels as bytes, so a remote cluster needs no access to the model store) and
compiles it once (:func:`workbench.score.batch_predictor`), then runs
:func:`workbench.score.score_batch` on every batch: the numbers are the local engine's.
Order is preserved, and the driver streams the results into ``OUTPUT`` batch by batch.

Without ``--address`` a local cluster is started on the loopback interface (no
dashboard) and stopped at the end. Ray is an optional extra: ``pip install
'workbench[ray]'``. Resuming an interrupted run is the local engine's; a Ray run starts
over.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError, InputError
from workbench.score_files import ScoreReport, file_format, total_rows, writer_for

INSTALL = "pip install 'workbench[ray]'"


class _Scorer:
    """A Ray Data actor: the posterior loaded and compiled once, then batch after batch."""

    def __init__(self, artifact_bytes: bytes, interval_mass: float, chunk_rows: int) -> None:
        from workbench import artifact
        from workbench.score import batch_predictor

        self.predictor = batch_predictor(artifact.from_bytes(artifact_bytes), chunk_rows)
        self.interval_mass = interval_mass

    def __call__(self, batch: Any) -> Any:
        from workbench.score import score_batch

        return score_batch(self.predictor, batch, interval_mass=self.interval_mass)


def score_with_ray(tag: str, source: str | Path, output: str | Path, *,
                   address: str | None = None, workers: int = 2, chunk_rows: int = 65_536,
                   interval_mass: float = 0.9, log: Callable[[str], None] | None = None
                   ) -> ScoreReport:
    """Score ``source`` into ``output`` with ``workers`` Ray actors (see the module)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray, which is not installed",
                          detail={"install": INSTALL}) from None
    from workbench import store

    started = time.perf_counter()
    source, output = Path(source), Path(output)
    if not source.is_file():
        raise InputError(f"no input file {str(source)!r}")
    in_format, out_format = file_format(source), file_format(output)
    payload = store.artifact_bytes(tag)
    own = not ray.is_initialized()
    if own:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # a local cluster, on loopback only; one CPU more than the actors hold,
            # or the read tasks feeding them would wait for a CPU forever
            ray.init(num_cpus=workers + 1, _node_ip_address="127.0.0.1",
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        if in_format == "parquet":  # blocks of about a chunk each, so every actor gets work
            rows = total_rows(source) or 0
            ds = ray.data.read_parquet(str(source.resolve()), override_num_blocks=max(
                workers, -(-rows // chunk_rows)))
        else:
            ds = ray.data.read_csv(str(source.resolve()))
        ds = ds.map_batches(
            _Scorer, fn_constructor_kwargs={"artifact_bytes": payload,
                                            "interval_mass": interval_mass,
                                            "chunk_rows": chunk_rows},
            batch_size=chunk_rows, batch_format="pandas", concurrency=workers)
        report = ScoreReport(str(output))
        tmp = output.with_name(output.name + ".tmp")
        writer: Any = None
        try:
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                if writer is None:
                    writer = writer_for(tmp, batch.schema, out_format)
                writer.write_table(batch)
                report.rows += batch.num_rows
                report.chunks += 1
                if log is not None and report.chunks % 16 == 0:
                    log(f"  {report.rows:,} rows scored")
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            tmp.write_bytes(b"")
        os.replace(tmp, output)
    finally:
        if own:
            ray.shutdown()
    report.seconds = time.perf_counter() - started
    return report
