"""Errors as HTTP responses: a request id in and out, nothing internal in any 5xx."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest
from records import Records
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from workbench.batching import Overloaded
from workbench.errors import Conflict, InputError, ModelNotFound, NotReady
from workbench.errors_http import (
    INTERNAL_ERROR,
    RequestErrors,
    error_body,
    request_id,
    respond,
    sane_request_id,
    status_of,
)

SECRET = "postgresql://admin:hunter2@db/events"  # what a failure may carry; never a client


async def boom(_: Request) -> JSONResponse:
    raise RuntimeError(f"cannot connect to {SECRET}")


async def leaky(_: Request) -> PlainTextResponse:  # as BentoML's task routes answer
    return PlainTextResponse(f"OperationalError: {SECRET}", status_code=500)


async def bad_gateway(_: Request) -> JSONResponse:
    return JSONResponse({"error": str(ConnectionError(SECRET))}, status_code=502)


async def unavailable(_: Request) -> JSONResponse:
    return JSONResponse(NotReady("still compiling").to_dict(), status_code=503)


async def handled(_: Request) -> JSONResponse:
    async def fail() -> None:
        raise KeyError(SECRET)
    return await respond(fail())


async def echo_id(_: Request) -> JSONResponse:
    return JSONResponse({"request_id": request_id()})


@pytest.fixture
def client() -> TestClient:
    app = Starlette(routes=[Route("/boom", boom), Route("/leaky", leaky),
                            Route("/bad-gateway", bad_gateway), Route("/unavailable", unavailable),
                            Route("/handled", handled), Route("/id", echo_id)])
    return TestClient(RequestErrors(app), raise_server_exceptions=False)


@pytest.fixture
def logged(caplog, monkeypatch) -> pytest.LogCaptureFixture:
    # workbench.logs.log_to_stderr stops propagation once a server ran in this session
    monkeypatch.setattr(logging.getLogger("workbench"), "propagate", True)
    caplog.set_level(logging.ERROR, logger="workbench.http")
    return caplog


def assert_generic(response, status: int = 500) -> str:
    assert response.status_code == status
    rid = response.headers["x-request-id"]
    assert response.json() == {"error": INTERNAL_ERROR, "detail": None, "request_id": rid}
    assert "hunter2" not in response.text
    return rid


def test_an_exception_escaping_the_app_is_a_generic_500_whose_log_line_has_the_id(client,
                                                                                  logged):
    rid = assert_generic(client.get("/boom"))
    failed = [r for r in logged.records if rid in r.getMessage() and r.exc_info]
    assert failed, logged.records  # the traceback is logged, with the id
    assert "GET /boom" in failed[0].getMessage() and "hunter2" in logged.text


@pytest.mark.parametrize(("path", "status"), [("/leaky", 500), ("/bad-gateway", 502)])
def test_a_5xx_answered_by_a_layer_below_loses_its_body_and_is_logged(client, logged, path,
                                                                      status):
    rid = assert_generic(client.get(path), status)
    assert any(rid in r.getMessage() and str(status) in r.getMessage()
               for r in logged.records)


def test_an_error_caught_by_respond_is_generic_and_logged_with_the_id(client, logged):
    rid = assert_generic(client.get("/handled"))
    assert any(rid in r.getMessage() and r.exc_info for r in logged.records)


def test_a_503_keeps_our_message(client):
    r = client.get("/unavailable")
    assert r.status_code == 503 and r.json() == {"error": "still compiling", "detail": None}
    assert sane_request_id(r.headers["x-request-id"])


def test_a_sane_request_id_is_kept_else_one_is_made(client):
    for given in ("abc-123", "0af7651916cd43dd8448eb211c80319c", "req:1.2_3", "x" * 128,
                  "has space", "semi;colon", "{json: \"ish\"}"):
        r = client.get("/id", headers={"X-Request-ID": given})
        assert r.headers["x-request-id"] == given == r.json()["request_id"]
    for insane in ("x" * 129, "caf\xe9".encode("latin-1"), b"tab\there", b"nul\x00"):
        r = client.get("/id", headers={"X-Request-ID": insane})
        made = r.headers["x-request-id"]
        assert made != insane and made == r.json()["request_id"] and len(made) == 32
    assert client.get("/id").headers["x-request-id"] != client.get("/id").headers["x-request-id"]


def test_a_traceparent_names_the_request_when_no_request_id_does(client):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace_id}-00f067aa0ba902b7-01"
    r = client.get("/id", headers={"traceparent": parent})
    assert r.headers["x-request-id"] == trace_id == r.json()["request_id"]
    both = client.get("/id", headers={"traceparent": parent, "X-Request-ID": "abc-123"})
    assert both.headers["x-request-id"] == "abc-123"  # the client's own id wins
    insane = client.get("/id", headers={"traceparent": parent, "X-Request-ID": "x" * 200})
    assert insane.headers["x-request-id"] == trace_id  # an unusable id is ignored
    for invalid in (f"00-{'0' * 32}-00f067aa0ba902b7-01", f"ff-{trace_id}-00f067aa0ba902b7-01",
                    f"00-{trace_id.upper()}-00f067aa0ba902b7-01", f"00-{trace_id}-01",
                    f"00-{trace_id}-{'0' * 16}-01", "garbage"):
        made = client.get("/id", headers={"traceparent": invalid}).headers["x-request-id"]
        assert made != trace_id and len(made) == 32, invalid


def test_every_request_but_the_probes_has_one_access_line_with_its_id(caplog):
    # Records on the logger itself: whatever handlers and propagation earlier tests in this
    # process left on the workbench loggers (logs.log_to_stderr), each line is seen once.
    caplog.set_level(logging.INFO, logger="workbench.http")  # restored after the test
    app = Starlette(routes=[Route("/id", echo_id), Route("/readyz", echo_id),
                            Route("/boom", boom)])
    client = TestClient(RequestErrors(app), raise_server_exceptions=False)
    with Records("workbench.http") as seen:
        client.get("/id?token=query-s3cret", headers={"X-Request-ID": "abc-123"})
        client.get("/readyz")
        client.get("/boom", headers={"X-Request-ID": "boom-1"})
    lines = [r for r in seen.records if r.levelno == logging.INFO]
    assert [(r.method, r.path, r.status, r.request_id) for r in lines] == [
        ("GET", "/id", 200, "abc-123"), ("GET", "/boom", 500, "boom-1")]
    assert all(r.duration_ms >= 0 for r in lines)
    assert "query-s3cret" not in seen.text()  # the query string is never logged
    quiet = TestClient(RequestErrors(app, access_log=False))
    with Records("workbench.http") as seen:
        assert quiet.get("/id").status_code == 200
    assert not [r for r in seen.records if r.levelno == logging.INFO]


def test_status_and_body_of_each_error():
    assert [status_of(e) for e in (ModelNotFound("m"), Conflict("c"), InputError("i"),
                                   NotReady("n"), Overloaded("o"), ValueError("v"))] == [
        404, 409, 400, 503, 503, 500]
    assert error_body(InputError("bad", detail={"expected": 1})) == {
        "error": "bad", "detail": {"expected": 1}}
    body = error_body(ValueError(SECRET))
    assert body["error"] == INTERNAL_ERROR and body["detail"] is None and body["request_id"]


def test_respond_sets_the_status_bentoml_reads_from_a_context():
    ctx = SimpleNamespace(response=SimpleNamespace(status_code=200))

    async def refuse() -> None:
        raise Conflict("the experiment is concluded", detail={"expected": "a running one"})

    response = asyncio.run(respond(refuse(), ctx))
    assert response.status_code == ctx.response.status_code == 409

    async def ok() -> dict[str, int]:
        return {"fine": 1}

    assert asyncio.run(respond(ok(), ctx)) == {"fine": 1}


def test_a_bare_asgi_app_that_raises_before_answering_gets_the_generic_500(logged):
    async def app(scope, receive, send) -> None:
        raise RuntimeError(SECRET)

    rid = assert_generic(TestClient(RequestErrors(app)).post("/x", json={}))
    assert any(rid in r.getMessage() and r.exc_info for r in logged.records)
