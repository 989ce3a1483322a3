"""The OpenAPI document of a service (``/docs.json``), as OpenAPI 3.0 tooling reads it.

BentoML 1.4 builds the document from the service's ``@bentoml.api`` methods and labels
it ``openapi: 3.0.2``, but its schemas are pydantic's JSON Schema 2020-12, which 3.0
rejects (``exclusiveMinimum: 0`` instead of ``minimum: 0, exclusiveMinimum: true``;
``examples`` lists; ``anyOf [.., {"type": "null"}]`` instead of ``nullable``); its
request bodies keep only the first branch of a union (``unit: str | int`` is documented
as a string, ``model: str | None`` as a non-null string); the error responses it lists
say ``detail`` is a string, which no error of ours (nor BentoML's own validation error)
sends; it omits 413, 415 and 503; it gives two task operations the same ``operationId``;
and the plain Starlette apps mounted beside the APIs (``/metadata``, ``/v2/...``,
``/experiment``, ...) are missing. :func:`document` starts from BentoML's document and
corrects each of these, so that clients, fuzzers (Schemathesis) and the access-control
tests read every route and what it really answers. :func:`to_schema30` is the JSON Schema
to OpenAPI 3.0 conversion on its own.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

REF = "#/components/schemas/{model}"
META_ROUTES = ("/docs", "/docs.json")  # served beside the document, not part of it
_SCHEMA_KEYS = {
    "title", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
    "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems",
    "maxProperties", "minProperties", "required", "enum", "type", "allOf", "oneOf", "anyOf",
    "not", "items", "properties", "additionalProperties", "description", "format", "default",
    "nullable", "discriminator", "readOnly", "writeOnly", "xml", "externalDocs", "example",
    "deprecated", "$ref"}

ERROR_SCHEMA = {
    "type": "object", "required": ["error"], "title": "Error",
    "description": "What was wrong (``error``) and what was expected (``detail``).",
    "properties": {"error": {"type": "string"},
                   "detail": {"description": "Any JSON value, or null."}}}
INTERNAL_ERROR_SCHEMA = {
    "type": "object", "required": ["error", "detail", "request_id"], "title": "InternalError",
    "description": "Every 5xx but 503: nothing about the failure; the server's log line "
                   "carries the same request_id.",
    "properties": {"error": {"type": "string", "enum": ["internal error"]},
                   "detail": {"type": "string", "nullable": True, "enum": [None]},
                   "request_id": {"type": "string"}}}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=schema)}}}}


ERROR_RESPONSES = {
    "400": _json("Error", "Bad request: what was wrong and what was expected"),
    "401": _json("Error", "No valid credential (see the WWW-Authenticate header)"),
    "403": _json("Error", "The credential lacks the route's scope"),
    "404": _json("Error", "No such model, request id or task"),
    "409": _json("Error", "The experiment's state does not allow this action"),
    "413": _json("Error", "Request body too large"),
    "415": _json("Error", "Unsupported media type: send application/json"),
    "429": {"description": "Over the credential's rate limit (see Retry-After), or over "
                           "the process's concurrency bound"},
    "500": _json("InternalError", "Internal error: see the server log for its request_id"),
    "503": {"description": "Not ready, or over capacity: retry shortly"},
}


def to_schema30(schema: Any) -> Any:
    """A JSON Schema (2020-12, as pydantic writes it) as an OpenAPI 3.0 Schema Object.

    Parameters
    ----------
    schema
        The schema (not modified).

    Returns
    -------
    Any
        ``nullable`` for a null branch of ``anyOf``/``oneOf``, boolean
        ``exclusiveMinimum``/``exclusiveMaximum`` beside ``minimum``/``maximum``, one
        ``example`` for ``examples``, ``enum`` for ``const``, ``allOf`` around a ``$ref``
        that has siblings; keywords 3.0 does not know are dropped (``x-`` extensions kept).
    """
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties"):
            out[key] = {k: to_schema30(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = to_schema30(value)
        elif key in ("anyOf", "oneOf") and any(_is_null(v) for v in value):
            kept = [to_schema30(v) for v in value if not _is_null(v)]
            out["nullable"] = True
            if len(kept) == 1 and "$ref" not in kept[0]:
                out.update({k: v for k, v in kept[0].items() if k not in out or k == "type"})
            elif kept:
                out[key if len(kept) > 1 else "allOf"] = kept
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_schema30(v) for v in value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "examples" and isinstance(value, list) and value:
            out.setdefault("example", value[0])
        elif key == "const":
            out["enum"] = [value]
        elif key == "type" and isinstance(value, list):
            kinds = [k for k in value if k != "null"]
            out.update({"type": kinds[0]} if len(kinds) == 1 else
                       {"anyOf": [{"type": k} for k in kinds]} if kinds else {})
            out["nullable"] = "null" in value or out.get("nullable", False)
        elif key == "type" and value == "null":
            out["nullable"] = True
            out["enum"] = [None]
        elif key in _SCHEMA_KEYS or key.startswith("x-"):
            out[key] = value
    if "$ref" in out and len(out) > 1:
        out["allOf"] = [{"$ref": out.pop("$ref")}, *out.pop("allOf", [])]
    return out


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null" and len(schema) <= 2


def document(service: Any, mounted: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.0 document of a BentoML service, corrected (see the module's docstring).

    Parameters
    ----------
    service
        The ``bentoml.Service`` (the decorated class).
    mounted
        ``{path: PathItem}`` of the routes of the ASGI apps mounted on it
        (:func:`mounted_paths`).

    Returns
    -------
    dict
        The document, valid OpenAPI 3.0.
    """
    # Through JSON, as it is served: a deep copy whose status codes are strings, as ours.
    spec = json.loads(json.dumps(service.openapi_spec.asdict()))
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):
        schemas.pop(name, None)
    schemas["Error"], schemas["InternalError"] = ERROR_SCHEMA, INTERNAL_ERROR_SCHEMA
    for name, api in service.apis.items():
        # BentoML's request body keeps only the first branch of each union: regenerate it.
        request = api.input_spec.model_json_schema(ref_template=REF, mode="validation")
        schemas.update(request.pop("$defs", {}))
        request.pop("root_input", None)
        for route in (api.route, f"{api.route}/submit") if api.is_task else (api.route,):
            op = spec["paths"][route]["post"]
            op["requestBody"] = {"required": bool(request.get("required")), "content": {
                media: {**item, "schema": request}
                for media, item in op["requestBody"]["content"].items()}}
        if api.is_task:  # BentoML gives /cancel the operationId of /retry
            spec["paths"][f"{api.route}/cancel"]["put"]["operationId"] = (
                f"{service.name}__{name}_cancel")
            for route in (f"{api.route}/submit", f"{api.route}/retry"):
                spec["paths"][route]["post"]["responses"]["200"] = {
                    "description": "The task was accepted",
                    "content": {"application/json": {"schema": _TASK_SUBMITTED}}}
    if "TaskStatusResponse" in schemas:  # BentoML documents other values than it sends
        schemas["TaskStatusResponse"]["properties"]["status"]["enum"] = _task_statuses()
    for path, item in spec["paths"].items():
        for op in _operations(item):
            codes = op.setdefault("responses", {})
            if path == "/readyz":
                codes["503"] = {"description": "Not ready yet"}
            elif path not in ("/healthz", "/livez", "/metrics"):
                codes.update(ERROR_RESPONSES)
    for path, item in (mounted or {}).items():
        spec["paths"].setdefault(path, item)
    spec = copy.deepcopy(spec)  # shares nothing with this module's constants from here on
    schemas = spec["components"]["schemas"]
    spec["components"]["schemas"] = {k: to_schema30(v) for k, v in schemas.items()}
    for item in spec["paths"].values():
        for op in _operations(item):
            _convert_operation(op)
    return spec


_NOT_ROUTED = {"description": ERROR_RESPONSES["404"]["description"] + "; plain text when a "
               "path parameter holds what no route matches (a '/', a newline)",
               "content": {**ERROR_RESPONSES["404"]["content"],
                           "text/plain": {"schema": {"type": "string"}}}}
_TASK_SUBMITTED = {"type": "object", "required": ["task_id", "status"],
                   "properties": {"task_id": {"type": "string"}, "status": {"type": "string"}}}


def _task_statuses() -> list[str]:
    from _bentoml_impl.tasks import ResultStatus

    return [status.value for status in ResultStatus]


def _operations(item: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for method in ("get", "put", "post", "delete", "options", "head", "patch", "trace"):
        if isinstance(item.get(method), dict):
            yield item[method]


def _convert_operation(op: dict[str, Any]) -> None:
    for param in op.get("parameters", []):
        if "schema" in param:
            param["schema"] = to_schema30(param["schema"])
    bodies = [op.get("requestBody") or {}, *op.get("responses", {}).values()]
    for body in bodies:
        for media in (body.get("content") or {}).values():
            if "schema" in media:
                media["schema"] = to_schema30(media["schema"])


def mounted_paths(app: Any, documented: Mapping[str, Mapping[str, Any]],
                  prefix: str = "") -> dict[str, Any]:
    """``{path: PathItem}`` for every route of a Starlette app (mounts included).

    A route ``documented`` does not describe is still listed (with its path parameters,
    a 200 and the error responses), so that no route is left out of the document.

    Parameters
    ----------
    app
        The Starlette application (or anything with ``routes``).
    documented
        ``{path: {method: Operation}}`` written beside the routes (methods lower-case).
    prefix
        The path ``app`` is mounted at.

    Returns
    -------
    dict
        The path items, keyed by the full path.
    """
    from starlette.routing import Mount, Route

    paths: dict[str, Any] = {}
    for route in getattr(app, "routes", []):
        path = prefix + route.path
        if isinstance(route, Mount):
            paths.update(mounted_paths(route, documented, path))
        elif isinstance(route, Route) and path not in META_ROUTES:
            params = list(route.param_convertors)
            plain = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)  # {name:int} → {name}
            item = paths.setdefault(plain, {})
            for method in sorted(m.lower() for m in route.methods or ("GET",) if m != "HEAD"):
                item[method] = copy.deepcopy(dict(documented.get(plain, {}).get(method)
                                                  or _undocumented(params)))
                codes = item[method].setdefault("responses", {})
                codes.update({k: v for k, v in ERROR_RESPONSES.items() if k not in codes})
                if params:  # a segment no route matches ("a/b", a newline): Starlette's 404
                    codes["404"] = _NOT_ROUTED
    return paths


def json_get(summary: str) -> dict[str, Any]:
    """``{"get": Operation}`` of a route answering a JSON object, for :func:`mounted_paths`."""
    return {"get": {"summary": summary, "responses": {"200": {
        "description": summary, "content": {"application/json": {"schema": {
            "type": "object"}}}}}}}


def _undocumented(params: list[str]) -> dict[str, Any]:
    return {"responses": {"200": {"description": "Successful response"}},
            "parameters": [{"name": p, "in": "path", "required": True,
                            "schema": {"type": "string"}} for p in params]}


def endpoint(get_service: Callable[[], Any], app: Any,
             documented: Callable[[], Mapping[str, Mapping[str, Any]]]) -> Any:
    """The ``/docs.json`` endpoint of a Starlette app mounted on a BentoML service.

    Parameters
    ----------
    get_service
        Returns the ``bentoml.Service`` being served.
    app
        The mounted Starlette app, whose routes join the document.
    documented
        Returns the routes' documentation (see :func:`mounted_paths`); called per request,
        so that examples can name what is served now.

    Returns
    -------
    Callable
        A Starlette endpoint answering the document as JSON.
    """
    from starlette.responses import JSONResponse

    async def docs_json(_: Any) -> JSONResponse:
        return JSONResponse(document(get_service(), mounted_paths(app, documented())))

    return docs_json


def current_service() -> Any:
    """The ``bentoml.Service`` this process serves (BentoML sets it on the instance)."""
    import bentoml

    return bentoml.get_current_service().bento_service
