"""The Open Inference Protocol (v2 REST), as KServe, Triton and MLServer speak it.

Mounted at ``/v2`` on the Predictor so that their clients (``tritonclient[http]``
included) work unchanged. One input tensor, FP32 or FP64, shaped ``[rows, features]``,
as JSON data or with Triton's binary tensor extension; outputs ``mean``, ``std``,
``lower``, ``upper`` (``[rows]``) and, for classifiers, ``probabilities``
(``[rows, classes]``). An optional request parameter ``interval_mass`` (default 0.9).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from workbench.errors import InputError
from workbench.errors_http import error_response
from workbench.lineup import Served
from workbench.predict import DEFAULT_MASS

if TYPE_CHECKING:  # for annotations only: the routes reach the server through get_server
    from workbench.serving import ModelServer

DTYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
HEADER_LENGTH = "inference-header-content-length"


def app(get_server: Callable[[], ModelServer]) -> Starlette:
    """The ``/v2`` routes, reading the live :class:`ModelServer` from ``get_server``."""

    async def live(_: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(_: Request) -> Response:
        ok = get_server().ready
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def server_metadata(_: Request) -> Response:
        from workbench import __version__

        return JSONResponse({"name": "workbench-predictor", "version": __version__,
                             "extensions": ["binary_tensor_data"]})

    async def model_metadata(request: Request) -> Response:
        return await _guard(lambda: _metadata(_served(get_server(), request)))

    async def model_ready(request: Request) -> Response:
        async def check() -> Response:
            server = get_server()
            _served(server, request)
            return JSONResponse({"name": request.path_params["name"], "ready": server.ready},
                                status_code=200 if server.ready else 503)
        return await _guard(check)

    async def infer(request: Request) -> Response:
        async def run() -> Response:
            server = get_server()
            served = _served(server, request)
            header, X = _parse(await request.body(), request.headers.get(HEADER_LENGTH),
                               len(served.posterior.feature_names))
            mass = (header.get("parameters") or {}).get("interval_mass", DEFAULT_MASS)
            served, out = await server.summarize(X, model=served.tag, interval_mass=mass)
            return JSONResponse(_outputs(served, out, header))
        return await _guard(run)

    routes = [
        Route("/health/live", live), Route("/health/ready", ready), Route("/", server_metadata),
        Route("/models/{name}", model_metadata),
        Route("/models/{name}/versions/{version}", model_metadata),
        Route("/models/{name}/ready", model_ready),
        Route("/models/{name}/versions/{version}/ready", model_ready),
        Route("/models/{name}/infer", infer, methods=["POST"]),
        Route("/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
    ]
    return Starlette(routes=routes)


async def _guard(handler: Callable[[], Any]) -> Response:
    try:
        result = handler()
        if hasattr(result, "__await__"):
            result = await result
        return result
    except Exception as exc:  # every failure answers in the protocol's JSON error shape
        return error_response(exc, "OIP request")


def _served(server: ModelServer, request: Request) -> Served:
    name = request.path_params["name"]
    version = request.path_params.get("version")
    return server.resolve(f"{name}:{version}" if version else name)


def _metadata(served: Served) -> Response:
    p = served.posterior
    outputs = [{"name": n, "datatype": "FP32", "shape": [-1]}
               for n in ("mean", "std", "lower", "upper")]
    if p.kind != "regression":
        outputs.append({"name": "probabilities", "datatype": "FP32",
                        "shape": [-1, len(p.target_names)]})
    return JSONResponse({
        "name": served.name, "versions": [served.version], "platform": "workbench-numpyro",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, len(p.feature_names)]}],
        "outputs": outputs,
        "parameters": {"tag": served.tag, "features": list(p.feature_names),
                       "targets": list(p.target_names), "kind": p.kind},
    })


def _parse(body: bytes, header_length: str | None, n_features: int
           ) -> tuple[dict[str, Any], np.ndarray]:
    """The request's JSON header and its one input tensor as a ``(rows, features)`` array."""
    try:
        if header_length is not None:
            cut = int(header_length)
            if not 0 < cut <= len(body):
                raise ValueError(f"{HEADER_LENGTH} {cut} is outside the body")
            header, binary = json.loads(body[:cut]), body[cut:]
        else:
            header, binary = json.loads(body), b""
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"malformed inference request: {exc}",
                         detail={"expected": "an Open Inference Protocol v2 JSON request"}
                         ) from None
    if not isinstance(header, dict):
        raise InputError("an inference request must be a JSON object",
                         detail={"expected": {"inputs": ["..."]}})
    for key, kind in (("parameters", dict), ("outputs", list)):
        if header.get(key) is not None and not isinstance(header[key], kind):
            raise InputError(f"{key} must be {'an object' if kind is dict else 'a list'}",
                             detail={"expected": {"parameters": {"interval_mass": 0.9},
                                                  "outputs": [{"name": "mean"}]}[key]})
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InputError("expected exactly one input tensor",
                         detail={"expected": {"inputs": [{"name": "input", "datatype": "FP32",
                                                         "shape": [-1, n_features],
                                                         "data": "..."}]}})
    tensor = inputs[0]
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in DTYPES:
        raise InputError(f"unsupported datatype {datatype!r}",
                         detail={"expected one of": sorted(DTYPES)})
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or len(shape) not in (1, 2) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise InputError(f"invalid shape {shape!r}",
                         detail={"expected": f"[rows, {n_features}] (or [{n_features}])"})
    size = math.prod(shape)
    params = tensor.get("parameters") or {}
    if not isinstance(params, dict):
        raise InputError("tensor parameters must be an object",
                         detail={"expected": {"binary_data_size": "an integer"}})
    if "binary_data_size" in params:
        nbytes = params["binary_data_size"]
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise InputError(f"binary_data_size must be a non-negative integer, got {nbytes!r}",
                             detail={"expected": f"{size * DTYPES[datatype].itemsize} (bytes "
                                                 "of the tensor after the JSON header)"})
        if nbytes != len(binary) or nbytes != size * DTYPES[datatype].itemsize:
            raise InputError("binary tensor size does not match its shape and datatype",
                             detail={"binary_data_size": nbytes, "bytes": len(binary),
                                     "expected": size * DTYPES[datatype].itemsize})
        flat = np.frombuffer(binary, DTYPES[datatype])
    else:
        try:
            flat = np.asarray(tensor.get("data"), DTYPES[datatype]).reshape(-1)
        except (TypeError, ValueError):
            raise InputError("tensor data must be numbers",
                             detail={"expected": f"{size} numbers, row-major"}) from None
        if flat.size != size:
            raise InputError(f"tensor has {flat.size} values for shape {shape}",
                             detail={"expected": f"{size} values"})
    rows = flat.reshape(shape if len(shape) == 2 else (1, shape[0]))
    if rows.shape[1] != n_features:
        raise InputError(f"tensor has {rows.shape[1]} features",
                         detail={"expected": f"shape [rows, {n_features}]"})
    return header, np.ascontiguousarray(rows, np.float32)


def _outputs(served: Served, out: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    names = ["mean", "std", "lower", "upper"] + (
        ["probabilities"] if "probabilities" in out else [])
    wanted = [o.get("name") for o in header.get("outputs") or [] if isinstance(o, dict)]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise InputError(f"unknown output {unknown[0]!r}", detail={"expected one of": names})
    tensors = []
    for name in wanted or names:
        value = np.asarray(out[name], np.float32)
        tensors.append({"name": name, "datatype": "FP32", "shape": list(value.shape),
                        "data": value.reshape(-1).tolist()})
    return {"model_name": served.name, "model_version": served.version,
            "id": str(header.get("id") or uuid.uuid4()), "outputs": tensors}



def openapi(server: ModelServer | None) -> dict[str, dict[str, Any]]:
    """The ``/v2`` routes' OpenAPI operations (``{path: {method: Operation}}``), with the
    default model of ``server`` as the example name (when one is loaded)."""
    lead = next(iter(server.models.values()), None) if server is not None else None
    # A model's name, alias or tag (BentoML's characters); a path segment with other
    # characters (a newline) never reaches these routes.
    token = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]*$"}
    name = {"name": "name", "in": "path", "required": True, "schema": token}
    version = {"name": "version", "in": "path", "required": True, "schema": token}
    if lead is not None:
        name["example"], version["example"] = lead.name, lead.version
    n = len(lead.posterior.feature_names) if lead is not None else 1
    obj = {"type": "object"}
    tensor = {"type": "object", "required": ["name", "datatype", "shape", "data"],
              "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                             "shape": {"type": "array", "items": {"type": "integer"}},
                             "data": {"type": "array", "items": {"type": "number"}}}}
    request = {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object", "properties": {
            "interval_mass": {"type": "number", "minimum": 0, "maximum": 1,
                              "exclusiveMinimum": True, "exclusiveMaximum": True}}},
        "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
            "type": "object", "required": ["name", "datatype", "shape"],
            "properties": {"name": {"type": "string"}, "datatype": {"type": "string",
                                                                    "enum": sorted(DTYPES)},
                           "shape": {"type": "array", "items": {"type": "integer"}},
                           "parameters": {"type": "object", "properties": {
                               "binary_data_size": {"type": "integer", "minimum": 0}}},
                           "data": {"type": "array", "items": {"type": "number"}}}}},
        "outputs": {"type": "array", "items": {
            "type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "parameters": {"type": "object"}}}}},
        "example": {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, n],
                                "data": [0.0] * n}]}}
    response = {"type": "object", "required": ["model_name", "outputs"], "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"},
        "id": {"type": "string"}, "outputs": {"type": "array", "items": tensor}}}

    def op(summary: str, schema: dict[str, Any], *params: dict[str, Any],
           body: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"summary": summary, "tags": ["Open Inference Protocol"],
                               "parameters": list(params), "responses": {"200": {
                                   "description": summary,
                                   "content": {"application/json": {"schema": schema}}}}}
        if body is not None:
            out["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": body}}}
        return out

    ready = {"type": "object", "properties": {"ready": {"type": "boolean"}}}
    paths = {
        "/v2/health/live": {"get": op("The server is live", {
            "type": "object", "properties": {"live": {"type": "boolean"}}})},
        "/v2/health/ready": {"get": op("The server is ready", ready)},
        "/v2/": {"get": op("Server metadata", obj)},
    }
    for prefix, params in (("/v2/models/{name}", (name,)),
                           ("/v2/models/{name}/versions/{version}", (name, version))):
        paths[prefix] = {"get": op("Model metadata", obj, *params)}
        paths[f"{prefix}/ready"] = {"get": op("The model is ready", ready, *params)}
        paths[f"{prefix}/infer"] = {"post": op("Inference (JSON tensors; Triton's binary "
                                               "tensor extension with "
                                               f"{HEADER_LENGTH})", response, *params,
                                               body=request)}
    return paths
