from __future__ import annotations

import numpy as np
import pytest

from workbench import datasets
from workbench.errors import DatasetError


def test_select_keeps_rows_and_takes_columns_by_name_in_order():
    data = datasets.load("breast_cancer")
    picked = data.select(["mean area", "mean radius"])
    assert picked.feature_names == ("mean area", "mean radius")
    np.testing.assert_array_equal(picked.X[:, 0], data.X[:, data.feature_names.index("mean area")])
    np.testing.assert_array_equal(picked.y, data.y)
    assert picked.fingerprint() != data.fingerprint()
    assert picked.fingerprint() == data.select(["mean area", "mean radius"]).fingerprint()


def test_select_names_what_is_missing():
    data = datasets.load("iris")
    with pytest.raises(DatasetError, match="no features \\['petal colour'\\]") as err:
        data.select(["petal colour"])
    assert "sepal length (cm)" in err.value.detail["features"]
    with pytest.raises(DatasetError, match="at least one"):
        data.select([])
