"""``workbench score --engine ray``: the same scoring on Ray Data, in order, resumable.

The run is cut into the local engine's chunks (chunk ``i`` is rows ``i*chunk_rows`` up to
the next; a CSV input is first copied into a Parquet file in the parts directory, one row
group per chunk). Ray Data maps the chunks that are not done yet (a dataset of row ranges,
one block each) through ``map_batches`` with one actor per worker; each actor loads the
posterior once (its artifact travels as bytes, so the cluster needs no model store),
compiles it once (:func:`workbench.score.batch_predictor`), reads its chunk's rows from the
file (the file must be readable by the workers: a local path for a local cluster, shared
storage for a remote one) and runs :func:`workbench.score.score_batch`: the numbers are
the local engine's. The driver writes each chunk's part under ``OUTPUT.parts/`` as it
arrives, in whatever order Ray finishes them, and joins the parts in the input's order at
the end: the output's rows are in the input's order however Ray schedules the work, and an
interrupted run resumes (on either engine) without redoing a finished chunk.

Without ``--address`` a local cluster is started on the loopback interface (no
dashboard) and stopped at the end. Ray is an optional extra: ``pip install
'workbench[ray]'``.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError, InputError, WorkbenchError
from workbench.score_files import (
    ScoreReport,
    file_format,
    join_parts,
    open_run,
    part_done,
    part_path,
    read_chunks,
    write_part,
)

INSTALL = "pip install 'workbench[ray]'"
CHUNK = "__workbench_chunk"  # the chunk index, carried with a chunk's scored rows
STAGED = "_input.parquet"  # a CSV input, copied into the parts directory
REFUSED = "__workbench_refused"  # a chunk's bad row, as JSON: Ray does not keep our error


class _Scorer:
    """A Ray Data actor: the posterior loaded and compiled once, then chunk after chunk."""

    def __init__(self, artifact_bytes: bytes, source: str, interval_mass: float,
                 chunk_rows: int) -> None:
        import numpy as np
        import pyarrow.parquet as pq

        from workbench import artifact
        from workbench.score import batch_predictor

        self.predictor = batch_predictor(artifact.from_bytes(artifact_bytes), chunk_rows)
        self.interval_mass = interval_mass
        self.file = pq.ParquetFile(source, pre_buffer=False)
        meta = self.file.metadata
        self.group_starts = np.cumsum(
            [0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])

    def __call__(self, batch: dict[str, Any]) -> Any:
        import pyarrow as pa

        from workbench.score import score_batch

        tables = []
        for chunk, start, stop in zip(batch["chunk"], batch["start"], batch["stop"],
                                      strict=True):
            try:
                scored = score_batch(self.predictor, self._rows(int(start), int(stop)),
                                     interval_mass=self.interval_mass, first_row=int(start))
            except InputError as exc:  # sent back as data, raised again by the driver
                return pa.table({CHUNK: [int(chunk)], REFUSED: [json.dumps(
                    {"message": exc.message, "detail": exc.detail}, default=str)]})
            table = pa.Table.from_pandas(scored, preserve_index=False)
            tables.append(table.append_column(CHUNK, pa.array([int(chunk)] * len(table),
                                                              pa.int64())))
        return pa.concat_tables(tables)

    def _rows(self, start: int, stop: int) -> Any:
        """Rows ``start`` to ``stop`` of the file, read from the row groups that hold them a
        batch at a time (memory follows the chunk, not the row group)."""
        import numpy as np
        import pyarrow as pa

        first = int(np.searchsorted(self.group_starts, start, side="right")) - 1
        last = int(np.searchsorted(self.group_starts, stop, side="left"))
        at, kept = int(self.group_starts[first]), []
        for batch in self.file.iter_batches(batch_size=max(1, min(stop - start, 65_536)),
                                            row_groups=range(first, last)):
            lo, hi = max(start, at), min(stop, at + batch.num_rows)
            if hi > lo:
                kept.append(batch.slice(lo - at, hi - lo))
            at += batch.num_rows
            if at >= stop:
                break
        return pa.Table.from_batches(kept).to_pandas()


def score_with_ray(tag: str, source: str | Path, output: str | Path, *,
                   address: str | None = None, workers: int = 2, chunk_rows: int = 65_536,
                   interval_mass: float = 0.9,
                   progress: Callable[[int, int | None], None] | None = None) -> ScoreReport:
    """Score ``source`` into ``output`` with ``workers`` Ray actors (see the module).

    ``progress(rows_done, rows_total)`` is called as chunks are written, resumed ones first.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray, which is not installed",
                          detail={"install": INSTALL}) from None
    from workbench import store

    started = time.perf_counter()
    if workers < 1:
        raise InputError(f"workers must be positive, got {workers}")
    parts, out_format = open_run(tag, source, output, chunk_rows, interval_mass)
    rows_file = Path(source) if file_format(source) == "parquet" else _staged(
        Path(source), parts, chunk_rows)
    ranges = _chunk_ranges(rows_file, chunk_rows)
    total = ranges[-1][1] if ranges else 0
    report = ScoreReport(str(output))
    todo = [(i, start, stop) for i, (start, stop) in enumerate(ranges)
            if not part_done(part_path(parts, i), stop - start)]
    report.resumed_chunks = len(ranges) - len(todo)
    done_rows = total - sum(stop - start for _, start, stop in todo)
    if progress is not None:
        progress(done_rows, total)
    if todo:
        own = not ray.is_initialized()
        try:
            if own:
                _start_cluster(ray, address, workers)
            for chunk, table in _scored_chunks(ray, todo, store.artifact_bytes(tag),
                                               rows_file, workers, chunk_rows,
                                               interval_mass):
                write_part(table, part_path(parts, chunk))
                report.chunks += 1
                report.rows += table.num_rows
                if progress is not None:
                    progress(done_rows + report.rows, total)
        finally:
            if own and ray.is_initialized():
                ray.shutdown()
        if report.chunks != len(todo):  # never join a short output (the parts are kept)
            raise WorkbenchError(f"Ray returned {report.chunks} of {len(todo)} chunks",
                                 detail={"hint": "run the command again to resume"})
    join_parts(parts, Path(output), out_format)
    report.seconds = time.perf_counter() - started
    return report


def _start_cluster(ray: Any, address: str | None, workers: int) -> None:
    if address:
        ray.init(address=address, log_to_driver=False)
    else:  # a local cluster, on loopback only; one CPU more than the actors hold,
        # or the tasks feeding them would wait for a CPU forever
        ray.init(num_cpus=workers + 1, _node_ip_address="127.0.0.1",
                 include_dashboard=False, log_to_driver=False, configure_logging=False)


def _scored_chunks(ray: Any, todo: list[tuple[int, int, int]], payload: bytes,
                   rows_file: Path, workers: int, chunk_rows: int, interval_mass: float
                   ) -> Any:
    """``(chunk, scored table)`` for every chunk in ``todo``, as Ray finishes them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ctx = ray.data.DataContext.get_current()
    bars, ctx.enable_progress_bars = ctx.enable_progress_bars, False
    items = [{"chunk": i, "start": start, "stop": stop} for i, start, stop in todo]
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        _Scorer, fn_constructor_kwargs={"artifact_bytes": payload,
                                        "source": str(rows_file.resolve()),
                                        "interval_mass": interval_mass,
                                        "chunk_rows": chunk_rows},
        batch_size=1, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers))
    expected = {i: stop - start for i, start, stop in todo}
    pieces: dict[int, list[Any]] = {}
    try:
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            if REFUSED in batch.column_names:
                raise InputError(**json.loads(batch[REFUSED][0].as_py()))
            for chunk in pc.unique(batch[CHUNK]).to_pylist():
                piece = batch.filter(pc.equal(batch[CHUNK], chunk)).drop_columns([CHUNK])
                pieces.setdefault(chunk, []).append(piece)
                if sum(p.num_rows for p in pieces[chunk]) == expected[chunk]:
                    yield chunk, pa.concat_tables(pieces.pop(chunk))
    finally:
        ctx.enable_progress_bars = bars


def _chunk_ranges(path: Path, chunk_rows: int) -> list[tuple[int, int]]:
    """The chunks' ``(start, stop)`` rows: fixed-size (as the local engine reads a Parquet
    file), or a staged CSV's chunks as the local engine cut them (recorded beside it)."""
    import pyarrow.parquet as pq

    if path.name == STAGED:
        sizes = json.loads(path.with_suffix(".chunks.json").read_text())
        stops = list(itertools.accumulate(sizes))
        return [(stop - size, stop) for size, stop in zip(sizes, stops, strict=True)]
    rows = pq.ParquetFile(path).metadata.num_rows
    return [(start, min(start + chunk_rows, rows)) for start in range(0, rows, chunk_rows)]


def _staged(source: Path, parts: Path, chunk_rows: int) -> Path:
    """A CSV copied into ``parts/_input.parquet``, its local-engine chunks' sizes in
    ``parts/_input.chunks.json`` (kept for a resume: renamed into place once complete)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    staged = parts / STAGED
    if staged.exists():
        return staged
    tmp = staged.with_suffix(".tmp")
    writer: Any = None
    sizes: list[int] = []
    try:
        for batch in read_chunks(source, chunk_rows):
            if writer is None:
                writer = pq.ParquetWriter(tmp, batch.schema)
            writer.write_table(pa.Table.from_batches([batch]))
            sizes.append(batch.num_rows)
        if writer is None:  # no rows: an empty file, and no chunks
            pq.write_table(pa.table({}), tmp)
    finally:
        if writer is not None:
            writer.close()
    staged.with_suffix(".chunks.json").write_text(json.dumps(sizes))
    os.replace(tmp, staged)
    return staged

