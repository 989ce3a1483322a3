"""Outcomes are checked by the experiment's metric and the model that served them."""

from __future__ import annotations

import time

import pytest

from workbench import feedback
from workbench.errors import InputError

BINARY = ("no", "yes")
CLASSES = ("a", "b", "c")


@pytest.mark.parametrize(("metric", "kind", "classes", "value", "stored"), [
    ("binary", "binary", BINARY, 1, 1), ("binary", "binary", BINARY, 0.0, 0),
    ("binary", "binary", BINARY, True, 1), ("binary", "binary", BINARY, False, 0),
    ("continuous", "regression", (), 3.5, 3.5), ("continuous", "binary", BINARY, -2, -2.0),
    ("log_score", "regression", (), 12.25, 12.25),
    ("log_score", "binary", BINARY, "yes", "yes"), ("log_score", "binary", BINARY, 1, "yes"),
    ("brier", "binary", BINARY, False, "no"), ("brier", "multiclass", CLASSES, "c", "c"),
    ("log_score", "multiclass", CLASSES, "a", "a"),
])
def test_good_outcomes_are_normalised(metric, kind, classes, value, stored):
    assert feedback.check_outcome(value, metric=metric, kind=kind, classes=classes,
                                  n_rows=1) == stored


KINDS = [("binary", "binary", BINARY), ("continuous", "regression", ()),
         ("log_score", "regression", ()), ("log_score", "binary", BINARY),
         ("brier", "multiclass", CLASSES), ("log_score", "multiclass", CLASSES)]
NOT_ANY = ["yes!", [], None, {"a": 1}, float("nan"), float("inf"), "d"]
NOT_CLASSES = [5, 2.5]  # numbers are outcomes of a regression, not of a classifier
TOO_LARGE = [1e200, -2e15, 10**400]  # their squares would overflow a read-out's moments
BAD = [(*k, v) for k in KINDS for v in NOT_ANY] + [
    (*k, v) for k in KINDS if k[2] for v in NOT_CLASSES] + [
    ("continuous", "regression", (), v) for v in TOO_LARGE]


@pytest.mark.parametrize(("metric", "kind", "classes", "value"), BAD)
def test_bad_outcomes_name_what_was_expected(metric, kind, classes, value):
    with pytest.raises(InputError) as err:
        feedback.check_outcome(value, metric=metric, kind=kind, classes=classes, n_rows=1)
    assert err.value.detail["expected"] == feedback.expected(metric, kind, classes) or \
        "rows" in err.value.message


def test_a_list_gives_one_outcome_per_row():
    assert feedback.check_outcome([1, 0, True], metric="binary", kind="binary",
                                  classes=BINARY, n_rows=3) == [1, 0, 1]
    with pytest.raises(InputError, match="2 outcomes for a request of 3 rows"):
        feedback.check_outcome([1, 0], metric="binary", kind="binary", classes=BINARY,
                               n_rows=3)
    with pytest.raises(InputError, match="invalid outcome 'x'"):
        feedback.check_outcome([1, "x"], metric="binary", kind="binary", classes=BINARY,
                               n_rows=2)


def test_request_ids_carry_their_time():
    before = time.time()
    rid = feedback.new_request_id()
    assert len(rid) == 32 and feedback.issued_at(rid) == pytest.approx(before, abs=1.0)
    assert feedback.issued_at("not-one-of-ours") is None
    for bad in (None, "", 7, "x" * 65):
        with pytest.raises(InputError, match="invalid request_id"):
            feedback.check_request_id(bad)
