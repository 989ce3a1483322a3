"""The gateway's read-only HTTP routes beside its BentoML APIs: ``/experiment``,
``/analysis``, ``/analysis/segments``, ``/metadata``, ``/health/all``, and the service's
OpenAPI document (``/docs.json``, :func:`workbench.openapi.document`), as one Starlette app that the
experiment bento mounts at ``/``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from workbench.gateway import Gateway

logger = logging.getLogger("workbench.gateway")


def app(get_gateway: Callable[[], Gateway],
             predictor_status: Callable[[], Awaitable[dict[str, Any]]]) -> Any:
    """GET ``/experiment``, ``/analysis``, ``/health/all`` and ``/metadata``, and the
    service's OpenAPI document (``/docs.json``, :func:`workbench.openapi.document`)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, RedirectResponse
    from starlette.routing import Route

    from workbench import openapi
    from workbench.errors_http import error_response

    def guarded(fn: Callable[[], Any]) -> Callable[[Any], Awaitable[JSONResponse]]:
        async def endpoint(_: Any) -> JSONResponse:
            try:
                return JSONResponse(await run_in_threadpool(fn))
            except Exception as exc:
                return error_response(exc, "read-out")
        return endpoint

    async def health(_: Any) -> JSONResponse:
        gw = get_gateway()
        pipeline = await run_in_threadpool(gw.health)
        events_ready, why = gw.ready()
        try:
            status = await predictor_status()
        except Exception:
            logger.warning("predictor unreachable from /health/all", exc_info=True)
            status = None
        lookup = (status or {}).get("lookup", {})
        arms = {a: {"model": m.ref, "tag": m.tag, "ready": bool((status or {}).get("ready"))
                    and lookup.get(m.ref) == m.tag} for a, m in gw.models.items()}
        ok = all(a["ready"] for a in arms.values()) and events_ready
        body = {"ready": ok, "arms": arms, "arms_served": (status or {}).get("served"),
                **pipeline,
                "state": {"version": gw.live.state.version, "status": gw.live.state.status,
                          "read_at": gw.live.read_at, "read_failures": gw.live.failures}}
        if status is None:
            body["predictor"] = "unreachable"
        if not events_ready:
            body["not_ready"] = why
        return JSONResponse(body, status_code=200 if ok else 503)

    async def docs(_: Any) -> RedirectResponse:
        return RedirectResponse("/")

    documented = {
        "/experiment": openapi.json_get("The experiment: config, live state, counts per arm"),
        "/analysis": openapi.json_get("The Bayesian read-out per arm"),
        "/analysis/segments": openapi.json_get(
            "The binary metric by the configured unit attribute (segment_by), pooled beside "
            "unpooled; 409 without a segment_by"),
        "/metadata": openapi.json_get("What clients must send (and get back), per arm"),
        "/health/all": openapi.json_get("Readiness of every arm's model and of the event "
                                        "pipeline (writer, database, spool); 503 if not")}
    app = Starlette(routes=[
        Route("/experiment", guarded(lambda: get_gateway().experiment())),
        Route("/analysis", guarded(lambda: get_gateway().analysis())),
        Route("/analysis/segments", guarded(lambda: get_gateway().segments())),
        Route("/metadata", guarded(lambda: get_gateway().metadata())),
        Route("/health/all", health), Route("/docs", docs)])
    app.add_route("/docs.json", openapi.endpoint(openapi.current_service, app,
                                                 lambda: documented))
    return app
