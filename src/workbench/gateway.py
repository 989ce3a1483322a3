"""The experiment gateway's logic: assign, predict through the Predictor, log, fall back,
mirror to a shadow, take feedback, and read the experiment out.

The service in ``bentos/experiment`` is a thin shell over :class:`Gateway`; the Predictor
is reached through an async callable (BentoML's dependency client in production).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench import assignment, events, experiments
from workbench.config import ExperimentConfig
from workbench.errors import ArmFailed, InputError, ModelNotFound
from workbench.predict import (
    DEFAULT_MASS,
    MAX_RETURNED_DRAWS,
    check_draws,
    check_interval_mass,
    validate_rows,
)

logger = logging.getLogger("workbench.gateway")

PredictCall = Callable[..., Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ArmModel:
    """What the gateway knows of an arm's model without loading it."""

    arm: str
    ref: str
    tag: str
    features: tuple[str, ...]
    targets: tuple[str, ...]
    kind: str


class Gateway:
    """One experiment behind one Predictor.

    Parameters
    ----------
    config
        The experiment.
    models
        Each arm's (and the shadow's) model, by arm name.
    predict
        ``await predict(instances=..., model=REF, interval_mass=..., draws=...)`` → the
        Predictor's JSON; raises on any failure.
    engine, writer
        The event store and its batched writer.
    max_rows
        The most rows one request may carry.
    """

    def __init__(self, config: ExperimentConfig, models: Mapping[str, ArmModel],
                 predict: PredictCall, *, engine: Any, writer: events.EventWriter,
                 max_rows: int = 1024) -> None:
        from workbench.serving import log_to_stderr

        log_to_stderr()
        self.config = config
        self.models = dict(models)
        self._call = predict
        self.engine = engine
        self.writer = writer
        self.max_rows = max_rows
        self.weights = dict(config.weights)
        self.weights_updated: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._outcomes_seen: set[str] = set()
        self._stop = threading.Event()
        self.counters = {"requests": 0, "fallbacks": 0, "shadow": 0, "shadow_errors": 0}
        events.save_config(engine, config.name, config.to_config())
        if config.mode == "bandit":
            threading.Thread(target=self._bandit_loop, name="workbench-bandit",
                             daemon=True).start()

    # -- predict ---------------------------------------------------------------------------

    async def _predict(self, **kwargs: Any) -> dict[str, Any]:
        """Call the Predictor; retry once when a kept-alive connection was closed under us
        (the server's keep-alive timeout racing a reused connection), which is safe because
        a prediction has no side effects."""
        try:
            return await self._call(**kwargs)
        except Exception as exc:
            if not _transient(exc):
                raise
            logger.info("retrying a predictor call after %r", exc)
            return await self._call(**kwargs)

    def assign(self, unit: str) -> str:
        return assignment.assign(self.config.name, unit, self.weights, self.config.salt)

    async def predict(self, unit: Any, instances: Any, *, interval_mass: Any = DEFAULT_MASS,
                      draws: Any = 0) -> dict[str, Any]:
        """``POST /predict``: the assigned arm's prediction plus request id, experiment, arm."""
        started = time.perf_counter()
        if isinstance(unit, bool) or not isinstance(unit, str | int) or unit == "":
            raise InputError(f"unit must be a non-empty string or integer, got {unit!r}",
                             detail={"expected": f"the {self.config.unit} this request is for"})
        unit = str(unit)
        arm = self.assign(unit)
        model = self.models[arm]
        rows = validate_rows(instances, model.features, max_rows=self.max_rows)
        mass = check_interval_mass(interval_mass)
        n_draws = check_draws(draws, MAX_RETURNED_DRAWS)
        request_id = uuid.uuid4().hex
        payload = {"instances": rows.tolist(), "interval_mass": mass, "draws": n_draws}
        status, served, fallback_from = "ok", model, None
        try:
            body = await self._predict(model=model.ref, **payload)
        except Exception as exc:
            control = self.models[self.config.control_arm.name]
            logger.warning("predictor call for arm %r (%s) failed: %r", arm, model.tag, exc,
                           exc_info=True)
            if arm == control.arm or control.features != model.features:
                raise ArmFailed(f"arm {arm!r} failed and no fallback could answer: {exc}",
                                detail={"arm": arm}) from exc
            logger.warning("arm %r (%s) failed; answering from control %r: %s", arm,
                           model.tag, control.arm, exc)
            self.counters["fallbacks"] += 1
            status, served, fallback_from = "fallback", control, arm
            body = await self._predict(model=control.ref, **payload)
        latency_ms = (time.perf_counter() - started) * 1000.0
        self.counters["requests"] += 1
        self.writer.prediction({
            "request_id": request_id, "parent_id": None, "ts": time.time(),
            "experiment": self.config.name, "arm": served.arm, "model_tag": body["model"],
            "unit": unit, "latency_ms": latency_ms, "status": status,
            "fallback_from": fallback_from, "n_rows": len(rows),
            "summary": body["predictions"], "instances": payload["instances"]})
        if self.config.shadow is not None:
            self._spawn(self._shadow(request_id, unit, payload))
        out = {"request_id": request_id, "experiment": self.config.name, "arm": served.arm}
        if fallback_from:
            out["fallback_from"] = fallback_from
        return body | out

    async def _shadow(self, parent_id: str, unit: str, payload: dict[str, Any]) -> None:
        shadow = self.models[self.config.shadow.name]  # type: ignore[union-attr]
        started = time.perf_counter()
        try:
            body = await self._predict(model=shadow.ref, **payload)
        except Exception:
            self.counters["shadow_errors"] += 1
            logger.warning("shadow %r failed", shadow.arm, exc_info=True)
            return
        self.counters["shadow"] += 1
        self.writer.prediction({
            "request_id": f"{parent_id}-shadow", "parent_id": parent_id, "ts": time.time(),
            "experiment": self.config.name, "arm": shadow.arm, "model_tag": body["model"],
            "unit": unit, "latency_ms": (time.perf_counter() - started) * 1000.0,
            "status": "shadow", "fallback_from": None, "n_rows": len(payload["instances"]),
            "summary": body["predictions"], "instances": payload["instances"]})

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for mirrored shadow calls still in flight (before a shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- batch jobs --------------------------------------------------------------------------

    async def batch(self, instances: Any, *, model: str | None = None,
                    chunk: int = 256) -> dict[str, Any]:
        """Score many rows with one arm's model (default: control), chunk by chunk."""
        ref = model or self.config.control_arm.model
        arm = next((m for m in self.models.values() if ref in (m.ref, m.tag, m.arm)), None)
        if arm is None:
            raise ModelNotFound(f"unknown model {ref!r}",
                                detail={"expected one of": sorted(
                                    {m.ref for m in self.models.values()})})
        rows = validate_rows(instances, arm.features, max_rows=1_000_000)
        predictions: list[dict[str, Any]] = []
        for start in range(0, len(rows), chunk):
            body = await self._predict(model=arm.ref, instances=rows[start:start + chunk]
                                       .tolist(), interval_mass=DEFAULT_MASS, draws=0)
            predictions.extend(body["predictions"])
        return {"model": arm.tag, "rows": len(rows), "predictions": predictions}

    # -- feedback ----------------------------------------------------------------------------

    def feedback(self, request_id: Any, outcome: Any) -> dict[str, Any]:
        """``POST /feedback``: record an outcome once; a repeat is acknowledged, not stored."""
        if not isinstance(request_id, str) or not request_id:
            raise InputError("request_id must be the string returned by /predict")
        _check_outcome(outcome)
        if request_id in self._outcomes_seen or events.outcome_of(self.engine,
                                                                  request_id) is not None:
            return {"request_id": request_id, "status": "duplicate"}
        if not (self.writer.is_pending(request_id)
                or events.exists(self.engine, request_id) == self.config.name):
            raise ModelNotFound(f"unknown request_id {request_id!r}",
                                detail={"expected": "a request_id returned by this "
                                                    f"experiment's /predict ({self.config.name})"})
        self._outcomes_seen.add(request_id)
        self.writer.outcome({"request_id": request_id, "ts": time.time(),
                             "experiment": self.config.name, "outcome": outcome})
        return {"request_id": request_id, "status": "recorded"}

    # -- read-outs ---------------------------------------------------------------------------

    def experiment(self) -> dict[str, Any]:
        """``GET /experiment``: the config, the live weights and the counts per arm."""
        return {"config": self.config.to_dict(), "weights": self.weights,
                "weights_updated": self.weights_updated,
                "counts": events.counts(self.engine, self.config.name),
                "models": {a: m.tag for a, m in self.models.items()},
                "counters": dict(self.counters), "events_written": dict(self.writer.written)}

    def analysis(self) -> dict[str, Any]:
        """``GET /analysis``: the Bayesian read-out from the event store."""
        data = events.read(self.engine, self.config.name)
        readout = experiments.analyze(data.mask(np.isin(data.status, ["ok", "shadow"])),
                                      self.config, weights=self.weights)
        return readout.to_dict()

    def metadata(self) -> dict[str, Any]:
        """``GET /metadata``: what clients must send (and get back), per arm."""
        return {"experiment": self.config.name, "unit": self.config.unit,
                "arms": {a: {"model": m.ref, "tag": m.tag, "kind": m.kind,
                             "features": list(m.features), "targets": list(m.targets)}
                         for a, m in self.models.items()},
                "request": {"unit": "string or integer", "instances": "rows as lists or "
                            "objects keyed by feature name", "interval_mass": "(0, 1)",
                            "draws": f"0..{MAX_RETURNED_DRAWS}"},
                "feedback": {"request_id": "from /predict", "outcome": "a number (0/1 for a "
                             "binary outcome), a class name, or one per row"}}

    # -- bandit ------------------------------------------------------------------------------

    def update_weights(self) -> dict[str, float]:
        """Thompson sampling: allocate by each arm's posterior probability to be best."""
        data = events.read(self.engine, self.config.name)
        names = [a.name for a in self.config.arms]
        data = data.mask(np.isin(data.arm, names) & (data.status == "ok"))
        draws, _ = experiments.metric_draws(data, self.config, samples=4000,
                                            seed=int(time.time()))
        draws = np.nan_to_num(draws, nan=0.0)
        self.weights = assignment.thompson_weights(
            draws, names, min_weight=self.config.bandit.min_weight,
            higher_is_better=self.config.metric != "brier")
        self.weights_updated = time.time()
        return self.weights

    def _bandit_loop(self) -> None:
        while not self._stop.wait(self.config.bandit.update_seconds):
            try:
                self.update_weights()
            except Exception:
                logger.exception("bandit weight update failed; keeping %s", self.weights)

    def close(self) -> None:
        self._stop.set()
        self.writer.close()


def keep_one_session(client: Any) -> None:
    """Stop BentoML's HTTP client (the gateway's ``bentoml.depends`` on its Predictor) from
    replacing its aiohttp session every 100 requests or 5 minutes.

    BentoML 1.4 closes the old session while other requests are still in flight on it:
    under concurrent traffic those fail with "Connector is closed" (retried once by
    :meth:`Gateway._predict`) or lose their response until the client's 30 s timeout (the
    benchmarks saw one such 503 among ~1400 requests at 64 clients). One session for the
    client's lifetime avoids both; connections that went stale are still retried once.
    Clients without such a session manager (an in-process dependency) are left alone.
    """
    manager = getattr(client, "_session_manager", None)
    if manager is not None and hasattr(manager, "max_requests"):
        manager.max_requests = sys.maxsize
        manager.max_age = float("inf")


def _transient(exc: BaseException) -> bool:
    """A connection dropped or refused before an answer: worth one retry."""
    try:
        import aiohttp
        if isinstance(exc, aiohttp.ClientConnectionError):
            return True
    except ImportError:  # pragma: no cover - aiohttp comes with BentoML
        pass
    return isinstance(exc, ConnectionError)


def _check_outcome(outcome: Any) -> None:
    values = outcome if isinstance(outcome, list) else [outcome]
    ok = values and all((isinstance(v, int | float) and not isinstance(v, bool)
                         and np.isfinite(v)) or isinstance(v, str) for v in values)
    if not ok:
        raise InputError(f"invalid outcome {outcome!r}",
                         detail={"expected": "a finite number (0 or 1 for a binary outcome), "
                                             "a class name, or a list of them, one per row"})


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


def http_app(get_gateway: Callable[[], Gateway],
             predictor_status: Callable[[], Awaitable[dict[str, Any]]]) -> Any:
    """GET ``/experiment``, ``/analysis``, ``/health/all`` and ``/metadata``."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, RedirectResponse
    from starlette.routing import Route

    from workbench.serving import error_body, status_of

    def guarded(fn: Callable[[], Any]) -> Callable[[Any], Awaitable[JSONResponse]]:
        async def endpoint(_: Any) -> JSONResponse:
            try:
                return JSONResponse(await run_in_threadpool(fn))
            except Exception as exc:
                logger.exception("read-out failed") if status_of(exc) == 500 else None
                return JSONResponse(error_body(exc), status_code=status_of(exc))
        return endpoint

    async def health(_: Any) -> JSONResponse:
        gw = get_gateway()
        try:
            status = await predictor_status()
        except Exception as exc:
            return JSONResponse({"ready": False, "predictor": f"unreachable: {exc}",
                                 "arms": {a: {"model": m.ref, "tag": m.tag, "ready": False}
                                          for a, m in gw.models.items()}}, status_code=503)
        lookup = status.get("lookup", {})
        arms = {a: {"model": m.ref, "tag": m.tag,
                    "ready": bool(status.get("ready")) and lookup.get(m.ref) == m.tag}
                for a, m in gw.models.items()}
        ok = all(a["ready"] for a in arms.values())
        return JSONResponse({"ready": ok, "arms": arms, "event_store": gw.engine.dialect.name},
                            status_code=200 if ok else 503)

    async def docs(_: Any) -> RedirectResponse:
        return RedirectResponse("/")

    return Starlette(routes=[
        Route("/experiment", guarded(lambda: get_gateway().experiment())),
        Route("/analysis", guarded(lambda: get_gateway().analysis())),
        Route("/metadata", guarded(lambda: get_gateway().metadata())),
        Route("/health/all", health), Route("/docs", docs)])
