"""``workbench score --engine ray`` on a local two-worker Ray cluster on loopback: the local
engine's output, rows in the input's order, a run interrupted on one engine resumed on the
other, a bad row named, and the cluster started and stopped by the command."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import make_posterior

from workbench import store
from workbench.cli import main
from workbench.score import batch_predictor
from workbench.score_files import score_file

pytest.importorskip("ray")
pytestmark = pytest.mark.slow


class Interrupted(Exception):
    pass


def _model() -> str:
    return store.save(make_posterior("binary", n_features=3, draws=200, seed=7,
                                     name="score-ray"))


def _rows(n: int) -> pd.DataFrame:
    rows = pd.DataFrame(np.random.default_rng(3).normal(size=(n, 3)),
                        columns=["x0", "x1", "x2"])
    rows.insert(0, "customer_id", np.arange(n))
    rows["segment"] = pd.Categorical(np.where(np.arange(n) % 3 == 0, "a", "b"))
    return rows


def _score(tag: str, source, out, engine: str, chunk_rows: int):
    return CliRunner().invoke(main, [
        "score", tag, "--input", str(source), "--output", str(out), "--engine", engine,
        "--chunk-rows", str(chunk_rows), "--workers", "2"])


@pytest.mark.timeout(600)
def test_ray_resumes_a_local_run_and_writes_the_local_output_in_order(tmp_path):
    import ray

    tag = _model()
    source = tmp_path / "rows.parquet"
    # Row groups that do not line up with the chunks, and twelve chunks for two actors.
    _rows(6_000).to_parquet(source, row_group_size=700)
    whole = _score(tag, source, tmp_path / "local.parquet", "local", 500)
    assert whole.exit_code == 0, whole.output

    def stop_after_four(i: int) -> None:
        if i == 3:
            raise Interrupted

    out = tmp_path / "ray.parquet"
    with pytest.raises(Interrupted):
        score_file(batch_predictor(store.get(tag), 500), tag, source, out, chunk_rows=500,
                   on_chunk=stop_after_four)
    result = _score(tag, source, out, "ray", 500)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(out)
    assert "scored 4,000 rows in 8 chunk(s) (4 chunk(s) already done)" in result.output
    assert not ray.is_initialized()  # the command stopped the cluster it started
    local, distributed = pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(out)
    assert list(distributed.columns) == list(local.columns)
    assert distributed.customer_id.tolist() == list(range(6_000))  # the input's order
    numbers = [c for c in local.columns if c not in ("customer_id", "label", "segment")]
    np.testing.assert_allclose(distributed[numbers], local[numbers], rtol=0, atol=1e-6)
    assert distributed.label.tolist() == local.label.tolist()
    assert distributed.segment.astype(str).tolist() == local.segment.astype(str).tolist()
    assert not out.with_name(out.name + ".parts").exists()


@pytest.mark.timeout(600)
def test_ray_names_a_bad_row_of_a_csv_and_stops_its_cluster(tmp_path):
    import ray

    tag = _model()
    rows = _rows(3_000)
    rows.loc[2_345, "x1"] = np.nan
    rows.to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "scored.csv"
    result = _score(tag, tmp_path / "rows.csv", out, "ray", 400)
    assert result.exit_code == 2, result.output
    assert "row 2345" in result.output and "x1" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not ray.is_initialized()
