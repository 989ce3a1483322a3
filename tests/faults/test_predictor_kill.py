"""The Predictor worker (the gateway's arms in a process of their own) is SIGKILLed under
load: every request gets a 200 (its arm or the fallback) or a 503 with a JSON body, none
hangs, and traffic resumes with 200s once BentoML has restarted the worker, without
restarting the gateway."""

from __future__ import annotations

import os
import signal
import time

import pytest
from servers import wait_for

from .conftest import Load, assert_contract, serve_gateway, statuses, stop, worker

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.slow]


def test_predictor_killed_under_load(arm_models, tmp_path, report):
    server = serve_gateway(tmp_path, {"WORKBENCH_DB_URL": f"sqlite:///{tmp_path / 'e.db'}",
                                      "WORKBENCH_SPOOL_DIR": str(tmp_path / "spool"),
                                      "WORKBENCH_ARMS": "predictor"})
    try:
        gateway = worker(server.pid, "experiment")
        predictor = worker(server.pid, "predictor")
        # A call to the Predictor may take its traffic timeout (30 s), a fallback two calls:
        # the clients wait longer than the gateway's own request timeout (60 s).
        with Load(server.url, prefix="kill", feedback=False, timeout=75) as load:
            wait_for(lambda: load.count(status=200) >= 100, 60, "100 predictions before")
            load.phase = "killed"
            killed = time.monotonic()
            os.kill(predictor.pid, signal.SIGKILL)
            wait_for(lambda: load.count(status=200, after=killed) >= 50, 180,
                     "traffic answered again after the kill")
            load.phase = "recovered"
            wait_for(lambda: load.count(phase="recovered") >= 32, 60, "a round after it")
        restarted = worker(server.pid, "predictor")
        assert server.running() and gateway.is_running(), "the gateway was restarted"
        assert worker(server.pid, "experiment").pid == gateway.pid
    finally:
        stop(server)
    answers = load.answers
    after = [a for a in answers if a.started >= killed]
    first_ok = min(a.ended for a in after if a.status == 200)
    failed = [a for a in after if a.status != 200]
    report(requests=len(answers), predict=statuses(answers, "predict"),
           after_kill=statuses(after, "predict"),
           recovery_s=round(first_ok - killed, 1),
           last_failure_s=round(max((a.ended for a in failed), default=killed) - killed, 1),
           slowest_s=round(max(a.ended - a.started for a in answers), 1),
           predictor_pids=f"{predictor.pid}->{restarted.pid}")

    assert restarted.pid != predictor.pid
    assert all(a.status == 200 for a in answers if a.phase == "recovered")
    assert_contract(answers)
