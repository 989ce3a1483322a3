"""`workbench build predictor`, then `bentoml serve <tag>`: the entrypoint a container runs."""

from __future__ import annotations

import subprocess
import sys

import httpx
import numpy as np
import pytest
import yaml
from servers import bentoml_serve

from workbench import datasets, store
from workbench.build import requirements

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "workbench.cli"]


def _build(*args: str) -> str:
    out = subprocess.run([*CLI, "build", "predictor", *args], capture_output=True, text=True,
                         check=True, timeout=600)
    return out.stdout.strip().splitlines()[-1]


def test_built_bento_serves_the_same_answers_as_the_source_service(predictor, champion,
                                                                   regression, server_env,
                                                                   tmp_path):
    tag = _build("--model", "champion", "--model", "reg")
    assert tag.startswith("predictor:")
    info = yaml.safe_load((store.home() / "bentos" / "predictor" / tag.split(":")[1]
                           / "bento.yaml").read_text())
    packed = {m["tag"] for s in info["services"] for m in s["models"]}
    assert packed == {champion, regression}  # aliases resolved and frozen at build time
    assert info["args"]["models"] == f"champion={champion},reg={regression}"

    built = bentoml_serve([tag], env=server_env, log=tmp_path / "built.log")
    try:
        rows = datasets.load("breast_cancer").X[:20].tolist()
        for payload in ({"instances": rows, "draws": 2},
                        {"instances": [[0.5, 0.1, -0.3, 2.0]], "model": "reg",
                         "interval_mass": 0.8}):
            a = httpx.post(predictor.url + "/predict", json=payload).json()
            b = httpx.post(built.url + "/predict", json=payload).json()
            assert a == b
        meta = httpx.get(built.url + "/metadata").json()
        assert meta["build"]["bento"] == tag
        assert meta["follow"]["enabled"] is False  # immutable: it serves what it was built with
        assert httpx.get(predictor.url + "/metadata").json()["follow"]["enabled"] is True
        bad = httpx.post(built.url + "/predict", json={"instances": [[1, 2]]})
        assert bad.status_code == 400
    finally:
        built.stop()


def test_gpu_variant_declares_the_gpu_and_cuda_wheels(champion):
    tag = _build("--gpu")
    bento = store.home() / "bentos" / "predictor-gpu" / tag.split(":")[1]
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert info["services"][0]["config"]["resources"] == {"gpu": 1}
    reqs = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "jax[cuda12]==" in reqs and "jaxlib==" not in reqs
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" in dockerfile
    cpu = _build()
    cpu_info = yaml.safe_load((store.home() / "bentos" / "predictor" / cpu.split(":")[1]
                               / "bento.yaml").read_text())
    assert cpu_info["services"][0]["config"]["resources"] == {"cpu": "2"}
    cpu_reqs = (store.home() / "bentos" / "predictor" / cpu.split(":")[1] / "env" / "python"
                / "requirements.txt").read_text()
    assert "jax[cuda12]" not in cpu_reqs
    assert all(pin in cpu_reqs for pin in requirements())
    np.testing.assert_equal(info["labels"]["workbench.gpu"], "true")
