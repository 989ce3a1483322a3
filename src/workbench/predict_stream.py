"""``POST /predict/stream``: a long request answered as server-sent events, a chunk at a time.

The body is :meth:`~workbench.serving.ModelServer.predict`'s (``instances``, ``model``,
``interval_mass``, ``draws``) plus ``chunk_rows``, with up to ``WORKBENCH_MAX_STREAM_ROWS``
rows (100,000; the body limit still holds). Every row is validated **before** the
first byte is sent, so a bad row still gets its 4xx JSON error and nothing is streamed.
Then each chunk of rows goes through the model's micro-batcher (and the prediction cache)
like any request, and is sent as soon as it is computed::

    event: chunk
    data: {"model": TAG, "start": 0, "stop": 256, "rows": 1000, "predictions": [...]}

    event: done
    data: {"model": TAG, "rows": 1000, "chunks": 4, "interval_mass": 0.9, "seconds": 0.21}

A failure after the stream began (the server shutting down, a model dropped) is sent as
``event: error`` with the usual ``{"error", "detail"}`` body, and the stream ends. A client
that disconnects stops the work: no further chunk is computed. Rows by ``entities`` (the
feature store) are answered by ``/predict`` only.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from workbench.errors import InputError
from workbench.errors_http import error_body, error_response
from workbench.inputs import validate_rows
from workbench.predict import DEFAULT_MASS, check_draws, check_interval_mass
from workbench.serving import ModelServer

MEDIA_TYPE = "text/event-stream"
FIELDS = ("instances", "model", "interval_mass", "draws", "chunk_rows")


def event(name: str, data: Any) -> bytes:
    """One server-sent event (``event:`` and one ``data:`` line of JSON, then a blank line)."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def endpoint(get_server: Callable[[], ModelServer]) -> Any:
    """The Starlette endpoint of ``POST /predict/stream`` over the live :class:`ModelServer`."""
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse

    async def stream(request: Request) -> Response:
        try:
            chunks = await _plan(get_server(), await request.body())
        except Exception as exc:  # refused before anything is streamed: a plain 4xx
            return error_response(exc, "streamed prediction")
        return StreamingResponse(chunks, media_type=MEDIA_TYPE,
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    return stream


async def _plan(server: ModelServer, body: bytes) -> AsyncIterator[bytes]:
    """Validate the whole request, then return the generator of its events."""
    request = _body(body)
    server.check_ready()
    served = server.resolve(request.get("model"))
    if request.get("instances") is None:
        raise InputError("instances is required: a list of rows (rows by entities are "
                         "answered by /predict)", detail={"expected": {"instances": [["..."]]}})
    X = validate_rows(request["instances"], served.predictor.features,
                      max_rows=server.max_stream_rows)
    mass = check_interval_mass(request.get("interval_mass", DEFAULT_MASS))
    draws = check_draws(request.get("draws", 0), served.predictor.max_draws)
    size = _chunk_rows(request.get("chunk_rows"), served.predictor.buckets[-1])
    return _events(server, served.tag, X, mass, draws, size)


async def _events(server: ModelServer, tag: str, X: Any, mass: float, draws: int,
                  size: int) -> AsyncIterator[bytes]:
    started = time.perf_counter()
    chunks = 0
    try:
        for start in range(0, len(X), size):
            out = await server.predict(X[start:start + size], model=tag, interval_mass=mass,
                                       draws=draws)
            chunks += 1
            yield event("chunk", {"model": out["model"], "start": start,
                                  "stop": start + len(out["predictions"]), "rows": len(X),
                                  "predictions": out["predictions"]})
    except Exception as exc:  # the status line is sent: the failure becomes the last event
        yield event("error", error_body(exc))
        return
    yield event("done", {"model": tag, "rows": len(X), "chunks": chunks,
                         "interval_mass": mass,
                         "seconds": round(time.perf_counter() - started, 4)})


def _body(body: bytes) -> dict[str, Any]:
    try:
        request = json.loads(body) if body else None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"the body is not JSON: {exc}",
                         detail={"expected": "a JSON object like /predict's"}) from None
    if not isinstance(request, dict):
        raise InputError("the body must be a JSON object",
                         detail={"expected": {"instances": [["..."]], "chunk_rows": 256}})
    if "entities" in request:
        raise InputError("rows by entities are answered by /predict only",
                         detail={"expected": "instances: a list of rows"})
    unknown = sorted(set(request) - set(FIELDS))
    if unknown:
        raise InputError(f"unknown field(s) {unknown}", detail={"expected": list(FIELDS)})
    return request


def _chunk_rows(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65_536:
        raise InputError(f"chunk_rows must be an integer from 1 to 65536, got {value!r}",
                         detail={"expected": f"rows per event (default {default})"})
    return value


def openapi() -> dict[str, Any]:
    """``{"post": Operation}`` of ``/predict/stream`` for the service's OpenAPI document."""
    row = {"type": "array", "items": {"type": "number"}}
    return {"post": {
        "summary": "Predict many rows, answered as server-sent events (one per chunk)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["instances"], "additionalProperties": False,
            "properties": {
                "instances": {"type": "array", "minItems": 1, "items": row},
                "model": {"type": "string", "nullable": True},
                "interval_mass": {"type": "number", "minimum": 0, "maximum": 1,
                                  "exclusiveMinimum": True, "exclusiveMaximum": True},
                "draws": {"type": "integer", "minimum": 0},
                "chunk_rows": {"type": "integer", "minimum": 1, "maximum": 65536}}}}}},
        "responses": {"200": {
            "description": "`event: chunk` per chunk of rows, then `event: done` (or "
                           "`event: error`)",
            "content": {MEDIA_TYPE: {"schema": {"type": "string"}}}}}}}
