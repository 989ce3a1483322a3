"""Batch scoring: the Predictor's numbers for a table, streamed through Parquet and CSV
files in chunks, and an interrupted run resumed without redoing finished chunks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_posterior

from workbench.errors import ConfigError, InputError
from workbench.predict import Predictor
from workbench.score import batch_predictor, output_columns, score_batch
from workbench.score_files import score_file


@pytest.fixture(scope="module", params=["binary", "regression"])
def posterior(request):
    return make_posterior(request.param, n_features=3, draws=200, seed=4)


@pytest.fixture(scope="module")
def predictor(posterior):
    return batch_predictor(posterior)


def _rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)).astype(np.float32), columns=["x0", "x1", "x2"])
    return frame.assign(customer_id=np.arange(n) + 10_000)[["customer_id", "x0", "x1", "x2"]]


def test_scores_are_the_predictor_s_numbers(posterior, predictor):
    rows = _rows(300)
    scored = score_batch(predictor, rows, interval_mass=0.8)
    assert list(scored.columns) == ["customer_id", *output_columns(posterior)]
    assert scored.customer_id.tolist() == rows.customer_id.tolist()
    served = Predictor(posterior).predict(rows[["x0", "x1", "x2"]].to_numpy().tolist(),
                                          interval_mass=0.8).records()
    np.testing.assert_allclose(scored["mean"], [r["mean"] for r in served], atol=1e-6)
    np.testing.assert_allclose(scored["std"], [r["std"] for r in served], atol=1e-6)
    np.testing.assert_allclose(scored[["lower", "upper"]], [r["interval"] for r in served],
                               atol=1e-6)
    if posterior.kind != "regression":
        assert scored.label.tolist() == [r["label"] for r in served]
        name = posterior.target_names[-1]
        np.testing.assert_allclose(scored[f"p_{name}"],
                                   [r["probabilities"][name] for r in served], atol=1e-6)


def test_bad_tables_say_what_is_wrong(predictor):
    with pytest.raises(InputError, match=r"lacks the model's feature columns \['x2'\]"):
        score_batch(predictor, _rows(5).drop(columns=["x2"]))
    bad = _rows(5)
    bad.loc[3, "x1"] = np.nan
    with pytest.raises(InputError, match="row 103: x1 is nan"):
        score_batch(predictor, bad, first_row=100)
    with pytest.raises(InputError, match="interval_mass"):
        score_batch(predictor, _rows(5), interval_mass=1.5)
    assert len(score_batch(predictor, _rows(0))) == 0


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_file_is_scored_in_chunks_like_in_one_go(predictor, tmp_path, fmt):
    rows = _rows(2_500, seed=1)
    source = tmp_path / f"rows.{fmt}"
    rows.to_parquet(source) if fmt == "parquet" else rows.to_csv(source, index=False)
    seen = []
    report = score_file(predictor, "m:1", source, tmp_path / f"out.{fmt}", chunk_rows=700,
                        progress=lambda done, total: seen.append((done, total)))
    got = (pd.read_parquet if fmt == "parquet" else pd.read_csv)(tmp_path / f"out.{fmt}")
    want = score_batch(predictor, rows)
    assert report.rows == 2_500 and report.chunks == 4 and report.resumed_chunks == 0
    assert [d for d, _ in seen] == [700, 1400, 2100, 2500]
    assert {t for _, t in seen} == ({2_500} if fmt == "parquet" else {None})
    assert got.customer_id.tolist() == want.customer_id.tolist()
    np.testing.assert_allclose(got[["mean", "std", "lower", "upper"]],
                               want[["mean", "std", "lower", "upper"]], atol=1e-6)
    assert not (tmp_path / f"out.{fmt}.parts").exists()


def test_an_interrupted_run_resumes_without_redoing_finished_chunks(predictor, tmp_path):
    rows = _rows(3_500, seed=2)  # four chunks of 1,000 (the last of 500)
    rows.to_parquet(tmp_path / "rows.parquet")
    out = tmp_path / "out.parquet"

    def interrupt(i: int) -> None:
        if i == 1:
            raise KeyboardInterrupt  # as Ctrl+C once the second chunk was written

    with pytest.raises(KeyboardInterrupt):
        score_file(predictor, "m:1", tmp_path / "rows.parquet", out, chunk_rows=1_000,
                   on_chunk=interrupt)
    assert not out.exists()
    assert len(list((tmp_path / "out.parquet.parts").glob("part-*.parquet"))) == 2
    with pytest.raises(ConfigError, match="another chunk_rows"):  # not the same run
        score_file(predictor, "m:1", tmp_path / "rows.parquet", out, chunk_rows=500)
    report = score_file(predictor, "m:1", tmp_path / "rows.parquet", out, chunk_rows=1_000)
    assert report.resumed_chunks == 2 and report.chunks == 2 and report.rows == 1_500
    got = pd.read_parquet(out)
    np.testing.assert_allclose(got["mean"], score_batch(predictor, rows)["mean"], atol=1e-6)
    assert got.customer_id.tolist() == rows.customer_id.tolist()


def test_files_it_cannot_use_are_refused_before_anything_is_written(predictor, tmp_path):
    with pytest.raises(InputError, match="no input file"):
        score_file(predictor, "m:1", tmp_path / "missing.parquet", tmp_path / "o.parquet")
    (tmp_path / "rows.json").write_text("[]")
    with pytest.raises(InputError, match=".parquet or .csv"):
        score_file(predictor, "m:1", tmp_path / "rows.json", tmp_path / "o.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.json"]


def test_parquet_chunks_are_exact_row_ranges_and_a_part_of_another_size_is_refused(
        predictor, tmp_path):
    import pyarrow as pa

    from workbench.score_files import part_path, read_chunks

    rows = _rows(10_000, seed=4)
    # A dictionary column makes pyarrow end batches at row-group edges (apache/arrow#27052);
    # chunk i must still be rows i*chunk_rows onwards, which the Ray engine relies on.
    rows["segment"] = pd.Categorical(np.where(rows.customer_id % 3 == 0, "a", "b"))
    rows.to_parquet(tmp_path / "rows.parquet", row_group_size=3_000)
    chunks = list(read_chunks(tmp_path / "rows.parquet", 2_000))
    assert [c.num_rows for c in chunks] == [2_000] * 5
    assert pa.Table.from_batches(chunks).column("customer_id").to_pylist() == \
        rows.customer_id.tolist()
    out = tmp_path / "out.parquet"

    def interrupt(i: int) -> None:
        if i == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score_file(predictor, "m:1", tmp_path / "rows.parquet", out, chunk_rows=2_000,
                   on_chunk=interrupt)
    part = part_path(tmp_path / "out.parquet.parts", 0)
    pd.read_parquet(part).iloc[:10].to_parquet(part)  # a part that is not its chunk
    with pytest.raises(ConfigError, match="holds 10 rows where its chunk has 2000"):
        score_file(predictor, "m:1", tmp_path / "rows.parquet", out, chunk_rows=2_000)
