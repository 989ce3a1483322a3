"""BentoML's timeout middleware, mended: no timer left per answered request, and still a 504
for a request that has not started answering in time."""

from __future__ import annotations

import asyncio

import httpx
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from workbench import bentoml_fixes


async def _fast(request):
    return JSONResponse({"ok": True})


async def _slow(request):
    await asyncio.sleep(5)
    return JSONResponse({"ok": True})


def _app(timeout: float) -> TimeoutMiddleware:
    return TimeoutMiddleware(Starlette(routes=[Route("/fast", _fast), Route("/slow", _slow)]),
                             timeout=timeout)


async def _get(app, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        return await client.get(path)


def test_answered_requests_leave_no_timer_behind():
    bentoml_fixes.apply()
    bentoml_fixes.apply()  # idempotent

    async def run():
        app = _app(60.0)
        answers = [await _get(app, "/fast") for _ in range(20)]
        loop = asyncio.get_running_loop()
        live = [h for h in loop._scheduled if not h.cancelled()]  # noqa: SLF001
        return answers, live

    answers, live = asyncio.run(run())
    assert {r.status_code for r in answers} == {200}
    assert live == []  # unpatched, 20 timers of 60 s wait here


def test_a_request_past_the_timeout_still_gets_a_504():
    bentoml_fixes.apply()
    answer = asyncio.run(_get(_app(0.2), "/slow"))
    assert answer.status_code == 504
    assert "0.2 seconds" in answer.json()["error"]
