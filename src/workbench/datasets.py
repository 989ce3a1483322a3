"""Training data: scikit-learn's bundled datasets or a CSV file, and a held-out split.

Nothing here downloads: the named datasets ship inside scikit-learn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import DatasetError

BUNDLED = ("breast_cancer", "iris", "wine", "diabetes")


@dataclass(frozen=True)
class Dataset:
    """Features, target and their names.

    ``y`` holds class indices (into ``target_names``) for a categorical target and
    floats for a continuous one.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    categorical: bool

    def __len__(self) -> int:
        return len(self.y)

    def fingerprint(self) -> str:
        """A sha256 of the exact features, target and names (identifies the training data)."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.X, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(self.y).astype(np.float64).tobytes())
        h.update("\x1f".join(self.feature_names + self.target_names).encode())
        return "sha256:" + h.hexdigest()

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(
            self.name, self.X[index], self.y[index], self.feature_names,
            self.target_names, self.categorical,
        )

    def select(self, features: Sequence[str]) -> Dataset:
        """The same rows with only ``features`` (by name, in that order)."""
        missing = [f for f in features if f not in self.feature_names]
        if missing or not features:
            raise DatasetError(f"dataset {self.name!r} has no features {missing}"
                               if missing else "select at least one feature",
                               detail={"features": list(self.feature_names)})
        columns = [self.feature_names.index(f) for f in features]
        return Dataset(self.name, self.X[:, columns], self.y, tuple(features),
                       self.target_names, self.categorical)


def load(name: str | None = None, *, csv: str | Path | None = None,
         target: str | None = None) -> Dataset:
    """Load a bundled dataset by ``name``, or a CSV file with a ``target`` column."""
    if csv is not None:
        return _from_csv(Path(csv), target)
    if name is None:
        raise DatasetError("give a dataset name or a CSV path",
                           detail={"expected one of": BUNDLED})
    from sklearn import datasets as sk

    loaders = {
        "breast_cancer": sk.load_breast_cancer,
        "iris": sk.load_iris,
        "wine": sk.load_wine,
        "diabetes": sk.load_diabetes,
    }
    if name not in loaders:
        raise DatasetError(f"unknown dataset {name!r}",
                           detail={"expected one of": BUNDLED, "or": "--csv PATH --target COLUMN"})
    bunch = loaders[name]()
    categorical = name != "diabetes"
    target_names = tuple(map(str, bunch.target_names)) if categorical else ("target",)
    y = bunch.target.astype(np.int64 if categorical else np.float64)
    return Dataset(name, np.asarray(bunch.data, np.float64), y,
                   tuple(map(str, bunch.feature_names)), target_names, categorical)


def from_arrays(X: np.ndarray, y: np.ndarray, *, name: str = "arrays",
                feature_names: tuple[str, ...] | None = None,
                target_names: tuple[str, ...] | None = None,
                categorical: bool | None = None) -> Dataset:
    """A dataset from arrays (e.g. a notebook's own data). Integer targets are categorical
    unless said otherwise; class names default to the sorted distinct values."""
    X = np.asarray(X, np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) != len(y):
        raise DatasetError(f"X must be (rows, features) and y (rows,); got {X.shape} and {y.shape}")
    if categorical is None:
        categorical = y.dtype.kind in "iub"
    if categorical:
        classes, codes = np.unique(y, return_inverse=True)
        y = codes.astype(np.int64)
        target_names = target_names or tuple(map(str, classes))
    else:
        y = y.astype(np.float64)
        target_names = target_names or ("target",)
    names = feature_names or tuple(f"x{i}" for i in range(X.shape[1]))
    if len(names) != X.shape[1]:
        raise DatasetError(f"{len(names)} feature names for {X.shape[1]} features")
    return Dataset(name, X, y, tuple(names), tuple(target_names), categorical)


def _from_csv(path: Path, target: str | None) -> Dataset:
    import pandas as pd

    if target is None:
        raise DatasetError("a CSV needs --target COLUMN naming the outcome column")
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read CSV {str(path)!r}: {exc}") from exc
    if target not in frame.columns:
        raise DatasetError(f"CSV {str(path)!r} has no column {target!r}",
                           detail={"columns": list(map(str, frame.columns))})
    features = frame.drop(columns=[target])
    non_numeric = [str(c) for c in features.columns
                   if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise DatasetError("feature columns must be numeric",
                           detail={"non-numeric columns": non_numeric})
    frame = frame.dropna()
    if len(frame) < 10:
        raise DatasetError(f"CSV {str(path)!r} has {len(frame)} complete rows; need at least 10")
    column = frame[target]
    categorical = not pd.api.types.is_float_dtype(column)
    if categorical:
        classes, y = np.unique(column.to_numpy(), return_inverse=True)
        target_names = tuple(map(str, classes))
        y = y.astype(np.int64)
    else:
        target_names, y = (str(target),), column.to_numpy(np.float64)
    X = frame.drop(columns=[target]).to_numpy(np.float64)
    return Dataset(path.stem, X, y, tuple(map(str, features.columns)), target_names, categorical)


def split(data: Dataset, *, test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """A train/held-out split, stratified by class for categorical targets."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test_fraction must be in (0, 1), got {test_fraction}")
    index = np.arange(len(data))
    train, test = train_test_split(
        index, test_size=test_fraction, random_state=seed,
        stratify=data.y if data.categorical else None,
    )
    return data.subset(np.sort(train)), data.subset(np.sort(test))
