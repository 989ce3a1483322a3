"""Features from a Feast feature store: one definition for training and serving.

A model trained from a Feast **feature service** records it in its artifact
(:attr:`workbench.artifact.Posterior.features`, a :class:`FeatureSpec` as a dict): the
service's name, its feature references in order, the entity keys and request-time fields
a serving request must bring, the TTL of each feature view, and a **fingerprint** of the
definitions. At serving time (:mod:`workbench.feature_lookup`) the same service is read
from the online store by entity key, and the fingerprint is compared first, so a feature
redefined since training (another transformation, dtype, entity or TTL) is caught before
it skews a single answer.

The fingerprint covers what changes the numbers a model sees: each feature view's name,
entity columns and their types, TTL and projected fields (name and dtype), and each
on-demand view's transformation source, mode, inputs and outputs. It leaves out where the
data lives (file paths, the online store), which production changes on purpose.

The store is found at ``WORKBENCH_FEATURE_REPO`` (a directory with ``feature_store.yaml``;
default ``$WORKBENCH_HOME/features``, made by ``workbench features init``), with
``WORKBENCH_FEATURE_STORE_YAML`` naming another configuration file in it (e.g.
``feature_store.redis.yaml`` for Redis as the online store). Feast is an optional extra:
``pip install 'workbench[features]'``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError, DatasetError
from workbench.settings import load

INSTALL = "pip install 'workbench[features]'"
TIMESTAMP = "event_timestamp"  # Feast's entity-frame timestamp column


def require_feast() -> Any:
    """The ``feast`` module, or a :class:`ConfigError` that says how to install it."""
    try:
        import feast
    except ImportError as exc:
        raise ConfigError(f"features need Feast, which is not installed ({exc.name})",
                          detail={"install": INSTALL}) from None
    return feast


def repo_path(repo: str | Path | None = None) -> Path:
    """The feature repository: ``repo``, else ``WORKBENCH_FEATURE_REPO``, else
    ``$WORKBENCH_HOME/features``."""
    if repo:
        return Path(repo).expanduser()
    s = load()
    return (s.feature_repo or s.home / "features").expanduser()


def open_store(repo: str | Path | None = None, yaml: str | None = None) -> Any:
    """A ``feast.FeatureStore`` on the repository (see :func:`repo_path`)."""
    feast = require_feast()
    path = repo_path(repo)
    name = yaml or load().feature_store_yaml
    config = path / name
    if not config.is_file():
        raise ConfigError(f"no feature repository at {str(path)!r} (missing {name})",
                          detail={"hint": "workbench features init, or set "
                                          "WORKBENCH_FEATURE_REPO to a Feast repository"})
    return feast.FeatureStore(repo_path=str(path), fs_yaml_file=config)


@dataclass(frozen=True)
class FeatureSpec:
    """What a model trained from a feature service needs at serving time.

    ``refs`` are Feast references (``view:feature``) in the model's feature order and
    ``names`` the model's feature names (the same order); ``entity_keys`` maps each join
    key to its Feast value type name; ``request_fields`` the request-time inputs of
    on-demand views (name to dtype); ``ttl_seconds`` each feature view's TTL (0: none);
    ``views`` which view serves each feature name.
    """

    service: str
    refs: tuple[str, ...]
    names: tuple[str, ...]
    entity_keys: dict[str, str]
    request_fields: dict[str, str]
    ttl_seconds: dict[str, float]
    views: dict[str, str]
    fingerprint: str
    project: str = ""
    on_demand: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d | {"refs": list(self.refs), "names": list(self.names),
                    "on_demand": list(self.on_demand)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        keep = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**keep | {"refs": tuple(d["refs"]), "names": tuple(d["names"]),
                             "on_demand": tuple(d.get("on_demand", ()))})


def describe(store: Any, service: str) -> FeatureSpec:
    """The :class:`FeatureSpec` of ``service`` as the store's registry defines it now."""
    try:
        svc = store.get_feature_service(service, allow_cache=False)
    except Exception as exc:
        known = sorted(s.name for s in store.list_feature_services())
        raise ConfigError(f"no feature service {service!r} in the feature repository",
                          detail={"expected one of": known}) from exc
    refs: list[str] = []
    names: list[str] = []
    views: dict[str, str] = {}
    entity_keys: dict[str, str] = {}
    request_fields: dict[str, str] = {}
    ttl: dict[str, float] = {}
    on_demand: list[str] = []
    parts: list[dict[str, Any]] = []
    for projection in svc.feature_view_projections:
        fields = [(f.name, str(f.dtype)) for f in projection.features]
        view_name = projection.name
        part: dict[str, Any] = {"view": view_name, "fields": fields}
        odfv = _on_demand_view(store, view_name)
        if odfv is not None:
            on_demand.append(view_name)
            transform = odfv.feature_transformation
            part |= {"mode": str(odfv.mode),
                     "transformation": getattr(transform, "udf_string", "") or "",
                     "sources": sorted(odfv.source_feature_view_projections)
                     + sorted(odfv.source_request_sources)}
            own = {f.name: str(f.dtype) for source in odfv.source_request_sources.values()
                   for f in source.schema}
            request_fields.update(own)
            part["request"] = sorted(own.items())
        else:
            view = store.get_feature_view(view_name, allow_registry_cache=False)
            keys = {c.name: str(c.dtype) for c in view.entity_columns}
            entity_keys.update(keys)
            ttl[view_name] = view.ttl.total_seconds() if view.ttl else 0.0
            part |= {"entities": sorted(keys.items()), "ttl": ttl[view_name]}
        parts.append(part)
        for name, _ in fields:
            if name in views:
                raise ConfigError(f"feature {name!r} is served by both {views[name]!r} and "
                                  f"{projection.name_to_use()!r} in {service!r}",
                                  detail={"expected": "feature names unique in a service"})
            views[name] = projection.name_to_use()
            refs.append(f"{projection.name_to_use()}:{name}")
            names.append(name)
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return FeatureSpec(service=service, refs=tuple(refs), names=tuple(names),
                       entity_keys=entity_keys, request_fields=request_fields,
                       ttl_seconds=ttl, views=views, fingerprint="sha256:" + digest,
                       project=str(store.project), on_demand=tuple(on_demand))


def _on_demand_view(store: Any, name: str) -> Any:
    try:
        return store.get_on_demand_feature_view(name, allow_registry_cache=False)
    except Exception:  # Feast raises its own not-found error: a regular feature view then
        return None


def compare(recorded: FeatureSpec, current: FeatureSpec) -> list[str]:
    """What differs between the definitions a model was trained on and the current ones
    (empty when they match)."""
    out = []
    if recorded.fingerprint == current.fingerprint and recorded.refs == current.refs:
        return out
    if recorded.refs != current.refs:
        gone = [r for r in recorded.refs if r not in current.refs]
        new = [r for r in current.refs if r not in recorded.refs]
        out.append(f"features differ (missing now: {gone or 'none'}; new: {new or 'none'})"
                   if gone or new else "the features' order changed")
    if recorded.entity_keys != current.entity_keys:
        out.append(f"entity keys {recorded.entity_keys} became {current.entity_keys}")
    if recorded.ttl_seconds != current.ttl_seconds:
        out.append(f"TTLs {recorded.ttl_seconds} became {current.ttl_seconds}")
    if recorded.request_fields != current.request_fields:
        out.append(f"request fields {recorded.request_fields} became {current.request_fields}")
    if not out:
        out.append("a definition changed (a transformation, a dtype or an on-demand view's "
                   "inputs)")
    return [f"feature service {recorded.service!r}: {o} "
            f"(fingerprint {recorded.fingerprint[:19]} at training, "
            f"{current.fingerprint[:19]} now)" for o in out]


def training_frame(store: Any, service: str, entities: Any, target: str
                   ) -> tuple[Any, FeatureSpec, int]:
    """The point-in-time-correct training frame of ``service`` for ``entities``.

    Parameters
    ----------
    store
        A ``feast.FeatureStore``.
    service
        The feature service's name.
    entities
        A DataFrame (or a Parquet/CSV path) with the entity keys, ``event_timestamp`` (the
        time each label was known) and the ``target`` column; request-time fields of
        on-demand views too. Each row gets the feature values as of its timestamp, never
        later ones (Feast's historical retrieval).
    target
        The outcome column.

    Returns
    -------
    (frame, spec, dropped)
        ``frame`` has the features in the service's order then ``target``; ``dropped``
        counts the rows left out because a feature had no value as of their timestamp.
    """
    import pandas as pd

    spec = describe(store, service)
    frame = _read_entities(entities)
    need = [*spec.entity_keys, TIMESTAMP, target, *spec.request_fields]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise DatasetError(f"the entity frame lacks columns {missing}",
                           detail={"expected": need, "columns": list(map(str, frame.columns))})
    frame = frame[need].copy()
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True)
    svc = store.get_feature_service(service)
    joined = store.get_historical_features(entity_df=frame, features=svc).to_df()
    complete = joined.dropna(subset=[*spec.names, target])
    dropped = len(frame) - len(complete)
    if complete.empty:
        raise DatasetError(f"no entity row has every feature of {service!r} as of its "
                           "timestamp", detail={"rows": len(frame),
                                                "hint": "materialize, or check timestamps"})
    order = complete.sort_values([TIMESTAMP, *spec.entity_keys], kind="stable")
    return order[[*spec.names, target]].reset_index(drop=True), spec, dropped


def _read_entities(entities: Any) -> Any:
    import pandas as pd

    if isinstance(entities, pd.DataFrame):
        return entities
    path = Path(entities)
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read the entity frame {str(path)!r}: {exc}",
                           detail={"expected": "a Parquet or CSV file"}) from exc


def freshness(store: Any, spec: FeatureSpec) -> dict[str, Any]:
    """Each feature view's TTL and when it was last materialised (the Models tab)."""
    import time

    out: dict[str, Any] = {}
    for view_name, ttl in spec.ttl_seconds.items():
        view = store.get_feature_view(view_name)
        ends = [i[1] for i in getattr(view, "materialization_intervals", []) or []]
        last = max(ends).timestamp() if ends else None
        out[view_name] = {"ttl_seconds": ttl, "materialized_until": last,
                          "age_seconds": None if last is None else time.time() - last}
    return out


def dataset(service: str, entities: Any, target: str, *, repo: str | Path | None = None
            ) -> tuple[Any, FeatureSpec, int]:
    """A :class:`workbench.datasets.Dataset` of ``service``'s features for ``entities``
    (:func:`training_frame`), its spec for the artifact, and the rows left out.

    An integer target is categorical (classes in sorted order), a float one continuous.
    """
    from workbench.datasets import from_arrays

    frame, spec, dropped = training_frame(open_store(repo), service, entities, target)
    data = from_arrays(frame[list(spec.names)].to_numpy(float), frame[target].to_numpy(),
                       name=service, feature_names=spec.names)
    return data, spec, dropped
