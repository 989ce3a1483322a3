"""The experiment gateway: route a unit to its arm, answer through the arm's model, log it,
take feedback, act on the experiment, and read it out.

Each concept lives in its own module; :class:`Gateway` puts them together for one replica:

- :mod:`workbench.routing` — the live state (status, weights, winner) polled from the
  database, and the sticky assignment under it;
- :mod:`workbench.arms` — the call to the arm's model, its fallback and the shadow;
- :mod:`workbench.feedback` — outcomes checked by the metric, stored once;
- :mod:`workbench.control` / :mod:`workbench.guardrails` / :mod:`workbench.bandit` —
  lifecycle actions, automatic ones, and Thompson allocation;
- :mod:`workbench.readout` — the one read-out.

A replica holds nothing that another replica needs: state, de-duplication and the audit
trail are in the event store's database.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from workbench import (
    bandit,
    control,
    events,
    feedback,
    guardrails,
    logs,
    metrics,
    readout,
)
from workbench.arms import ArmClient, ArmModel, PredictCall
from workbench.config import ExperimentConfig
from workbench.errors import ModelNotFound, Unavailable
from workbench.inputs import check_entities
from workbench.predict import (
    DEFAULT_MASS,
    MAX_RETURNED_DRAWS,
    check_draws,
    check_interval_mass,
    validate_rows,
)
from workbench.routing import LiveState
from workbench.sink import unreachable
from workbench.units import EXPECTED_ATTRIBUTES, MAX_UNIT, check_attributes, check_unit
from workbench.writer import EventWriter

logger = logging.getLogger("workbench.gateway")



class Gateway:
    """One experiment, one replica.

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
        The event store and its writer (a prediction is answered once its event is durable).
    max_rows
        The most rows one request may carry.
    poll_seconds
        How often the experiment's state is read again (a change reaches traffic within it).
    feedback_grace
        How long feedback for a request id issued a moment ago waits for another replica
        to write that request's event before the id is called unknown.
    inputs
        What the event log keeps of each request's rows: ``raw`` (the rows), ``hash`` (a
        SHA-256 of them, for privacy: equal inputs stay recognisable) or ``none``.
    analysis_ttl
        How long ``GET /analysis`` reuses a read-out (0: never).
    """

    def __init__(self, config: ExperimentConfig, models: Mapping[str, ArmModel],
                 predict: PredictCall, *, engine: Any, writer: EventWriter,
                 max_rows: int = 1024, poll_seconds: float = 1.0,
                 feedback_grace: float = 5.0, inputs: str = "raw",
                 analysis_ttl: float = 2.0) -> None:
        logs.log_to_stderr()
        self.config = config
        self.engine = engine
        self.writer = writer
        self.max_rows = max_rows
        self.feedback_grace = feedback_grace
        self.inputs = events.check_inputs(inputs)
        self.analysis_ttl = analysis_ttl
        self.arms = ArmClient(config, models, predict)
        self.models = self.arms.models
        # Each (arm, status)'s counter, looked up once: labels() costs ~2 us per request.
        self._requests = functools.cache(functools.partial(metrics.REQUESTS.labels,
                                                           config.name))
        self.counters = {"requests": 0, "feedback": 0, "feedback_duplicates": 0,
                         "checks": 0, "check_errors": 0, "automatic_actions": 0}
        events.save_config(engine, config.name, config.to_config())
        self.live = LiveState(engine, config, poll_seconds=poll_seconds)
        self._stop = threading.Event()
        self._loop = threading.Thread(target=self._control_loop, name="workbench-control",
                                      daemon=True)
        self._loop.start()

    # -- predict ---------------------------------------------------------------------------

    async def predict(self, unit: Any, instances: Any = None, *,
                      interval_mass: Any = DEFAULT_MASS, draws: Any = 0,
                      entities: Any = None, feature_service: Any = None,
                      attributes: Any = None) -> dict[str, Any]:
        """``POST /predict``: the assigned arm's prediction plus request id, experiment, arm.
        Rows are ``instances``, or ``entities`` whose features the arm's Predictor reads
        from the online feature store; ``attributes``: the unit's, logged with the
        prediction (:mod:`workbench.units`)."""
        started = time.perf_counter()
        unit = check_unit(unit, self.config.unit)
        attributes = check_attributes(attributes)
        arm, status = self.live.route(unit)
        if entities is None:  # checked once: an array the Predictor takes as it is
            rows = validate_rows(instances, self.models[arm].features, max_rows=self.max_rows)
            payload = {"instances": rows}
        else:
            rows = check_entities(entities, instances, max_rows=self.max_rows)
            payload = {"entities": rows}
        logged = events.logged_inputs(rows, self.inputs)  # once, for the shadow's row too
        if feature_service is not None:  # the arm's Predictor refuses another service
            payload["feature_service"] = feature_service
        payload |= {"interval_mass": check_interval_mass(interval_mass),
                    "draws": check_draws(draws, MAX_RETURNED_DRAWS)}
        request_id = feedback.new_request_id()
        try:
            served = await self.arms.serve(arm, payload, status)
        except Unavailable:
            self._requests(arm, "failed").inc()
            raise
        self.counters["requests"] += 1
        self._requests(arm, served.status).inc()
        await self.writer.submit("predictions", self._row(
            request_id, None, unit, served.arm, served.body, served.status,
            served.fallback_from, logged, (time.perf_counter() - started) * 1000.0,
            attributes))
        if status == "ok":  # a shadow's row is logged if there is room; nobody waits on it
            self.arms.mirror(payload, lambda model, body, ms: self.writer.offer(
                "predictions", self._row(f"{request_id}-shadow", request_id, unit, model,
                                         body, "shadow", None, logged, ms, attributes)))
        out = {"request_id": request_id, "experiment": self.config.name,
               "arm": served.arm.arm}
        if served.fallback_from:
            out["fallback_from"] = served.fallback_from
        return served.body | out

    def _row(self, request_id: str, parent_id: str | None, unit: str, model: ArmModel,
             body: dict[str, Any], status: str, fallback_from: str | None,
             logged: Any, latency_ms: float,
             attributes: dict[str, str] | None) -> dict[str, Any]:
        return events.prediction_row(
            request_id=request_id, parent_id=parent_id, experiment=self.config.name,
            arm=model.arm, model_tag=body["model"], unit=unit, records=body["predictions"],
            status=status, fallback_from=fallback_from, latency_ms=latency_ms,
            instances=logged, attributes=attributes)

    async def drain(self) -> None:
        """Wait for mirrored shadow calls still in flight (before a shutdown)."""
        await self.arms.drain()

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
            body = await self.arms.call(model=arm.ref, instances=rows[start:start + chunk],
                                        interval_mass=DEFAULT_MASS, draws=0)
            predictions.extend(body["predictions"])
        return {"model": arm.tag, "rows": len(rows), "predictions": predictions}

    # -- feedback ----------------------------------------------------------------------------

    async def feedback(self, request_id: Any, outcome: Any, covariate: Any = None
                       ) -> dict[str, Any]:
        """``POST /feedback``: check the outcome (and the optional pre-period ``covariate``,
        for CUPED) and store them once (a repeat is acknowledged as a duplicate)."""
        request_id = feedback.check_request_id(request_id)
        pre = feedback.check_covariate(covariate)
        try:
            found = await self._prediction(request_id)
        except Exception as exc:
            _store_unreachable_is_503(exc)
            raise
        if found is None or found["experiment"] != self.config.name or found.get("parent_id"):
            raise ModelNotFound(f"unknown request_id {request_id!r}",
                                detail={"expected": "a request_id returned by this "
                                                    f"experiment's /predict ({self.config.name})"})
        model = self.models.get(found["arm"])
        value = feedback.check_outcome(
            outcome, metric=self.config.metric, kind=model.kind if model else "",
            classes=model.targets if model else (), n_rows=int(found["n_rows"]))
        try:
            recorded = await asyncio.to_thread(events.record_outcome, self.engine, {
                "request_id": request_id, "ts": time.time(), "experiment": self.config.name,
                "outcome": value, "covariate": pre})
        except Exception as exc:
            _store_unreachable_is_503(exc)
            raise
        self.counters["feedback" if recorded else "feedback_duplicates"] += 1
        return {"request_id": request_id, "status": "recorded" if recorded else "duplicate"}

    async def _prediction(self, request_id: str) -> dict[str, Any] | None:
        """The logged request, waiting a little for one issued a moment ago (possibly by
        another replica whose writer has not flushed it yet)."""
        issued = feedback.issued_at(request_id)
        deadline = (issued or 0.0) + self.feedback_grace
        delay = 0.02
        while True:
            found = self.writer.pending(request_id) or await asyncio.to_thread(
                events.prediction_of, self.engine, request_id)
            if found is not None or time.time() >= deadline:
                return found
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    # -- lifecycle ---------------------------------------------------------------------------

    def act(self, action: str, *, actor: str, reason: str = "", arm: str | None = None,
            weight: Any = None, winner: str | None = None) -> dict[str, Any]:
        """An admin action (``pause``, ``resume``, ``ramp``, ``conclude``), audited; the
        new state is live on this replica at once and on the others within a poll."""
        control.act(self.engine, self.config.name, action, actor=actor, reason=reason,
                    arm=arm, weight=weight,
                    winner=winner or (self._decided() if action == "conclude" else None))
        self.live.refresh()
        return self.state()

    def _decided(self) -> str:
        from workbench.errors import Conflict

        winner = readout.read_out(self.engine, self.config.name,
                                  config=self.config).decision["winner"]
        if winner is None:
            raise Conflict("no arm is decided yet", detail={
                "expected": "a winner (the arm to send all traffic to), or more outcomes"})
        return winner

    def state(self) -> dict[str, Any]:
        """The live state and the experiment's most recent audit rows."""
        return {"state": self.live.state.to_dict(),
                "audit": control.history(self.engine, self.config.name, limit=20)}

    def _control_loop(self) -> None:
        """Follow the state; run guardrails, auto-conclude and the bandit when due."""
        checked = allocated = 0.0
        automatic = self.config.guardrails.active or self.config.auto_conclude.enabled
        while not self._stop.wait(self.live.poll_seconds):
            self.live.refresh()
            now = time.time()
            try:
                if automatic and now - checked >= self.config.check_seconds:
                    checked = now
                    self.counters["checks"] += 1
                    for action in guardrails.check(self.engine, self.config, now=now):
                        self.counters["automatic_actions"] += 1
                        metrics.GUARDRAIL_ACTIONS.labels(self.config.name,
                                                         action.split()[0].rstrip(":")).inc()
                if self.config.mode == "bandit" and now - allocated >= 1.0:
                    allocated = now
                    bandit.reallocate(self.engine, self.config, self.live.state, now=now)
            except Exception:
                self.counters["check_errors"] += 1
                logger.exception("experiment %r: a guardrail/bandit check failed; next one "
                                 "in %.0fs", self.config.name, self.config.check_seconds)

    # -- read-outs ---------------------------------------------------------------------------

    def experiment(self) -> dict[str, Any]:
        """``GET /experiment``: config, live state, counts per arm, counters."""
        state = self.live.state
        routed = state.routing(self.config.control_arm.name)[0]
        return {"config": self.config.to_dict(), "state": state.to_dict(),
                "weights": {a.name: float(routed.get(a.name, 0.0)) for a in self.config.arms},
                "counts": events.counts(self.engine, self.config.name),
                "models": {a: m.tag for a, m in self.models.items()},
                "counters": self.counters | self.arms.counters,
                "events_written": self.writer.written}

    def analysis(self) -> dict[str, Any]:
        """``GET /analysis``: the one read-out (:func:`workbench.readout.read_out`), computed
        at most once per ``analysis_ttl`` seconds for the pollers."""
        return readout.cached(self.engine, self.config.name, config=self.config,
                              ttl=self.analysis_ttl)

    def segments(self) -> dict[str, Any]:
        """``GET /analysis/segments``: the binary metric by the configured unit attribute,
        pooled beside unpooled (:mod:`workbench.segment_readout`; cached 30 s)."""
        from workbench import segment_readout  # JAX and NumPyro: only when asked

        return segment_readout.cached(self.engine, self.config)

    def metadata(self) -> dict[str, Any]:
        """``GET /metadata``: what clients must send (and get back), per arm."""
        arm = next(iter(self.models.values()))
        return {"experiment": self.config.name, "unit": self.config.unit,
                "arms": {a: {"model": m.ref, "tag": m.tag, "kind": m.kind,
                             "features": list(m.features), "targets": list(m.targets)}
                         for a, m in self.models.items()},
                "request": {"unit": f"string or integer (at most {MAX_UNIT} characters)",
                            "attributes": f"optional: {EXPECTED_ATTRIBUTES}",
                            "instances": "rows as lists or objects keyed by feature name",
                            "interval_mass": "(0, 1)", "draws": f"0..{MAX_RETURNED_DRAWS}"},
                "feedback": feedback.describe(self.config.metric, arm.kind, arm.targets)}

    def health(self) -> dict[str, Any]:
        """The event pipeline's state: writer, database, spool (``/health/all``)."""
        return self.writer.health()

    def ready(self) -> tuple[bool, str]:
        """(ready, why not): the event pipeline's readiness (``/readyz``)."""
        return self.writer.ready()

    def close(self) -> None:
        self._stop.set()
        self.writer.close()


def _store_unreachable_is_503(exc: Exception) -> None:
    """Raise a 503 for an event store that cannot be reached (other errors are the caller's
    to re-raise)."""
    if unreachable(exc):
        raise Unavailable("the event store cannot take feedback now", detail={
            "expected": "retry later: nothing was recorded"}) from exc
