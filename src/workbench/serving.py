"""Serving several posteriors behind one HTTP service: the logic under the Predictor bento.

:class:`ModelServer` loads posteriors, compiles every shape bucket in the background
(``ready`` turns true only when all are compiled), resolves a request's model by tag,
name or alias, validates each request on its own, and sends it through a per-model
:class:`~workbench.batching.MicroBatcher`. Errors a client can cause become a 4xx with
``{"error": ..., "detail": ...}``; the service stays up.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench import __version__
from workbench.artifact import Posterior
from workbench.batching import MicroBatcher, Overloaded
from workbench.errors import InputError, ModelNotFound, NotReady, Unavailable, WorkbenchError
from workbench.predict import (
    DEFAULT_BUCKETS,
    DEFAULT_MASS,
    Predictor,
    check_draws,
    check_interval_mass,
)

logger = logging.getLogger("workbench.serving")


def log_to_stderr() -> None:
    """BentoML configures only its own loggers; make ours visible beside them."""
    root = logging.getLogger("workbench")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] [workbench] "
                                               "%(message)s", "%Y-%m-%dT%H:%M:%S%z"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False

MAX_ROWS = int(os.environ.get("WORKBENCH_MAX_ROWS", "1024"))
MAX_BODY_BYTES = int(os.environ.get("WORKBENCH_MAX_BODY_BYTES", str(4 * 1024 * 1024)))


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def model_refs(spec: str | None) -> dict[str, str]:
    """Which models a Predictor serves: ``{ref: tag}``, the first being the default.

    ``spec`` is a comma-separated list (the bento argument ``models``, else the
    ``WORKBENCH_MODELS`` environment variable, else ``champion``). Items ``alias=tag`` are
    taken as they are (a built bento carries these, frozen at build time); other items
    (aliases, names, tags) are resolved in the model store now.
    """
    from workbench import store

    spec = spec or os.environ.get("WORKBENCH_MODELS") or "champion"
    out: dict[str, str] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        ref, sep, tag = item.partition("=")
        out[ref] = tag if sep else store.resolve(ref)
    if not out:
        raise ModelNotFound("no models named to serve",
                            detail={"expected": "e.g. --arg models=champion,challenger"})
    return out


def remote_models() -> dict[str, str]:
    """The model source of a Predictor built without its model (``--remote``).

    With ``$WORKBENCH_MODEL_URL`` (``s3://bucket/key.bentomodel``, or any URL BentoML's
    fsspec-based import reads), import the posterior exported there into the local model
    store and serve it by its tag; credentials and endpoint come from the environment
    (``AWS_ACCESS_KEY_ID``, ..., ``AWS_ENDPOINT_URL_S3``). Without it, serve what an
    initContainer imported into the store: ``$WORKBENCH_MODELS``, else its only model.
    """
    from workbench import store

    url = os.environ.get("WORKBENCH_MODEL_URL")
    if not url:
        if os.environ.get("WORKBENCH_MODELS"):
            return model_refs(None)
        tags = [m.tag for m in store.list_models()]
        if len(tags) == 1:
            return {tags[0]: tags[0]}
        raise ModelNotFound(
            "this Predictor was built without its model: set WORKBENCH_MODEL_URL, or import "
            f"exactly one model into its store first (found {len(tags)})",
            detail={"expected": "WORKBENCH_MODEL_URL=s3://bucket/key, or WORKBENCH_MODELS",
                    "in the store": tags[:20]})
    logger.info("workbench: importing the model from %s", url)
    tag = store.import_(url, exist_ok=True)
    logger.info("workbench: imported %s from %s", tag, url)
    return {tag: tag}


def example_input(tag: str) -> dict[str, Any]:
    """A request body that the model ``tag`` accepts (zeros: the training mean)."""
    from workbench import store

    n_features = int(store.metadata(tag).get("features", 1))
    return {"instances": [[0.0] * n_features]}


def status_of(exc: BaseException) -> int:
    """The HTTP status for an error raised while serving."""
    if isinstance(exc, ModelNotFound):
        return 404
    if isinstance(exc, InputError):
        return 400
    if isinstance(exc, Unavailable | Overloaded):
        return 503
    return 500


def error_body(exc: BaseException) -> dict[str, Any]:
    """The JSON body of an error: ``{"error": ..., "detail": ...}``."""
    if isinstance(exc, WorkbenchError):
        return exc.to_dict()
    if isinstance(exc, Overloaded):
        return {"error": "the server is over capacity; retry shortly", "detail": str(exc)}
    return {"error": "internal error while predicting; see the server log", "detail": None}


@dataclass
class Served:
    """One posterior being served."""

    tag: str
    posterior: Posterior
    predictor: Predictor
    batcher: MicroBatcher
    aliases: list[str] = field(default_factory=list)
    sample_output: list[dict[str, Any]] | None = None

    @property
    def name(self) -> str:
        return self.tag.split(":")[0]

    @property
    def version(self) -> str:
        return self.tag.split(":")[-1]


class ModelServer:
    """The models of one Predictor service.

    Parameters
    ----------
    models
        ``{ref: tag}``: each served tag and the name it was asked for by (an alias such as
        ``champion``, or the tag itself). The first is the default model.
    load
        Loads the posterior of a tag (the service passes the bento's model store).
    """

    def __init__(self, models: Mapping[str, str] | Callable[[], Mapping[str, str]],
                 load: Callable[[str], Posterior], *, max_rows: int = MAX_ROWS,
                 buckets: tuple[int, ...] = DEFAULT_BUCKETS, bento: str | None = None,
                 retry_seconds: tuple[float, float] = (2.0, 60.0)) -> None:
        log_to_stderr()
        self.retry_seconds = retry_seconds
        self.bento = bento
        self.max_rows = max_rows
        self.buckets = buckets
        self._load = load
        self.models: dict[str, Served] = {}
        self._lookup: dict[str, str] = {}
        self.default: str | None = None
        self.ready = False
        self.ready_seconds: float | None = None
        self.warmup_seconds: float | None = None
        self.error: str | None = None
        # A callable names the models only when called (e.g. after importing them from
        # object storage): that happens in the background, with retries, before warm-up.
        self._pending = models if callable(models) else None
        if not callable(models):
            self._add(models)

    def _add(self, models: Mapping[str, str]) -> None:
        if not models:
            raise ModelNotFound("no models to serve", detail={"expected": "at least one tag"})
        for ref, tag in models.items():
            if tag not in self.models:
                posterior = self._load(tag)
                predictor = Predictor(posterior, buckets=self.buckets, max_rows=self.max_rows)
                self.models[tag] = Served(tag, posterior, predictor, MicroBatcher(
                    self._summarize(predictor), max_rows=self.buckets[-1]))
            if ref != tag:
                self.models[tag].aliases.append(ref)
        for tag, served in self.models.items():  # aliases win over names, tags over both
            self._lookup.setdefault(served.name, tag)
        for tag, served in self.models.items():
            for alias in served.aliases:
                self._lookup[alias] = tag
            self._lookup[tag] = tag
        self.default = next(iter(self.models))

    def _load_pending(self) -> None:
        """Call the pending model source until it succeeds, logging every failure; the
        service stays alive and not ready meanwhile (no crash loop)."""
        wait, max_wait = self.retry_seconds
        while self._pending is not None:
            try:
                self._add(self._pending())
                self._pending = None
                self.error = None
            except Exception as exc:
                self.error = f"cannot load the model: {exc}"
                logger.error("workbench: %s; retrying in %.0fs (the service stays not ready)",
                             self.error, wait)
                time.sleep(wait)
                wait = min(wait * 2, max_wait)

    @staticmethod
    def _summarize(predictor: Predictor) -> Callable[[Any, np.ndarray], dict[str, np.ndarray]]:
        return lambda mass, X: predictor.summarize(X, mass)

    # -- startup ---------------------------------------------------------------------------

    def warmup(self) -> None:
        """Compile every bucket of every model, then mark ready and log the time."""
        self._load_pending()
        started = time.perf_counter()
        try:
            for served in self.models.values():
                served.predictor.warmup()
        except Exception as exc:  # a model that cannot compile must not look ready
            self.error = f"warm-up failed: {exc}"
            logger.exception("workbench: warm-up failed; the service stays not ready")
            return
        self.warmup_seconds = time.perf_counter() - started
        for served in self.models.values():  # a real answer for /metadata's sample output
            served.sample_output = served.predictor.predict([sample_row(served.posterior)]
                                                            ).records()
        self.ready_seconds = seconds_since_process_start()
        self.ready = True
        logger.info("workbench: %d model(s) ready (%s), %d buckets compiled in %.1fs; "
                    "%.1fs from process start to ready", len(self.models),
                    ", ".join(self.models), len(next(iter(self.models.values()))
                                                  .predictor.buckets),
                    self.warmup_seconds, self.ready_seconds)

    def warmup_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.warmup, name="workbench-warmup", daemon=True)
        thread.start()
        return thread

    # -- requests --------------------------------------------------------------------------

    def resolve(self, ref: str | None) -> Served:
        if self.default is None:
            raise NotReady(self.error or "no model loaded yet; retry shortly",
                           detail={"ready": False})
        if ref is None or ref == "":
            return self.models[self.default]
        if not isinstance(ref, str):
            raise InputError(f"model must be a string, got {type(ref).__name__}")
        tag = self._lookup.get(ref)
        if tag is None:
            raise ModelNotFound(f"unknown model {ref!r}",
                                detail={"expected one of": sorted(self._lookup)})
        return self.models[tag]

    def _check_ready(self) -> None:
        if not self.ready:
            raise NotReady(self.error or "the model is still compiling; retry shortly",
                           detail={"ready": False})

    async def predict(self, instances: Any, *, model: str | None = None,
                      interval_mass: Any = DEFAULT_MASS, draws: Any = 0) -> dict[str, Any]:
        """``POST /predict``: validated alone, computed in a batch."""
        self._check_ready()
        served = self.resolve(model)
        X = served.predictor.validate(instances)
        mass = check_interval_mass(interval_mass)
        n_draws = check_draws(draws, served.predictor.max_draws)
        arrays = await served.batcher.submit(mass, X)
        pred = served.predictor.prediction(arrays, mass, n_draws)
        return {"model": served.tag, "predictions": pred.records(), "interval_mass": mass}

    async def summarize(self, X: np.ndarray, *, model: str | None = None,
                        interval_mass: float = DEFAULT_MASS) -> tuple[Served, dict[str, Any]]:
        """Raw arrays for an already shaped float array (the Open Inference Protocol path)."""
        self._check_ready()
        served = self.resolve(model)
        X = served.predictor.validate(X)
        mass = check_interval_mass(interval_mass)
        return served, await served.batcher.submit(mass, X)

    # -- description -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Readiness of the service and of each model (the gateway's ``/health/all``)."""
        return {"ready": self.ready, "error": self.error,
                "models": {tag: {"aliases": s.aliases, "ready": self.ready}
                           for tag, s in self.models.items()},
                "lookup": dict(self._lookup)}

    def metadata(self) -> dict[str, Any]:
        """``GET /metadata``: what clients must send and what they get back, per model."""
        if not self.models:
            return {"ready": False, "models": {}, "startup": {"error": self.error}}
        models = {tag: describe(s) for tag, s in self.models.items()}
        first = models[self.default]
        return {
            "default_model": self.default,
            "models": models,
            "aliases": {a: s.tag for s in self.models.values() for a in s.aliases},
            "features": first["features"],
            "targets": first["targets"],
            "sample_input": first["sample_input"],
            "sample_output": first["sample_output"],
            "limits": {"max_rows": self.max_rows, "max_body_bytes": MAX_BODY_BYTES,
                       "max_draws": next(iter(self.models.values())).predictor.max_draws},
            "ready": self.ready,
            "startup": {"ready_seconds_since_process_start": self.ready_seconds,
                        "warmup_seconds": self.warmup_seconds, "error": self.error},
            "device": next(iter(self.models.values())).predictor.device,
            "build": build_info() | {"bento": self.bento or "served from source"},
        }


def describe(served: Served) -> dict[str, Any]:
    p, pred = served.posterior, served.predictor
    sample = sample_row(p)
    output: dict[str, Any] = {"mean": "float", "std": "float", "interval": ["float", "float"]}
    if p.kind != "regression":
        output |= {"probabilities": {t: "float" for t in p.target_names},
                   "label": f"one of {list(p.target_names)}"}
    return {
        "tag": served.tag,
        "aliases": served.aliases,
        "model": p.model,
        "kind": p.kind,
        "features": list(p.feature_names),
        "targets": list(p.target_names),
        "input": {"type": "object", "instances": f"list of rows; each a list of "
                  f"{len(p.feature_names)} finite numbers in feature order, or an object "
                  "keyed by feature name", "interval_mass": "number in (0, 1), default 0.9",
                  "draws": f"integer 0..{pred.max_draws}", "model": "tag, name or alias"},
        "output": {"model": "tag", "interval_mass": "float", "predictions": [output]},
        "sample_input": {"instances": [sample], "model": served.tag},
        "sample_output": {"model": served.tag, "interval_mass": DEFAULT_MASS,
                          "predictions": served.sample_output},
        "diagnostics": p.diagnostics,
        "scores": p.scores,
        "sampler": p.sampler,
        "data": p.data,
        "draws": p.n_draws,
        "buckets": list(pred.buckets),
        "device": pred.device,
    }


def sample_row(posterior: Posterior) -> list[float]:
    """A typical input row: the training mean of each feature (rounded for display)."""
    return [round(float(v), 4) for v in posterior.x_loc]


def build_info() -> dict[str, Any]:
    import jax
    import numpyro

    return {"workbench": __version__, "jax": jax.__version__, "numpyro": numpyro.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "jax_backend": jax.default_backend()}


def seconds_since_process_start() -> float:
    import psutil

    return time.time() - psutil.Process().create_time()


def http_app(get_server: Callable[[], ModelServer]) -> Any:
    """GET ``/metadata`` and the Open Inference Protocol under ``/v2``, as one ASGI app."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, RedirectResponse
    from starlette.routing import Mount, Route

    from workbench import oip

    async def metadata(_: Any) -> JSONResponse:
        return JSONResponse(get_server().metadata())

    async def docs(_: Any) -> RedirectResponse:  # BentoML serves its Swagger UI at /
        return RedirectResponse("/")

    return Starlette(routes=[Route("/metadata", metadata), Route("/docs", docs),
                             Mount("/v2", app=oip.app(get_server))])


async def respond(call: Any) -> Any:
    """Await a request's coroutine; the workbench's own errors become their 4xx/503."""
    from starlette.responses import JSONResponse

    try:
        return await call
    except (WorkbenchError, Overloaded) as exc:
        return JSONResponse(error_body(exc), status_code=status_of(exc))


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` with 413 (declared or streamed)."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send, int(declared))
            return
        seen = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(seen)
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge as exc:
            if not started:
                await self._too_large(send, exc.seen)

    async def _too_large(self, send: Any, size: int) -> None:
        import json

        body = json.dumps({"error": f"request body too large: {size} bytes",
                           "detail": {"expected": f"at most {self.max_bytes} bytes"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    def __init__(self, seen: int) -> None:
        self.seen = seen
