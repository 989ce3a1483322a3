"""A request's inputs checked before any model sees them: rows (shape, feature names,
types, finite values, how many), the interval mass and the number of draws; every refusal
an :class:`~workbench.errors.InputError` saying what was expected."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np

from workbench.errors import InputError


def check_interval_mass(mass: Any) -> float:
    if isinstance(mass, bool) or not isinstance(mass, int | float) or not (
            0.0 < float(mass) < 1.0):
        raise InputError(f"interval_mass must be a number strictly between 0 and 1, got {mass!r}",
                         detail={"expected": "e.g. 0.9 for a central 90% interval"})
    return float(mass)


def check_draws(draws: Any, limit: int) -> int:
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 0:
        raise InputError(f"draws must be a non-negative integer, got {draws!r}")
    if draws > limit:
        raise InputError(f"draws={draws} is more than this model returns per row",
                         detail={"expected": f"at most {limit}"})
    return draws


def check_entities(entities: Any, instances: Any = None, *, max_rows: int
                   ) -> list[dict[str, Any]]:
    """Entity rows as a gateway sees them (the Predictor checks them against the model's
    feature service): a non-empty list of flat objects of strings and finite numbers."""
    if instances is not None:
        raise InputError("send either instances or entities, not both",
                         detail={"hint": "request-time values go inside each entity row"})
    if not isinstance(entities, list) or not entities:
        raise InputError(f"entities must be a non-empty list of objects, got "
                         f"{_typename(entities)}", detail={"expected": [{"<key>": "<id>"}]})
    if len(entities) > max_rows:
        raise InputError(f"{len(entities)} entity rows; at most {max_rows} per request")
    for i, row in enumerate(entities):
        if not isinstance(row, dict) or not row:
            raise InputError(f"entity row {i} must be a non-empty object, got "
                             f"{_typename(row)}", detail={"expected": {"<key>": "<id>"}})
        for key, value in row.items():
            ok = (isinstance(value, str) and len(value) <= 256 and "\x00" not in value) or (
                isinstance(value, int) and not isinstance(value, bool)
                and -2**63 <= value < 2**63) or (isinstance(value, float)
                                                 and np.isfinite(value))
            if not ok or len(key) > 128 or "\x00" in key:
                raise InputError(f"entity row {i}: {key[:128]!r} must be a string (at most "
                                 f"256 characters, no NUL) or a finite number, got "
                                 f"{_typename(value)}")
    return entities


def validate_rows(instances: Any, features: Sequence[str], *, max_rows: int,
                  index: Mapping[str, int] | None = None) -> np.ndarray:
    """Check rows and return them as a ``(rows, features)`` float32 array."""
    n_features = len(features)
    if not isinstance(instances, list | tuple | np.ndarray):
        raise InputError(f"instances must be a list of rows, got {_typename(instances)}",
                         detail={"expected": f"a list of rows of {n_features} numbers, or of "
                                             "objects keyed by feature name"})
    if len(instances) == 0:
        raise InputError("instances is empty", detail={"expected": "at least one row"})
    if len(instances) > max_rows:
        raise InputError(f"too many rows: {len(instances)}",
                         detail={"expected": f"at most {max_rows} rows per request"})
    if isinstance(instances, np.ndarray):
        return _finite(np.asarray(instances, np.float32).reshape(len(instances), -1)
                       if instances.ndim == 2 and instances.shape[1] == n_features
                       else _shape_error(instances.shape, n_features), features)
    fast = _as_numeric(instances, n_features)
    if fast is not None:
        return _finite(fast, features)
    index = index or {name: i for i, name in enumerate(features)}
    out = np.empty((len(instances), n_features), np.float64)
    for r, row in enumerate(instances):
        if isinstance(row, Mapping):
            missing = [f for f in features if f not in row]
            unknown = [str(k) for k in row if k not in index]
            if missing or unknown:
                raise InputError(
                    f"row {r}: " + "; ".join(
                        ([f"missing features {missing[:10]}"] if missing else [])
                        + ([f"unknown features {unknown[:10]}"] if unknown else [])),
                    detail={"expected features": list(features)})
            values = [row[f] for f in features]
        elif isinstance(row, list | tuple):
            if len(row) != n_features:
                raise InputError(f"row {r} has {len(row)} values",
                                 detail={"expected": f"{n_features} values, in the order "
                                                     f"{list(features)}"})
            values = list(row)
        else:
            raise InputError(f"row {r} is {_typename(row)}",
                             detail={"expected": f"a list of {n_features} numbers or an "
                                                 "object keyed by feature name"})
        for c, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(
                    f"row {r}, feature {features[c]!r}: {_typename(value)} is not a number",
                    detail={"expected": "a finite number"})
            out[r, c] = value
    with np.errstate(over="ignore"):
        return _finite(out.astype(np.float32), features)


def _as_numeric(rows: Sequence[Any], n_features: int) -> np.ndarray | None:
    """The fast path: a rectangular list of lists of plain numbers, or None."""
    try:
        arr = np.array(rows)
    except (ValueError, TypeError, OverflowError):
        return None
    if arr.ndim != 2 or arr.shape[1] != n_features or arr.dtype.kind not in "if":
        return None
    if bool in set(map(type, chain.from_iterable(rows))):  # numpy reads True as 1
        return None
    with np.errstate(over="ignore"):
        return arr.astype(np.float32)


def _finite(X: np.ndarray, features: Sequence[str]) -> np.ndarray:
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        raise InputError(
            f"row {r}, feature {features[c]!r}: {X[r, c]} is not a finite number"
            f" ({int(bad.sum())} non-finite value{'s' if bad.sum() > 1 else ''} in all)",
            detail={"expected": "finite numbers (no NaN or infinity, |x| < 3.4e38)"})
    return X


def _shape_error(shape: tuple[int, ...], n_features: int) -> np.ndarray:
    raise InputError(f"instances have shape {list(shape)}",
                     detail={"expected": f"(rows, {n_features})"})


def _is_checked(X: Any, n_features: int) -> bool:
    return (isinstance(X, np.ndarray) and X.dtype == np.float32 and X.ndim == 2
            and X.shape[1] == n_features and bool(np.isfinite(X).all()))


def _typename(value: Any) -> str:
    return "null" if value is None else {
        str: "a string", dict: "an object", list: "a list", bool: "a boolean",
    }.get(type(value), f"a {type(value).__name__}")
