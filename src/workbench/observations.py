"""How one served row and its observed outcome become numbers: the log score
(:func:`log_score`), the Brier score (:func:`brier`), and all a fold takes from a row at
once (:func:`observe`). Where a stored row or outcome cannot give a number, None: stored
data never fails a read-out.
"""

from __future__ import annotations

import math
from typing import Any

from workbench.calibration import class_index

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))
_ERRORS = (TypeError, ValueError, IndexError, KeyError, AttributeError, OverflowError,
           ZeroDivisionError)


def log_score(row: dict[str, Any], value: Any) -> float:
    """Log predictive density of ``value`` under a served row."""
    if "probabilities" in row:
        p = list(row["probabilities"].values())[class_index(row, value)]
        return math.log(max(p, 1e-12))
    y, sd = float(value), max(row["std"], 1e-12)
    z = (y - row["mean"]) / sd
    return -z * z / 2.0 - _LOG_SQRT_2PI - math.log(sd)


def brier(row: dict[str, Any], value: Any) -> float:
    """Brier score of a classifier's probabilities against the observed class."""
    probs = list(row["probabilities"].values())
    k = class_index(row, value)
    return float(sum((p - (1.0 if j == k else 0.0)) ** 2 for j, p in enumerate(probs)))


def observe(row: dict[str, Any], value: Any) -> tuple[
        int | None, float | None, tuple[float | None, float | None],
        tuple[float, float] | None, tuple[float, float] | None]:
    """What one served row and its observed ``value`` give, None where they cannot:
    the binary outcome, the continuous outcome, the (log, Brier) scores, the (predicted
    probability, observed class) pair of a binary classifier, and the (inside, width) of
    a regression interval. The same as :func:`log_score`, :func:`brier` and
    :mod:`workbench.calibration`, with the row's class looked up once."""
    v = None
    if not isinstance(value, str):
        try:
            v = float(value)
        except _ERRORS:
            v = None
    b = int(v) if v is not None and v in (0.0, 1.0) else None
    c = v if v is not None and not isinstance(value, bool) and math.isfinite(v) else None
    if "probabilities" in row:
        try:
            probs = list(row["probabilities"].values())
            k = value if type(value) is int and 0 <= value < len(probs) else \
                class_index(row, value)
        except _ERRORS:
            return b, c, (None, None), None, None
        reliable = None
        try:
            log = _finite_or_none(math.log(max(probs[k], 1e-12)))
        except _ERRORS:
            log = None
        try:
            brier_ = 0.0
            for j, p in enumerate(probs):
                d = p - (1.0 if j == k else 0.0)
                brier_ += d * d  # in order, as numpy sums a few terms
            brier_ = _finite_or_none(float(brier_))
        except _ERRORS:
            brier_ = None
        if len(probs) == 2:
            try:
                p = float(row["mean"])
                reliable = (p, float(k)) if math.isfinite(p) else None
            except _ERRORS:
                reliable = None
        return b, c, (log, brier_), reliable, None
    covered = None
    try:
        y, sd = float(value), max(row["std"], 1e-12)
        z = (y - row["mean"]) / sd
        log = _finite_or_none(-z * z / 2.0 - _LOG_SQRT_2PI - math.log(sd))
    except _ERRORS:
        log = None
    y = finite(value)
    if y is not None and "interval" in row:
        try:
            lo, hi = row["interval"][0], row["interval"][1]
            covered = (float(lo <= y <= hi), float(hi - lo))
        except _ERRORS:
            covered = None
    return b, c, (log, None), None, covered


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def finite(value: Any) -> float | None:
    """``value`` as a finite float (None for booleans, strings, NaN and infinities)."""
    if isinstance(value, bool | str) or not isinstance(value, int | float):
        return None
    try:
        y = float(value)
    except OverflowError:
        return None
    return y if math.isfinite(y) else None
