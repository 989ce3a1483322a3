"""Drift of served inputs against a model's training inputs, per feature.

The population stability index (PSI) of each feature: the served rows are binned at the
training deciles the artifact keeps (:func:`workbench.ood.summarize`), and

    PSI = sum over bins of (served share - training share) * ln(served share / training share)

(the symmetrised Kullback-Leibler divergence; Evidently's default drift measure for
numerical features). The usual reading: under 0.1 stable, 0.1 to 0.25 a moderate shift,
above 0.25 a major one. With ``n`` served rows, sampling noise alone gives a PSI of about
``(bins - 1) / n``: the table reports it as ``by_chance`` beside each figure, and calls a
shift only when the PSI is also above three times that, and only from ``MIN_ROWS`` rows.

Per model version (each logged prediction names the model that served it) and time window
(the first and last served row counted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.ood import BINS, shares

if TYPE_CHECKING:
    from workbench.artifact import Posterior
    from workbench.events import Events

MODERATE, MAJOR = 0.1, 0.25
FLOOR = 1e-4  # an empty bin's share (the index is infinite at zero)
MIN_ROWS = 10 * BINS


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """The population stability index of ``actual`` bin shares against ``expected``."""
    e = np.clip(np.asarray(expected, np.float64), FLOOR, None)
    a = np.clip(np.asarray(actual, np.float64), FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


def level(value: float, rows: int) -> str:
    """``stable``, ``moderate`` or ``major`` above the noise of ``rows``; ``too few rows``
    under ``MIN_ROWS`` (a bin with no row then weighs more than any shift)."""
    if rows < MIN_ROWS:
        return "too few rows"
    chance = (BINS - 1) / rows
    if value > MAJOR and value > 3 * chance:
        return "major"
    return "moderate" if value > MODERATE and value > 3 * chance else "stable"


def features(posterior: Posterior, rows: np.ndarray) -> list[dict[str, Any]]:
    """Per feature of ``posterior``: the PSI of served raw ``rows`` against its training
    inputs (empty when the artifact keeps no summary of them)."""
    inputs = posterior.inputs
    if "edges" not in inputs or not len(rows):
        return []
    Xs = posterior.standardize(rows)
    out = []
    for j, name in enumerate(posterior.feature_names):
        value = psi(inputs["shares"][j], shares(Xs[:, j], inputs["edges"][j]))
        out.append({"feature": name, "psi": value, "level": level(value, len(rows)),
                    "rows": len(rows), "by_chance": (BINS - 1) / len(rows)})
    return out


def served(data: Events, posterior_of: Callable[[str], Posterior | None]
           ) -> list[dict[str, Any]]:
    """The drift of every model version in ``data`` (read with its instances): one dict
    per model and feature, with the window its rows span. Rows the log kept only as a hash
    (``WORKBENCH_EVENT_INPUTS=hash``) or not at all cannot be counted."""
    out: list[dict[str, Any]] = []
    for tag in dict.fromkeys(data.model_tag.tolist()):
        posterior = posterior_of(tag)
        if posterior is None:
            continue
        width = len(posterior.feature_names)
        rows, times = _rows(data, tag, width)
        for entry in features(posterior, rows):
            out.append({"model": tag, **entry, "since": float(min(times)),
                        "until": float(max(times))})
    return out


def _rows(data: Events, tag: str, width: int) -> tuple[np.ndarray, list[float]]:
    rows: list[Sequence[float]] = []
    times: list[float] = []
    keep = np.flatnonzero((data.model_tag == tag) & (data.status != "shadow"))
    for i in keep:
        logged = data.instances[i] if i < len(data.instances) else None
        if not isinstance(logged, list):
            continue
        for row in logged:
            if isinstance(row, list) and len(row) == width and all(
                    isinstance(v, int | float) and not isinstance(v, bool) for v in row):
                rows.append(row)
                times.append(float(data.ts[i]))
    return np.asarray(rows, np.float64).reshape(-1, width), times
