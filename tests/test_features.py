"""Feast features: point-in-time training frames, definition fingerprints, and rows served
by entity key from a real (SQLite) online store, on a small repository built here."""

from __future__ import annotations

import asyncio
import json
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from workbench import features
from workbench.cache import PredictionCache
from workbench.errors import ConfigError, EntityNotFound, InputError, StaleFeatures
from workbench.feature_lookup import OnlineFeatures, Policy

pytest.importorskip("feast")

NOW = datetime.now(UTC).replace(microsecond=0)
YAML = """project: unit
registry: data/registry.db
provider: local
online_store: {type: sqlite, path: data/online.db}
offline_store: {type: file}
entity_key_serialization_version: 3
"""
DEFS = '''
from datetime import timedelta
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64
from feast.value_type import ValueType

account = Entity(name="account", join_keys=["account_id"], value_type=ValueType.INT64)
source = FileSource(name="usage_file", path="data/usage.parquet",
                    timestamp_field="event_timestamp")
push = PushSource(name="usage_push", batch_source=source)
usage = FeatureView(name="usage", entities=[account], ttl=timedelta(days={ttl_days}),
                    schema=[Field(name="spend", dtype=Float64),
                            Field(name="visits", dtype=Float64)], source=push)
request = RequestSource(name="request", schema=[Field(name="discount", dtype=Float64)])


@on_demand_feature_view(sources=[usage, request], mode="python",
                        schema=[Field(name="net_spend", dtype=Float64)])
def net(inputs):
    return {{"net_spend": [None if s is None else s * (1 - d)
                          for s, d in zip(inputs["spend"], inputs["discount"])]}}


plain = FeatureService(name="plain", features=[usage])
with_request = FeatureService(name="with_request", features=[usage, net])
'''


def _usage() -> pd.DataFrame:
    """Accounts 1, 2 and 4 with a value 10 days ago; account 1 changes 1 day ago; account 3
    only has a 40-day-old value (past the 30-day TTL); account 4 is for the push test."""
    return pd.DataFrame({
        "account_id": [1, 2, 1, 3, 4],
        "spend": [10.0, 20.0, 99.0, 30.0, 40.0],
        "visits": [1.0, 2.0, 9.0, 3.0, 4.0],
        "event_timestamp": [NOW - timedelta(days=10), NOW - timedelta(days=10),
                            NOW - timedelta(days=1), NOW - timedelta(days=40),
                            NOW - timedelta(days=10)]})


def _apply(repo, ttl_days: int = 30) -> None:
    import importlib.util

    (repo / "defs.py").write_text(textwrap.dedent(DEFS.format(ttl_days=ttl_days)))
    spec = importlib.util.spec_from_file_location(f"defs_{ttl_days}", repo / "defs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    store = features.open_store(repo)
    store.apply([module.account, module.source, module.push, module.usage, module.request,
                 module.net, module.plain, module.with_request])


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("feature-repo")
    (repo / "data").mkdir()
    (repo / "feature_store.yaml").write_text(YAML)
    _usage().to_parquet(repo / "data" / "usage.parquet")
    _apply(repo)
    features.open_store(repo).materialize(NOW - timedelta(days=60), NOW)
    return repo


def test_training_frame_is_point_in_time_correct(repo):
    # Account 1's spend became 99 one day ago: a label from 5 days ago must see 10, a label
    # from now must see 99, and a label older than every value has no features.
    entities = pd.DataFrame({"account_id": [1, 1, 2, 1],
                             "event_timestamp": [NOW - timedelta(days=5), NOW,
                                                 NOW - timedelta(days=5),
                                                 NOW - timedelta(days=20)],
                             "label": [0, 1, 0, 1]})
    frame, spec, dropped = features.training_frame(features.open_store(repo), "plain",
                                                   entities, "label")
    assert spec.names == ("spend", "visits") and spec.refs == ("usage:spend", "usage:visits")
    assert dropped == 1  # the label from 20 days ago: nothing was known then
    rows = sorted(map(tuple, frame[["spend", "visits", "label"]].to_numpy().tolist()))
    assert rows == [(10.0, 1.0, 0.0), (20.0, 2.0, 0.0), (99.0, 9.0, 1.0)]


def test_training_frame_says_what_is_missing(repo):
    store = features.open_store(repo)
    with pytest.raises(Exception, match="lacks columns") as caught:
        features.training_frame(store, "plain", pd.DataFrame({"account_id": [1]}), "label")
    assert "event_timestamp" in str(caught.value.detail)
    with pytest.raises(ConfigError, match="no feature service 'nope'") as caught:
        features.describe(store, "nope")
    assert caught.value.detail["expected one of"] == ["plain", "with_request"]


def test_fingerprint_catches_a_redefinition(repo, tmp_path):
    store = features.open_store(repo)
    before = features.describe(store, "with_request")
    assert before.request_fields == {"discount": "Float64"}
    assert features.compare(before, features.describe(store, "with_request")) == []
    # The same definitions in another repository (other paths) have the same fingerprint;
    # a TTL changed there does not.
    other = tmp_path / "other"
    (other / "data").mkdir(parents=True)
    (other / "feature_store.yaml").write_text(YAML)
    _usage().to_parquet(other / "data" / "usage.parquet")
    _apply(other)
    assert features.describe(features.open_store(other), "with_request").fingerprint == \
        before.fingerprint
    _apply(other, ttl_days=7)
    problems = features.compare(before, features.describe(features.open_store(other),
                                                          "with_request"))
    assert problems and "TTLs" in problems[0]


def _online(repo, service="plain", **policy):
    spec = features.describe(features.open_store(repo), service)
    return OnlineFeatures(spec, np.array([50.0, 5.0, 40.0][:len(spec.names)]),
                          store=features.open_store(repo), policy=Policy(**policy))


def _resolve(online, rows):
    return asyncio.run(online.resolve(rows, max_rows=100))


def test_rows_by_entity_match_the_online_store(repo):
    X, notes = _resolve(_online(repo), [{"account_id": 2}, {"account_id": 1}])
    np.testing.assert_array_equal(X, [[20.0, 2.0], [99.0, 9.0]])
    assert [n["status"] for n in notes] == ["online", "online"]
    assert 86_000 < notes[1]["age_seconds"] < 90_000  # one day old
    # A request-time value overrides the store's; an on-demand view uses request fields.
    X, notes = _resolve(_online(repo), [{"account_id": 2, "visits": 7.5}])
    np.testing.assert_array_equal(X, [[20.0, 7.5]])
    assert notes[0]["overridden"] == ["visits"]
    X, _ = _resolve(_online(repo, "with_request"), [{"account_id": 2, "discount": 0.25}])
    np.testing.assert_allclose(X, [[20.0, 2.0, 15.0]])


def test_missing_and_stale_entities_follow_the_policy(repo):
    with pytest.raises(EntityNotFound) as caught:
        _resolve(_online(repo), [{"account_id": 2}, {"account_id": 404}])
    assert caught.value.detail["rows"] == [{"row": 1, "entity": {"account_id": 404},
                                            "missing": ["spend", "visits"]}]
    X, notes = _resolve(_online(repo, missing="mean"), [{"account_id": 404}])
    np.testing.assert_array_equal(X, [[50.0, 5.0]])
    assert notes[0]["status"] == "imputed" and notes[0]["imputed"] == ["spend", "visits"]
    with pytest.raises(StaleFeatures) as caught:  # account 3's value is 40 days old
        _resolve(_online(repo), [{"account_id": 3}])
    assert caught.value.detail["rows"][0]["stale"] == ["spend", "visits"]
    X, notes = _resolve(_online(repo, stale="serve"), [{"account_id": 3}])
    np.testing.assert_array_equal(X, [[30.0, 3.0]])
    assert notes[0]["status"] == "stale"


@pytest.mark.parametrize("rows, expected", [
    ([], "non-empty list"),
    ([{"account_id": "1"}], "account_id must be Int64"),
    ([{"account_id": True}], "account_id must be Int64"),
    ([{"customer": 1}], "missing entity keys"),
    ([{"account_id": 1, "colour": 2}], "unknown fields"),
    ([{"account_id": 1, "spend": float("nan")}], "finite number"),
    (["1"], "not an object"),
])
def test_bad_entity_rows_are_refused(repo, rows, expected):
    with pytest.raises(InputError, match=expected):
        _resolve(_online(repo), rows)


def test_request_fields_of_an_on_demand_view_are_required(repo):
    with pytest.raises(InputError, match="discount"):
        _resolve(_online(repo, "with_request"), [{"account_id": 1}])


def test_a_push_is_served_after_the_cache_ttl(repo):
    from feast.data_source import PushMode

    cached = _online(repo, cache_seconds=3600)
    uncached = _online(repo, cache_seconds=0)
    assert _resolve(cached, [{"account_id": 4}])[0][0, 0] == 40.0
    features.open_store(repo).push("usage_push", pd.DataFrame({
        "account_id": [4], "spend": [41.0], "visits": [4.0],
        "event_timestamp": [datetime.now(UTC)]}), to=PushMode.ONLINE)
    assert _resolve(uncached, [{"account_id": 4}])[0][0, 0] == 41.0
    assert _resolve(cached, [{"account_id": 4}])[0][0, 0] == 40.0  # until its TTL
    cached.cache.clear()  # what the TTL's expiry does
    assert _resolve(cached, [{"account_id": 4}])[0][0, 0] == 41.0


def test_spec_round_trips_through_the_artifact(repo, tmp_path):
    from conftest import make_posterior

    from workbench import artifact

    spec = features.describe(features.open_store(repo), "plain")
    posterior = replace(make_posterior("binary", n_features=2), features=spec.to_dict())
    artifact.save(posterior, tmp_path / "p.nc")
    loaded = artifact.load(tmp_path / "p.nc")
    assert features.FeatureSpec.from_dict(loaded.features) == spec


def _served(repo, monkeypatch, spec):
    from conftest import make_posterior

    from workbench.serving import ModelServer

    monkeypatch.setenv("WORKBENCH_FEATURE_REPO", str(repo))
    posterior = replace(make_posterior("binary", n_features=2), features=spec.to_dict())
    server = ModelServer({"m:1": "m:1"}, load=lambda tag: posterior, buckets=(1, 4))
    server.warmup()
    return server


def test_the_model_server_predicts_by_entity_exactly_as_by_rows(repo, monkeypatch):
    spec = features.describe(features.open_store(repo), "plain")
    server = _served(repo, monkeypatch, spec)
    assert server.ready, server.error
    server.cache = PredictionCache(100)  # rows by entity bypass it: their features change

    async def both():
        by_entity = await server.predict(entities=[{"account_id": 2}, {"account_id": 1}])
        by_rows = await server.predict([[20.0, 2.0], [99.0, 9.0]])
        with pytest.raises(InputError, match="trained on feature service 'plain'"):
            await server.predict(entities=[{"account_id": 2}], feature_service="other")
        with pytest.raises(InputError, match="either instances or entities"):
            await server.predict([[1.0, 2.0]], entities=[{"account_id": 2}])
        return by_entity, by_rows

    by_entity, by_rows = asyncio.run(both())
    for a, b in zip(by_entity["predictions"], by_rows["predictions"], strict=True):
        assert a.pop("features")["status"] == "online"
        assert a == b
    assert server.metadata()["models"]["m:1"]["feature_service"]["service"] == "plain"
    assert server.cache.counts == {("l1", "miss"): 2}  # only the request by rows


def test_a_redefined_feature_service_keeps_the_server_not_ready(repo, monkeypatch):
    spec = features.describe(features.open_store(repo), "plain")
    trained = replace(spec, fingerprint="sha256:" + "0" * 64)
    server = _served(repo, monkeypatch, trained)
    assert not server.ready
    assert "training/serving skew" in server.error and "WORKBENCH_FEATURE_SKEW=warn" in \
        server.error
    monkeypatch.setenv("WORKBENCH_FEATURE_SKEW", "warn")
    assert _served(repo, monkeypatch, trained).ready


def test_feature_commands_say_what_to_install_without_feast(monkeypatch):
    from click.testing import CliRunner

    from workbench.cli import main

    monkeypatch.setitem(__import__("sys").modules, "feast", None)  # as if not installed
    with pytest.raises(ConfigError, match="Feast") as caught:
        features.require_feast()
    assert caught.value.detail == {"install": "pip install 'workbench[features]'"}
    result = CliRunner().invoke(main, ["features", "check", "any-model"])
    assert result.exit_code != 0
    assert "workbench[features]" in result.output


def test_features_check_reports_skew_with_its_exit_status(repo, monkeypatch):
    from click.testing import CliRunner
    from conftest import make_posterior

    from workbench import store
    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_FEATURE_REPO", str(repo))
    spec = features.describe(features.open_store(repo), "plain")
    tags = {}
    for name, fingerprint in (("fs-same", spec.fingerprint), ("fs-old", "sha256:" + "1" * 64)):
        trained = replace(spec, fingerprint=fingerprint).to_dict()
        tags[name] = store.save(replace(make_posterior("binary", n_features=2, name=name),
                                        features=trained))
    same = CliRunner().invoke(main, ["features", "check", tags["fs-same"]])
    assert same.exit_code == 0, same.output
    assert "definitions match" in same.output and "usage: TTL 2592000s" in same.output
    old = CliRunner().invoke(main, ["features", "check", tags["fs-old"], "--json"])
    assert old.exit_code == 1, old.output
    report = json.loads(old.output)
    assert report["ok"] is False and "definition changed" in report["problems"][0]
    shown = json.loads(CliRunner().invoke(main, ["features", "show", tags["fs-same"]]).output)
    assert shown["service"] == "plain" and shown["refs"] == ["usage:spend", "usage:visits"]
