"""The arms' models, served in the gateway's process or by a Predictor process of their
own (:func:`mode`): one call per request, one retry of a dropped connection, the control's
answer when a treatment arm fails, and a shadow that is mirrored off the request path.

Every call carries the request's id (:mod:`workbench.trace`): BentoML's client sends it as
``X-Request-ID`` beside ``traceparent``, so the Predictor's log lines for the request name
the same id as the gateway's. Fallbacks and failed shadow calls are counted in
``workbench_gateway_fallbacks_total{experiment, arm}`` and
``workbench_gateway_shadow_errors_total{experiment}`` (:mod:`workbench.metrics`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from workbench import trace
from workbench.config import ExperimentConfig
from workbench.errors import (
    ArmFailed,
    ConfigError,
    EntityNotFound,
    InputError,
    ModelNotFound,
    StaleFeatures,
    Unavailable,
    WorkbenchError,
)
from workbench.errors_http import status_of
from workbench.metrics import FALLBACKS, SHADOW_ERRORS
from workbench.settings import Settings, load

logger = logging.getLogger("workbench.arms")

PredictCall = Callable[..., Awaitable[dict[str, Any]]]
MODES = ("in-process", "predictor")


def mode(arg: Any = None, *, gpu: bool = False, settings: Settings | None = None) -> str:
    """Where the gateway serves its arms' models: the bento argument ``arms``, else
    ``$WORKBENCH_ARMS`` (``settings``, default: read now), else ``in-process`` on CPU and
    ``predictor`` (a process of its own, through ``bentoml.depends``) on a GPU."""
    value = arg if arg not in (None, "") else (settings or load()).arms or ""
    value = str(value).strip().lower().replace("_", "-") or (
        "predictor" if gpu else "in-process")
    if value not in MODES:
        raise ConfigError(f"invalid arms mode {value!r}",
                          detail={"expected one of": list(MODES), "set by":
                                  "--arg arms=... or WORKBENCH_ARMS"})
    return value


@dataclass(frozen=True)
class ArmModel:
    """What the gateway knows of an arm's model without loading it."""

    arm: str
    ref: str
    tag: str
    features: tuple[str, ...]
    targets: tuple[str, ...]
    kind: str


@dataclass(frozen=True)
class Served:
    """A request's answer: the Predictor's body, the arm that served it, and how."""

    body: dict[str, Any]
    arm: ArmModel
    status: str  # the status the caller asked for, or "fallback"
    fallback_from: str | None


class ArmClient:
    """Calls the arms' models.

    Parameters
    ----------
    config
        The experiment (which arm is control, which is the shadow).
    models
        Each arm's (and the shadow's) model, by arm name.
    predict
        ``await predict(instances=..., model=REF, interval_mass=..., draws=...)`` → the
        Predictor's JSON; raises on any failure.
    """

    def __init__(self, config: ExperimentConfig, models: Mapping[str, ArmModel],
                 predict: PredictCall) -> None:
        self.config = config
        self.models = dict(models)
        self._call = predict
        self._tasks: set[asyncio.Task[None]] = set()
        self.counters = {"fallbacks": 0, "shadow": 0, "shadow_errors": 0, "retries": 0}
        trace.propagate()  # the calls below carry the request's id (X-Request-ID)

    async def call(self, **kwargs: Any) -> dict[str, Any]:
        """Call the Predictor; retry once when a kept-alive connection was closed under us
        (the server's keep-alive timeout racing a reused connection), which is safe because
        a prediction has no side effects."""
        try:
            return await self._call(**kwargs)
        except Exception as exc:
            if not _transient(exc):
                raise
            self.counters["retries"] += 1
            logger.info("retrying a predictor call after %r", exc)
            return await self._call(**kwargs)

    async def serve(self, arm: str, payload: dict[str, Any], status: str = "ok") -> Served:
        """``arm``'s answer; the control's when a treatment arm fails (same features)."""
        model = self.models[arm]
        try:
            return Served(await self.call(model=model.ref, **payload), model, status, None)
        except Exception as exc:
            # Rows by entity are checked by the Predictor alone (against the feature service):
            # what it refuses there is the request's fault (an unknown entity), no fallback.
            refused = client_error(exc) if "entities" in payload else None
            if refused is not None:
                raise refused from None
            control = self.models[self.config.control_arm.name]
            if arm == control.arm or control.features != model.features:
                logger.warning("arm %r (%s) failed with no fallback: %r", arm, model.tag, exc,
                               exc_info=True)
                raise ArmFailed(f"arm {arm!r} failed and no fallback could answer",
                                detail={"arm": arm}) from exc
            logger.warning("arm %r (%s) failed; answering from control %r: %r", arm,
                           model.tag, control.arm, exc)
            self.counters["fallbacks"] += 1
            try:
                body = await self.call(model=control.ref, **payload)
            except Exception as again:  # the Predictor itself is down or restarting
                logger.warning("the fallback to control %r failed too: %r", control.arm,
                               again)
                raise ArmFailed(f"arm {arm!r} failed and its fallback {control.arm!r} too",
                                detail={"arm": arm, "fallback": control.arm}) from again
            FALLBACKS.labels(experiment=self.config.name, arm=arm).inc()  # control answered
            # Only a randomised request is a fallback the read-out counts for its arm; one
            # served while paused or concluded keeps that status (and says where it fell).
            return Served(body, control, "fallback" if status == "ok" else status, arm)

    def mirror(self, payload: dict[str, Any], log: Callable[[ArmModel, dict[str, Any], float],
               None]) -> None:
        """Send ``payload`` to the shadow in the background; ``log(model, body, ms)`` on
        success. Never delays or fails the request it mirrors."""
        if self.config.shadow is None:
            return
        shadow = self.models[self.config.shadow.name]

        async def run() -> None:
            started = time.perf_counter()
            try:
                body = await self.call(model=shadow.ref, **payload)
            except Exception:
                self.counters["shadow_errors"] += 1
                SHADOW_ERRORS.labels(experiment=self.config.name).inc()
                logger.warning("shadow %r failed", shadow.arm, exc_info=True)
                return
            self.counters["shadow"] += 1
            log(shadow, body, (time.perf_counter() - started) * 1000.0)

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for mirrored shadow calls still in flight (before a shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def arm_models(config: ExperimentConfig, tags: Mapping[str, str],
               metadata: Callable[[str], dict[str, Any]]) -> dict[str, ArmModel]:
    """Each arm's model from the resolved ``tags`` ({ref: tag}) and the store's metadata."""
    out = {}
    for arm, ref in config.models().items():
        tag = tags[ref]
        meta = metadata(tag)
        out[arm] = ArmModel(arm=arm, ref=ref, tag=tag,
                            features=tuple(meta.get("feature_names") or ()),
                            targets=tuple(meta.get("targets") or ()), kind=meta.get("kind", ""))
    return out


def over_http(predict: PredictCall) -> PredictCall:
    """``predict`` (a Predictor over HTTP: the client behind ``bentoml.depends``) called
    with JSON: the gateway hands its calls the checked rows as a float32 array, which the
    Predictor in process takes as it is."""
    async def call(**kwargs: Any) -> dict[str, Any]:
        rows = kwargs.get("instances")
        if rows is not None and hasattr(rows, "tolist"):
            kwargs["instances"] = rows.tolist()
        return await predict(**kwargs)
    return call


def keep_one_session(client: Any) -> None:
    """Stop BentoML's HTTP client (the gateway's ``bentoml.depends`` on its Predictor) from
    replacing its aiohttp session every 100 requests or 5 minutes.

    BentoML 1.4 closes the old session while other requests are still in flight on it:
    under concurrent traffic those fail with "Connector is closed" (retried once by
    :meth:`ArmClient.call`) or lose their response until the client's 30 s timeout (the
    benchmarks saw one such 503 among ~1400 requests at 64 clients). One session for the
    client's lifetime avoids both; connections that went stale are still retried once.
    Clients without such a session manager (an in-process dependency) are left alone.
    """
    manager = getattr(client, "_session_manager", None)
    if manager is not None and hasattr(manager, "max_requests"):
        manager.max_requests = sys.maxsize
        manager.max_age = float("inf")


def client_error(exc: BaseException) -> WorkbenchError | None:
    """The Predictor's 4xx answer to a request by entity (or, in process, its error) as the
    error to answer with, else None: such a request the Predictor refused is refused, not
    retried on another arm; so is a 503 of the online feature store, which the control arm
    would meet as well. An arm whose model is not served ("unknown model") falls back."""
    if isinstance(exc, ModelNotFound):  # the arm's model is not served: fall back
        return None
    if isinstance(exc, WorkbenchError):
        return exc if 400 <= status_of(exc) < 500 or _features_down(exc.detail) else None
    code = int(getattr(exc, "error_code", 0) or 0)
    try:
        body = json.loads(exc.message if hasattr(exc, "message") else str(exc))
    except (TypeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    if code == 503 and _features_down(body.get("detail")):
        # The online feature store is down: the control arm reads the same store.
        return Unavailable(str(body.get("error")), detail=body.get("detail"))
    if not 400 <= code < 500 or str(body.get("error", "")).startswith("unknown model"):
        return None
    kind = {404: EntityNotFound, 422: StaleFeatures}.get(code, InputError)
    return kind(str(body.get("error") or "the model refused the request"),
                detail=body.get("detail"))


def _features_down(detail: Any) -> bool:
    """An error of the Predictor's online feature lookup (see workbench.feature_lookup)."""
    return isinstance(detail, dict) and "feature service" in detail


def _transient(exc: BaseException) -> bool:
    """A connection dropped or refused before an answer: worth one retry."""
    try:
        import aiohttp
        if isinstance(exc, aiohttp.ClientConnectionError):
            return True
    except ImportError:  # pragma: no cover - aiohttp comes with BentoML
        pass
    return isinstance(exc, ConnectionError)
