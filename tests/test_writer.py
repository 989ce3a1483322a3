"""The event writer against real SQLite (WAL) and a real PostgreSQL server: durable
acknowledgements, the spool while the database is unreachable, dead letters, backpressure,
supervision (the gateway-level fault suite is tests/faults/)."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
import uuid

import pytest
from servers import wait_for

from workbench import events
from workbench.errors import InputError, Unavailable
from workbench.spool import Spool
from workbench.writer import EventWriter


def _row(experiment: str = "exp", **extra):
    return {"request_id": uuid.uuid4().hex, "parent_id": None, "ts": time.time(),
            "experiment": experiment, "arm": "a", "model_tag": "m:1", "unit": "u1",
            "latency_ms": 1.5, "status": "ok", "fallback_from": None, "n_rows": 1,
            "summary": [{"mean": 0.7}], "instances": [[1.0, 2.0]]} | extra


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    else:
        eng = events.engine(request.getfixturevalue("postgres_url"))
        with eng.begin() as conn:
            conn.execute(events.outcomes.delete())
            conn.execute(events.predictions.delete())
    yield eng
    eng.dispose()


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool")


def test_nothing_offered_is_lost_on_close(engine, spool):
    writer = EventWriter(engine, spool=spool, ack="async", flush_every=5.0)
    rows = [_row() for _ in range(1234)]
    threads = [threading.Thread(target=lambda part=rows[i::4]: [writer.offer("predictions", r)
                                                                  for r in part])
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for row in rows[:100]:
        writer.offer("outcomes", {"request_id": row["request_id"], "ts": time.time(),
                        "experiment": "exp", "outcome": 1})
    writer.close()
    assert events.counts(engine, "exp") == {"a": {"predictions": 1234, "outcomes": 100}}
    assert writer.written == {"predictions": 1234, "outcomes": 100}


def test_a_durable_submit_returns_once_committed(engine, spool):
    writer = EventWriter(engine, spool=spool)
    rows = [_row() for _ in range(50)]

    async def run():
        await asyncio.gather(*(writer.submit("predictions", r) for r in rows))
        return [events.exists(engine, r["request_id"]) for r in rows]  # before any close

    try:
        assert asyncio.run(run()) == ["exp"] * 50
        assert writer.health()["writer"]["written"] == 50
    finally:
        writer.close()


def test_pending_ids_are_known_before_they_are_written(engine, spool):
    writer = EventWriter(engine, spool=spool, ack="async", flush_every=5.0)
    row = _row()
    writer.offer("predictions", row)
    assert writer.pending(row["request_id"]) is not None
    writer.close()
    assert writer.pending(row["request_id"]) is None
    assert events.exists(engine, row["request_id"]) == "exp"


def test_a_row_longer_than_its_column_is_refused_before_it_is_accepted(engine, spool):
    writer = EventWriter(engine, spool=spool)
    try:
        with pytest.raises(InputError, match="unit is 300 characters long"):
            asyncio.run(writer.submit("predictions", _row(unit="u" * 300)))
        assert not writer.offer("predictions", _row(unit="u" * 300))
        assert writer.counts["dropped"] == 1
    finally:
        writer.close()


def test_a_row_the_database_refuses_is_dead_lettered_and_the_rest_written(
        postgres_url, spool):
    eng = events.engine(postgres_url)
    writer = EventWriter(eng, spool=spool, ack="async", flush_every=1.0)
    good = [_row(experiment="dead-letter") for _ in range(5)]
    bad = _row(experiment="dead-letter", unit="nul\x00byte")  # PostgreSQL refuses NUL
    for row in good[:2] + [bad] + good[2:]:
        writer.offer("predictions", row)
    writer.close()
    assert events.counts(eng, "dead-letter") == {"a": {"predictions": 5, "outcomes": 0}}
    health = writer.health()
    assert health["writer"]["dead"] == 1 and health["writer"]["written"] == 5
    assert health["spool"]["dead_rows"] == 1
    assert bad["request_id"] in spool.dead_path.read_text()
    assert writer.pending(bad["request_id"]) is None


def test_an_unreachable_store_spools_and_the_spool_is_replayed(tmp_path, spool):
    db = tmp_path / "store"
    db.mkdir()
    events.engine(f"sqlite:///{db / 'events.db'}").dispose()  # the store, created
    # mode=rw: SQLite must not create a fresh, empty file where the store went missing
    eng = events.engine(f"sqlite:///file:{db / 'events.db'}?mode=rw&uri=true")
    writer = EventWriter(eng, spool=spool, retry_seconds=0.05, down_after=0.0)
    before = _row()
    asyncio.run(writer.submit("predictions", before))
    shutil.move(db, tmp_path / "away")  # the database is gone
    eng.dispose()
    rows = [_row() for _ in range(20)]

    async def outage():
        await asyncio.gather(*(writer.submit("predictions", r) for r in rows))

    try:
        asyncio.run(outage())  # acknowledged: spooled
        assert writer.health()["writer"]["spooled"] == 20
        assert spool.segments() and not writer.health()["event_store"]["up"]
        ready, why = writer.ready()
        assert not ready and "unreachable" in why
        assert all(writer.pending(r["request_id"]) is not None for r in rows)
        # only briefs are held for spooled events, not their rows (an outage may be long)
        assert all(set(writer._pending[r["request_id"]]) == set(events.BRIEF)  # noqa: SLF001
                   for r in rows)
        shutil.move(tmp_path / "away", db)  # back
        eng.dispose()
        # bytes() counts segments claimed for replay too: zero once their rows are written
        wait_for(lambda: spool.bytes() == 0, timeout=30, what="the spool replayed")
        assert events.counts(eng, "exp") == {"a": {"predictions": 21, "outcomes": 0}}
        assert writer.health()["writer"]["replayed"] == 20 and writer.ready() == (True, "")
        assert not any(writer.pending(r["request_id"]) is not None for r in rows)
    finally:
        writer.close()


def test_when_neither_store_nor_spool_can_take_an_event_the_request_gets_503(tmp_path):
    db = tmp_path / "store"
    db.mkdir()
    events.engine(f"sqlite:///{db / 'events.db'}").dispose()
    eng = events.engine(f"sqlite:///file:{db / 'events.db'}?mode=rw&uri=true")
    writer = EventWriter(eng, spool=Spool(tmp_path / "spool", max_bytes=1),
                         retry_seconds=60, down_after=0.0)
    shutil.rmtree(db)
    eng.dispose()
    try:
        with pytest.raises(Unavailable, match="spool cannot take"):
            asyncio.run(writer.submit("predictions", _row()))
        assert writer.health()["writer"]["refused"] == 1
        assert not writer.ready()[0]
    finally:
        writer.close()


def test_a_full_queue_pushes_back_with_503_and_loses_nothing_accepted(tmp_path, spool):
    eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    writer = EventWriter(eng, spool=spool, capacity=1, queue_wait=0.1, ack_timeout=0.2)
    lock = eng.raw_connection()  # another writer holds SQLite's write lock
    lock.execute("BEGIN IMMEDIATE")
    first, second, third = _row(), _row(), _row()

    async def run():
        stuck = asyncio.ensure_future(writer.submit("predictions", first))
        await asyncio.to_thread(wait_for, lambda: writer._queue.empty(), 10,
                                "the writer took the first event")
        with pytest.raises(Unavailable, match="durable in time"):
            await writer.submit("predictions", second)  # queued, not durable within 0.2 s
        with pytest.raises(Unavailable, match="overloaded"):
            await writer.submit("predictions", third)  # no room in the queue
        with pytest.raises(Unavailable):
            await stuck
        lock.rollback()

    try:
        asyncio.run(run())
        assert writer.counts["backpressure"] == 3
    finally:
        lock.close()
        writer.close()
    assert events.exists(eng, first["request_id"]) and events.exists(eng, second["request_id"])
    assert events.exists(eng, third["request_id"]) is None  # refused: never acknowledged


def test_the_writer_thread_is_restarted_after_an_error_and_keeps_the_batch(engine, spool):
    writer = EventWriter(engine, spool=spool)
    real, failed = writer.sink.write, []

    def flaky(rows):
        if not failed:
            failed.append(len(rows))
            raise RuntimeError("a bug in the writer")
        return real(rows)

    writer.sink.write = flaky
    row = _row()
    try:
        asyncio.run(writer.submit("predictions", row))
        assert events.exists(engine, row["request_id"]) == "exp"
        assert writer.counts["restarts"] == 1 and writer.health()["writer"]["alive"]
    finally:
        writer.close()


def test_the_event_log_can_be_switched_off(monkeypatch, tmp_path):
    eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    monkeypatch.setenv("WORKBENCH_EVENT_LOG", "off")
    assert not events.log_enabled()
    writer = EventWriter(eng)
    row = _row()
    writer.offer("predictions", row)
    asyncio.run(writer.submit("predictions", _row()))
    writer.close()
    assert events.exists(eng, row["request_id"]) is None and writer.written == {
        "predictions": 0, "outcomes": 0} and writer.ready() == (True, "")
    monkeypatch.setenv("WORKBENCH_EVENT_LOG", "on")
    on = EventWriter(eng, spool=Spool(tmp_path / "spool"))
    assert events.log_enabled() and on.enabled
    on.close()


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_EVENT_QUEUE", "7")
    monkeypatch.setenv("WORKBENCH_EVENT_ACK", "async")
    monkeypatch.setenv("WORKBENCH_SPOOL_DIR", str(tmp_path / "spools"))
    eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    writer = EventWriter.from_settings(eng)
    try:
        assert writer.capacity == 7 and writer.ack == "async"
        assert writer.sink.spool.directory.parent == tmp_path / "spools"
    finally:
        writer.close()
    with pytest.raises(ValueError, match="ack must be one of"):
        EventWriter(eng, ack="sometimes")
