"""How errors become HTTP responses, the same way on every service.

A client is told what it did wrong (4xx, ``{"error": ..., "detail": ...}``) or that the
service cannot answer now (503, with our own message); it is never told *why* the server
failed. Every other 5xx answers one generic body::

    {"error": "internal error", "detail": null, "request_id": "<id>"}

and the server's log line of that failure carries the same ``request_id``, so that an
operator can find the traceback a client reports. The id is the client's ``X-Request-ID``
or ``traceparent``'s trace-id, else a new one (:func:`workbench.trace.from_headers`); it is
current while the request is served (every log line carries it, calls to other services
send it on) and every response carries it back in ``X-Request-ID``. One log line per
request (method, path, status, milliseconds) says how it went, except for the health and
metrics probes; ``WORKBENCH_ACCESS_LOG=off`` leaves it out.

:func:`status_of` and :func:`error_body` map an exception to its status and body,
:func:`respond` applies them around a request's coroutine (the bentos' ``@bentoml.api``
methods), and :class:`RequestErrors` is the ASGI middleware that assigns the id and makes
sure that no 5xx produced anywhere below it (BentoML's own handlers included) leaks text.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable
from typing import Any

from workbench import trace
from workbench.batching import Overloaded
from workbench.errors import (
    Conflict,
    EntityNotFound,
    InputError,
    InvalidToken,
    KeyNotFound,
    ModelNotFound,
    StaleFeatures,
    Unavailable,
    WorkbenchError,
)
from workbench.jsonsafe import plain
from workbench.settings import load

logger = logging.getLogger("workbench.http")

HEADER = trace.HEADER
_KEY = HEADER.encode()
INTERNAL_ERROR = "internal error"
# Probes answered many times a minute: no access log line for them.
QUIET = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
new_request_id = trace.new
sane_request_id = trace.sane


def request_id() -> str:
    """The id of the request being served (a new one outside :class:`RequestErrors`)."""
    return trace.current() or trace.new()


def internal_error_body(rid: str) -> dict[str, Any]:
    """The one body of a 5xx that is not a 503: nothing about the failure itself."""
    return {"error": INTERNAL_ERROR, "detail": None, "request_id": rid}


def status_of(exc: BaseException) -> int:
    """The HTTP status for an error raised while serving.

    Parameters
    ----------
    exc
        The error.

    Returns
    -------
    int
        404, 401, 409, 422 or 400 for what a client did wrong, 503 for what may succeed on a retry,
        500 for everything else.
    """
    if isinstance(exc, ModelNotFound | KeyNotFound | EntityNotFound):
        return 404
    if isinstance(exc, StaleFeatures):
        return 422
    if isinstance(exc, InvalidToken):
        return 401
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, InputError):
        return 400
    if isinstance(exc, Unavailable | Overloaded):
        return 503
    return 500


def error_body(exc: BaseException) -> dict[str, Any]:
    """The JSON body of an error: ``{"error": ..., "detail": ...}`` for the workbench's own
    errors, the generic body (:func:`internal_error_body`) for any other."""
    if isinstance(exc, WorkbenchError):
        return plain(exc.to_dict())  # whatever a detail holds, the 4xx is answered
    if isinstance(exc, Overloaded):
        return {"error": "the server is over capacity; retry shortly", "detail": str(exc)}
    return internal_error_body(request_id())


def error_response(exc: BaseException, where: str = "request") -> Any:
    """``exc`` as a JSON response; a 500 is logged with its traceback and request id.

    Parameters
    ----------
    exc
        The error.
    where
        What failed, for the log line (e.g. ``"OIP request"``).

    Returns
    -------
    starlette.responses.JSONResponse
        The error's status and body (:func:`status_of`, :func:`error_body`).
    """
    from starlette.responses import JSONResponse

    status = status_of(exc)
    body = error_body(exc)
    if status == 500:
        logger.error("%s failed (request_id=%s)", where, body["request_id"], exc_info=exc)
    return JSONResponse(body, status_code=status)


async def respond(call: Awaitable[Any], ctx: Any = None) -> Any:
    """Await a request's coroutine; any error becomes its response (:func:`error_response`).

    Parameters
    ----------
    call
        The coroutine (or any awaitable) of the request.
    ctx
        The method's ``bentoml.Context``, when it takes one: BentoML then answers with
        ``ctx.response.status_code`` whatever the response says, so it is set from it.

    Returns
    -------
    Any
        What ``call`` returned, or the error's response.
    """
    try:
        return await call
    except Exception as exc:
        response = error_response(exc)
        if ctx is not None:
            ctx.response.status_code = response.status_code
        return response


class RequestErrors:
    """ASGI middleware: a request id in and out, and no internal detail in any 5xx.

    Outermost among a service's own middlewares, so that it sees what every layer below
    answers. A 5xx other than 503 has its body replaced by :func:`internal_error_body` and
    is logged with its request id; an exception that escapes the app is logged with its
    traceback and answered the same way (if nothing was sent yet).

    Parameters
    ----------
    app
        The ASGI application it wraps.
    access_log
        Whether to log one line per request (default: unless ``WORKBENCH_ACCESS_LOG=off``).
    """

    def __init__(self, app: Any, access_log: bool | None = None) -> None:
        self.app = app
        self.access_log = load().access_log if access_log is None else access_log

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = trace.from_headers(scope.get("headers") or [])
        where = f"{scope.get('method', '')} {scope.get('path', '')}"
        token = trace.bind(rid)
        began = time.perf_counter()
        started = replaced = False
        status = 500

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started, replaced, status
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                if status >= 500 and status != 503:
                    replaced = True
                    logger.error("%s answered %d (request_id=%s)", where, status, rid)
                    await self._generic(send, status, rid, scope)
                    return
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != _KEY]
                message = {**message, "headers": [*kept, (_KEY, rid.encode())]}
            elif message["type"] == "http.response.body" and replaced:
                return  # the generic body was the answer
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except Exception:
            logger.exception("%s failed (request_id=%s)", where, rid)
            if replaced:
                return  # the generic answer is out already
            if started:
                raise  # half a response went out: let the server close the connection
            await self._generic(send, 500, rid, scope)
        finally:
            if self.access_log and scope.get("path") not in QUIET:
                self._log(scope, status, began, rid)
            trace.unbind(token)

    @staticmethod
    def _log(scope: dict[str, Any], status: int, began: float, rid: str) -> None:
        """The request's access line (the path only: a query string may carry anything)."""
        ms = round((time.perf_counter() - began) * 1000.0, 3)
        method, path = scope.get("method", ""), scope.get("path", "")
        logger.info("%s %s %d %.1f ms", method, path, status, ms,
                    extra={"request_id": rid, "method": method, "path": path,
                           "status": status, "duration_ms": ms})

    @staticmethod
    async def _generic(send: Any, status: int, rid: str, scope: dict[str, Any]) -> None:
        body = json.dumps(internal_error_body(rid)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (_KEY, rid.encode())]})
        await send({"type": "http.response.body",
                    "body": b"" if scope.get("method") == "HEAD" else body})
