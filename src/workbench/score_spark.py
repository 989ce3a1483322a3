"""Batch scoring on Spark: ``DataFrame.mapInPandas`` over the same core.

    from workbench.score_spark import score_dataframe

    scored = score_dataframe(spark.read.parquet("rows.parquet"), "churn:latest")
    scored.write.parquet("scored.parquet")

:func:`scorer` makes the two things ``mapInPandas`` needs from a stored model: the function
(an iterator of pandas DataFrames in, an iterator of scored DataFrames out) and the output
schema, a Spark DDL string: the input's other columns (ids, keys), passed through in their
order and types, then :func:`workbench.score.output_columns` (``float`` for the numbers,
``string`` for ``label``). Each frame is scored by :func:`workbench.score.score_batch`, so
the numbers are the Predictor's, the local engine's and Ray's.

The function carries the posterior's artifact as bytes (as the Ray engine does), so
executors need ``workbench`` installed but no model store. A Python worker loads and
compiles the posterior on its first partition and keeps it for the next ones (Spark
reuses its Python workers). Spark's Arrow batches (``spark.sql.execution.arrow.
maxRecordsPerBatch``, 10,000 rows by default) are re-cut into chunks of ``chunk_rows``
(default 8,192, the largest compiled shape), so no batch pays for a padded remainder;
memory per worker stays about one chunk. Error messages name a row by its position in its
partition.

pyspark is not a dependency of ``workbench`` and this module never imports it: the caller
brings a Spark session (``pip install pyspark``, and a Java 17 runtime).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from workbench import artifact
from workbench.errors import InputError
from workbench.inputs import check_interval_mass
from workbench.predict import DEFAULT_MASS, Predictor
from workbench.score import BATCH_BUCKETS, batch_predictor, output_columns, score_batch

DEFAULT_CHUNK_ROWS = max(BATCH_BUCKETS)

# One compiled posterior per Python worker, kept between the tasks the worker runs.
_LOADED: dict[tuple[str, int], Predictor] = {}


def scorer(model: str | bytes, columns: Sequence[tuple[str, str]], *,
           interval_mass: float = DEFAULT_MASS, chunk_rows: int = DEFAULT_CHUNK_ROWS
           ) -> tuple[Callable[[Iterator[Any]], Iterator[Any]], str]:
    """The ``mapInPandas`` function and its output schema for ``model``.

    Parameters
    ----------
    model
        An alias, name or tag in the model store, or a posterior artifact's bytes
        (``posterior.nc``), for a driver without the store.
    columns
        The input's columns as ``(name, Spark type)`` pairs, as ``DataFrame.dtypes``
        gives them; they must include the model's feature columns.
    interval_mass
        The central credible interval's mass.
    chunk_rows
        Rows scored per call of the compiled summary (Spark's batches are re-cut to it).

    Returns
    -------
    tuple
        ``(fn, schema)`` for ``df.mapInPandas(fn, schema)``.

    Raises
    ------
    InputError
        When ``columns`` lack a feature or hold a column named like an output column.
    """
    from workbench import store

    payload = model if isinstance(model, bytes) else store.artifact_bytes(model)
    posterior = artifact.from_bytes(payload)
    mass = check_interval_mass(interval_mass)
    if chunk_rows < 1:
        raise InputError(f"chunk_rows must be positive, got {chunk_rows}")
    names = [name for name, _ in columns]
    missing = [f for f in posterior.feature_names if f not in names]
    if missing:
        raise InputError(f"the input lacks the model's feature columns {missing[:10]}",
                         detail={"expected": list(posterior.feature_names),
                                 "columns": names})
    added = output_columns(posterior)
    passed = [(n, t) for n, t in columns if n not in set(posterior.feature_names)]
    clash = [n for n, _ in passed if n in added]
    if clash:
        raise InputError(f"the input has columns named like the scores {clash}: rename "
                         "them first", detail={"scores": added})
    fields = passed + [(c, "string" if c == "label" else "float") for c in added]
    schema = ", ".join(f"{_quote(name)} {kind}" for name, kind in fields)
    fn = functools.partial(score_partition, payload=payload,
                           digest=hashlib.sha256(payload).hexdigest(),
                           interval_mass=mass, chunk_rows=int(chunk_rows))
    return fn, schema


def score_dataframe(df: Any, model: str | bytes, *, interval_mass: float = DEFAULT_MASS,
                    chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Any:
    """``df`` (a Spark DataFrame) scored by ``model``: a lazy Spark DataFrame with the
    pass-through columns, then ``mean``, ``std``, ``lower``, ``upper`` (and ``p_<class>``,
    ``label`` for classifiers). See :func:`scorer`."""
    fn, schema = scorer(model, df.dtypes, interval_mass=interval_mass,
                        chunk_rows=chunk_rows)
    return df.mapInPandas(fn, schema)


def score_partition(frames: Iterator[Any], *, payload: bytes, digest: str,
                    interval_mass: float, chunk_rows: int) -> Iterator[Any]:
    """Score one partition's pandas frames, chunk by chunk (what runs on executors)."""
    seen = 0
    for chunk in rechunk(frames, chunk_rows):  # an empty partition loads nothing
        yield score_batch(_predictor(payload, digest, chunk_rows), chunk,
                          interval_mass=interval_mass, first_row=seen)
        seen += len(chunk)


def rechunk(frames: Iterator[Any], rows: int) -> Iterator[Any]:
    """``frames`` (pandas DataFrames) as frames of exactly ``rows`` rows, but the last."""
    import pandas as pd

    pending: list[Any] = []
    held = 0
    for frame in frames:
        while len(frame):
            piece, frame = frame.iloc[:rows - held], frame.iloc[rows - held:]
            pending.append(piece)
            held += len(piece)
            if held == rows:
                yield pd.concat(pending, ignore_index=True)
                pending, held = [], 0
    if pending:
        yield pd.concat(pending, ignore_index=True)


def _predictor(payload: bytes, digest: str, chunk_rows: int) -> Predictor:
    """This worker's compiled posterior, loaded on first use and kept."""
    key = (digest, chunk_rows)
    if key not in _LOADED:
        _LOADED.clear()  # a worker holds one model at a time
        _LOADED[key] = batch_predictor(artifact.from_bytes(payload), chunk_rows)
    return _LOADED[key]


def _quote(name: str) -> str:
    """A column name as Spark SQL quotes it (any character allowed)."""
    return "`" + name.replace("`", "``") + "`"
