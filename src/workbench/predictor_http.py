"""The Predictor's own HTTP routes beside its BentoML APIs: ``GET /metadata``,
``POST /predict/stream`` (server-sent events), the Open Inference Protocol under ``/v2``,
and the service's OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workbench.serving import ModelServer


def app(get_server: Callable[[], ModelServer]) -> Any:
    """GET ``/metadata``, POST ``/predict/stream`` (:mod:`workbench.predict_stream`), the
    Open Inference Protocol under ``/v2`` and the service's OpenAPI document (``/docs.json``,
    :func:`workbench.openapi.document`), as one ASGI app."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, RedirectResponse
    from starlette.routing import Mount, Route

    from workbench import oip, openapi, predict_stream

    async def metadata(_: Any) -> JSONResponse:
        return JSONResponse(get_server().metadata())

    async def docs(_: Any) -> RedirectResponse:  # BentoML serves its Swagger UI at /
        return RedirectResponse("/")

    def documented() -> dict[str, Any]:
        return oip.openapi(get_server()) | {"/metadata": openapi.json_get(
            "What clients must send and what they get back, per model"),
            "/predict/stream": predict_stream.openapi()}

    app = Starlette(routes=[Route("/metadata", metadata), Route("/docs", docs),
                            Route("/predict/stream", predict_stream.endpoint(get_server),
                                  methods=["POST"]),
                            Mount("/v2", app=oip.app(get_server))])
    app.add_route("/docs.json", openapi.endpoint(openapi.current_service, app, documented))
    return app
