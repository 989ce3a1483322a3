"""The demo's Feast repository, applied and materialized into a temporary directory."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest

from workbench import feature_demo, features
from workbench.errors import ConfigError
from workbench.feature_demo import ENTITY_KEY, SERVICE

needs_feast = pytest.mark.skipif(find_spec("feast") is None,
                                 reason="pip install 'workbench[features]'")
NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """One store for the tests that only read it."""
    return feature_demo.init_repo(tmp_path_factory.mktemp("features"), now=NOW)


def online(store, patients: list[int]) -> pd.DataFrame:
    """The service's features for ``patients``, in the service's column order."""
    response = store.get_online_features(features=store.get_feature_service(SERVICE),
                                         entity_rows=[{ENTITY_KEY: p} for p in patients])
    # Within a view Feast's column order changes from process to process.
    return response.to_df()[[ENTITY_KEY, *features.describe(store, SERVICE).names]]


def expected(patients: list[int]) -> pd.DataFrame:
    """The dataset's rows for ``patients`` with the on-demand feature computed here."""
    table, _ = feature_demo.tables(now=NOW)
    rows = table.set_index(ENTITY_KEY).loc[patients].drop(columns=["event_timestamp",
                                                                      "created"])
    return rows.assign(mean_area_per_perimeter=rows.mean_area / rows.mean_perimeter)


def test_tables_are_the_dataset_with_timestamps_before_now():
    table, labels = feature_demo.tables(now=NOW)
    again, _ = feature_demo.tables(now=NOW)
    pd.testing.assert_frame_equal(table, again)
    assert table.shape == (569, 33) and len(labels) == 569
    assert table[ENTITY_KEY].tolist() == list(range(1000, 1569))
    assert list(table.columns[3:6]) == ["mean_radius", "mean_texture", "mean_perimeter"]
    assert (table.event_timestamp == NOW - timedelta(days=10)).all()
    assert (labels.event_timestamp == NOW - timedelta(days=5)).all()
    assert set(labels.target) == {0, 1} and labels[ENTITY_KEY].equals(table[ENTITY_KEY])


@needs_feast
def test_init_writes_a_feast_repository_and_reports_its_steps(repo):
    from feast import FeatureService

    store = features.open_store(repo)
    store.apply([FeatureService(name="retired", features=[store.get_feature_view("nuclei_mean")])])
    lines: list[str] = []
    again = feature_demo.init_repo(repo, now=NOW, progress=lines.append)
    assert [s.name for s in features.open_store(repo).list_feature_services()] == [SERVICE]
    assert again == repo
    assert lines[0].startswith("copied") and lines[-1].startswith("materialized")
    assert {p.name for p in (repo / "data").glob("*.parquet")} == {
        "nuclei_mean.parquet", "nuclei_error.parquet", "nuclei_worst.parquet",
        "labels.parquet"}
    assert (repo / "definitions.py").read_text() == (
        feature_demo.PACKAGED_REPO / "definitions.py").read_text()


@needs_feast
def test_the_service_lists_three_views_then_the_on_demand_feature(repo):
    store = features.open_store(repo)
    names = features.describe(store, SERVICE).names
    table, _ = feature_demo.tables(now=NOW)
    assert names == (*table.columns[3:], "mean_area_per_perimeter")
    projections = store.get_feature_service(SERVICE).feature_view_projections
    assert [p.name for p in projections] == ["nuclei_mean", "nuclei_error", "nuclei_worst",
                                             "mean_area_per_perimeter"]


@needs_feast
def test_online_store_serves_the_dataset_by_patient(repo):
    store = features.open_store(repo)
    patients = [1000, 1568, 1200]
    got = online(store, [*patients, 9999]).set_index(ENTITY_KEY)
    pd.testing.assert_frame_equal(got.loc[patients], expected(patients), check_names=False,
                                  rtol=0, atol=1e-9)
    assert got.loc[9999].isna().all()  # an unknown patient: None, the ODFV's too


@needs_feast
def test_historical_retrieval_joins_every_label_to_its_patient(repo):
    store = features.open_store(repo)
    labels = pd.read_parquet(repo / "data" / "labels.parquet")
    frame = store.get_historical_features(
        entity_df=labels, features=store.get_feature_service(SERVICE)).to_df()
    # The file offline store returns the rows in its own order, not the entity frame's.
    frame = frame.sort_values(ENTITY_KEY).set_index(ENTITY_KEY)
    assert len(frame) == len(labels) and frame.index.tolist() == labels[ENTITY_KEY].tolist()
    assert frame.target.tolist() == labels.target.tolist()
    want = expected(labels[ENTITY_KEY].tolist())
    pd.testing.assert_frame_equal(frame[want.columns], want, check_names=False, rtol=0,
                                  atol=1e-9)


@needs_feast
def test_a_push_changes_the_online_values_and_init_restores_them(tmp_path):
    repo = feature_demo.init_repo(tmp_path, now=NOW)
    store = features.open_store(repo)
    feature_demo.push(repo, pd.DataFrame({ENTITY_KEY: [1001], "mean_area": [500.0]}))
    got = online(store, [1001, 1002]).set_index(ENTITY_KEY)
    want = expected([1001, 1002])
    assert got.loc[1001, "mean_area"] == 500.0
    assert got.loc[1001, "mean_area_per_perimeter"] == pytest.approx(
        500.0 / want.loc[1001, "mean_perimeter"])
    assert got.loc[1001, "mean_radius"] == want.loc[1001, "mean_radius"]  # kept
    assert got.loc[1002, "mean_area"] == want.loc[1002, "mean_area"]

    # The store opened before, as a server's would be, reads the values written now.
    feature_demo.init_repo(repo, now=NOW)
    assert online(store, [1001]).mean_area.tolist() == [want.loc[1001, "mean_area"]]


@needs_feast
def test_push_refuses_columns_the_view_does_not_have(repo):
    with pytest.raises(ConfigError, match="worst_area"):
        feature_demo.push(repo, pd.DataFrame({ENTITY_KEY: [1000], "worst_area": [1.0]}))
    with pytest.raises(ConfigError, match="patient_id"):
        feature_demo.push(repo, pd.DataFrame({"mean_area": [1.0]}))


@needs_feast
def test_the_redis_configuration_serves_and_takes_pushes(redis_url, tmp_path, monkeypatch):
    url = urlparse(redis_url)
    # Feast's form, not a URL; a database of its own beside the rate-limit tests'.
    monkeypatch.setenv("WORKBENCH_FEATURE_REDIS", f"{url.hostname}:{url.port},db=3")
    yaml = "feature_store.redis.yaml"
    repo = feature_demo.init_repo(tmp_path, yaml=yaml, now=NOW)
    store = features.open_store(repo, yaml=yaml)
    assert store.config.online_store.type == "redis"
    got = online(store, [1000, 1300]).set_index(ENTITY_KEY)
    pd.testing.assert_frame_equal(got, expected([1000, 1300]), check_names=False, rtol=0,
                                  atol=1e-9)
    feature_demo.push(repo, pd.DataFrame({ENTITY_KEY: [1000], "worst_area": [7.5]}),
                      view="nuclei_worst", yaml=yaml)
    assert online(store, [1000]).worst_area.tolist() == [7.5]

    lines: list[str] = []
    feature_demo.init_repo(repo, yaml=yaml, now=NOW, progress=lines.append)
    assert lines[0].startswith("tore down the previous online store")
    assert online(store, [1000]).worst_area.tolist() == [expected([1000]).worst_area[1000]]


@needs_feast
def test_the_redis_configuration_needs_its_variable(repo, monkeypatch):
    monkeypatch.delenv("WORKBENCH_FEATURE_REDIS", raising=False)
    with pytest.raises(ConfigError, match="WORKBENCH_FEATURE_REDIS"):
        feature_demo.push(repo, pd.DataFrame({ENTITY_KEY: [1000], "mean_area": [1.0]}),
                          yaml="feature_store.redis.yaml")


def test_without_feast_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "feast", None)
    with pytest.raises(ConfigError) as caught:
        feature_demo.init_repo(tmp_path)
    assert caught.value.detail == {"install": "pip install 'workbench[features]'"}
    assert not any(tmp_path.iterdir())
