"""A fix to BentoML's serving internals, applied once per worker (both services call
:func:`apply` on import), with the figure that asked for it.

BentoML 1.4's ``TimeoutMiddleware`` (every service's per-request ``traffic.timeout``)
schedules a timer per request with ``loop.call_later(timeout, ...)`` and never cancels it:
each answered request leaves a timer, a future and their context alive for the whole
timeout (60 s by default). At 2,000 requests a second that is ~120,000 live objects more,
and Python's full garbage collections traverse all of them. Found with
``gc.get_objects()`` on the gateway under 64 clients (benchmarks/RESULTS.md): its tracked
objects grew by one ``TimerHandle``, ``Future`` and ``Context`` per request. The fix keeps
the middleware's behaviour (a 504 when no response has started within the timeout) and
cancels the timer once the response has started.
"""

from __future__ import annotations

import asyncio
from typing import Any

_APPLIED = False


def apply() -> None:
    """Replace ``TimeoutMiddleware.__call__`` with one that cancels its timer (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    TimeoutMiddleware.__call__ = _timeout_call  # type: ignore[method-assign]
    _APPLIED = True


async def _timeout_call(self: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """BentoML's ``TimeoutMiddleware.__call__``, with its timer cancelled when done."""
    if scope["type"] not in ("http", "websocket"):
        return await self.app(scope, receive, send)
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

    async def _send(message: dict[str, Any]) -> None:
        if not waiter.done():
            waiter.set_result(None)
            timer.cancel()  # the answer has started: nothing left for the timer to do
        await send(message)

    task = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
    try:
        await waiter
    except TimeoutError:
        if task.cancel():
            from starlette.responses import JSONResponse

            await JSONResponse({"error": "Not able to process the request in "
                                         f"{self.timeout} seconds"}, status_code=504)(
                scope, receive, send)
    else:
        await task
    finally:
        timer.cancel()  # an error or a cancelled request: no timer left behind either
