"""Schemathesis against both services' OpenAPI documents (``/docs.json``), on loopback.

Every operation each document lists (the mounted ``/metadata``, ``/v2/...``,
``/experiment``, ... included) goes through Schemathesis' phases, as ``st run`` runs them:
the document's examples, coverage cases (boundary values and values that violate the
schema) and a bounded number of generated requests, valid and not. No answer may be a
5xx, and every answer must be documented: its status, its media type and its body's
schema. A 2xx never carries an error body (BentoML answers 200 for an error returned by a
method that takes a ``bentoml.Context``, unless told otherwise).

Both servers run with access control on (``WORKBENCH_AUTH=on``), and every request carries
:func:`auth_headers`, a key with every scope.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from conftest import require
from schemathesis.engine import events, from_schema

from .conftest import serve_experiment, serve_secured_predictor

pytestmark = pytest.mark.e2e

# Generated requests per operation in the fuzzing phase (examples and coverage cases come
# on top): both services' ~40 operations take about 30 s on 2 cores.
EXAMPLES = 50
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "no_error_with_2xx")
CONFIG = """
name: e2e-fuzz
arms:
  - {name: control, model: champion, weight: 0.5}
  - {name: treatment, model: challenger, weight: 0.5}
metric: binary
"""


@schemathesis.check
def no_error_with_2xx(ctx: Any, response: Any, case: Any) -> bool | None:
    """A success never carries an error body (``{"error": <message>, "detail": ...}``)."""
    if 200 <= response.status_code < 300 and "json" in response.headers.get(
            "content-type", [""])[0]:
        body = response.json()
        if isinstance(body, dict) and "detail" in body and body.get("error"):
            raise AssertionError(f"{response.status_code} with an error body: {body}")
    return None


@pytest.fixture(scope="module")
def auth_headers(secured) -> dict[str, str]:
    """Credentials sent with every request (and with the document's request): a key with
    every scope, on servers that run with access control on."""
    return {"Authorization": f"Bearer {secured['keys']['all']}"}


@pytest.fixture(scope="module")
def predictor(secured, tmp_path_factory) -> Iterator[Any]:
    server = serve_secured_predictor(secured, tmp_path_factory.mktemp("fuzz-p") / "p.log")
    server.wait_ready(180)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(champion, challenger, secured, tmp_path_factory) -> Iterator[Any]:
    server, _ = serve_experiment(CONFIG, tmp_path_factory.mktemp("fuzz"), env=secured["env"])
    yield server
    server.stop()


def _schema(url: str, headers: dict[str, str]) -> Any:
    config = schemathesis.Config.from_dict({
        "workers": 1, "generation": {"max-examples": EXAMPLES, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "checks": {"enabled": False} | {name: {"enabled": True} for name in CHECKS}})
    schema = schemathesis.openapi.from_url(f"{url}/docs.json", config=config, headers=headers,
                                           timeout=30)
    schema.config.update(base_url=url, headers=headers, request_timeout=60)
    assert schema.raw_schema["openapi"].startswith("3.0"), schema.raw_schema["openapi"]
    return schema


@pytest.fixture(scope="module")
def predictor_schema(predictor, auth_headers) -> Any:
    return _schema(predictor.url, auth_headers)


@pytest.fixture(scope="module")
def gateway_schema(gateway, auth_headers) -> Any:
    return _schema(gateway.url, auth_headers)


def fuzz(schema: Any) -> tuple[Counter, dict[str, str], list[str]]:
    """Run Schemathesis' engine over ``schema``; returns the statuses answered, every
    distinct failure (``{operation: failure → reproduction}``) and the errors (a request
    that could not be made, a part of the document that could not be used)."""
    statuses: Counter = Counter()
    failures: dict[str, str] = {}
    errors: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            statuses.update(i.response.status_code for i in recorder.interactions.values()
                            if i.response is not None)
            for check in (c for checks in recorder.checks.values() for c in checks):
                if check.failure_info is not None:
                    failure = check.failure_info.failure
                    failures.setdefault(f"{recorder.label}: {failure.title}",
                                        f"{failure.message[:300]}\n"
                                        f"    {check.failure_info.code_sample}")
        elif isinstance(event, events.NonFatalError | events.FatalError):
            errors.append(f"{getattr(event, 'label', '')}: "
                          f"{getattr(event, 'value', getattr(event, 'exception', ''))!r}")
    return statuses, failures, errors


@pytest.mark.parametrize("service", ["predictor", "gateway"])
def test_no_5xx_and_every_answer_is_documented(service, request, auth_headers):
    server = request.getfixturevalue(service)
    schema = request.getfixturevalue(f"{service}_schema")
    statuses, failures, errors = fuzz(schema)
    print(f"\nschemathesis {service} ({server.url}): {len(schema.raw_schema['paths'])} paths, "
          f"{sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}, "
          f"{len(failures)} failures, {len(errors)} errors")
    assert not errors, "\n".join(errors)
    assert not failures, "\n".join(f"{k}\n    {v}" for k, v in failures.items())


def test_the_documents_are_openapi_30_and_list_the_mounted_routes(predictor_schema,
                                                                 gateway_schema):
    require(importlib.util.find_spec("openapi_spec_validator") is not None,
            "openapi-spec-validator is not installed (it comes with moto[server])")
    from openapi_spec_validator import validate

    for schema, mounted in ((predictor_schema, {"/metadata", "/v2/models/{name}/infer"}),
                            (gateway_schema, {"/experiment", "/analysis", "/health/all"})):
        validate(schema.raw_schema)  # raises on anything OpenAPI 3.0 does not allow
        assert mounted <= set(schema.raw_schema["paths"])
