"""The whole gateway (its process group) is SIGKILLed under load with durable
acknowledgements, while PostgreSQL is down and events are being spooled; a new gateway on
the same store and spool replays what the dead one left, and no acknowledged prediction is
missing from the database."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter

import psutil
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
    worker,
)

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]


def test_gateway_sigkill_loses_nothing_acknowledged(arm_models, private_postgres, tmp_path,
                                                    report):
    pg = private_postgres
    url = pg.create_database("gateway_kill")
    env = {"WORKBENCH_DB_URL": url, "WORKBENCH_SPOOL_DIR": str(tmp_path / "spool")}
    first = serve_gateway(tmp_path, env, log="gateway-1.log")
    try:
        dead_pid = worker(first.pid, "experiment").pid  # the process that spools
        with Load(first.url, prefix="sigkill", feedback=False) as load:
            wait_for(lambda: load.count(status=200) >= 100, 60, "100 committed predictions")
            load.phase = "spooling"
            pg.stop()
            wait_for(lambda: load.count(status=200, phase="spooling") >= 50
                     and health(first.url)["writer"]["spooled"] >= 50, 60,
                     "predictions spooled while the database is down")
            # BentoML's workers run in sessions of their own, outside the server's process
            # group: the whole gateway is the group and every process under it.
            gateway = [psutil.Process(first.pid), *psutil.Process(first.pid).children(
                recursive=True)]
            load.phase = "killed"
            killed = time.monotonic()
            os.killpg(first.pid, signal.SIGKILL)
            for proc in gateway:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
            psutil.wait_procs(gateway, timeout=30)
            wait_for(lambda: load.count(status=None) >= 1, 30, "clients seeing it gone")
    finally:
        stop(first)
    assert not psutil.pid_exists(dead_pid)

    spool = next((tmp_path / "spool").iterdir())  # the store's spool: <base>/<digest>
    left = sorted(spool.glob("seg-*.jsonl"))
    assert left and all(int(p.name.split("-")[2]) == dead_pid for p in left), left
    spooled_rows = sum(len(p.read_text().splitlines()) for p in left)
    # The dead process as if killed mid-replay (a claimed segment) and mid-write (a
    # temporary file, never acknowledged): the next start gives back and cleans up.
    left[0].rename(left[0].with_name(f"{left[0].name}.replay-{dead_pid}"))
    (spool / f"tmp-{dead_pid}-999999").write_text('{"table": "predictions", "row": {}}\n')

    pg.start()
    second = serve_gateway(tmp_path, env, log="gateway-2.log")
    try:
        replayed_in = wait_for(lambda: settled(second.url), 60, "the dead gateway's spool "
                                                               "replayed")
        pipeline = health(second.url)
    finally:
        stop(second)
    assert not list(spool.glob("seg-*")) and not list(spool.glob("tmp-*"))
    assert "was being replayed by a process that died" in second.output()

    answers = load.answers
    acked = {a.request_id for a in answers if a.status == 200}
    eng = events.engine(url)
    with eng.connect() as conn:
        stored = Counter(conn.execute(sa.select(events.predictions.c.request_id).where(
            events.predictions.c.experiment == EXPERIMENT)).scalars())
    eng.dispose()
    missing = acked - set(stored)
    report(predict=statuses(answers, "predict"),
           spooling_predict=statuses([a for a in answers if a.phase == "spooling"], "predict"),
           acknowledged=len(acked), missing=len(missing), spool_segments_left=len(left),
           spooled_rows_left=spooled_rows, replayed_after_restart=pipeline["writer"]["replayed"],
           replay_caught_up_s=round(replayed_in, 1))

    assert not missing, f"{len(missing)} of {len(acked)} acknowledged predictions are lost"
    assert all(stored[r] == 1 for r in acked)
    assert pipeline["writer"]["replayed"] == spooled_rows
    # Answered before the kill: a 200 or a 503 with a JSON body (in flight then: no answer).
    before = [a for a in answers if a.ended < killed]
    assert_contract(before)
