"""The model-load pattern: a Predictor bento built without its model imports the posterior
from ``WORKBENCH_MODEL_URL`` (s3:// through BentoML's fsspec import) at startup, and only
then reports ready. Object storage is a real S3-compatible server on loopback (moto's
server mode); a missing or corrupt object leaves the service alive, not ready, and saying
why in its log, and it retries (an object uploaded later is picked up)."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pytest
import secrets_scan
import yaml
from servers import ROOT, Server, bentoml_serve

from workbench import datasets, store
from workbench.build import build_predictor
from workbench.predict import Predictor

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BUCKET = "models"


@pytest.fixture(scope="module")
def s3(s3_server) -> dict[str, str]:
    """The environment that points the AWS SDKs (boto3, s3fs) at the local S3 server, with
    the bucket created."""
    secret = secrets_scan.register(f"s3-secret-{secrets.token_hex(8)}", "S3 secret")
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": secret,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": s3_server}
    _client(env).create_bucket(Bucket=BUCKET)
    return env


def _client(env: dict[str, str]):
    import boto3

    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                        region_name=env["AWS_DEFAULT_REGION"])


def _serve(target: list[str], s3: dict[str, str], key: str, tmp_path: Path) -> Server:
    """Serve with an EMPTY model store of its own, so the model can only come from S3."""
    env = dict(os.environ) | s3 | {"BENTOML_HOME": str(tmp_path / "empty-store"),
                                   "WORKBENCH_MODEL_URL": f"s3://{BUCKET}/{key}"}
    env.pop("WORKBENCH_MODELS", None)
    return bentoml_serve(target, env=env, log=tmp_path / "serve.log", wait_ready=False)


def _wait_for_log(server: Server, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.output():
        assert server.running(), server.output()[-3000:]
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{server.output()[-3000:]}"
        time.sleep(0.3)


def test_remote_bento_imports_its_model_from_s3_and_only_then_is_ready(champion, s3, tmp_path):
    before = vars(bentoml.use_arguments())
    tag = build_predictor(remote=True)
    assert vars(bentoml.use_arguments()) == before  # the build's args do not leak
    bento_dir = store.home() / "bentos" / "predictor-remote" / tag.split(":")[1]
    info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    assert [m for s in info["services"] for m in s["models"]] == []  # built without it
    assert info["args"] == {"remote": "true"}
    assert any(r.startswith("s3fs==") for r in
               (bento_dir / "env" / "python" / "requirements.txt").read_text().split())

    server = _serve([str(bento_dir)], s3, "champion.bentomodel", tmp_path)
    try:
        # Not there yet: alive, not ready, and the log says why.
        _wait_for_log(server, "cannot load the model")
        assert "champion.bentomodel" in server.output()
        assert httpx.get(server.url + "/readyz").status_code == 503
        assert httpx.get(server.url + "/livez").status_code == 200
        refused = httpx.post(server.url + "/predict", json={"instances": [[0.0] * 30]})
        assert refused.status_code == 503 and "cannot load the model" in refused.text

        exported = store.export(champion, str(tmp_path / "champion.bentomodel"))
        _client(s3).upload_file(exported, BUCKET, "champion.bentomodel")
        server.wait_ready(120)  # picked up on the next retry, no restart

        rows = datasets.load("breast_cancer").X[:16].astype(np.float32)
        served = httpx.post(server.url + "/predict", json={"instances": rows.tolist()}).json()
        assert served["model"] == champion
        local = Predictor(store.get(champion)).predict(rows).records()
        for a, b in zip(served["predictions"], local, strict=True):
            np.testing.assert_allclose([a["mean"], a["std"], *a["interval"]],
                                       [b["mean"], b["std"], *b["interval"]], atol=1e-6)
        assert f"imported {champion}" in server.output()
    finally:
        server.stop()


def test_a_corrupt_object_is_named_in_the_log_and_the_service_stays_not_ready(s3, tmp_path):
    _client(s3).put_object(Bucket=BUCKET, Key="corrupt.bentomodel",
                           Body=os.urandom(4096))
    server = _serve(["service:Predictor", "--working-dir", str(ROOT / "bentos" / "predictor")],
                    s3, "corrupt.bentomodel", tmp_path)
    try:
        _wait_for_log(server, "cannot import a model from 's3://models/corrupt.bentomodel'")
        _wait_for_log(server, "retrying in 4s")  # a second attempt: no crash loop
        assert server.running()
        assert httpx.get(server.url + "/readyz").status_code == 503
        meta = httpx.get(server.url + "/metadata").json()
        assert meta["ready"] is False and "corrupt.bentomodel" in meta["startup"]["error"]
    finally:
        assert server.stop() is not None
