from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.errors import InputError
from workbench.oip import _parse


def test_json_tensor():
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 3],
                                   "data": [1, 2, 3, 4, 5, 6]}]}).encode()
    header, X = _parse(body, None, 3)
    assert X.dtype == np.float32 and X.shape == (2, 3) and X[1, 2] == 6


def test_binary_tensor_extension():
    data = np.arange(6, dtype="<f4").reshape(2, 3)
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3],
                                     "parameters": {"binary_data_size": data.nbytes}}]})
    body = header.encode() + data.tobytes()
    _, X = _parse(body, str(len(header)), 3)
    np.testing.assert_array_equal(X, data)
    with pytest.raises(InputError, match="binary tensor size"):
        _parse(body[:-4], str(len(header)), 3)


@pytest.mark.parametrize(("body", "message"), [
    (b"{", "malformed inference request"),
    (b'{"inputs": "x"}', "exactly one input tensor"),
    (b'{"inputs": [{"datatype": "BYTES", "shape": [1, 3], "data": ["a"]}]}',
     "unsupported datatype"),
    (b'{"inputs": [{"datatype": "FP32", "shape": [1, -3], "data": [1]}]}', "invalid shape"),
    (b'{"inputs": [{"datatype": "FP32", "shape": [1, 3], "data": ["a", "b", "c"]}]}',
     "must be numbers"),
])
def test_bad_requests(body, message):
    with pytest.raises(InputError, match=message):
        _parse(body, None, 3)


@pytest.mark.parametrize("size", ["12", 12.0, None, True, -4, [12]])
def test_a_binary_data_size_that_is_not_a_non_negative_integer_is_a_400(size):
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                     "parameters": {"binary_data_size": size}}]})
    body = header.encode() + np.zeros(3, "<f4").tobytes()
    with pytest.raises(InputError, match="binary_data_size must be a non-negative integer"
                       ) as refused:
        _parse(body, str(len(header)), 3)
    assert refused.value.detail == {"expected": "12 (bytes of the tensor after the JSON header)"}


@pytest.mark.parametrize(("tensor", "message"), [
    ({"datatype": {"FP32": 1}, "shape": [1, 3], "data": [1, 2, 3]}, "unsupported datatype"),
    ({"datatype": ["FP32"], "shape": [1, 3], "data": [1, 2, 3]}, "unsupported datatype"),
    ({"datatype": "FP32", "shape": [False], "data": []}, "invalid shape"),
    ({"datatype": "FP32", "shape": [2 ** 40, 2 ** 40], "data": []}, "has 0 values"),
    ({"datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3], "parameters": [1]},
     "parameters must be an object"),
])
def test_malformed_tensors_are_a_400_not_a_500(tensor, message):
    with pytest.raises(InputError, match=message):
        _parse(json.dumps({"inputs": [{"name": "x", **tensor}]}).encode(), None, 3)


@pytest.mark.parametrize(("extra", "message"), [
    ({"parameters": "x"}, "parameters must be an object"),
    ({"outputs": 3}, "outputs must be a list"),
])
def test_request_parameters_and_outputs_of_the_wrong_type_are_a_400(extra, message):
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    with pytest.raises(InputError, match=message):
        _parse(json.dumps(body | extra).encode(), None, 3)
    with pytest.raises(InputError, match="must be a JSON object"):
        _parse(b"[1]", None, 3)
