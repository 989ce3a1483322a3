"""Reference: a bare Starlette app under uvicorn that parses the body and answers the same
JSON shape, with no framework around it (``uvicorn starlette_echo:app``)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


async def predict(request: Request) -> JSONResponse:
    body: dict[str, Any] = await request.json()
    return JSONResponse({"model": "echo",
                         "predictions": [{"mean": 0.0} for _ in body["instances"]]})


async def readyz(_: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]),
                        Route("/readyz", readyz)])
