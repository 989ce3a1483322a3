"""The experiment gateway: the entry service, in front of the Predictor.

Serve from source (config from WORKBENCH_EXPERIMENT, else champion vs challenger):
    bentoml serve service:Experiment --working-dir bentos/experiment
Build (config bundled, models resolved and frozen):  workbench build experiment
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import bentoml
from pydantic import Field

with bentoml.importing():
    from workbench import config, events, gateway, serving, store

ARGS = bentoml.use_arguments()
_BUNDLED = getattr(ARGS, "experiment_config", None)
CONFIG = config.load(os.environ.get("WORKBENCH_EXPERIMENT")
                     or (Path(__file__).parent / _BUNDLED if _BUNDLED else None))
_REFS = ",".join(dict.fromkeys(CONFIG.models().values()))
os.environ.setdefault("WORKBENCH_MODELS", _REFS)  # what the Predictor below must serve
TAGS = serving.model_refs(getattr(ARGS, "models", None) or _REFS)

from predictor_service import JSON, Predictor  # noqa: E402  (reads WORKBENCH_MODELS on import)


@bentoml.asgi_app(gateway.http_app(lambda: bentoml.get_current_service().gateway,
                                   lambda: bentoml.get_current_service().predictor.to_async
                                   .models()), path="/")
@bentoml.service(name="experiment", workers=1, traffic={"timeout": 60},
                 envs=[{"name": "BENTOML_DO_NOT_TRACK", "value": "True"}])
class Experiment:
    predictor = bentoml.depends(Predictor)

    def __init__(self) -> None:
        gateway.keep_one_session(getattr(self.predictor, "to_async", None))
        engine = events.engine()
        self.gateway = gateway.Gateway(
            CONFIG, gateway.arm_models(CONFIG, TAGS, store.metadata),
            lambda **kw: self.predictor.to_async.predict(**kw),
            engine=engine, writer=events.EventWriter(engine))

    @bentoml.on_shutdown
    async def close(self) -> None:
        await self.gateway.drain()
        self.gateway.close()  # flushes every accepted event before the process exits

    @bentoml.api(route="/predict")
    async def predict(
        self,
        unit: str | int,
        instances: list[Any],
        interval_mass: Annotated[float, Field(gt=0, lt=1, strict=True)] = 0.9,
        draws: Annotated[int, Field(ge=0, strict=True)] = 0,
    ) -> JSON:
        """The assigned arm's prediction, with request_id, experiment and arm."""
        return await serving.respond(self.gateway.predict(
            unit, instances, interval_mass=interval_mass, draws=draws))

    @bentoml.api(route="/feedback")
    async def feedback(self, request_id: str, outcome: Any) -> dict[str, Any]:
        """Record the outcome of a request (once; a repeat is acknowledged)."""
        return await serving.respond(_now(self.gateway.feedback, request_id, outcome))

    @bentoml.task(route="/batch")
    async def batch(self, instances: list[Any], model: str | None = None) -> dict[str, Any]:
        """An async batch job: submit rows, poll /batch/status, fetch /batch/get."""
        return await self.gateway.batch(instances, model=model)  # errors fail the task


async def _now(fn: Any, *args: Any) -> Any:
    return fn(*args)


Experiment.add_asgi_middleware(serving.BodyLimit)
