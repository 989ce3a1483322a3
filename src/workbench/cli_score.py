"""``workbench score``: score a Parquet or CSV file with a stored model, in chunks.

    workbench score MODEL --input rows.parquet --output scored.parquet [--chunk-rows N]
        [--interval-mass 0.9] [--engine local|ray] [--address ray://HOST:10001]

``local`` (the default) streams through the file in this process with constant memory;
``ray`` runs the same scoring on Ray Data, one actor per worker. Both write the input's
chunks as parts, so an interrupted run resumes, on either engine, without redoing a
finished chunk, and the output keeps the input's order (see :mod:`workbench.score_files`,
:mod:`workbench.score_ray`). A progress bar goes to stderr; the output path is printed last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from workbench.cli_common import console, friendly


@click.command()
@click.argument("model")
@click.option("--input", "source", required=True, type=click.Path(dir_okay=False),
              help="Rows to score: .parquet or .csv, with the model's feature columns.")
@click.option("--output", required=True, type=click.Path(dir_okay=False),
              help="Where to write the scores: .parquet or .csv (other columns pass "
                   "through).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
              show_default=True)
@click.option("--address", help="A Ray cluster to use (--engine ray; default: a local one).")
@click.option("--workers", default=2, show_default=True,
              help="Ray actors, each with the model loaded and compiled once.")
@click.option("--chunk-rows", default=65_536, show_default=True,
              help="Rows per chunk: what bounds memory.")
@click.option("--interval-mass", default=0.9, show_default=True)
@friendly
def score(model: str, source: str, output: str, engine: str, address: str | None,
          workers: int, chunk_rows: int, interval_mass: float) -> None:
    """Score a file with MODEL (alias, name or tag): mean, std, interval per row."""
    from workbench import store

    err = console(stderr=True)
    tag = store.resolve(model)
    with _bar(err, source) as progress:
        if engine == "ray":
            from workbench.score_ray import score_with_ray

            report = score_with_ray(tag, source, output, address=address, workers=workers,
                                    chunk_rows=chunk_rows, interval_mass=interval_mass,
                                    progress=progress)
        else:
            from workbench.score import batch_predictor
            from workbench.score_files import score_file

            report = score_file(batch_predictor(store.get(tag), chunk_rows), tag, source,
                                output, chunk_rows=chunk_rows, interval_mass=interval_mass,
                                progress=progress)
    err.print(f"scored {report.rows:,} rows in {report.chunks} chunk(s)"
              + (f" ({report.resumed_chunks} chunk(s) already done)"
                 if report.resumed_chunks else "") + f" with {tag} in {report.seconds:.1f}s")
    click.echo(report.output)


@contextmanager
def _bar(err: Any, source: str) -> Iterator[Callable[[int, int | None], None]]:
    """A progress bar of the rows done, as ``progress(done, total)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from workbench.score_files import total_rows

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                  transient=False) as bar:
        task = bar.add_task("rows", total=total_rows(source))
        yield lambda done, total: bar.update(task, completed=done, total=total)
