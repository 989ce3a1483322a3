"""The access middleware on a small Starlette app: open routes, 401/403/429, the principal
in the request's state, the switch, and the private channel to a dependency."""

from __future__ import annotations

import asyncio
import json

import pytest
from jwks import Provider
from records import Records
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from workbench import access, events, keys
from workbench.access import Access, actor, required_scope
from workbench.errors import ConfigError
from workbench.ratelimit import RateLimiter
from workbench.settings import load
from workbench.tokens import JWTSettings, TokenVerifier


async def whoami(request):
    return JSONResponse({"principal": access.principal_of(request), "actor": actor(request)})


ROUTES = ["/healthz", "/livez", "/readyz", "/metrics", "/predict", "/metadata", "/models",
          "/feedback", "/batch", "/batch/submit", "/admin/pause", "/experiment",
          "/analysis", "/health/all", "/docs", "/docs.json", "/", "/secret"]


def make_app(**kwargs) -> Starlette:
    inner = Starlette(routes=[Route(p, whoami, methods=["GET", "POST"]) for p in ROUTES]
                      + [Mount("/v2", routes=[Route("/models/{name}/infer", whoami,
                                                    methods=["POST"])])])
    return Access(inner, **kwargs)


@pytest.fixture(scope="module")
def idp(tmp_path_factory) -> Provider:
    return Provider(tmp_path_factory.mktemp("idp"))


@pytest.fixture
def world(tmp_path, idp, monkeypatch):
    monkeypatch.setenv("WORKBENCH_KEY_PEPPER", "unit-pepper")
    eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    made = {scope: keys.create(eng, scope, [scope]) for scope in keys.SCOPES}
    made["limited"] = keys.create(eng, "limited", ["predict"], rate_limit="3/minute")
    app = make_app(on=True, keys=keys.KeyCache(eng, ttl=0),
                   tokens=TokenVerifier(JWTSettings.from_settings(load(idp.env()))),
                   limiter=RateLimiter({"predict": "1000/second"}, storage_url=""))
    return TestClient(app), made, eng


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@pytest.mark.parametrize("path, scope", [
    ("/healthz", None), ("/livez", None), ("/readyz", None), ("/metrics", None),
    ("/predict", "predict"), ("/metadata", "predict"), ("/models", "predict"),
    ("/v2", "predict"), ("/v2/models/m/infer", "predict"), ("/v2/health/ready", "predict"),
    ("/experiment", "predict"), ("/analysis", "predict"), ("/health/all", "predict"),
    ("/analysis/segments", "predict"),
    ("/docs", "predict"), ("/", "predict"), ("/docs.json", "predict"),
    ("/feedback", "feedback"), ("/batch", "batch"), ("/batch/status", "batch"),
    ("/admin/pause", "admin"), ("/admin", "admin"), ("/secret", "admin"),
    ("/predict/", "admin"), ("/healthz/x", "admin"), ("/feedbackx", "admin"),
    ("/Predict", "admin"), ("//predict", "admin"), ("/metrics/../admin/pause", "admin")])
def test_every_route_maps_to_a_scope_and_unknown_ones_to_admin(path, scope):
    assert required_scope(path) == scope


def test_health_and_metrics_are_open_and_the_rest_needs_a_credential(world):
    client, _, _ = world
    for path in ("/healthz", "/livez", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200
    for path in ("/predict", "/feedback", "/batch", "/admin/pause", "/secret", "/",
                 "/v2/models/m/infer"):
        r = client.post(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == 'Bearer realm="workbench"'
        assert r.json()["error"] == "authentication required"
        assert "X-API-Key" in r.json()["detail"]["expected"]


def test_a_key_with_the_scope_gets_through_with_its_principal(world):
    client, made, _ = world
    r = client.post("/predict", headers=bearer(made["predict"]))
    assert r.status_code == 200 and r.json() == {"principal": "key:predict",
                                                 "actor": "key:predict"}
    assert client.post("/v2/models/m/infer", headers={"X-API-Key": made["predict"]}
                       ).status_code == 200
    assert client.post("/admin/pause", headers=bearer(made["admin"])).json()["actor"] == \
        "key:admin"


def test_wrong_keys_and_bad_tokens_are_401_and_never_echoed(world, idp):
    client, made, _ = world
    for bad in ("wb_000000000000_" + "x" * 43, made["predict"][:-2] + "zz", "nope",
                idp.token(expires_in=-600), idp.token(aud="other"), idp.token(key=idp.other)):
        r = client.post("/predict", headers=bearer(bad))
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"].startswith('Bearer realm="workbench"')
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
        assert bad not in r.text
    assert "expired" in client.post("/predict", headers=bearer(idp.token(expires_in=-600))
                                    ).json()["error"]


def test_a_credential_without_the_scope_is_403_naming_it(world, idp):
    client, made, _ = world
    r = client.post("/admin/pause", headers=bearer(made["predict"]))
    assert r.status_code == 403
    assert r.json() == {"error": "this route needs the 'admin' scope",
                        "detail": {"needed": "admin", "granted": ["predict"]}}
    assert 'scope="admin"' in r.headers["www-authenticate"]
    assert client.post("/secret", headers=bearer(made["predict"])).status_code == 403
    assert client.post("/feedback", headers=bearer(made["batch"])).status_code == 403
    token = idp.token("svc", "predict feedback")
    assert client.post("/feedback", headers=bearer(token)).json()["principal"] == "jwt:svc"
    assert client.post("/batch", headers=bearer(token)).status_code == 403


def test_a_revoked_key_is_refused(world):
    client, made, eng = world
    assert client.post("/feedback", headers=bearer(made["feedback"])).status_code == 200
    keys.revoke(eng, "feedback")
    assert client.post("/feedback", headers=bearer(made["feedback"])).status_code == 401


def test_over_the_rate_limit_is_429_with_retry_after(world):
    client, made, _ = world
    answers = [client.post("/predict", headers=bearer(made["limited"])) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["error"] == "rate limit exceeded"
    assert refused.json()["detail"]["limit"] == "3 per 1 minute"
    assert client.post("/predict", headers=bearer(made["predict"])).status_code == 200


def test_jwts_are_refused_when_no_jwks_is_configured(tmp_path, idp):
    eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    client = TestClient(make_app(on=True, keys=keys.KeyCache(eng), tokens=None,
                                 limiter=RateLimiter(storage_url="")))
    r = client.post("/predict", headers=bearer(idp.token()))
    assert r.status_code == 401 and "WORKBENCH_JWKS" in r.json()["error"]


def test_an_unreadable_key_store_or_jwks_is_503_not_401(tmp_path, idp):
    def broken():
        raise OSError("database is down")
    settings = JWTSettings.from_settings(load(
        idp.env() | {"WORKBENCH_JWKS": str(tmp_path / "gone")}))
    app = make_app(on=True, keys=keys.KeyCache(broken, ttl=0),
                   tokens=TokenVerifier(settings), limiter=RateLimiter(storage_url=""))
    key = "wb_000000000000_" + "a" * 43
    with Records("workbench.access") as logged:
        for credential in (key, idp.token()):
            r = TestClient(app).post("/predict", headers=bearer(credential))
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert credential not in r.text
    assert len(logged.records) == 2 and key not in logged.text()


def test_off_lets_everything_through_and_warns_once(monkeypatch):
    monkeypatch.setenv("WORKBENCH_AUTH", "off")
    monkeypatch.setattr(access, "_warned_off", type(access._warned_off)())
    with Records("workbench.access") as logged:
        client = TestClient(make_app())
        TestClient(make_app())
    assert client.post("/admin/pause").json() == {"principal": None,
                                                  "actor": "http:testclient"}
    assert [r.getMessage()[:18] for r in logged.records] == ["WORKBENCH_AUTH=off"]
    monkeypatch.setenv("WORKBENCH_AUTH", "maybe")
    with pytest.raises(ConfigError, match="WORKBENCH_AUTH='maybe' \\(expected on or off"):
        access.enabled()
    monkeypatch.delenv("WORKBENCH_AUTH")
    assert access.enabled()  # on unless turned off


def test_a_request_over_a_unix_socket_is_the_trusted_internal_channel(world):
    client, _, _ = world
    app = client.app
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [],
             "query_string": b"", "server": ("/tmp/bentoml-uds-x/1.sock", None),
             "client": None, "scheme": "http", "root_path": "", "http_version": "1.1"}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"])["principal"] == "internal"
    sent.clear()
    asyncio.run(app(scope | {"server": ("127.0.0.1", 3000)}, receive, send))
    assert sent[0]["status"] == 401


def test_credentials_are_read_from_either_header():
    assert access.credential([(b"authorization", b"Bearer abc")]) == "abc"
    assert access.credential([(b"authorization", b"bearer  abc ")]) == "abc"
    assert access.credential([(b"authorization", b"Basic abc")]) is None
    assert access.credential([(b"x-api-key", b"k")]) == "k"
    assert access.credential([]) is None
