"""The body-size limit, as middleware around a tiny ASGI app."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from workbench.limits import BodyLimit


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"bytes": len(await request.body())})


def client(max_bytes: int) -> TestClient:
    app = Starlette(routes=[Route("/", echo, methods=["POST"])])
    return TestClient(BodyLimit(app, max_bytes=max_bytes))


def test_a_body_within_the_limit_passes():
    r = client(100).post("/", content=b"x" * 100)
    assert r.status_code == 200 and r.json() == {"bytes": 100}


def test_a_declared_or_streamed_body_over_the_limit_gets_413():
    declared = client(100).post("/", content=b"x" * 101)
    assert declared.status_code == 413
    assert declared.json() == {"error": "request body too large: 101 bytes",
                               "detail": {"expected": "at most 100 bytes"}}
    streamed = client(100).post("/", content=iter([b"x" * 60, b"x" * 60]))  # no length
    assert streamed.status_code == 413 and "too large" in streamed.json()["error"]


def test_a_form_encoded_body_gets_415_before_anything_parses_it():
    for media_type in ("multipart/form-data", "application/x-www-form-urlencoded; charset=x"):
        r = client(100).post("/", content=b"{}", headers={"content-type": media_type})
        assert r.status_code == 415, media_type
        assert r.json() == {"error": f"unsupported media type {media_type.split(';')[0]!r}",
                            "detail": {"expected": "application/json"}}
    assert client(100).post("/", content=b"{}", headers={
        "content-type": "application/octet-stream"}).status_code == 200  # OIP's binary data
