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
