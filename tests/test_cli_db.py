"""``workbench db`` as a user runs it (real subprocesses on real SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from test_migrate import at_revision, empty_store, kept, plain

from workbench import migrate

CLI = [sys.executable, "-m", "workbench.cli"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> Iterator[str]:
    with empty_store(request, tmp_path) as url:
        yield url


def run(*args: str, check: bool = True, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=os.environ | (env or {}), capture_output=True,
                          text=True, check=check, timeout=120)


def test_history_lists_every_revision_oldest_first_and_marks_head():
    lines = run("db", "history").stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == [s.revision for s in migrate.revisions()]
    assert lines[0].startswith("0001  ") and "aggregates" in lines[1]
    assert lines[-1].startswith(f"{migrate.head()} (head)  ")


def test_upgrade_makes_a_fresh_store_and_current_prints_the_revision(store_url):
    head = migrate.head()
    assert run("db", "current", "--db", store_url).stdout.startswith("none (an empty store")
    out = run("db", "upgrade", "--db", store_url).stdout
    assert f"from nothing (empty) to revision {head} (head)" in out
    assert run("db", "current", "--db", store_url).stdout == f"{head} (head)\n"
    assert "nothing to do" in run("db", "upgrade", "--db", store_url).stdout


def test_a_store_made_before_migrations_fails_clearly_until_upgraded(store_url):
    old = at_revision(store_url, "0001", stamped=False)
    rows = kept(old)
    refused = run("keys", "list", "--db", store_url, check=False)
    assert refused.returncode == 2 and refused.stdout == ""
    assert "error: the event store at " in refused.stderr
    assert "before schema migrations" in refused.stderr and "Traceback" not in refused.stderr
    assert f"workbench db upgrade --db {plain(store_url).url.render_as_string()}" in (
        refused.stderr.replace("'", ""))

    out = run("db", "upgrade", "--db", store_url).stdout
    assert "made before migrations: its tables are revision 0001, stamped" in out
    assert f"from 0001 to revision {migrate.head()} (head)" in out
    assert kept(old) == rows
    assert "bot" in run("keys", "list", "--db", store_url).stdout
    old.dispose()


def test_current_names_an_older_and_a_newer_revision(store_url):
    eng = at_revision(store_url, "0001")
    assert run("db", "current", "--db", store_url).stdout.startswith(
        f"0001 (behind this workbench's {migrate.head()}: workbench db upgrade --db ")
    with eng.begin() as conn:
        conn.execute(sa.text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = 'ffff'"))
    assert "a newer workbench migrated it" in run("db", "current", "--db", store_url).stdout
    refused = run("db", "upgrade", "--db", store_url, check=False)
    assert refused.returncode == 2 and "migrated it" in refused.stderr
    eng.dispose()


def test_the_default_store_needs_no_db_option(tmp_path):
    env = {"WORKBENCH_HOME": str(tmp_path)}
    env_without_url = {k: v for k, v in os.environ.items() if k != "WORKBENCH_DB_URL"}
    at_revision(f"sqlite:///{tmp_path / 'events.db'}", "0001").dispose()
    refused = subprocess.run([*CLI, "keys", "list"], env=env_without_url | env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert refused.stderr.rstrip().endswith(
        f"needs revision {migrate.head()}. Upgrade it with: workbench db upgrade")
    upgraded = subprocess.run([*CLI, "db", "upgrade"], env=env_without_url | env,
                              capture_output=True, text=True, timeout=120, check=True)
    assert str(tmp_path / "events.db") in upgraded.stdout
    assert "bot" in subprocess.run([*CLI, "keys", "list"], env=env_without_url | env,
                                   capture_output=True, text=True, timeout=120).stdout
