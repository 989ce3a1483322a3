"""The OpenAPI document of a service: BentoML's, made valid OpenAPI 3.0 and complete."""

from __future__ import annotations

import importlib.util
import json
from typing import Annotated, Any

import bentoml
import pytest
from conftest import require
from pydantic import Field
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from workbench import openapi


@bentoml.service(name="toy")
class Toy:
    @bentoml.api(route="/predict")
    async def predict(self, unit: str | int, instances: Annotated[list[Any], Field(
            examples=[[[0.0, 1.0]]])], model: str | None = None,
            mass: Annotated[float, Field(gt=0, lt=1)] = 0.9) -> dict[str, Any]:
        return {}

    @bentoml.task(route="/batch")
    async def batch(self, instances: list[Any]) -> dict[str, Any]:
        return {}


async def nothing(_: Any) -> JSONResponse:
    return JSONResponse({})


MOUNTED = Starlette(routes=[
    Route("/metadata", nothing), Route("/docs", nothing),
    Mount("/v2", routes=[Route("/models/{name}", nothing),
                         Route("/models/{name}/infer", nothing, methods=["POST"])])])
DOCUMENTED = {"/metadata": {"get": {"summary": "Metadata", "responses": {"200": {
    "description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}}}}}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi.document(Toy, openapi.mounted_paths(MOUNTED, DOCUMENTED))


def test_the_document_is_valid_openapi_30(doc):
    require(importlib.util.find_spec("openapi_spec_validator") is not None,
            "openapi-spec-validator is not installed (it comes with moto[server])")
    from openapi_spec_validator import validate

    with pytest.raises(Exception, match="is not valid"):
        validate(json.loads(json.dumps(Toy.openapi_spec.asdict())))  # BentoML's, as served
    validate(doc)
    assert doc["openapi"].startswith("3.0")


def test_request_bodies_keep_unions_nulls_and_bounds(doc):
    body = doc["paths"]["/predict"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert body["required"] is True
    assert schema["properties"]["unit"]["anyOf"] == [{"type": "string"}, {"type": "integer"}]
    assert schema["properties"]["model"].items() >= {"type": "string", "nullable": True}.items()
    assert schema["properties"]["mass"].items() >= {
        "minimum": 0, "exclusiveMinimum": True, "maximum": 1, "exclusiveMaximum": True}.items()
    assert schema["properties"]["instances"]["example"] == [[0.0, 1.0]]
    batch = doc["paths"]["/batch"]["post"]["requestBody"]
    assert doc["paths"]["/batch/submit"]["post"]["requestBody"] == batch != body


def test_errors_are_documented_as_they_are_answered(doc):
    responses = doc["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "404", "409", "413", "415", "500", "503"} <= set(responses)
    assert doc["components"]["schemas"]["Error"]["properties"]["detail"] == {
        "description": "Any JSON value, or null."}
    assert "InvalidArgument" not in doc["components"]["schemas"]
    internal = responses["500"]["content"]["application/json"]["schema"]["$ref"]
    assert internal.endswith("/InternalError")
    assert "503" in doc["paths"]["/readyz"]["get"]["responses"]
    assert set(doc["paths"]["/metrics"]["get"]["responses"]) == {"200"}


def test_task_routes_are_documented_as_bentoml_answers_them(doc):
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()
           if isinstance(op, dict) and "operationId" in op]
    assert len(ids) == len(set(ids))
    status = doc["components"]["schemas"]["TaskStatusResponse"]["properties"]["status"]
    assert {"in_progress", "completed", "failed"} <= set(status["enum"])
    submitted = doc["paths"]["/batch/submit"]["post"]["responses"]["200"]
    assert submitted["content"]["application/json"]["schema"]["required"] == [
        "task_id", "status"]


def test_every_mounted_route_is_listed_documented_or_not(doc):
    assert {"/metadata", "/v2/models/{name}", "/v2/models/{name}/infer"} <= set(doc["paths"])
    assert "/docs" not in doc["paths"] and "/docs.json" not in doc["paths"]
    assert doc["paths"]["/metadata"]["get"]["summary"] == "Metadata"
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]
    assert [p["name"] for p in infer["parameters"]] == ["name"]
    assert "text/plain" in infer["responses"]["404"]["content"]  # Starlette's, unrouted


@pytest.mark.parametrize(("schema", "expected"), [
    ({"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
     {"type": "string", "nullable": True, "default": None}),
    ({"anyOf": [{"$ref": "#/components/schemas/A"}, {"type": "null"}]},
     {"nullable": True, "allOf": [{"$ref": "#/components/schemas/A"}]}),
    ({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
     {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1,
      "exclusiveMaximum": True}),
    ({"const": "a", "examples": [1, 2], "root_input": True, "x-keep": 1},
     {"enum": ["a"], "example": 1, "x-keep": 1}),
    ({"type": ["integer", "null"]}, {"type": "integer", "nullable": True}),
    ({"$ref": "#/components/schemas/A", "description": "d"},
     {"description": "d", "allOf": [{"$ref": "#/components/schemas/A"}]}),
    ({"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
     {"type": "array", "items": {"type": "integer", "nullable": True}}),
])
def test_json_schema_to_openapi_30(schema, expected):
    assert openapi.to_schema30(schema) == expected
