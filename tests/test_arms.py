"""The arm client without a server: its helpers, the request id it sends, its metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import bentoml
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from workbench import trace
from workbench.arms import ArmClient, ArmModel, keep_one_session, mode
from workbench.config import parse
from workbench.errors import ConfigError
from workbench.errors_http import RequestErrors


@bentoml.service
class Echo:
    """Stands for the Predictor's API (what BentoML's client builds its calls from)."""

    @bentoml.api
    async def predict(self, instances: list[Any], model: str | None = None) -> dict[str, Any]:
        return {}


def test_the_predictor_client_keeps_one_session():
    # The client class behind `bentoml.depends` (BentoML 1.4). If BentoML moves it, this
    # test says so: the workaround in keep_one_session would then need a look.
    from _bentoml_impl.client.proxy2 import AsyncClient

    client = AsyncClient("http://127.0.0.1:9", server_ready_timeout=0)
    manager = client._session_manager
    manager._request_count = manager.max_requests + 1
    assert manager._should_refresh()  # BentoML's default: a new session every 100 requests
    keep_one_session(client)
    assert not manager._should_refresh()
    keep_one_session(None)  # an in-process dependency has no session: left alone
    keep_one_session(object())


def test_a_call_through_bentomls_client_carries_the_request_id_to_the_predictor():
    # The gateway reaches its Predictor through this client (`bentoml.depends`): it injects
    # OpenTelemetry's propagators into every request, ours among them once an ArmClient is
    # made, so the Predictor's RequestErrors serves the call under the gateway's id.
    from _bentoml_impl.client.proxy2 import AsyncClient

    seen: list[tuple[str | None, str | None]] = []

    async def predict(request: Request) -> JSONResponse:
        seen.append((request.headers.get("x-request-id"), trace.current()))
        return JSONResponse({"predictions": []})

    app = RequestErrors(Starlette(routes=[Route("/predict", predict, methods=["POST"])]),
                        access_log=False)
    config = parse({"name": "e", "arms": [{"name": "a", "model": "m"},
                                          {"name": "b", "model": "n"}]})

    async def main() -> None:
        client = AsyncClient("http://127.0.0.1:9", service=Echo, app=app,
                             server_ready_timeout=0)
        await client._setup()
        arms = ArmClient(config, {}, client.predict)
        token = trace.bind("abc-123")
        try:
            await arms.call(instances=[[1.0]], model="m")
        finally:
            trace.unbind(token)
        await client.close()

    asyncio.run(main())
    assert seen == [("abc-123", "abc-123")]


def test_fallbacks_and_shadow_errors_are_counted_for_prometheus():
    config = parse({"name": "e-metrics", "arms": [{"name": "control", "model": "good"},
                                                  {"name": "broken", "model": "bad"}],
                    "shadow": {"name": "shadow", "model": "bad"}})
    models = {arm: ArmModel(arm, ref, f"{ref}:1", ("x",), ("y",), "regression")
              for arm, ref in (("control", "good"), ("broken", "bad"), ("shadow", "bad"))}

    async def predict(*, model: str, **_: object) -> dict[str, object]:
        if model == "bad":
            raise RuntimeError("no such model")
        return {"model": model}

    def count(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"experiment": "e-metrics", **labels}) or 0.0

    before = count("workbench_gateway_fallbacks_total", arm="broken")
    shadow_before = count("workbench_gateway_shadow_errors_total")

    async def main() -> None:
        arms = ArmClient(config, models, predict)
        served = await arms.serve("broken", {"instances": [[0.0]]})
        assert (served.arm.arm, served.fallback_from) == ("control", "broken")
        arms.mirror({"instances": [[0.0]]}, lambda *_: None)
        await arms.drain()

    asyncio.run(main())
    assert count("workbench_gateway_fallbacks_total", arm="broken") == before + 1
    assert count("workbench_gateway_shadow_errors_total") == shadow_before + 1


def test_the_arms_mode_by_argument_then_environment_then_device(monkeypatch):
    monkeypatch.delenv("WORKBENCH_ARMS", raising=False)
    assert (mode(), mode(gpu=True)) == ("in-process", "predictor")
    monkeypatch.setenv("WORKBENCH_ARMS", "Predictor")
    assert mode() == "predictor"
    assert mode("in_process", gpu=True) == "in-process"  # the bento argument wins
    with pytest.raises(ConfigError, match="invalid arms mode 'sidecar'") as refused:
        mode("sidecar")
    assert refused.value.detail["expected one of"] == ["in-process", "predictor"]
    monkeypatch.setenv("WORKBENCH_ARMS", "sidecar")
    with pytest.raises(ConfigError, match="WORKBENCH_ARMS='sidecar'") as refused:
        mode()
    assert "'in-process' or 'predictor'" in refused.value.detail["WORKBENCH_ARMS"]["expected"]
