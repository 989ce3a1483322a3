"""The Predictor service in-process: the class directly, then through ``to_asgi()``
(BentoML's first two testing tiers; the third, a real server, is in tests/e2e)."""

from __future__ import annotations

import asyncio
import importlib
import sys

import numpy as np
import pytest
from conftest import make_posterior
from servers import ROOT
from starlette.testclient import TestClient

from workbench import store
from workbench.predict import Predictor as LocalPredictor


@pytest.fixture(scope="module")
def service(monkeypatch_module):
    tag = store.save(make_posterior("binary", name="svc-binary"), alias="svc")
    monkeypatch_module.setenv("WORKBENCH_MODELS", "svc")
    monkeypatch_module.syspath_prepend(str(ROOT / "bentos" / "predictor"))
    sys.modules.pop("service", None)
    module = importlib.import_module("service")
    yield module, tag
    sys.modules.pop("service", None)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_the_class_directly(service):
    module, tag = service
    assert {"svc": tag} == module.MODELS
    instance = module.Predictor()
    instance.server.warmup()  # the background warm-up, run here to the end
    assert instance.__is_ready__()
    rows = module.EXAMPLE_INPUT["instances"]
    out = asyncio.run(instance.predict(instances=rows))
    local = LocalPredictor(store.get(tag)).predict(rows)
    np.testing.assert_allclose(out["predictions"][0]["mean"], local.mean[0], rtol=1e-6)


def test_through_to_asgi(service):
    module, tag = service
    with TestClient(module.Predictor.to_asgi()) as client:
        for _ in range(200):  # wait for the warm-up thread (a few seconds at most)
            if client.get("/readyz").status_code == 200:
                break
            asyncio.run(asyncio.sleep(0.1))
        r = client.post("/predict", json={"instances": [[0.0, 1.0, 2.0, 3.0]]})
        assert r.status_code == 200 and r.json()["model"] == tag
        bad = client.post("/predict", json={"instances": [[0.0, "x", 2.0, 3.0]]})
        assert bad.status_code == 400 and "not a number" in bad.json()["error"]
        assert client.get("/metadata").json()["aliases"] == {"svc": tag}
        assert client.get("/v2/models/svc").json()["inputs"][0]["shape"] == [-1, 4]
