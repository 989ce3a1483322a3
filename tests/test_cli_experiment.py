"""`workbench experiment`: the lifecycle from the command line, on a real SQLite store,
as a user runs it (a real subprocess per command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from workbench import control, events
from workbench.config import parse

CLI = [sys.executable, "-m", "workbench.cli", "experiment"]
CONFIG = parse({"name": "cli-exp", "arms": [{"name": "control", "model": "m1"},
                                            {"name": "treatment", "model": "m2"}]})


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    eng = events.engine(url)
    events.save_config(eng, CONFIG.name, CONFIG.to_config())
    control.ensure(eng, CONFIG)
    return url


def run(*args: str, db: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args, "--db", db], capture_output=True, text=True,
                          check=check, timeout=120, env=os.environ | {"USER": "tester"})


def test_actions_print_the_new_version_last_and_are_audited_with_the_user(db):
    assert run("pause", "cli-exp", "--reason", "incident 7", db=db).stdout.splitlines()[-1] \
        == "2"
    assert run("ramp", "treatment", "0.2", db=db).stdout.splitlines()[-1] == "3"  # the only
    state = json.loads(run("resume", "--json", db=db).stdout)
    assert state["status"] == "running" and state["weights"]["treatment"] == pytest.approx(0.2)
    audit = json.loads(run("audit", "cli-exp", "--json", db=db).stdout)
    assert [r["action"] for r in audit] == ["resume", "ramp", "pause", "start"]
    assert audit[2]["reason"] == "incident 7" and audit[0]["actor"].startswith("cli:")


def test_refusals_say_why_and_exit_2(db):
    out = run("resume", db=db, check=False)
    assert out.returncode == 2 and "is running, not paused" in out.stderr
    out = run("conclude", db=db, check=False)  # no outcomes: nothing decided
    assert out.returncode == 2 and "no arm of 'cli-exp' is decided yet" in out.stderr
    assert "--winner ARM" in out.stderr
    out = run("ramp", "treatment", "lots", db=db, check=False)
    assert out.returncode == 2 and "invalid weight 'lots'" in out.stderr
    out = run("pause", "nope", db=db, check=False)
    assert out.returncode == 2 and "no experiment 'nope'" in out.stderr
    done = json.loads(run("conclude", "--winner", "treatment", "--json", db=db).stdout)
    assert (done["status"], done["winner"]) == ("concluded", "treatment")
    status = json.loads(run("status", "--json", db=db).stdout)
    assert status["state"]["status"] == "concluded" and status["readout"]["arms"]
    assert "every guardrail holds" in run("check", db=db).stdout
