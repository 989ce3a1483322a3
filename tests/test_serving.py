from __future__ import annotations

import asyncio

import pytest
from conftest import make_posterior

from workbench.errors import ArtifactError, NotReady
from workbench.serving import ModelServer, status_of


def test_a_model_source_that_fails_is_retried_and_the_server_stays_not_ready_meanwhile():
    posterior = make_posterior("binary")
    attempts = []

    def source() -> dict[str, str]:
        attempts.append(1)
        if len(attempts) < 3:
            raise ArtifactError(f"cannot import a model from 's3://b/k' (attempt {len(attempts)})")
        return {"m:1": "m:1"}

    server = ModelServer(source, load=lambda tag: posterior, buckets=(1, 4),
                         retry_seconds=(0.01, 0.02))
    assert not server.ready and server.default is None
    with pytest.raises(NotReady) as refused:
        asyncio.run(server.predict([[0.0] * 4]))
    assert status_of(refused.value) == 503
    assert server.metadata() == {"ready": False, "models": {}, "startup": {"error": None}}

    server.warmup()
    assert len(attempts) == 3 and server.ready and server.error is None
    out = asyncio.run(server.predict([[0.0] * 4]))
    assert out["model"] == "m:1" and len(out["predictions"]) == 1


def test_the_last_failure_is_what_not_ready_reports(monkeypatch):
    server = ModelServer(lambda: (_ for _ in ()).throw(ArtifactError("no object at s3://b/k")),
                         load=lambda tag: make_posterior("binary"))
    monkeypatch.setattr("workbench.serving.time.sleep", lambda s: (_ for _ in ()).throw(
        KeyboardInterrupt))  # stop the retry loop after its first failure
    with pytest.raises(KeyboardInterrupt):
        server.warmup()
    assert server.error == "cannot load the model: no object at s3://b/k"
    with pytest.raises(NotReady, match="no object at s3://b/k"):
        server.resolve(None)
    assert server.metadata()["startup"]["error"] == server.error
