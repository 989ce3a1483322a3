"""The spool on a real filesystem: durable segments, exclusive claims, recovery after a
crash, the dead-letter file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from workbench.spool import Spool, directory_for

ROWS = [("predictions", {"request_id": f"r{i}", "summary": [{"mean": 0.5}]}) for i in range(3)]


def test_a_segment_round_trips_and_is_forgotten_once_done(tmp_path):
    spool = Spool(tmp_path)
    spool.append(ROWS)
    spool.append(ROWS[:1])
    segments = spool.segments()
    assert len(segments) == 2 and spool.bytes() > 0
    claimed = spool.claim(segments[0])
    assert list(Spool.rows(claimed)) == ROWS
    assert spool.claim(segments[0]) is None  # taken already
    spool.release(claimed)  # a failed replay gives it back
    assert spool.segments() == segments
    spool.done(spool.claim(segments[0]))
    assert spool.segments() == segments[1:]
    assert not list(tmp_path.glob("tmp-*"))


def test_a_segment_past_the_limit_is_refused(tmp_path):
    spool = Spool(tmp_path, max_bytes=200)
    spool.append(ROWS[:1])
    with pytest.raises(OSError, match="limit of 200 bytes"):
        spool.append(ROWS * 10)
    assert len(spool.segments()) == 1 and not list(tmp_path.glob("tmp-*"))


def test_segments_claimed_by_a_dead_process_are_given_back_at_start(tmp_path):
    spool = Spool(tmp_path)
    segment = spool.append(ROWS)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    os.replace(segment, segment.with_name(f"{segment.name}.replay-{dead}"))
    (tmp_path / f"tmp-{dead}-0").write_text('{"table": "predictions", "row": {}}\n')
    live = tmp_path / f"{segment.name[:-6]}x.jsonl.replay-1"  # pid 1 is alive
    live.write_text("")
    assert spool.segments() == []
    again = Spool(tmp_path)
    assert again.segments() == [segment]  # replayable again
    assert not (tmp_path / f"tmp-{dead}-0").exists()  # never acknowledged: deleted
    assert live.exists()  # a live process's claim is left alone


def test_damaged_lines_are_skipped_and_reported(tmp_path, caplog):
    spool = Spool(tmp_path)
    segment = spool.append(ROWS)
    segment.write_text(segment.read_text() + "{not json\n")
    assert list(Spool.rows(segment)) == ROWS
    assert "line 4 is damaged" in caplog.text


def test_refused_rows_are_kept_with_the_reason(tmp_path):
    spool = Spool(tmp_path)
    spool.dead("predictions", {"request_id": "bad"}, ValueError("no NUL\nsecond line"))
    assert spool.dead_rows() == 1
    assert '"error": "ValueError: no NUL"' in spool.dead_path.read_text()


def test_each_store_has_its_own_spool(monkeypatch, tmp_path):
    monkeypatch.delenv("WORKBENCH_SPOOL_DIR", raising=False)
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    a, b = directory_for("sqlite:///a.db"), directory_for("postgresql://x@h/db")
    assert a != b and a.parent == b.parent == tmp_path / "spool"
    monkeypatch.setenv("WORKBENCH_SPOOL_DIR", str(tmp_path / "elsewhere"))
    assert directory_for("sqlite:///a.db").parent == tmp_path / "elsewhere"
