"""Batch scoring, engine-neutral: a table of rows in, the posterior-predictive summary out.

:func:`score_batch` is the one computation every batch engine runs (the local file
scorer in :mod:`workbench.score_files`, Ray Data's actors in :mod:`workbench.score_ray`,
a Spark ``mapInPandas``): it takes the model's feature columns from a DataFrame, runs the
Predictor's own compiled summary over them (the same function as ``POST /predict``,
compiled once per shape bucket) and returns, per row, ``mean``, ``std``, ``lower`` and
``upper`` (the central credible interval), plus ``p_<class>`` and ``label`` for
classifiers. Every other input column (ids, keys) is passed through in front, so that
results can be joined back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from workbench.artifact import Posterior
from workbench.errors import InputError
from workbench.inputs import check_interval_mass
from workbench.predict import DEFAULT_MASS, Predictor

# Larger buckets than the Predictor's request path: batch rows come in thousands, and one
# compiled shape per bucket keeps JAX from recompiling on a file's last, shorter chunk.
BATCH_BUCKETS: tuple[int, ...] = (64, 1024, 8192)


def batch_predictor(posterior: Posterior, chunk_rows: int | None = None,
                    buckets: Sequence[int] = BATCH_BUCKETS) -> Predictor:
    """A :class:`~workbench.predict.Predictor` compiled for batch-sized chunks: the
    ``buckets`` below ``chunk_rows``, and ``chunk_rows`` itself up to the largest bucket
    (a chunk larger than that runs in pieces of it, which bounds the device's memory)."""
    if chunk_rows is not None:
        top = min(int(chunk_rows), max(buckets))
        buckets = tuple(sorted({b for b in buckets if b < top} | {top}))
    predictor = Predictor(posterior, buckets=buckets, max_rows=max(buckets))
    predictor.warmup()
    return predictor


def output_columns(posterior: Posterior) -> list[str]:
    """The columns :func:`score_batch` adds, in order."""
    cols = ["mean", "std", "lower", "upper"]
    if posterior.kind != "regression":
        cols += [f"p_{name}" for name in posterior.target_names] + ["label"]
    return cols


def score_batch(predictor: Predictor, frame: Any, *, interval_mass: float = DEFAULT_MASS,
                first_row: int = 0) -> Any:
    """The posterior-predictive summary of every row of ``frame`` (a pandas DataFrame).

    Parameters
    ----------
    predictor
        From :func:`batch_predictor` (or any :class:`~workbench.predict.Predictor`).
    frame
        Rows with (at least) the model's feature columns, by name; other columns are
        passed through.
    interval_mass
        The central credible interval's mass.
    first_row
        The position of ``frame``'s first row in the whole input (error messages name it).

    Returns
    -------
    pandas.DataFrame
        The passed-through columns, then :func:`output_columns`.
    """
    import pandas as pd

    features = list(predictor.features)
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise InputError(f"the input lacks the model's feature columns {missing[:10]}",
                         detail={"expected": features, "columns": list(map(str,
                                                                          frame.columns))})
    mass = check_interval_mass(interval_mass)
    try:
        X = frame[features].to_numpy(np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"feature columns must be numeric: {exc}",
                         detail={"dtypes": {f: str(frame[f].dtype) for f in features}}
                         ) from None
    bad = ~np.isfinite(X)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(f"row {first_row + int(row)}: {features[col]} is {X[row, col]} "
                         f"({int(bad.any(axis=1).sum())} row(s) with a missing or non-finite "
                         "value in this chunk)", detail={"expected": "finite numbers"})
    arrays = predictor.summarize(X, mass) if len(X) else _empty(predictor)
    out = frame.drop(columns=features).reset_index(drop=True)
    scored = {"mean": arrays["mean"], "std": arrays["std"], "lower": arrays["lower"],
              "upper": arrays["upper"]}
    posterior = predictor.posterior
    if posterior.kind != "regression":
        for j, name in enumerate(posterior.target_names):
            scored[f"p_{name}"] = arrays["probabilities"][:, j]
        scored["label"] = np.asarray(posterior.target_names, dtype=object)[arrays["label"]]
    return pd.concat([out, pd.DataFrame(scored)], axis=1)


def _empty(predictor: Predictor) -> dict[str, np.ndarray]:
    k = len(predictor.posterior.target_names)
    return {"mean": np.zeros(0), "std": np.zeros(0), "lower": np.zeros(0),
            "upper": np.zeros(0), "probabilities": np.zeros((0, k)),
            "label": np.zeros(0, np.int64)}
