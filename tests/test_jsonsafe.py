"""Values made safe for JSON, and the event store's JSON columns (orjson)."""

from __future__ import annotations

import json
import math

import numpy as np

from workbench import jsonsafe


def test_finite_and_plain_replace_what_json_cannot_carry():
    assert jsonsafe.finite({"a": [1.0, math.nan], "b": (math.inf, "x")}) == {
        "a": [1.0, None], "b": [None, "x"]}
    assert jsonsafe.plain({"s": {1}, "n": np.float32(0.5)}) == {"s": "{1}",
                                                              "n": "np.float32(0.5)"}


def test_dumps_writes_valid_json_that_reads_back_the_same():
    value = {"summary": [{"mean": 0.1, "interval": [0.05, 0.2], "label": "yes"}],
             "instances": np.asarray([[0.1, 2.5]], np.float32).tolist(), 3: "int key"}
    text = jsonsafe.dumps(value)
    assert json.loads(text) == {**{k: v for k, v in value.items() if k != 3}, "3": "int key"}
    assert jsonsafe.dumps(np.float32(0.25)) == "0.25"  # numpy scalars, as json.dumps cannot


def test_dumps_never_writes_nan_or_infinity_which_postgresql_refuses():
    assert json.loads(jsonsafe.dumps([math.nan, math.inf, -math.inf, 1.0])) == [
        None, None, None, 1.0]
    fallback = jsonsafe.dumps({"big": 2**70, "bad": math.nan})  # orjson refuses the int
    assert "NaN" not in fallback and json.loads(fallback) == {"big": 2**70, "bad": None}
