"""The gateway class itself, over a real in-process ModelServer and a real SQLite store:
two instances on one database stand for two replicas (tests/e2e runs real servers)."""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest
from conftest import make_posterior
from servers import wait_for

from workbench import arms, control, events, gateway, guardrails, store
from workbench.config import parse
from workbench.errors import Conflict, InputError, ModelNotFound, Unavailable
from workbench.serving import ModelServer
from workbench.writer import EventWriter

ROW = [[0.1, -0.2, 0.3, 0.0]]


@pytest.fixture(scope="module")
def server():
    tags = {"gw-a": store.save(make_posterior("binary", name="gw-a", seed=1)),
            "gw-b": store.save(make_posterior("binary", name="gw-b", seed=2))}
    srv = ModelServer(tags, load=store.get, buckets=(1, 8))
    srv.warmup()
    srv.tags = tags
    return srv


def _config(**extra):
    return parse({"name": "gw", "arms": [{"name": "control", "model": "gw-a"},
                                         {"name": "treatment", "model": "gw-b"}]} | extra)


def _replica(server, url, config, *, failing=(), ack="durable"):
    async def predict(**kw):
        if kw["model"] in failing:
            raise RuntimeError("this arm's model is broken")
        return await server.predict(**kw)
    eng = events.engine(url)
    models = arms.arm_models(config, server.tags,
                             store.metadata)
    return gateway.Gateway(config, models, predict, engine=eng,
                           writer=EventWriter(eng, ack=ack, flush_every=0.5),
                           poll_seconds=0.05, feedback_grace=5.0)


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'events.db'}"


def test_conclude_on_one_replica_moves_all_traffic_on_both(server, url):
    a, b = _replica(server, url, _config()), _replica(server, url, _config())

    async def run():
        first = {}
        for i in range(200):
            gw = (a, b)[i % 2]
            first[i] = (await gw.predict(f"u{i}", ROW))["arm"]
        for i in range(200):  # sticky across replicas: the other one agrees
            assert (await (b, a)[i % 2].predict(f"u{i}", ROW))["arm"] == first[i]
        assert set(first.values()) == {"control", "treatment"}
        a.act("conclude", actor="test", winner="treatment", reason="planted")
        wait_for(lambda: b.live.state.status == "concluded", timeout=30)
        return [(await gw.predict(f"v{i}", ROW))["arm"] for i in range(50) for gw in (a, b)]

    try:
        assert set(asyncio.run(run())) == {"treatment"}
        a.writer.close()
        data = events.read(events.engine(url), "gw")
        assert set(data.status) == {"ok", "concluded"}
        assert set(data.arm[data.status == "concluded"]) == {"treatment"}
        audit = control.history(a.engine, "gw")[0]
        assert (audit["action"], audit["actor"], audit["reason"]) == (
            "conclude", "test", "planted")
        with pytest.raises(Conflict):
            b.act("pause", actor="test")
    finally:
        a.close()
        b.close()


def test_feedback_reaches_whichever_replica_and_is_stored_once(server, url):
    a = _replica(server, url, _config(), ack="async")  # answers before its event is written
    b = _replica(server, url, _config())

    async def run():
        rid = (await a.predict("u1", ROW))["request_id"]
        assert events.prediction_of(b.engine, rid) is None  # still in a's queue
        first = await b.feedback(rid, 1)
        again = await a.feedback(rid, 0)
        with pytest.raises(ModelNotFound, match="unknown request_id"):
            await b.feedback("0" * 32, 1)  # issued in 1970: refused at once
        return rid, first, again

    try:
        rid, first, again = asyncio.run(run())
        assert first["status"] == "recorded" and again["status"] == "duplicate"
        assert events.outcome_of(a.engine, rid) == 1
    finally:
        a.close()
        b.close()


def test_bad_feedback_is_refused_and_old_bad_rows_never_break_the_read_out(server, url):
    gw = _replica(server, url, _config())

    async def run():
        ids = [(await gw.predict(f"u{i}", ROW))["request_id"] for i in range(30)]
        for bad in ("yes", 5, [], None, "maybe"):
            with pytest.raises(InputError, match="invalid outcome|outcomes for a request"):
                await gw.feedback(ids[0], bad)
        for rid in ids[:20]:
            await gw.feedback(rid, 1)
        return ids

    try:
        ids = asyncio.run(run())
        gw.writer.close()
        # rows an older version stored without checking them
        events.write_now(gw.engine, "outcomes", [
            {"request_id": rid, "ts": time.time(), "experiment": "gw", "outcome": bad}
            for rid, bad in zip(ids[20:25], ["yes", 5, [], {"a": 1}, "maybe"], strict=True)])
        readout = gw.analysis()
        assert readout["skipped"] == 5
        assert sum(a["outcomes"] for a in readout["arms"]) == 20
    finally:
        gw.close()


def test_a_failing_arm_is_paused_by_its_guardrail_and_the_audit_says_why(server, url):
    config = _config(guardrails={"error_rate": 0.2, "min_samples": 20}, check_seconds=0.2)
    gw = _replica(server, url, config, failing=("gw-b",))

    async def traffic(prefix):
        return [await gw.predict(f"{prefix}{i}", ROW) for i in range(80)]

    try:
        first = asyncio.run(traffic("u"))
        assert {r.get("fallback_from") for r in first} == {None, "treatment"}
        assert all(r["arm"] == "control" for r in first)  # the fallback answered
        # the gateway's own control loop notices and acts, with no call from here
        wait_for(lambda: gw.live.state.weights["treatment"] == 0.0, timeout=30)
        assert gw.counters["automatic_actions"] == 1
        assert guardrails.check(gw.engine, config) == []  # once only
        row = control.history(gw.engine, "gw")[0]
        assert (row["action"], row["actor"]) == ("pause_arm", "guardrail")
        assert "error_rate: 1 > 0.2" in row["reason"]
        assert row["after"]["weights"] == {"control": 1.0, "treatment": 0.0}
        gw.live.refresh()
        after = asyncio.run(traffic("v"))
        assert {r["arm"] for r in after} == {"control"}
        assert all("fallback_from" not in r for r in after)
    finally:
        gw.close()


def test_auto_conclude_acts_once_and_is_audited(server, url):
    rule = {"enabled": True, "prob_best": 0.95, "max_expected_loss": 0.05,
            "min_outcomes": 20}
    config = _config(auto_conclude=rule, check_seconds=0.2)
    gw = _replica(server, url, config)

    async def run():
        for i in range(120):
            body = await gw.predict(f"u{i}", ROW)
            await gw.feedback(body["request_id"], int(body["arm"] == "treatment"))

    try:
        asyncio.run(run())
        # the gateway's own control loop concludes, with no call from here, and only once
        wait_for(lambda: gw.live.state.status == "concluded", timeout=30)
        assert gw.counters["automatic_actions"] == 1
        assert guardrails.check(gw.engine, config) == []
        state = control.require(gw.engine, "gw")
        assert (state.status, state.winner) == ("concluded", "treatment")
        row = control.history(gw.engine, "gw")[0]
        assert row["actor"] == "auto-conclude" and "P(treatment is best)" in row["reason"]
    finally:
        gw.close()


@pytest.fixture(scope="module")
def kinds_server():
    tags = {f"gw-{k}": store.save(make_posterior(k, name=f"gw-{k}"))
            for k in ("multiclass", "regression")}
    srv = ModelServer(tags, load=store.get, buckets=(1,))
    srv.warmup()
    return srv, tags


@pytest.mark.parametrize(("kind", "good", "bad"), [
    ("multiclass", "b", ["yes", 5, [], None, "d", True]),
    ("regression", 12.5, ["yes", [], None, "a", float("nan")]),
])
def test_feedback_is_checked_by_the_metric_of_each_model_kind(kinds_server, url, kind, good,
                                                              bad):
    srv, tags = kinds_server
    config = parse({"name": f"gw-{kind}", "metric": "log_score", "arms": [
        {"name": "control", "model": f"gw-{kind}"}, {"name": "treatment",
                                                      "model": f"gw-{kind}"}]})
    eng = events.engine(url)
    gw = gateway.Gateway(config, arms.arm_models(config, tags, store.metadata),
                         lambda **kw: srv.predict(**kw), engine=eng,
                         writer=EventWriter(eng), poll_seconds=0.05)

    async def run():
        rid = (await gw.predict("u", ROW))["request_id"]
        for value in bad:
            with pytest.raises(InputError) as err:
                await gw.feedback(rid, value)
            assert err.value.detail["expected"]  # says what it wanted
        assert (await gw.feedback(rid, good))["status"] == "recorded"

    try:
        asyncio.run(run())
        gw.writer.close()
        readout = gw.analysis()
        assert sum(a["outcomes"] for a in readout["arms"]) == 1 and readout["skipped"] == 0
    finally:
        gw.close()


@pytest.mark.parametrize("inputs", ["hash", "none"])
def test_the_event_log_can_keep_a_hash_of_the_inputs_or_nothing(server, url, inputs):
    eng = events.engine(url)
    config = _config()
    gw = gateway.Gateway(config, arms.arm_models(config, server.tags, store.metadata),
                         lambda **kw: server.predict(**kw), engine=eng,
                         writer=EventWriter(eng), inputs=inputs)
    try:
        asyncio.run(gw.predict("u", ROW))
        asyncio.run(gw.predict("v", ROW))
    finally:
        gw.close()
    stored = events.read(eng, "gw", with_instances=True).instances
    if inputs == "none":
        assert stored == [None, None]
    else:
        assert stored[0] == stored[1] and set(stored[0]) == {"sha256"}
        assert "0.1" not in str(stored)
    with pytest.raises(Exception, match="invalid event inputs setting"):
        gateway.Gateway(config, {}, None, engine=eng, writer=None, inputs="plain")


def test_with_the_store_unreachable_predictions_are_spooled_and_feedback_is_503(
        server, tmp_path):
    db = tmp_path / "store"
    db.mkdir()
    events.engine(f"sqlite:///{db / 'events.db'}").dispose()
    url = f"sqlite:///file:{db / 'events.db'}?mode=rw&uri=true"  # never a fresh empty file
    gw = _replica(server, url, _config())

    async def run():
        with pytest.raises(InputError, match="no NUL"):
            await gw.predict("nul\x00unit", ROW)  # PostgreSQL could not store it
        shutil.move(db, tmp_path / "away")
        gw.engine.dispose()
        gw.writer.engine.dispose()
        answer = await gw.predict("u1", ROW)  # acknowledged: in the spool
        with pytest.raises(Unavailable, match="cannot take feedback now"):
            await gw.feedback(answer["request_id"], 1)
        shutil.move(tmp_path / "away", db)
        gw.engine.dispose()
        await asyncio.to_thread(wait_for, lambda: gw.health()["spool"]["bytes"] == 0, 30,
                                "the spool replayed")
        return answer, await gw.feedback(answer["request_id"], 1)

    try:
        answer, stored = asyncio.run(run())
        assert stored["status"] == "recorded"
        assert events.outcome_of(gw.engine, answer["request_id"]) == 1
        assert gw.health()["writer"]["spooled"] == 1 == gw.health()["writer"]["replayed"]
    finally:
        gw.close()
