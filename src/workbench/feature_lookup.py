"""Rows by entity key: a served model's features read from Feast's online store.

A request may send ``{"entities": [{"patient_id": 1001}, ...]}`` instead of ``instances``.
Each entity row names the entity keys of the model's feature service (see
:mod:`workbench.features`) and may add request-time values: a model feature's value
overrides (or completes) what the store has, and an on-demand view's request field feeds
its transformation. Rows whose features are all missing from the cache go to the online
store in **one batched call per micro-batch** (concurrent requests share it, the same
batching as the model's); answers are kept in an in-process cache for
``WORKBENCH_FEATURE_CACHE_SECONDS`` (default 5; 0 turns it off), so a value pushed to the
store is served within that time, without a restart.

Policies (environment, read once per served model):

- ``WORKBENCH_FEATURE_MISSING``: an entity (or a feature) the store does not have —
  ``reject`` (default: 404 naming the rows) or ``mean`` (the training mean, recorded in the
  artifact's standardisation, is served in its place);
- ``WORKBENCH_FEATURE_STALE``: a value older than its feature view's TTL — ``reject``
  (default: 422), ``mean`` (imputed as above) or ``serve`` (served, marked stale);
- ``WORKBENCH_FEATURE_SKEW``: definitions that no longer match the model's fingerprint at
  startup — ``refuse`` (default: the service stays not ready and says why) or ``warn``.

Every prediction says what happened to its row in ``features``: ``status`` (``online``,
``imputed``, ``stale``, or ``request`` when the request sent every feature), the age of the
oldest value in seconds, and the names ``imputed``, ``stale`` or ``overridden``; the
gateway logs it with the prediction. An online store that cannot be reached is a 503.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.batching import MicroBatcher
from workbench.errors import EntityNotFound, InputError, StaleFeatures, Unavailable
from workbench.features import FeatureSpec, compare, describe, open_store
from workbench.metrics import FEATURE_ERRORS, FEATURE_ROWS, FEATURE_SECONDS
from workbench.settings import Settings, load

logger = logging.getLogger("workbench.features")

_INTEGER = ("Int32", "Int64", "UnixTimestamp")
# What an unreachable online store raises (redis-py's errors derive from these, or are
# named here lazily): a 503, not a 500.
_DOWN: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, OSError,
                                          sqlite3.OperationalError)


@dataclass(frozen=True)
class Policy:
    """How missing, stale and redefined features are handled (see the module)."""

    missing: str = "reject"
    stale: str = "reject"
    skew: str = "refuse"
    cache_seconds: float = 5.0
    cache_size: int = 100_000

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Policy:
        """``WORKBENCH_FEATURE_MISSING``, ``_STALE``, ``_SKEW``, ``_CACHE_SECONDS``
        (:mod:`workbench.settings`; default: read now)."""
        s = settings or load()
        return cls(missing=s.feature_missing, stale=s.feature_stale, skew=s.feature_skew,
                   cache_seconds=s.feature_cache_seconds)


class OnlineFeatures:
    """The online features of one served model.

    Parameters
    ----------
    spec
        The feature service the model was trained on (from its artifact).
    fill
        The value imputed for each feature under the ``mean`` policies (the training means).
    store
        A ``feast.FeatureStore``; default :func:`workbench.features.open_store`.
    policy
        Default :meth:`Policy.from_settings`.
    """

    def __init__(self, spec: FeatureSpec, fill: np.ndarray, *, store: Any = None,
                 policy: Policy | None = None) -> None:
        self.spec = spec
        self.fill = np.asarray(fill, np.float64)
        self.policy = policy or Policy.from_settings()
        self.store = store if store is not None else open_store()
        self._service: Any = None
        self._keys = list(spec.entity_keys)
        self._asked = self._keys + sorted(spec.request_fields)  # what the store is sent
        self._ttl = np.array([spec.ttl_seconds.get(spec.views[n], 0.0) for n in spec.names])
        self._inputs = set(spec.names) | set(spec.request_fields) | set(self._keys)
        self.cache: Any = None
        if self.policy.cache_seconds > 0:
            from cachetools import TTLCache

            self.cache = TTLCache(self.policy.cache_size, self.policy.cache_seconds)
        self.batcher = MicroBatcher(self._lookup, max_rows=1024,
                                    name=f"features:{spec.service}")
        self.skew: list[str] = []

    # -- startup ---------------------------------------------------------------------------

    def check(self) -> list[str]:
        """What differs between the model's feature definitions and the repository's now
        (empty: none); kept in :attr:`skew`."""
        self.skew = compare(self.spec, describe(open_store(self.store.repo_path),
                                                self.spec.service))
        return self.skew

    # -- requests --------------------------------------------------------------------------

    async def resolve(self, rows: Any, *, max_rows: int) -> tuple[np.ndarray,
                                                                 list[dict[str, Any]]]:
        """The feature matrix of entity ``rows`` and what happened to each row."""
        rows = self._validate(rows, max_rows)
        n, names = len(rows), self.spec.names
        values = np.full((n, len(names)), np.nan)
        stamps = np.zeros((n, len(names)))
        todo: list[int] = []
        for i, row in enumerate(rows):
            if all(name in row for name in names):
                continue  # the request brought every feature: nothing to look up
            hit = self.cache.get(_key(row, self._asked)) if self.cache is not None else None
            if hit is not None:
                values[i], stamps[i] = hit
            else:
                todo.append(i)
        service = self.spec.service
        if len(todo) < n:
            FEATURE_ROWS.labels(service=service, outcome="cache_hit").inc(n - len(todo))
        if todo:
            asked = np.empty(len(todo), dtype=object)
            asked[:] = [{k: rows[i][k] for k in self._asked} for i in todo]
            got = await self.batcher.submit(None, asked)
            FEATURE_ROWS.labels(service=service, outcome="online").inc(len(todo))
            for j, i in enumerate(todo):
                values[i], stamps[i] = got["values"][j], got["stamps"][j]
                if self.cache is not None:
                    self.cache[_key(rows[i], self._asked)] = (got["values"][j],
                                                             got["stamps"][j])
        return self._settle(rows, values, stamps)

    def _validate(self, rows: Any, max_rows: int) -> list[dict[str, Any]]:
        if not isinstance(rows, list) or not rows:
            raise InputError("entities must be a non-empty list of objects",
                             detail={"expected": [dict.fromkeys(self._keys, "...")]})
        if len(rows) > max_rows:
            raise InputError(f"{len(rows)} entity rows; at most {max_rows} per request")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise InputError(f"entity row {i} is a {type(row).__name__}, not an object",
                                 detail={"expected": dict.fromkeys(self._keys, "...")})
            absent = [k for k in self._keys if k not in row]
            if not all(name in row for name in self.spec.names):  # a lookup needs them
                absent += [k for k in self.spec.request_fields if k not in row]
            unknown = sorted(set(row) - self._inputs)
            if absent or unknown:
                raise InputError(f"entity row {i}: " + ("; ".join(
                    ([f"missing entity keys or request fields {absent}"] if absent else [])
                    + ([f"unknown fields {unknown}"] if unknown else []))),
                    detail={"entity keys": self.spec.entity_keys,
                            "request fields": self.spec.request_fields,
                            "features (to override)": list(self.spec.names)})
            for key, dtype in self.spec.entity_keys.items():
                _check_key(i, key, row[key], dtype)
            for name, value in row.items():
                if name not in self.spec.entity_keys and not _finite_number(value):
                    raise InputError(f"entity row {i}: {name} must be a finite number, got "
                                     f"{value!r}"[:200])
        return rows

    def _lookup(self, _: Any, asked: np.ndarray) -> dict[str, np.ndarray]:
        """One batched online read (on the batcher's thread)."""
        if self._service is None:
            self._service = self.store.get_feature_service(self.spec.service)
        started = time.perf_counter()
        try:
            got = self.store.get_online_features(features=self._service,
                                                 entity_rows=list(asked)
                                                 ).to_dict(include_event_timestamps=True)
        except Exception as exc:
            if not isinstance(exc, _DOWN) and "redis" not in type(exc).__module__:
                raise
            FEATURE_ERRORS.labels(service=self.spec.service).inc()
            logger.warning("online feature store failed (%s: %s)", type(exc).__name__,
                           str(exc)[:200])
            raise Unavailable("the online feature store cannot be reached; retry shortly",
                              detail={"feature service": self.spec.service}) from None
        FEATURE_SECONDS.labels(service=self.spec.service).observe(
            time.perf_counter() - started)
        n = len(asked)
        values = np.array([[np.nan if v is None else v for v in got[name]]
                           for name in self.spec.names], np.float64).T.reshape(n, -1)
        stamps = np.array([got.get(f"{name}__ts") or [0] * n for name in self.spec.names],
                          np.float64).T.reshape(n, -1)
        return {"values": values, "stamps": stamps}

    def _settle(self, rows: list[dict[str, Any]], values: np.ndarray, stamps: np.ndarray
                ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Overrides, then the missing and stale policies; the matrix and each row's note."""
        names, now, policy = self.spec.names, time.time(), self.policy
        ttl = self._ttl
        notes: list[dict[str, Any]] = []
        missing_rows: list[dict[str, Any]] = []
        stale_rows: list[dict[str, Any]] = []
        counts = {"missing": 0, "stale": 0, "imputed": 0}
        for i, row in enumerate(rows):
            given = [j for j, n in enumerate(names) if n in row]
            for j in given:
                values[i, j] = float(row[names[j]])
            own = np.array([n not in row for n in names])
            age = np.where(stamps[i] > 0, now - stamps[i], np.nan)
            missing = own & np.isnan(values[i])
            stale = own & ~missing & (ttl > 0) & (age > ttl)
            note: dict[str, Any] = {"status": "online" if own.any() else "request"}
            aged = age[own & ~np.isnan(age)]
            note["age_seconds"] = round(float(aged.max()), 3) if aged.size else None
            imputed: list[str] = []
            if missing.any():
                counts["missing"] += 1
                if policy.missing == "reject":
                    missing_rows.append({"row": i, "entity": _entity(row, self._keys),
                                         "missing": [names[j] for j in np.flatnonzero(missing)]})
                else:
                    values[i, missing] = self.fill[missing]
                    imputed += [names[j] for j in np.flatnonzero(missing)]
            if stale.any():
                counts["stale"] += 1
                late = [names[j] for j in np.flatnonzero(stale)]
                if policy.stale == "reject":
                    stale_rows.append({"row": i, "entity": _entity(row, self._keys),
                                       "stale": late, "age_seconds": round(float(
                                           age[stale].max()), 1)})
                elif policy.stale == "mean":
                    values[i, stale] = self.fill[stale]
                    imputed += late
                else:
                    note["status"], note["stale"] = "stale", late
            if imputed:
                counts["imputed"] += 1
                note["status"], note["imputed"] = "imputed", imputed
            if given:
                note["overridden"] = [names[j] for j in given]
            notes.append(note)
        for outcome, count in counts.items():
            if count:
                FEATURE_ROWS.labels(service=self.spec.service, outcome=outcome).inc(count)
        if missing_rows:
            raise EntityNotFound(
                f"{len(missing_rows)} entity row(s) not found in the online store",
                detail={"rows": missing_rows[:20], "feature service": self.spec.service,
                        "policy": "WORKBENCH_FEATURE_MISSING=reject (or mean)"})
        if stale_rows:
            raise StaleFeatures(
                f"{len(stale_rows)} entity row(s) have features older than their TTL",
                detail={"rows": stale_rows[:20], "ttl_seconds": self.spec.ttl_seconds,
                        "policy": "WORKBENCH_FEATURE_STALE=reject (or mean, serve)"})
        return values, notes

    def describe(self) -> dict[str, Any]:
        """For ``/metadata``: what to send, and how features are handled."""
        return {"service": self.spec.service, "entity_keys": self.spec.entity_keys,
                "request_fields": self.spec.request_fields, "fingerprint":
                self.spec.fingerprint, "policy": {"missing": self.policy.missing,
                                                  "stale": self.policy.stale,
                                                  "skew": self.policy.skew,
                                                  "cache_seconds": self.policy.cache_seconds},
                "skew": self.skew}


def _key(row: dict[str, Any], inputs: Sequence[str]) -> tuple[Any, ...]:
    """The cache key: the entity and the request-time inputs (they feed transformations)."""
    return tuple(row.get(k) for k in inputs)


def _entity(row: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: row[k] for k in keys}


def _check_key(i: int, key: str, value: Any, dtype: str) -> None:
    ok = (isinstance(value, int) and not isinstance(value, bool) if dtype in _INTEGER
          else isinstance(value, str) if dtype == "String"
          else _finite_number(value) if dtype.startswith("Float")
          else isinstance(value, str | int) and not isinstance(value, bool))
    if not ok:
        raise InputError(f"entity row {i}: {key} must be {dtype}, got "
                         f"{type(value).__name__} {value!r}"[:200],
                         detail={"entity keys": {key: dtype}})


def _finite_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))
