"""``make lab``'s JupyterLab: it lists the notebooks and has the widget and Panel extensions."""

from __future__ import annotations

import json
import re
import secrets
import sys
import time
from pathlib import Path

import httpx
import pytest

from workbench.background import launch
from workbench.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ["01_fit_and_diagnose.ipynb", "02_package_and_serve.ipynb", "03_experiment.ipynb",
             "04_features.ipynb", "05_batch_and_streams.ipynb"]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> tuple[str, str]:
    port, token = free_port(), secrets.token_hex(16)
    server = launch(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={ROOT / 'notebooks'}", "--allow-root",
         "--LabApp.news_url=", "--LabApp.extension_manager=readonly"],
        port=port, log=tmp_path_factory.mktemp("lab") / "lab.log",
        ready_path=f"/api/status?token={token}", ready_timeout=120)
    yield server.url, token
    server.stop()


def test_lab_lists_the_notebooks(lab):
    url, token = lab
    listing = httpx.get(f"{url}/api/contents", params={"token": token}).json()
    names = sorted(item["name"] for item in listing["content"] if item["type"] == "notebook")
    assert names == NOTEBOOKS


def test_lab_refuses_requests_without_the_token(lab):
    url, _ = lab
    assert httpx.get(f"{url}/api/contents").status_code == 403


def test_lab_has_the_widgets_and_panel_extensions(lab):
    url, token = lab
    page = httpx.get(f"{url}/lab", params={"token": token}).text
    config = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page,
                                  re.S).group(1))
    installed = {e["name"] for e in config["federated_extensions"]}
    assert {"@jupyter-widgets/jupyterlab-manager", "@pyviz/jupyterlab_pyviz"} <= installed


def test_lab_runs_notebooks_with_the_projects_python(lab):
    """A kernel started through the REST API is this project's interpreter (the .venv)."""
    url, token = lab
    specs = httpx.get(f"{url}/api/kernelspecs", params={"token": token}).json()
    assert specs["default"] == "python3"
    kernel = httpx.post(f"{url}/api/kernels", params={"token": token},
                        json={"name": "python3"}).json()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (argv := _kernel_argv(kernel["id"])):
            time.sleep(0.2)
        assert argv, "the kernel process did not start"
        assert Path(argv[0]) == Path(sys.executable)
    finally:
        httpx.delete(f"{url}/api/kernels/{kernel['id']}", params={"token": token})


def _kernel_argv(kernel_id: str) -> list[str]:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode().split("\0")
        except OSError:
            continue
        if any(f"kernel-{kernel_id}.json" in a for a in argv):
            return argv
    return []
