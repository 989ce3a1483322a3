"""Feedback: outcomes posted for served predictions, checked against the metric and stored
exactly once whichever replica receives them.

- **Request ids** carry the time they were issued (48 bits of milliseconds, then 80 random
  bits, as 32 hex digits), so that a replica can tell an id issued a moment ago by another
  replica, whose event may still be in that replica's write queue, from an unknown one.
- **Outcomes** are validated by the experiment's metric and the serving model: a binary
  metric takes 0/1 or true/false; a continuous one a finite number; the proper scoring
  rules (``log_score``, ``brier``) take a finite number for a regression, one of the
  model's class names for a classifier (or 0/1/true/false for a binary one). A list gives
  one outcome per row of the request. Anything else is an :class:`InputError` naming what
  was expected, before anything is stored.
- **Covariates** (optional): the unit's value of the metric before the experiment, for
  CUPED (:mod:`workbench.cuped`): a finite number, one per request, applying to each of its
  rows; anything else (NaN, infinity, a string, true/false) is an :class:`InputError`.
- **De-duplication** is the ``outcomes`` table's primary key, shared by every replica: the
  first outcome for a request id is recorded, a repeat is acknowledged as a duplicate.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import Any

from workbench import entropy
from workbench.errors import InputError

REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_REQUEST_ID = 64
MAX_MAGNITUDE = 1e15  # continuous outcomes and covariates (floats are exact integers to 9e15)


def new_request_id() -> str:
    """A fresh request id: the time in milliseconds (12 hex digits), then 20 random ones."""
    return f"{int(time.time() * 1000):012x}{entropy.token_hex(10)}"


def issued_at(request_id: str) -> float | None:
    """When a request id of :func:`new_request_id` was issued (seconds), else None."""
    return int(request_id[:12], 16) / 1000.0 if REQUEST_ID.match(request_id) else None


def check_request_id(request_id: Any) -> str:
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID or \
            not request_id.isprintable() or not request_id.isascii():
        raise InputError(f"invalid request_id {_short(request_id)}",
                         detail={"expected": "the request_id string returned by /predict"})
    return request_id


def expected(metric: str, kind: str, classes: Sequence[str]) -> str:
    """What an outcome must be for ``metric`` on a model of ``kind`` (for messages)."""
    if metric == "binary":
        return "0, 1, true or false"
    if metric == "continuous" or kind == "regression":
        return f"a finite number of magnitude at most {MAX_MAGNITUDE:g}"
    names = ", ".join(repr(c) for c in classes)
    return f"one of the model's classes ({names})" + (
        " or 0, 1, true, false" if kind == "binary" else "")


def describe(metric: str, kind: str, classes: Sequence[str]) -> dict[str, str]:
    """What ``POST /feedback`` takes, field by field (the gateway's ``/metadata``)."""
    return {"request_id": "from /predict",
            "outcome": expected(metric, kind, classes) + ", or a list, one per row",
            "covariate": f"optional: a finite number of magnitude at most {MAX_MAGNITUDE:g}, "
                         "the unit's value of the metric before the experiment (CUPED)"}


def check_outcome(outcome: Any, *, metric: str, kind: str, classes: Sequence[str],
                  n_rows: int) -> Any:
    """The outcome, normalised for storage (0/1 for binary, a float, or a class name), or
    :class:`InputError` saying what was expected."""
    want = expected(metric, kind, classes)
    if isinstance(outcome, list):
        if len(outcome) != n_rows:
            raise InputError(f"{len(outcome)} outcomes for a request of {n_rows} rows",
                             detail={"expected": f"one outcome ({want}), or a list of "
                                                 f"{n_rows}, one per row"})
        return [_one(v, metric, kind, classes, want) for v in outcome]
    return _one(outcome, metric, kind, classes, want)


def check_covariate(covariate: Any) -> float | None:
    """The pre-period covariate as a float (None when not sent), or :class:`InputError`
    saying what was expected."""
    if covariate is None:
        return None
    if _bounded(covariate):
        return float(covariate)
    raise InputError(f"invalid covariate {_short(covariate)}", detail={
        "expected": f"a finite number of magnitude at most {MAX_MAGNITUDE:g}: the unit's "
                    "value of the metric before the experiment (CUPED), or leave it out"})


def _one(value: Any, metric: str, kind: str, classes: Sequence[str], want: str) -> Any:
    if metric == "binary":
        if isinstance(value, bool) or (_number(value) and value in (0, 1)):
            return int(value)
    elif metric == "continuous" or kind == "regression":
        if _bounded(value):
            return float(value)
    elif isinstance(value, str) and value in classes:
        return value
    elif kind == "binary" and (isinstance(value, bool) or (_number(value) and value in (0, 1))):
        return classes[int(value)]
    raise InputError(f"invalid outcome {_short(value)} for the {metric} metric",
                     detail={"expected": want})


def _bounded(value: Any) -> bool:
    """A number a read-out can square and sum (past ``MAX_MAGNITUDE`` the moments of many
    units overflow to inf and the read-out of every later request would fail)."""
    return _number(value) and abs(value) <= MAX_MAGNITUDE


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and (
        isinstance(value, int) or math.isfinite(value))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
