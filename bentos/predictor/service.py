"""The Predictor: posterior-predictive means, standard deviations and credible intervals.

Serve from source (models resolved in the model store now; aliases then follow their moves
live, unless --arg follow=false or WORKBENCH_FOLLOW_ALIASES=false):
    bentoml serve service:Predictor --working-dir bentos/predictor --arg models=champion
Build (aliases resolved and frozen into the bento, which never follows):
    workbench build predictor
Without its model (imported at startup from WORKBENCH_MODEL_URL, e.g. s3://bucket/m.bentomodel):
    workbench build predictor --remote
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import bentoml
from bentoml.validators import ContentType
from pydantic import Field

with bentoml.importing():
    from workbench import (
        access,
        bentoml_fixes,
        follow,
        gc_tuning,
        predictor_http,
        serving,
        settings,
        store,
    )

bentoml_fixes.apply()  # before BentoML builds the app: its timeout middleware, mended

SETTINGS = settings.load()  # every WORKBENCH_* setting, read once (README "Settings")
ARGS = bentoml.use_arguments()
GPU = str(getattr(ARGS, "gpu", "")).lower() in ("1", "true", "yes")
REMOTE = str(getattr(ARGS, "remote", "")).lower() in ("1", "true", "yes") or bool(
    SETTINGS.model_url)
# Inside the experiment gateway (imported as predictor_service, as its dependency or its
# models in process) it must serve the tags the gateway's arms were resolved to, so it
# follows aliases only when told to.
EMBEDDED = __name__ != "service"
SPEC = getattr(ARGS, "models", None)
# {ref: tag}, the first being the default; a remote Predictor learns its model at startup.
MODELS = {} if REMOTE else serving.model_refs(SPEC)
TAGS = list(dict.fromkeys(MODELS.values()))
EXAMPLE_INPUT = serving.example_input(TAGS[0]) if TAGS else {"instances": [[0.0]]}
# A declared media type spares BentoML a JSON-schema generation per response (py-spy:
# ~17% of the event loop's busy time at one client; benchmarks/RESULTS.md).
JSON = Annotated[dict[str, Any], ContentType("application/json")]


def options(*, gpu: bool = False) -> dict[str, Any]:
    """What both services declare alike: no telemetry, no BentoML access log (the
    workbench's JSON line is the one per request), and BentoML's OpenTelemetry middleware
    skipped unless ``WORKBENCH_TRACING=on`` (its spans cost the Predictor 0.63 ms of a
    2.3 ms p50 at one client, exported or not: benchmarks/RESULTS.md). On a GPU, JAX's
    memory is bounded (it preallocates 75% by default) so that a sidecar still fits."""
    gpu_envs = [{"name": "XLA_PYTHON_CLIENT_MEM_FRACTION", "value": "0.5"}] if gpu else []
    return {"envs": [{"name": "BENTOML_DO_NOT_TRACK", "value": "True"}, *gpu_envs],
            "logging": {"access": {"enabled": False}},
            "tracing": {} if SETTINGS.tracing else {"excluded_urls": [".*"]}}


def middlewares(service: Any) -> None:
    """The workbench's ASGI middlewares on ``service``, outermost first."""
    service.add_asgi_middleware(serving.RequestErrors,  # request id; no 5xx detail
                                access_log=SETTINGS.access_log)
    # Before BodyLimit: a request is refused before its body is read.
    service.add_asgi_middleware(access.Access, settings=SETTINGS)
    service.add_asgi_middleware(serving.BodyLimit, max_bytes=SETTINGS.max_body_bytes)


def signatures(service: Any) -> None:
    """Each API function's signature, computed once: BentoML asks ``inspect.signature`` for
    it on every request (``APIMethod.__get__``: ~10 us for /predict's parameters), and
    returns ``__signature__`` at once where it is set."""
    for api in service.apis.values():
        api.func.__signature__ = inspect.signature(api.func)


def bento_models() -> dict[str, Any]:
    """One BentoModel attribute per served tag, so that `bentoml build` packs each of them
    (declared by the Predictor, or by the gateway serving its arms in its own process)."""
    return {f"model_{i}": bentoml.models.BentoModel(t) for i, t in enumerate(TAGS)}


def model_server(owner: Any, bento: Any) -> serving.ModelServer:
    """The served models of ``owner`` (a service declaring :func:`bento_models`), following
    their aliases when served from source, compiling in the background: ``/readyz`` turns
    ready once every bucket compiled. ``bento`` is set when served from a built bento."""
    stored = {str(m.tag): m for m in (getattr(owner, f"model_{i}") for i in range(len(TAGS)))}
    server = serving.ModelServer(
        serving.remote_models if REMOTE else MODELS,
        load=store.get if REMOTE else lambda tag: store.from_bento_model(stored[tag]),
        bento=str(bento.tag) if bento else None, settings=SETTINGS)
    if follow.wanted(getattr(ARGS, "follow", None), built=bento is not None or REMOTE,
                     default=not EMBEDDED, settings=SETTINGS):
        follow.AliasFollower(server, refs=follow.followed(SPEC), settings=SETTINGS).start()
    server.warmup_in_background(then=gc_tuning.freeze_startup)
    return server


@bentoml.asgi_app(predictor_http.app(lambda: bentoml.get_current_service().server), path="/")
@bentoml.service(
    name="predictor",
    workers=1,  # one process; batching fills both cores through XLA's threads (README)
    resources={"gpu": 1} if GPU else {"cpu": "2"},
    # Past 256 requests in flight BentoML answers 429 at once instead of queueing to a timeout.
    traffic={"timeout": 30, "max_concurrency": 256},
    **options(gpu=GPU),
)
class Predictor:

    locals().update(bento_models())

    def __init__(self) -> None:
        self.server = model_server(self, Predictor.bento)  # type: ignore[attr-defined]

    def __is_ready__(self) -> bool:
        return self.server.ready

    @bentoml.api(route="/predict")
    async def predict(
        self,
        instances: Annotated[list[Any] | None,
                             Field(examples=[EXAMPLE_INPUT.get("instances")])] = None,
        model: str | None = None,
        interval_mass: Annotated[float, Field(gt=0, lt=1, strict=True)] = 0.9,
        draws: Annotated[int, Field(ge=0, strict=True)] = 0,
        entities: list[dict[str, Any]] | None = None,
        feature_service: str | None = None,
    ) -> JSON:
        """Posterior-predictive summary per row; ``model`` is a tag, name or alias. Rows are
        ``instances``, or ``entities`` (entity keys, plus request-time values) whose
        features come from the model's feature service's online store."""
        return await serving.respond(self.server.predict(
            instances, model=model, interval_mass=interval_mass, draws=draws,
            entities=entities, feature_service=feature_service))

    @bentoml.api(route="/models")
    async def models(self) -> dict[str, Any]:
        """The served models, their aliases, and whether they are compiled and ready."""
        return self.server.status()


middlewares(Predictor)
signatures(Predictor)
