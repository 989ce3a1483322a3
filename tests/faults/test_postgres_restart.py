"""PostgreSQL restarts under load: the gateway spools what it acknowledges while the
database is down, replays it once it is back, and answers every request with a 200 or a
503 with a JSON body meanwhile."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import sqlalchemy as sa
from servers import wait_for

from workbench import events

from .conftest import (
    EXPERIMENT,
    Load,
    assert_contract,
    health,
    serve_gateway,
    settled,
    statuses,
    stop,
)

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]
OUTAGE_SECONDS = 10.0


def test_postgres_restart_under_load(arm_models, private_postgres, tmp_path, report):
    pg = private_postgres
    url = pg.create_database("restart")
    server = serve_gateway(tmp_path, {"WORKBENCH_DB_URL": url,
                                      "WORKBENCH_SPOOL_DIR": str(tmp_path / "spool")})
    try:
        with Load(server.url) as load:
            wait_for(lambda: load.count(status=200) >= 100, 60, "100 predictions before")
            load.phase = "outage"
            pg.stop()
            down = time.monotonic()
            wait_for(lambda: time.monotonic() - down >= OUTAGE_SECONDS
                     and load.count(phase="outage") >= 50, 60, "the outage's traffic")
            pg.start()
            load.phase = "after"
            outage = time.monotonic() - down
            wait_for(lambda: load.count(status=200, phase="after") >= 100
                     and load.count("feedback", status=200, phase="after") >= 50, 60,
                     "traffic after the restart")
        recovered = wait_for(lambda: settled(server.url), 60, "the spool replayed")
        pipeline = health(server.url)
    finally:
        stop(server)
    answers = load.answers
    acked = {a.request_id for a in answers if a.kind == "predict" and a.status == 200}
    recorded = {a.request_id: a.outcome for a in answers
                if a.kind == "feedback" and a.status == 200 and a.body["status"] == "recorded"}
    eng = events.engine(url)
    with eng.connect() as conn:
        stored = Counter(conn.execute(sa.select(events.predictions.c.request_id).where(
            events.predictions.c.experiment == EXPERIMENT)).scalars())
        outcomes = conn.execute(sa.select(events.outcomes.c.request_id,
                                          events.outcomes.c.outcome).where(
            events.outcomes.c.experiment == EXPERIMENT)).all()
    eng.dispose()
    kept = Counter(r for r, _ in outcomes)
    writer = pipeline["writer"]
    report(predict=statuses(answers, "predict"), feedback=statuses(answers, "feedback"),
           outage_predict=statuses([a for a in answers if a.phase == "outage"], "predict"),
           outage_seconds=round(outage, 1), spooled=writer["spooled"],
           replayed=writer["replayed"], written=writer["written"],
           backpressure=writer["backpressure"], replay_caught_up_s=round(recovered, 1))

    assert_contract(answers)
    assert writer["spooled"] > 0 and writer["replayed"] == writer["spooled"]
    missing = acked - set(stored)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged predictions are lost"
    assert all(stored[r] == 1 for r in acked)
    assert not set(recorded) - set(kept), "recorded feedback missing from outcomes"
    assert all(kept[r] == 1 for r in recorded)
    assert dict(outcomes) | recorded == dict(outcomes)  # the value the client sent
    assert writer["dead"] == writer["refused"] == 0
