"""The Predictor's own HTTP routes beside its BentoML APIs: ``GET /metadata``, the Open
Inference Protocol under ``/v2``, and the service's OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workbench.serving import ModelServer


def app(get_server: Callable[[], ModelServer]) -> Any:
    """GET ``/metadata``, the Open Inference Protocol under ``/v2`` and the service's
    OpenAPI document (``/docs.json``, :func:`workbench.openapi.document`), as one ASGI app."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, RedirectResponse
    from starlette.routing import Mount, Route

    from workbench import oip, openapi

    async def metadata(_: Any) -> JSONResponse:
        return JSONResponse(get_server().metadata())

    async def docs(_: Any) -> RedirectResponse:  # BentoML serves its Swagger UI at /
        return RedirectResponse("/")

    def documented() -> dict[str, Any]:
        return oip.openapi(get_server()) | {"/metadata": openapi.json_get(
            "What clients must send and what they get back, per model")}

    app = Starlette(routes=[Route("/metadata", metadata), Route("/docs", docs),
                            Mount("/v2", app=oip.app(get_server))])
    app.add_route("/docs.json", openapi.endpoint(openapi.current_service, app, documented))
    return app
