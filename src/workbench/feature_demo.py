"""The demo's Feast feature store: breast cancer measurements served by patient id.

:func:`init_repo` copies the feature repository shipped in ``workbench/feature_repo``
(see its ``definitions.py``) to a directory of its own, writes the dataset there as
parquet files, applies the definitions and materializes them to the online store; from
then on any Feast client, the ``feast`` CLI included, can use it::

    from workbench import feature_demo, features

    repo = feature_demo.init_repo()                    # or: workbench features init
    store = features.open_store(repo)
    store.get_online_features(features=store.get_feature_service(feature_demo.SERVICE),
                              entity_rows=[{"patient_id": 1000}]).to_df()

Within each feature view, the columns Feast returns online come in an order that changes
from process to process (that of a set of names); order them by the service's, as
:func:`workbench.features.describe` gives it (``.names``). Historical retrieval keeps the
service's order but not the entity frame's row order.

Feast is optional (``pip install 'workbench[features]'``) and imported only inside the
functions.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shutil
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.errors import ConfigError
from workbench.features import open_store, repo_path, require_feast
from workbench.settings import load

if TYPE_CHECKING:
    from feast import FeatureStore

SERVICE = "diagnosis_v1"
ENTITY_KEY = "patient_id"
FIRST_PATIENT = 1000
FEATURES_AGE = timedelta(days=10)
LABELS_AGE = timedelta(days=5)
PACKAGED_REPO = Path(__file__).with_name("feature_repo")
REPO_FILES = ("definitions.py", "feature_store.yaml", "feature_store.redis.yaml")

__all__ = ["ENTITY_KEY", "SERVICE", "init_repo", "push", "tables"]


def tables(*, now: datetime | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The dataset as a feature table and a label table, deterministic given ``now``.

    Parameters
    ----------
    now
        The reference time (aware, or naive UTC); the current time by default.

    Returns
    -------
    features
        One row per patient: ``patient_id`` (1000, 1001, ...), ``event_timestamp`` and
        ``created`` (both ``now`` - 10 days), then the 30 measurements in the dataset's
        order with snake_case names (``mean_radius``, ..., ``worst_fractal_dimension``).
    labels
        The entity frame of a training set: ``patient_id``, ``event_timestamp``
        (``now`` - 5 days, after the features, as point-in-time joins need) and ``target``
        (the dataset's label, 0 malignant, 1 benign).
    """
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    now = _utc(now)
    ids = pd.Series(range(FIRST_PATIENT, FIRST_PATIENT + len(data.target)), dtype="int64")
    measured = pd.Timestamp(now - FEATURES_AGE)
    features = pd.DataFrame(data.data, columns=[_snake(n) for n in data.feature_names])
    features.insert(0, "created", measured)
    features.insert(0, "event_timestamp", measured)
    features.insert(0, ENTITY_KEY, ids)
    labels = pd.DataFrame({ENTITY_KEY: ids, "event_timestamp": pd.Timestamp(now - LABELS_AGE),
                           "target": data.target.astype("int64")})
    return features, labels


def init_repo(dest: Path | str | None = None, *, yaml: str = "feature_store.yaml",
              now: datetime | None = None,
              progress: Callable[[str], None] | None = None) -> Path:
    """Create (or recreate) the demo's feature store in ``dest``, ready to serve.

    Copies the packaged repository, writes ``data/<view>.parquet`` for each feature view
    and ``data/labels.parquet``, applies the definitions (deleting what an earlier apply
    left that they no longer define) and materializes everything up to ``now``, which
    replaces any values pushed since (a Redis online store is torn down first for that).

    Parameters
    ----------
    dest
        The repository directory; :func:`workbench.features.repo_path` by default
        (``$WORKBENCH_FEATURE_REPO``, else ``$WORKBENCH_HOME/features``).
    yaml
        The configuration to apply with: ``feature_store.yaml`` (SQLite online store) or
        ``feature_store.redis.yaml`` (Redis at ``$WORKBENCH_FEATURE_REDIS``).
    now
        The reference time of the data (see :func:`tables`); the current time by default.
    progress
        Called with a line for each step.

    Returns
    -------
    Path
        The repository directory.
    """
    feast = require_feast()
    say = progress or (lambda line: None)
    repo = repo_path(dest)
    now = _utc(now)
    data = repo / "data"
    if (data / "registry.db").exists():
        previous = _store(repo, yaml)
        # Redis keeps the newer of two writes, so values pushed earlier would outlive the
        # materialization below. SQLite overwrites; its teardown would unlink the file
        # from under the servers reading it, which would go on serving the old one.
        if previous.config.online_store.type != "sqlite":
            previous.teardown()
            say(f"tore down the previous online store of {repo}")
    data.mkdir(parents=True, exist_ok=True)
    for name in REPO_FILES:
        shutil.copyfile(PACKAGED_REPO / name, repo / name)
    say(f"copied the feature repository to {repo}")

    objects = _definitions(repo / "definitions.py", feast)
    features, labels = tables(now=now)
    views = [o for o in objects if type(o) is feast.FeatureView]
    for view in views:
        columns = [ENTITY_KEY, "event_timestamp", "created", *(f.name for f in view.features)]
        features[columns].to_parquet(data / f"{view.name}.parquet", index=False)
    labels.to_parquet(data / "labels.parquet", index=False)
    say(f"wrote {len(features)} patients to {len(views)} parquet files and labels.parquet")

    store = _store(repo, yaml)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "On demand feature view is an experimental")
        store.apply(objects, objects_to_delete=_stale(store, objects), partial=False)
    say(f"applied {len(objects)} definitions to project {store.project!r}")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        store.materialize(start_date=now - timedelta(days=365), end_date=now)
    say(f"materialized the feature views to the online store up to {now:%Y-%m-%d %H:%M}Z")
    return repo


def _store(repo: Path, yaml: str | None) -> FeatureStore:
    """:func:`workbench.features.open_store`, after checking that the variables the
    configuration names are set (``os.path.expandvars`` would leave ``${NAME}`` as it is,
    and Feast would fail later, on the first read, with a connection error)."""
    config = repo / (yaml or load().feature_store_yaml)
    text = config.read_text() if config.is_file() else ""
    unset = [name for name in re.findall(r"\$\{(\w+)\}", text) if name not in os.environ]
    if unset:
        raise ConfigError(f"{config.name} needs the environment variable {unset[0]}",
                          detail={"expected": "host:port[,db=N][,password=...] for Redis"})
    return open_store(repo, yaml)


def push(repo: Path | str | None, rows: pd.DataFrame, *, view: str = "nuclei_mean",
         yaml: str | None = None, now: datetime | None = None) -> None:
    """Push new values for some patients to the online store through ``<view>_push``.

    Parameters
    ----------
    repo
        The repository (:func:`workbench.features.repo_path` when None).
    rows
        ``patient_id`` and any of the view's features; the features left out keep their
        current online values. ``event_timestamp`` defaults to ``now``, ``created`` to
        ``event_timestamp``.
    view
        The feature view to update.
    yaml
        The configuration file in ``repo``; by default ``$WORKBENCH_FEATURE_STORE_YAML``,
        else ``feature_store.yaml``.
    now
        The time of the new values; the current time by default.
    """
    from feast.data_source import PushMode

    store = _store(repo_path(repo), yaml)
    names = [f.name for f in store.get_feature_view(view).features]
    unknown = sorted(set(rows.columns) - {ENTITY_KEY, "event_timestamp", "created", *names})
    if ENTITY_KEY not in rows.columns or unknown:
        raise ConfigError(f"cannot push columns {unknown} to {view!r}" if unknown
                          else f"rows to push need a {ENTITY_KEY!r} column",
                          detail={"expected": [ENTITY_KEY, *names]})
    rows = rows.reset_index(drop=True)
    missing = [n for n in names if n not in rows.columns]
    if missing:
        current = store.get_online_features(
            features=[f"{view}:{n}" for n in missing],
            entity_rows=[{ENTITY_KEY: int(k)} for k in rows[ENTITY_KEY]]).to_df()
        rows = pd.concat([rows, current[missing]], axis=1)
    if "event_timestamp" not in rows.columns:
        rows["event_timestamp"] = pd.Timestamp(_utc(now))
    if "created" not in rows.columns:
        rows["created"] = rows["event_timestamp"]
    store.push(f"{view}_push", rows, to=PushMode.ONLINE)


def _definitions(path: Path, feast: Any) -> list[Any]:
    """The Feast objects defined by the repository's ``definitions.py`` (run from the copy,
    as ``feast apply`` would, so the registry points at the files there)."""
    spec = importlib.util.spec_from_file_location("_workbench_feature_definitions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kinds = (feast.Entity, feast.FileSource, feast.PushSource, feast.FeatureView,
             feast.OnDemandFeatureView, feast.FeatureService)
    objects: list[Any] = []
    for value in vars(module).values():
        if isinstance(value, kinds) and not any(value is o for o in objects):
            objects.append(value)
    return objects


def _stale(store: FeatureStore, objects: list[Any]) -> list[Any]:
    """What the registry holds that ``objects`` no longer define (as ``feast apply``
    deletes)."""
    keep = {(type(o), o.name) for o in objects}
    listed = [*store.list_feature_services(), *store.list_on_demand_feature_views(),
              *store.list_feature_views(), *store.list_entities(), *store.list_data_sources()]
    return [o for o in listed if (type(o), o.name) not in keep]


def _snake(name: str) -> str:
    return str(name).replace(" ", "_")


def _utc(when: datetime | None) -> datetime:
    if when is None:
        return datetime.now(UTC)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
