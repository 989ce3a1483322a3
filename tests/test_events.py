"""The event store against real SQLite (WAL) and a real PostgreSQL server (its writer:
tests/test_writer.py)."""

from __future__ import annotations

import time
import uuid

import pytest
import sqlalchemy as sa

from workbench import events


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    else:
        url = request.getfixturevalue("postgres_url")
        eng = events.engine(url)
        with eng.begin() as conn:  # each test starts from empty tables
            conn.execute(events.outcomes.delete())
            conn.execute(events.predictions.delete())
    yield eng
    eng.dispose()


def _prediction(experiment: str = "exp", arm: str = "a", **extra):
    return {"request_id": uuid.uuid4().hex, "parent_id": None, "ts": time.time(),
            "experiment": experiment, "arm": arm, "model_tag": "m:1", "unit": "u1",
            "latency_ms": 1.5, "status": "ok", "fallback_from": None, "n_rows": 1,
            "summary": [{"mean": 0.7, "std": 0.1, "interval": [0.5, 0.9],
                         "probabilities": {"no": 0.3, "yes": 0.7}, "label": "yes"}],
            "instances": [[1.0, 2.0]]} | extra


def test_outcomes_are_idempotent_and_join_their_predictions(engine):
    first, shadow_parent = _prediction(arm="a"), _prediction(arm="b")
    shadow = _prediction(arm="s", status="shadow", parent_id=shadow_parent["request_id"],
                         request_id=shadow_parent["request_id"] + "-shadow")
    events.write_now(engine, "predictions", [first, shadow_parent, shadow])
    for value in (1, 0):  # the second is ignored: the first outcome stands
        events.write_now(engine, "outcomes", [{"request_id": first["request_id"],
                                               "ts": time.time(), "experiment": "exp",
                                               "outcome": value}])
    events.write_now(engine, "outcomes", [{"request_id": shadow_parent["request_id"],
                                           "ts": time.time(), "experiment": "exp",
                                           "outcome": [0]}])
    data = events.read(engine, "exp", with_instances=True)
    by_arm = dict(zip(data.arm, data.outcome, strict=True))
    assert by_arm == {"a": 1, "b": [0], "s": [0]}  # the shadow shares its parent's outcome
    assert data.summary[0][0]["probabilities"] == {"no": 0.3, "yes": 0.7}
    assert data.instances[0] == [[1.0, 2.0]]
    assert events.exists(engine, first["request_id"]) == "exp"
    assert events.exists(engine, "nope") is None
    assert events.outcome_of(engine, first["request_id"]) == 1
    assert events.experiments(engine) == ["exp"]


def test_default_url_is_a_sqlite_file_under_workbench_home(monkeypatch, tmp_path):
    monkeypatch.delenv("WORKBENCH_DB_URL", raising=False)
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    assert events.default_url() == f"sqlite:///{tmp_path / 'events.db'}"
    monkeypatch.setenv("WORKBENCH_DB_URL", "postgresql+psycopg://x@h/db")
    assert events.default_url() == "postgresql+psycopg://x@h/db"


def test_tables_have_the_documented_columns(engine):
    cols = {c["name"] for c in sa.inspect(engine).get_columns("predictions")}
    assert {"request_id", "ts", "experiment", "arm", "model_tag", "unit", "latency_ms",
            "summary", "instances", "status", "parent_id"} <= cols
