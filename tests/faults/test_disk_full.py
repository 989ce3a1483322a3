"""The disk holding the SQLite event store and the spool fills up under load: the gateway
answers 200 or 503 (never a 500, never hangs), and once space is freed the spool is
replayed and every acknowledged prediction is in the store."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter

import pytest
import sqlalchemy as sa
from conftest import require
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

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.slow]
SIZE = "2m"
HEADROOM = 96 * 1024  # what the ballast leaves free once the store is created


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs, unmounted at teardown (after the server using it has stopped)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    require(os.geteuid() == 0 and shutil.which("mount") is not None,
            "the disk-full test mounts a small tmpfs: it needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    require(done.returncode == 0, f"the disk-full test needs to mount a tmpfs "
                                  f"(mount -t tmpfs -o size={SIZE}): {done.stderr.strip()}")
    yield disk
    if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _free(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_disk_full_then_freed(arm_models, small_disk, tmp_path, report):
    url = f"sqlite:///{small_disk / 'events.db'}"
    server = serve_gateway(tmp_path, {"WORKBENCH_HOME": str(small_disk),
                                      "WORKBENCH_DB_URL": url,
                                      "WORKBENCH_SPOOL_DIR": str(small_disk / "spool")})
    try:
        ballast = small_disk / "ballast"
        with open(ballast, "wb") as f:  # written, not sparse: it takes the space
            f.write(b"\0" * max(_free(small_disk) - HEADROOM, 0))
        with Load(server.url, prefix="disk") as load:
            load.phase = "filling"
            wait_for(lambda: load.count(status=503) >= 10, 120, "the disk filling up")
            load.phase = "full"
            full = health(server.url)
            wait_for(lambda: load.count(phase="full") >= 50, 60, "traffic on the full disk")
            ballast.unlink()
            load.phase = "freed"
            wait_for(lambda: load.count(status=200, phase="freed") >= 50, 60,
                     "traffic after space was freed")
        replayed_in = wait_for(lambda: settled(server.url), 60, "the spool replayed")
        pipeline = health(server.url)
    finally:
        stop(server)
    answers = load.answers
    acked = {a.request_id for a in answers if a.kind == "predict" and a.status == 200}
    recorded = {a.request_id for a in answers
                if a.kind == "feedback" and a.status == 200 and a.body["status"] == "recorded"}
    eng = events.engine(url)
    with eng.connect() as conn:
        stored = Counter(conn.execute(sa.select(events.predictions.c.request_id).where(
            events.predictions.c.experiment == EXPERIMENT)).scalars())
        kept = Counter(conn.execute(sa.select(events.outcomes.c.request_id)).scalars())
    eng.dispose()
    writer = pipeline["writer"]
    report(predict=statuses(answers, "predict"), feedback=statuses(answers, "feedback"),
           full_predict=statuses([a for a in answers if a.phase == "full"], "predict"),
           spooled=writer["spooled"], replayed=writer["replayed"], refused=writer["refused"],
           backpressure=writer["backpressure"], dead=writer["dead"],
           store_up_when_full=full["event_store"]["up"], replay_caught_up_s=round(
               replayed_in, 1))

    assert_contract(answers)
    missing = acked - set(stored)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged predictions are lost"
    assert all(stored[r] == 1 for r in acked)
    assert all(kept[r] == 1 for r in recorded)
    assert writer["replayed"] == writer["spooled"] and writer["dead"] == 0
