"""The Spark adapter without Spark: its ``mapInPandas`` function is a plain iterator of
pandas frames in, scored frames out, so it is tested here directly. (A real local Spark
run, which needs pyspark and Java, is ``benchmarks/spark_check.py``.)"""

from __future__ import annotations

import pickle
import re

import numpy as np
import pandas as pd
import pytest
from conftest import make_posterior

from workbench import artifact, score_spark, store
from workbench.errors import InputError
from workbench.predict import Predictor
from workbench.score import output_columns
from workbench.score_spark import rechunk, scorer

# What Spark's DataFrame.dtypes says for the test rows, and the pandas dtypes each Spark
# type arrives as (the output frames must match the schema they are declared with).
COLUMNS = [("customer_id", "bigint"), ("x0", "double"), ("region", "string"),
           ("x1", "double"), ("x2", "double")]
AS_PANDAS = {"bigint": np.dtype("int64"), "string": np.dtype("O"), "float": np.dtype("float32")}


@pytest.fixture(scope="module")
def posterior():  # the adapter does not depend on the kind (tests/test_score.py does)
    return make_posterior("binary", n_features=3, draws=200, seed=5, name="score-spark")


@pytest.fixture(scope="module")
def tag(posterior):
    return store.save(posterior)


def _rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["x0", "x1", "x2"])
    frame["customer_id"] = np.arange(n, dtype=np.int64) + 10_000
    frame["region"] = np.where(np.arange(n) % 2, "north", "south")
    return frame[[name for name, _ in COLUMNS]]


def _fields(schema: str) -> list[tuple[str, str]]:
    return [(m[1].replace("``", "`"), m[2]) for m in
            re.finditer(r"`((?:[^`]|``)+)` ([a-z]+)(?:, |$)", schema)]


def test_spark_batches_come_out_scored_as_the_predictor_scores_them(posterior, tag):
    rows = _rows(2_500, seed=1)
    batches = [rows.iloc[:1_000], rows.iloc[1_000:1_000], rows.iloc[1_000:1_700],
               rows.iloc[1_700:]]  # as Spark's Arrow batches, an empty one among them
    fn, schema = scorer(tag, COLUMNS, interval_mass=0.8, chunk_rows=1_024)
    out = list(fn(iter(batches)))
    assert [len(f) for f in out] == [1_024, 1_024, 452]  # re-cut to the compiled shape
    got = pd.concat(out, ignore_index=True)
    assert list(got.columns) == ["customer_id", "region", *output_columns(posterior)]
    assert got.customer_id.tolist() == rows.customer_id.tolist()
    assert got.region.tolist() == rows.region.tolist()
    served = Predictor(posterior).predict(rows[["x0", "x1", "x2"]].to_numpy(),
                                          interval_mass=0.8)
    np.testing.assert_allclose(got["mean"], served.mean, atol=1e-6)
    np.testing.assert_allclose(got["std"], served.std, atol=1e-6)
    np.testing.assert_allclose(got["lower"], served.lower, atol=1e-6)
    np.testing.assert_allclose(got["upper"], served.upper, atol=1e-6)
    np.testing.assert_allclose(got["p_yes"], served.probabilities[:, 1], atol=1e-6)
    assert got.label.tolist() == [posterior.target_names[i] for i in served.label]
    # The schema declares exactly the frames' columns, in order, with their types.
    fields = _fields(schema)
    assert [name for name, _ in fields] == list(got.columns)
    for frame in out:
        assert dict(frame.dtypes) == {name: AS_PANDAS[kind] for name, kind in fields}


def test_the_function_travels_as_bytes_and_compiles_once_per_worker(tag):
    payload = (store.path(tag) / artifact.FILENAME).read_bytes()
    fn, schema = scorer(payload, COLUMNS, chunk_rows=1_024)  # no model store needed
    assert schema == scorer(tag, COLUMNS, chunk_rows=1_024)[1]
    shipped = pickle.loads(pickle.dumps(fn))  # as Spark sends it to executors
    rows = _rows(600, seed=2)
    first = pd.concat(shipped(iter([rows])), ignore_index=True)
    (predictor,) = score_spark._LOADED.values()
    second = pd.concat(shipped(iter([rows.iloc[:100], rows.iloc[100:]])), ignore_index=True)
    assert [p is predictor for p in score_spark._LOADED.values()] == [True]
    assert predictor.compilations == len(predictor.buckets)  # warmed up once, no more
    pd.testing.assert_frame_equal(first, second)


def test_inputs_it_cannot_score_are_refused_on_the_driver(tag):
    with pytest.raises(InputError, match=r"lacks the model's feature columns \['x2'\]"):
        scorer(tag, [c for c in COLUMNS if c[0] != "x2"])
    with pytest.raises(InputError, match=r"named like the scores \['mean'\]"):
        scorer(tag, [*COLUMNS, ("mean", "double")])
    with pytest.raises(InputError, match="interval_mass"):
        scorer(tag, COLUMNS, interval_mass=1.5)
    fn, _ = scorer(tag, COLUMNS, chunk_rows=1_024)
    bad = _rows(1_200)
    bad.loc[1_100, "x1"] = np.inf
    with pytest.raises(InputError, match="row 1100: x1 is inf"):  # its place in the partition
        list(fn(iter([bad.iloc[:600], bad.iloc[600:]])))


def test_odd_column_names_are_quoted_in_the_schema(tmp_path):
    posterior = make_posterior("binary", n_features=3, seed=1)
    saved = artifact.save(posterior, tmp_path / artifact.FILENAME)
    _, schema = scorer(saved.read_bytes(),
                       [*COLUMNS, ("order `id`", "bigint"), ("tags", "array<string>")])
    assert "`order ``id``` bigint, `tags` array<string>, `mean` float" in schema


def test_rechunk_cuts_and_joins_frames_to_a_fixed_size():
    frames = [pd.DataFrame({"a": range(n)}) for n in (3, 0, 5, 1)]
    assert [len(f) for f in rechunk(iter(frames), 4)] == [4, 4, 1]
    assert [f.a.tolist() for f in rechunk(iter(frames), 4)][1] == [1, 2, 3, 4]
    assert list(rechunk(iter([]), 4)) == []
