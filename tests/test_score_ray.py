"""``workbench score --engine ray`` on a local two-worker Ray cluster on loopback: the same
output as the local engine (the cluster is started and stopped by the command)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import make_posterior

from workbench import store
from workbench.cli import main

pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_ray_scores_a_file_as_the_local_engine_does(tmp_path):
    import ray

    tag = store.save(make_posterior("binary", n_features=3, draws=200, seed=7,
                                    name="score-ray"))
    rng = np.random.default_rng(3)
    rows = pd.DataFrame(rng.normal(size=(6_000, 3)), columns=["x0", "x1", "x2"])
    rows.insert(0, "customer_id", np.arange(len(rows)))
    rows.to_parquet(tmp_path / "rows.parquet", row_group_size=1_000)  # several blocks
    outputs = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.parquet"
        result = CliRunner().invoke(main, [
            "score", tag, "--input", str(tmp_path / "rows.parquet"), "--output", str(out),
            "--engine", engine, "--chunk-rows", "1000", "--workers", "2"])
        assert result.exit_code == 0, result.output
        assert result.output.strip().splitlines()[-1] == str(out)
        assert "scored 6,000 rows" in result.output
        outputs[engine] = pd.read_parquet(out)
    assert not ray.is_initialized()  # the command stopped the cluster it started
    local, distributed = outputs["local"], outputs["ray"]
    assert list(distributed.columns) == list(local.columns)
    assert distributed.customer_id.tolist() == local.customer_id.tolist()  # order kept
    numbers = [c for c in local.columns if c not in ("customer_id", "label")]
    np.testing.assert_allclose(distributed[numbers], local[numbers], rtol=0, atol=1e-6)
    assert distributed.label.tolist() == local.label.tolist()
