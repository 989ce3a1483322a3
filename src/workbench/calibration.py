"""How well served predictions match their outcomes, per arm that served them.

- :func:`coverage`: the share of continuous outcomes inside their served interval;
- :func:`reliability`: predicted probability against observed frequency (binary
  classifiers), and :func:`calibration_error` (the expected calibration error) from it.

:func:`reliability_bins` is the binning on plain arrays, shared with the held-out scores
of :func:`workbench.fit.score` (with :func:`predicted_against_observed`), and
:func:`coverage_band` says whether a held-out coverage is within 90% ± 3%.

Outcomes a served row cannot be scored against (a stored value the model cannot take) are
passed over: a read-out never fails because of stored data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.aggregates import BINS

if TYPE_CHECKING:
    from workbench.events import Events

COVERAGE_TARGET = 0.9  # the interval mass scored on held-out rows ...
COVERAGE_TOLERANCE = 0.03  # ... and how far from it their coverage may be
RELIABILITY_BINS = BINS  # equal-width bins of [0, 1], as the read-out bins served rows


def observations(events: Events) -> tuple[np.ndarray, list[Any], list[Any]]:
    """(arm, summary row, outcome) per observed row: feedback paired with served rows."""
    arms, rows, values = [], [], []
    for arm, summary, outcome in zip(events.arm, events.summary, events.outcome, strict=True):
        if outcome is None or not isinstance(summary, list) or not summary:
            continue
        if not isinstance(outcome, list):
            outs = [outcome] * len(summary)
        else:  # one per row; a list of another length is unusable for every row
            outs = outcome if len(outcome) == len(summary) else [None] * len(summary)
        for row, value in zip(summary, outs, strict=True):
            if isinstance(row, dict):
                arms.append(arm)
                rows.append(row)
                values.append(value)
    return np.asarray(arms, dtype=object), rows, values


def class_index(row: dict[str, Any], value: Any) -> int:
    """The position of the observed class ``value`` (a class name or an index) in a row's
    probabilities; ValueError when the model has no such class."""
    names = list(row["probabilities"])
    if isinstance(value, str):
        return names.index(value)
    if isinstance(value, bool | int | float) and float(value) == int(value) and \
            0 <= int(value) < len(names):
        return int(value)
    raise ValueError(f"no class {value!r} among {names}")


def coverage(events: Events) -> dict[str, dict[str, Any]]:
    """Per arm: the share of observed continuous outcomes inside their served interval."""
    arms, rows, values = observations(events)
    out: dict[str, dict[str, Any]] = {}
    for arm in dict.fromkeys(arms.tolist()):
        inside, widths = [], []
        for a, r, v in zip(arms, rows, values, strict=True):
            if a != arm or "probabilities" in r or "interval" not in r:
                continue
            y = _finite(v)
            if y is not None:
                inside.append(r["interval"][0] <= y <= r["interval"][1])
                widths.append(r["interval"][1] - r["interval"][0])
        if inside:
            out[arm] = {"rows": len(inside), "coverage": float(np.mean(inside)),
                        "mean_width": float(np.mean(widths))}
    return out


def reliability(events: Events, bins: int = RELIABILITY_BINS
                ) -> dict[str, list[dict[str, float]]]:
    """Per arm (binary classifiers): predicted probability against observed frequency."""
    arms, rows, values = observations(events)
    out: dict[str, list[dict[str, float]]] = {}
    for arm in dict.fromkeys(arms.tolist()):
        p, y = [], []
        for a, r, v in zip(arms, rows, values, strict=True):
            if a != arm or len(r.get("probabilities", {})) != 2:
                continue
            try:
                y.append(float(class_index(r, v)))
            except ValueError:
                continue
            p.append(r["mean"])
        if p:
            out[arm] = reliability_bins(np.array(p), np.array(y), bins)
    return out


def reliability_bins(p: np.ndarray, y: np.ndarray, bins: int = RELIABILITY_BINS
                     ) -> list[dict[str, float]]:
    """Predicted probabilities ``p`` against outcomes ``y`` (0 or 1) in ``bins`` equal-width
    bins of [0, 1]: each non-empty bin's edges, rows, mean predicted and observed frequency
    (the table :func:`calibration_error` reads)."""
    p_arr, y_arr = np.asarray(p, np.float64), np.asarray(y, np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p_arr, edges) - 1, 0, bins - 1)
    return [{"lo": float(edges[b]), "hi": float(edges[b + 1]), "rows": int(np.sum(m)),
             "predicted": float(p_arr[m].mean()), "observed": float(y_arr[m].mean())}
            for b in range(bins) if (m := which == b).any()]


def predicted_against_observed(kind: str, probabilities: np.ndarray, y: np.ndarray
                               ) -> tuple[np.ndarray, np.ndarray]:
    """What a classifier's reliability compares, per row with a class index ``y``: for a
    binary one, P(y=1) against y (as served rows are scored); for several classes, the
    predicted class's probability against whether it was the observed one (top-label)."""
    probabilities, y = np.asarray(probabilities, np.float64), np.asarray(y)
    if kind == "binary":
        return probabilities[:, 1], (y == 1).astype(np.float64)
    label = np.argmax(probabilities, axis=1)
    return probabilities[np.arange(len(y)), label], (label == y).astype(np.float64)


def coverage_band(coverage: float, rows: int, *, target: float = COVERAGE_TARGET,
                  tolerance: float = COVERAGE_TOLERANCE) -> tuple[str, float]:
    """Whether a coverage is ``within`` ``target ± tolerance`` (else ``below`` or
    ``above``), and the standard error it has by chance alone on ``rows`` rows (binomial,
    at the target): on a small held-out set the band is narrower than chance."""
    verdict = ("within" if abs(coverage - target) <= tolerance + 1e-9
               else "below" if coverage < target else "above")
    return verdict, float(np.sqrt(target * (1 - target) / rows)) if rows else float("nan")


def calibration_error(table: list[dict[str, float]]) -> tuple[float, int]:
    """The expected calibration error of a reliability table (row-weighted mean of
    |predicted - observed| over its bins), and the rows it rests on."""
    rows = sum(b["rows"] for b in table)
    if not rows:
        return 0.0, 0
    return float(sum(b["rows"] * abs(b["predicted"] - b["observed"]) for b in table) / rows), rows


def _finite(value: Any) -> float | None:
    if isinstance(value, bool | str) or not isinstance(value, int | float):
        return None
    return float(value) if np.isfinite(value) else None
