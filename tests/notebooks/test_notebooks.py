"""The notebooks run top to bottom in fresh kernels and match their saved outputs (nbval).

Each notebook is copied with a cell of test parameters injected after its ``parameters``
cell (papermill's convention) and validated by ``pytest --nbval`` in a subprocess with its
own model store and event store, in order: 02, 03 and 05 use the models 01 stores; 04
makes its own Feast repository in a temporary directory (it needs ``workbench[features]``);
05 starts its own Redis (Debian's ``redis-server``) and leaves Ray out (tests/test_score_ray.py
covers it).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST_PARAMETERS = {
    "01_fit_and_diagnose.ipynb": {"warmup": 300, "samples": 500},
    "02_package_and_serve.ipynb": {"rows": 20},
    "03_experiment.ipynb": {"traffic_seconds": 8},
    "04_features.ipynb": {"warmup": 100, "samples": 150},
    "05_batch_and_streams.ipynb": {"rows": 20_000, "chunk_rows": 5_000, "use_ray": False,
                                   "stream_events": 500},
}

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def inject(source: Path, target: Path, parameters: dict[str, object]) -> None:
    """Copy ``source`` with ``parameters`` assigned right after its ``parameters`` cell."""
    nb = nbformat.read(source, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    cell = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in parameters.items()))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(at + 1, cell)
    nbformat.write(nb, target)


@pytest.fixture(scope="module")
def homes(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("notebooks")
    # Access control on, as a user's notebooks run: each notebook makes and uses its key.
    env = {"BENTOML_HOME": str(home / "bentoml"), "WORKBENCH_HOME": str(home / "workbench"),
           "WORKBENCH_AUTH": "on"}
    # What the first import of the notebooks' libraries in a fresh environment says once
    # (caches being built) would land in a checked cell's output as stderr: say it here.
    warm = subprocess.run([sys.executable, "-c", "import workbench.comparison, "
                           "workbench.fit, workbench.store, workbench.widgets, "
                           "workbench.serving, workbench.feature_demo, arviz, "
                           "matplotlib.pyplot, httpx, panel"], env=os.environ | env,
                          capture_output=True, text=True, timeout=300)
    print(f"first imports: exit {warm.returncode}; stderr: {warm.stderr[-2000:]!r}")
    return env


def test_every_notebook_is_tested():
    assert sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")) == sorted(
        TEST_PARAMETERS)


def test_notebooks_have_a_parameters_cell_and_small_saved_outputs():
    for name in TEST_PARAMETERS:
        path = ROOT / "notebooks" / name
        nb = nbformat.read(path, as_version=4)
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert "parameters" in first_code.metadata.get("tags", []), name
        assert all(c.get("outputs") or c.execution_count for c in nb.cells
                   if c.cell_type == "code" and "remove-output" not in
                   c.metadata.get("tags", [])), f"{name} is saved without its outputs"
        assert path.stat().st_size < 300_000, f"{name} outputs are too large"


@pytest.mark.parametrize("name", list(TEST_PARAMETERS))
def test_notebook_runs_and_matches_its_outputs(name, homes, tmp_path):
    if name == "04_features.ipynb":
        pytest.importorskip("feast", reason="pip install 'workbench[features]'")
    copy = tmp_path / name
    inject(ROOT / "notebooks" / name, copy, TEST_PARAMETERS[name])
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", str(copy), "-p", "no:cacheprovider",
         "-q", "--nbval-cell-timeout=300", "-o", "addopts=", "-W", "ignore::DeprecationWarning"],
        env=os.environ | homes, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - started
    print(f"{name}: {elapsed:.0f}s with test parameters {TEST_PARAMETERS[name]}")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def test_saved_notebooks_hold_the_cells_that_build_py_writes():
    """notebooks/_build.py is the notebooks' source; the saved files must not drift."""
    spec = importlib.util.spec_from_file_location("build", ROOT / "notebooks" / "_build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for name, cells in build.NOTEBOOKS.items():
        saved = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        assert [c.source for c in saved.cells] == [c.source for c in cells], name
        assert [c.metadata.get("tags") for c in saved.cells] == [
            c.metadata.get("tags") for c in cells], name
