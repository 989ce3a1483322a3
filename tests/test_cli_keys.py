"""``workbench keys`` as a user runs it (real subprocesses on a temporary event store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from workbench import events, keys

CLI = [sys.executable, "-m", "workbench.cli", "keys"]


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'events.db'}"


def run(*args: str, db: str, check: bool = True, pepper: str | None = "cli-pepper"
        ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_KEY_PEPPER"}
    env |= {"WORKBENCH_KEY_PEPPER": pepper} if pepper else {}
    return subprocess.run([*CLI, *args, "--db", db], env=env, capture_output=True, text=True,
                          check=check, timeout=120)


def test_create_prints_the_key_last_once_and_it_verifies(db, monkeypatch):
    out = run("create", "ci-bot", "--scope", "predict", "--scope", "feedback",
              "--rate-limit", "10/second", db=db)
    lines = out.stdout.strip().splitlines()
    key = lines[-1]
    assert key.startswith("wb_") and out.stdout.count(key) == 1 and key not in out.stderr
    assert "predict, feedback" in lines[0] and "10/second" in lines[0]
    monkeypatch.setenv("WORKBENCH_KEY_PEPPER", "cli-pepper")
    found = keys.verify(events.engine(db), key)
    assert found == keys.Principal("key:ci-bot", frozenset({"predict", "feedback"}),
                                   "10/second")


def test_list_shows_no_secret_and_revoke_refuses_the_key(db, monkeypatch):
    key = run("create", "a", "--scope", "admin", db=db).stdout.strip().splitlines()[-1]
    run("create", "b", "--scope", "batch", db=db)
    listed = run("list", db=db).stdout
    assert "a" in listed and "admin" in listed and "batch" in listed
    assert key not in listed and key.split("_", 2)[2] not in listed
    rows = json.loads(run("list", "--json", db=db).stdout)
    assert [r["name"] for r in rows] == ["a", "b"] and "hash" not in rows[0]
    revoked = run("revoke", "a", db=db)
    assert "revoked API key 'a'" in revoked.stdout and "within 5 s" in revoked.stdout
    when = json.loads(run("list", "--json", db=db).stdout)[0]["revoked"]
    assert time.time() - 300 < when <= time.time()  # seconds since the epoch, just now
    monkeypatch.setenv("WORKBENCH_KEY_PEPPER", "cli-pepper")
    assert keys.verify(events.engine(db), key) is None


def test_mistakes_are_one_clear_line_and_status_2(db):
    bad = run("create", "x", "--scope", "predict", "--rate-limit", "fast", db=db, check=False)
    assert bad.returncode == 2 and "invalid rate limit 'fast'" in bad.stderr
    assert run("create", "x", "--scope", "root", db=db, check=False).returncode == 2
    run("create", "x", "--scope", "predict", db=db)
    again = run("create", "x", "--scope", "predict", db=db, check=False)
    assert again.returncode == 2 and "exists already" in again.stderr
    missing = run("revoke", "nobody", db=db, check=False)
    assert missing.returncode == 2 and "no API key named 'nobody'" in missing.stderr
    assert run("list", db=f"{db}-empty").stdout.startswith("no API keys")


def test_without_a_pepper_it_works_and_warns(db):
    out = run("create", "local", "--scope", "predict", db=db, pepper=None)
    assert "WORKBENCH_KEY_PEPPER is not set" in out.stderr
    assert out.stdout.strip().splitlines()[-1] not in out.stderr
