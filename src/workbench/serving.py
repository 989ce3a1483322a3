"""Serving several posteriors behind one HTTP service: the logic under the Predictor bento.

:class:`ModelServer` loads posteriors, compiles every shape bucket in the background
(``ready`` turns true only when all are compiled), resolves a request's model by tag,
name or alias, validates each request on its own, and sends it through a per-model
:class:`~workbench.batching.MicroBatcher`. Errors a client can cause become a 4xx with
``{"error": ..., "detail": ...}``; the service stays up.

What is served at one moment is a :class:`Lineup`, replaced whole by one assignment, so
a request never sees half of a change: :meth:`ModelServer.repoint` (used by
:mod:`workbench.follow` when an alias moves) swaps a ref to another version already
loaded and compiled, and the version no ref uses any more stays reachable by its exact tag
until :meth:`ModelServer.retire` drops it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from workbench import retry
from workbench.artifact import Posterior
from workbench.cache import PredictionCache
from workbench.card import build_info, describe, sample_output, seconds_since_process_start
from workbench.errors import ConfigError, InputError, ModelNotFound, NotReady
from workbench.errors_http import (  # noqa: F401 (re-exported: the bentos call serving.respond)
    RequestErrors,
    error_body,
    respond,
    status_of,
)
from workbench.limits import BodyLimit  # noqa: F401 (re-exported: the bentos use it)
from workbench.lineup import Lineup, Served, lineup, serve
from workbench.logs import log_to_stderr
from workbench.ports import free_port  # noqa: F401 (re-exported: notebook 05's cells import it)
from workbench.predict import (
    DEFAULT_BUCKETS,
    DEFAULT_MASS,
    check_draws,
    check_interval_mass,
)
from workbench.settings import Settings
from workbench.settings import load as load_settings
from workbench.sources import (  # noqa: F401 (re-exported: the bentos call serving.model_refs)
    example_input,
    model_refs,
    model_spec,
    remote_models,
)

logger = logging.getLogger("workbench.serving")


class ModelServer:
    """The models of one Predictor service.

    Parameters
    ----------
    models
        ``{ref: tag}``: each served tag and the name it was asked for by (an alias such as
        ``champion``, or the tag itself). The first is the default model.
    load
        Loads the posterior of a tag (the service passes the bento's model store).
    max_rows, cache, settings
        Rows per request and the prediction cache; by default from ``settings`` (default:
        read now, :mod:`workbench.settings`), which also give the body and stream limits
        and the false-alarm rate of the ``ood`` flag.
    """

    def __init__(self, models: Mapping[str, str] | Callable[[], Mapping[str, str]],
                 load: Callable[[str], Posterior], *, max_rows: int | None = None,
                 buckets: tuple[int, ...] = DEFAULT_BUCKETS, bento: str | None = None,
                 retry_seconds: tuple[float, float] = (2.0, 60.0),
                 cache: PredictionCache | int | None = None,
                 settings: Settings | None = None) -> None:
        log_to_stderr()
        s = settings or load_settings()
        self.cache = PredictionCache.configured(cache, s)
        self.max_body_bytes, self.max_stream_rows = s.max_body_bytes, s.max_stream_rows
        self.retry_seconds = retry_seconds
        self.bento = bento
        self.max_rows = max_rows or s.max_rows
        self.ood_rate = s.ood_rate
        self.buckets = buckets
        self._load = load
        self._lineup = Lineup()
        self._swapping = threading.Lock()
        self.follower: Any = None  # a workbench.follow.AliasFollower, when one follows aliases
        self.ready = False
        self.ready_seconds: float | None = None
        self.warmup_seconds: float | None = None
        self.error: str | None = None
        # A callable names the models only when called (e.g. after importing them from
        # object storage): that happens in the background, with retries, before warm-up.
        self._pending = models if callable(models) else None
        if not callable(models):
            self._add(models)

    @property
    def models(self) -> dict[str, Served]:
        """``{tag: Served}`` of the versions served now, the default first."""
        return self._lineup.models

    @property
    def refs(self) -> dict[str, str]:
        """``{ref: tag}``: what each ref (alias, name or tag asked for) is served by now."""
        return dict(self._lineup.refs)

    @property
    def default(self) -> str | None:
        return next(iter(self._lineup.models), None)

    def _add(self, models: Mapping[str, str]) -> None:
        if not models:
            raise ModelNotFound("no models to serve", detail={"expected": "at least one tag"})
        self._lineup = lineup(models, {tag: self._serve(tag, self._load)
                                       for tag in dict.fromkeys(models.values())})

    def _serve(self, tag: str, load: Callable[[str], Posterior]) -> Served:
        posterior = load(tag)
        features = None
        if posterior.features:  # Feast is optional: imported only for such a model
            from workbench.feature_serving import for_posterior

            features = for_posterior(posterior)
        return serve(tag, posterior, buckets=self.buckets, max_rows=self.max_rows,
                     features=features, ood_rate=self.ood_rate)

    def _load_pending(self) -> None:
        """Call the pending model source until it succeeds, logging every failure; the
        service stays alive and not ready meanwhile (no crash loop)."""
        if self._pending is None:
            return

        def failed(exc: BaseException, wait: float) -> None:
            self.error = f"cannot load the model: {exc}"
            logger.error("workbench: %s; retrying in %.0fs (the service stays not ready)",
                         self.error, wait)

        for attempt in retry.forever(*self.retry_seconds, log=failed):
            with attempt:
                self._add(self._pending())
        self._pending = None
        self.error = None

    # -- startup ---------------------------------------------------------------------------

    def warmup(self, *, then: Callable[[], object] | None = None) -> None:
        """Compile every bucket of every model, call ``then`` (a serving process freezes
        what startup built out of garbage collection: :mod:`workbench.gc_tuning`), then
        mark ready and log the time."""
        self._load_pending()
        started = time.perf_counter()
        try:
            if any(s.features for s in self.models.values()):
                from workbench.feature_serving import skew_error

                self.error = skew_error(list(self.models.values()))
                if self.error:
                    return
            for served in self.models.values():
                served.predictor.warmup()
        except Exception as exc:  # a model that cannot compile must not look ready
            self.error = f"warm-up failed: {exc}"
            logger.exception("workbench: warm-up failed; the service stays not ready")
            return
        self.warmup_seconds = time.perf_counter() - started
        for served in self.models.values():  # a real answer for /metadata's sample output
            served.sample_output = sample_output(served)
        if then is not None:
            then()
        self.ready_seconds = seconds_since_process_start()
        self.ready = True
        logger.info("workbench: %d model(s) ready (%s), %d buckets compiled in %.1fs; "
                    "%.1fs from process start to ready", len(self.models),
                    ", ".join(self.models), len(next(iter(self.models.values()))
                                                  .predictor.buckets),
                    self.warmup_seconds, self.ready_seconds)

    def warmup_in_background(self, *, then: Callable[[], object] | None = None
                             ) -> threading.Thread:
        thread = threading.Thread(target=self.warmup, kwargs={"then": then},
                                  name="workbench-warmup", daemon=True)
        thread.start()
        return thread

    # -- changing what is served while serving ---------------------------------------------

    def prepare(self, tag: str, load: Callable[[str], Posterior] | None = None) -> Served:
        """``tag`` loaded and every bucket compiled, ready for :meth:`repoint`; the version
        already loaded (served or retired) when there is one. Slow: call it off the event
        loop; requests keep being answered meanwhile."""
        existing = self._lineup.lookup.get(tag)
        if existing is not None and existing.tag == tag:
            return existing
        served = self._serve(tag, load or self._load)
        if served.features is not None:
            from workbench.feature_serving import skew_error

            error = skew_error([served])
            if error:
                raise ConfigError(error)
        served.predictor.warmup()
        served.sample_output = sample_output(served)
        return served

    def repoint(self, ref: str, served: Served) -> Served | None:
        """Serve ``ref`` by ``served`` (from :meth:`prepare`) from now on, in one swap.

        Returns the version no ref uses any more (reachable by its exact tag until
        :meth:`retire`), else None. Requests already given the old version complete on it.
        """
        with self._swapping:
            now = self._lineup
            if ref not in now.refs:
                raise ModelNotFound(f"{ref!r} is not served here",
                                    detail={"served": list(now.refs)})
            old = now.models[now.refs[ref]]
            refs = now.refs | {ref: served.tag}
            gone = {old.tag: old} if old.tag not in refs.values() else {}
            self._lineup = lineup(refs, now.models | {served.tag: served},
                                  now.retired | gone)
            self.cache.drop(*gone)  # unreachable by the ref anyway: its keys hold its tag
            return gone.get(old.tag)

    def retire(self, tag: str) -> bool:
        """Drop a version :meth:`repoint` left unused and stop its batcher; False if it is
        served again meanwhile (or already dropped)."""
        with self._swapping:
            now = self._lineup
            served = now.retired.get(tag)
            if served is None:
                return False
            self._lineup = lineup(now.refs, now.models,
                                  {t: s for t, s in now.retired.items() if t != tag})
        served.batcher.close()
        self.cache.drop(tag)
        return True

    # -- requests --------------------------------------------------------------------------

    def resolve(self, ref: str | None) -> Served:
        now = self._lineup  # one read: a concurrent swap is seen whole or not at all
        if not now.models:
            raise NotReady(self.error or "no model loaded yet; retry shortly",
                           detail={"ready": False})
        if ref is None or ref == "":
            return next(iter(now.models.values()))
        if not isinstance(ref, str):
            raise InputError(f"model must be a string, got {type(ref).__name__}")
        served = now.lookup.get(ref)
        if served is None:
            raise ModelNotFound(f"unknown model {ref!r}",
                                detail={"expected one of": sorted(now.lookup)})
        return served

    def check_ready(self) -> None:
        """Raise :class:`NotReady` (503) until every bucket is compiled."""
        if not self.ready:
            raise NotReady(self.error or "the model is still compiling; retry shortly",
                           detail={"ready": False})

    async def predict(self, instances: Any = None, *, model: str | None = None,
                      interval_mass: Any = DEFAULT_MASS, draws: Any = 0, entities: Any = None,
                      feature_service: Any = None) -> dict[str, Any]:
        """``POST /predict``: validated alone, computed in a batch; rows as ``instances``,
        or as ``entities`` whose features come from the online feature store."""
        self.check_ready()
        served = self.resolve(model)
        mass = check_interval_mass(interval_mass)
        n_draws = check_draws(draws, served.predictor.max_draws)
        notes = None
        if instances is None and entities is None:
            raise InputError("instances is required: a list of rows" + (
                ", or entities (rows of entity keys)" if served.features else ""),
                detail={"expected": {"instances": [["..."]]}})
        if entities is not None or feature_service is not None:
            from workbench.feature_serving import request_rows

            instances, notes = await request_rows(
                served.features, served.tag, instances=instances, entities=entities,
                service=feature_service, max_rows=self.max_rows)
        X = served.predictor.validate(instances)  # rows by entity: never cached
        records = await self.cache.records(served, X, mass, n_draws, bypass=notes is not None)
        for record, note in zip(records, notes or (), strict=False):
            record["features"] = note
        return {"model": served.tag, "predictions": records, "interval_mass": mass}

    async def summarize(self, X: np.ndarray, *, model: str | None = None,
                        interval_mass: float = DEFAULT_MASS) -> tuple[Served, dict[str, Any]]:
        """Raw arrays for an already shaped float array (the Open Inference Protocol path)."""
        self.check_ready()
        served = self.resolve(model)
        X = served.predictor.validate(X)
        mass = check_interval_mass(interval_mass)
        return served, await served.batcher.submit(mass, X)

    # -- description -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Readiness of the service and of each model (the gateway's ``/health/all``)."""
        now = self._lineup
        return {"ready": self.ready, "error": self.error,
                "models": {tag: {"aliases": s.aliases, "ready": self.ready}
                           for tag, s in now.models.items()},
                "lookup": {ref: s.tag for ref, s in now.lookup.items()},
                "follow": self.following()}

    def following(self) -> dict[str, Any]:
        """Whether served aliases follow their moves in the store, and how that went."""
        if self.follower is not None:
            return self.follower.describe()
        return {"enabled": False, "reason": "a built bento serves the models frozen into it"
                if self.bento else "turned off (WORKBENCH_FOLLOW_ALIASES, --arg follow)"}

    def metadata(self) -> dict[str, Any]:
        """``GET /metadata``: what clients must send and what they get back, per model."""
        now = self._lineup
        if not now.models:
            return {"ready": False, "models": {}, "startup": {"error": self.error}}
        models = {tag: describe(s) for tag, s in now.models.items()}
        lead = next(iter(now.models.values()))
        first = models[lead.tag]
        return {
            "default_model": lead.tag,
            "models": models,
            "aliases": {a: s.tag for s in now.models.values() for a in s.aliases},
            "features": first["features"],
            "targets": first["targets"],
            "sample_input": first["sample_input"],
            "sample_output": first["sample_output"],
            "limits": {"max_rows": self.max_rows, "max_body_bytes": self.max_body_bytes,
                       "max_draws": lead.predictor.max_draws},
            "ready": self.ready,
            "startup": {"ready_seconds_since_process_start": self.ready_seconds,
                        "warmup_seconds": self.warmup_seconds, "error": self.error},
            "follow": self.following(),
            "cache": self.cache.describe(),
            "device": lead.predictor.device,
            "build": build_info() | {"bento": self.bento or "served from source"},
        }
