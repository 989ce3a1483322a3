"""The experiment gateway: the entry service, serving its arms' models.

Serve from source (config from WORKBENCH_EXPERIMENT, else champion vs challenger):
    bentoml serve service:Experiment --working-dir bentos/experiment
Build (config bundled, models resolved and frozen):  workbench build experiment

The arms' models are served in the gateway's own process by default (the Predictor's
ModelServer and micro-batchers, no second HTTP hop); ``--arg arms=predictor`` (or
WORKBENCH_ARMS=predictor, the default with ``--arg gpu=true``) serves them from a Predictor
process of their own through ``bentoml.depends``: for GPU workers or isolation.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import bentoml
from pydantic import Field

with bentoml.importing():
    from workbench import (
        access,
        arms,
        config,
        events,
        gateway,
        gateway_http,
        gc_tuning,
        serving,
        settings,
        store,
    )
    from workbench.writer import EventWriter

ARGS = bentoml.use_arguments()
_BUNDLED = getattr(ARGS, "experiment_config", None)
CONFIG = config.load(settings.load().experiment
                     or (Path(__file__).parent / _BUNDLED if _BUNDLED else None))
_REFS = ",".join(dict.fromkeys(CONFIG.models().values()))
os.environ.setdefault("WORKBENCH_MODELS", _REFS)  # what the Predictor below must serve
TAGS = serving.model_refs(getattr(ARGS, "models", None) or _REFS)

import predictor_service  # noqa: E402  (reads WORKBENCH_MODELS on import)
from predictor_service import JSON, SETTINGS, Predictor  # noqa: E402

ARMS = arms.mode(getattr(ARGS, "arms", None), gpu=predictor_service.GPU, settings=SETTINGS)
IN_PROCESS = ARMS == "in-process"


@bentoml.asgi_app(gateway_http.app(lambda: bentoml.get_current_service().gateway,
                                   lambda: bentoml.get_current_service().arm_models()),
                  path="/")
@bentoml.service(name="experiment", workers=1, traffic={"timeout": 60, "max_concurrency": 128},
                 **predictor_service.options())
class Experiment:
    if IN_PROCESS:
        locals().update(predictor_service.bento_models())
    else:
        predictor = bentoml.depends(Predictor)

    def __init__(self) -> None:
        if IN_PROCESS:
            self.server = predictor_service.model_server(
                self, Experiment.bento)  # type: ignore[attr-defined]
            call = self.server.predict
        else:
            arms.keep_one_session(getattr(self.predictor, "to_async", None))
            # The client's methods exist once it has connected: looked up per call.
            call = arms.over_http(lambda **kw: self.predictor.to_async.predict(**kw))
        engine = events.engine(events.default_url(SETTINGS))
        self.gateway = gateway.Gateway(
            CONFIG, arms.arm_models(CONFIG, TAGS, store.metadata), call,
            engine=engine, writer=EventWriter.from_settings(engine, SETTINGS),
            max_rows=SETTINGS.max_rows, poll_seconds=SETTINGS.state_poll_seconds,
            feedback_grace=SETTINGS.feedback_grace_seconds, inputs=SETTINGS.event_inputs,
            analysis_ttl=SETTINGS.analysis_ttl_seconds)
        if not IN_PROCESS:  # in process, the models' warm-up does it once they compiled
            gc_tuning.freeze_startup()

    def __is_ready__(self) -> bool:
        """Not ready until the arms' models compiled (in process; a Predictor's readiness is
        BentoML's own probe), or while the event store has been unreachable too long or the
        spool is full (see /health/all for why)."""
        return (not IN_PROCESS or self.server.ready) and self.gateway.ready()[0]

    async def arm_models(self) -> dict[str, Any]:
        """What serves the arms (``served``: in-process or predictor): its models, their
        aliases and readiness."""
        if IN_PROCESS:
            return self.server.status() | {"served": ARMS}
        return await self.predictor.to_async.models() | {"served": ARMS}

    @bentoml.on_shutdown
    async def close(self) -> None:
        await self.gateway.drain()
        self.gateway.close()  # flushes every accepted event before the process exits

    @bentoml.api(route="/predict")
    async def predict(
        self,
        unit: str | int,
        instances: list[Any] | None = None,
        interval_mass: Annotated[float, Field(gt=0, lt=1, strict=True)] = 0.9,
        draws: Annotated[int, Field(ge=0, strict=True)] = 0,
        entities: list[dict[str, Any]] | None = None,
        feature_service: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> JSON:
        """The assigned arm's prediction, with request_id, experiment and arm; rows as
        ``instances`` or as ``entities`` (features from the online feature store);
        ``attributes``: the unit's (e.g. ``{"country": "DE"}``), logged for segments."""
        return await serving.respond(self.gateway.predict(
            unit, instances, interval_mass=interval_mass, draws=draws, entities=entities,
            feature_service=feature_service, attributes=attributes))

    @bentoml.api(route="/feedback")
    async def feedback(self, request_id: str, outcome: Any,
                       covariate: Any = None) -> dict[str, Any]:
        """Record the outcome of a request (once; a repeat is acknowledged), with the unit's
        optional pre-period value of the metric (``covariate``, for CUPED)."""
        return await serving.respond(self.gateway.feedback(request_id, outcome, covariate))

    # Lifecycle (audited; every replica follows within WORKBENCH_STATE_POLL_SECONDS).
    @bentoml.api(route="/admin/pause")
    async def pause(self, ctx: bentoml.Context, reason: str = "") -> dict[str, Any]:
        """Send everyone to control until resumed."""
        return await self._act("pause", ctx, reason=reason)

    @bentoml.api(route="/admin/resume")
    async def resume(self, ctx: bentoml.Context, reason: str = "") -> dict[str, Any]:
        """Assign by the live weights again."""
        return await self._act("resume", ctx, reason=reason)

    @bentoml.api(route="/admin/ramp")
    async def ramp(self, ctx: bentoml.Context, arm: str, weight: float,
                   reason: str = "") -> dict[str, Any]:
        """Give ARM this share of traffic; the other arms share the rest."""
        return await self._act("ramp", ctx, arm=arm, weight=weight, reason=reason)

    @bentoml.api(route="/admin/conclude")
    async def conclude(self, ctx: bentoml.Context, winner: str | None = None,
                       reason: str = "") -> dict[str, Any]:
        """All traffic to the winner (default: the read-out's decided arm), for good."""
        return await self._act("conclude", ctx, winner=winner, reason=reason)

    @bentoml.api(route="/admin/state")
    async def state(self) -> dict[str, Any]:
        """The live state and the latest audit rows."""
        return await serving.respond(asyncio.to_thread(self.gateway.state))

    async def _act(self, action: str, ctx: bentoml.Context, **kwargs: Any) -> Any:
        actor = access.actor(ctx.request)  # the key's or token's principal (else http:<ip>)
        return await serving.respond(asyncio.to_thread(self.gateway.act, action, actor=actor,
                                                       **kwargs), ctx)

    @bentoml.task(route="/batch")
    async def batch(self, instances: list[Any], model: str | None = None) -> dict[str, Any]:
        """An async batch job: submit rows, poll /batch/status, fetch /batch/get."""
        # Any error fails the task; /batch/get then answers its 4xx (or a generic 5xx).
        return await serving.respond(self.gateway.batch(instances, model=model))


predictor_service.middlewares(Experiment)
predictor_service.signatures(Experiment)
