"""The event store's schema migrations against real SQLite files and a real PostgreSQL
server: fresh stores, stores made before migrations, older and newer revisions, and
replicas starting together on one fresh store."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from workbench import events, migrate
from workbench.errors import NewerSchema, SchemaError
from workbench.schema import metadata


@contextmanager
def empty_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty store of the kind ``request.param`` names: a new SQLite file,
    or a new database on the session's PostgreSQL server (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
        return
    server = sa.make_url(request.getfixturevalue("postgres_url"))
    name = f"wb_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> Iterator[str]:
    with empty_store(request, tmp_path) as url:
        yield url


def plain(url: str) -> sa.Engine:
    """An engine without the schema check (what ``workbench db`` uses)."""
    return sa.create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite")
                            else {})


def at_revision(url: str, revision: str, *, stamped: bool = True) -> sa.Engine:
    """A store at ``revision`` with one prediction and one API key in it; without
    ``stamped``, as an earlier workbench's ``create_all`` left it (no ``alembic_version``)."""
    eng = plain(url)
    migrate.upgrade(eng, revision)
    with eng.begin() as conn:
        if not stamped:
            conn.exec_driver_sql(f"DROP TABLE {migrate.VERSION_TABLE}")
        conn.execute(sa.text(
            "INSERT INTO predictions (request_id, ts, experiment, arm, model_tag, status, "
            "n_rows) VALUES ('r1', 1.0, 'exp', 'a', 'm:1', 'ok', 1)"))
        conn.execute(sa.text(
            "INSERT INTO api_keys (name, key_id, hash, scopes, created) "
            "VALUES ('bot', 'k1', 'h', '[\"predict\"]', 2.0)"))
    return eng


def kept(eng: sa.Engine) -> list[tuple]:
    with eng.connect() as conn:
        return [*conn.execute(sa.text("SELECT request_id, experiment FROM predictions")),
                *conn.execute(sa.text("SELECT name, key_id FROM api_keys"))]


def test_head_is_the_newest_revision():
    assert [s.revision for s in migrate.revisions()][:3] == ["0001", "0002", "0003"]
    assert migrate.head() == migrate.revisions()[-1].revision


def test_a_fresh_store_is_made_at_head_with_exactly_the_schema(store_url):
    eng = events.engine(store_url)
    assert migrate.current(eng) == migrate.head()
    inspector = sa.inspect(eng)
    assert set(inspector.get_table_names()) - {migrate.VERSION_TABLE} == set(metadata.tables)
    for table in metadata.sorted_tables:
        assert [c["name"] for c in inspector.get_columns(table.name)] == [
            c.name for c in table.columns], table.name
    with eng.connect() as conn:  # types, nullability, keys, indexes: a column or index
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], f"schema.py and the migrations differ (add a revision): {diff}"
    eng.dispose()


def test_ensure_at_head_costs_one_query(store_url):
    events.engine(store_url).dispose()
    eng = plain(store_url)
    with eng.connect():
        pass  # the first connection's own queries (server version, ...) are not ensure's
    seen: list[str] = []
    sa.event.listen(eng, "before_cursor_execute", lambda *a: seen.append(a[2]))
    migrate.ensure(eng)
    assert seen == [f"SELECT version_num FROM {migrate.VERSION_TABLE}"]
    eng.dispose()


def test_a_store_made_before_migrations_is_refused_then_upgraded_keeping_data(store_url):
    old = at_revision(store_url, "0001", stamped=False)
    rows = kept(old)
    with pytest.raises(SchemaError) as err:
        events.engine(store_url)
    message = str(err.value)
    assert not isinstance(err.value, NewerSchema)
    assert "before schema migrations" in message and f"needs revision {migrate.head()}" in message
    assert "workbench db upgrade --db " in message
    assert migrate.current(old) is None and "aggregates" not in sa.inspect(old).get_table_names()

    done = migrate.upgrade(old)
    assert done == migrate.Upgraded(before=None, stamped="0001", after=migrate.head())
    assert kept(old) == rows
    eng = events.engine(store_url)
    with eng.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    eng.dispose()
    old.dispose()


def test_a_store_made_before_migrations_with_aggregates_is_stamped_0002(store_url):
    old = at_revision(store_url, "0002", stamped=False)
    assert migrate.upgrade(old) == migrate.Upgraded(None, "0002", migrate.head())
    old.dispose()


def test_outcomes_stored_before_0003_are_kept_without_a_covariate(store_url):
    old = at_revision(store_url, "0002")
    with old.begin() as conn:
        conn.execute(sa.text("INSERT INTO outcomes (request_id, ts, experiment, outcome) "
                             "VALUES ('r1', 2.0, 'exp', '1')"))
    assert migrate.upgrade(old) == migrate.Upgraded("0002", None, migrate.head())
    eng = events.engine(store_url)
    data = events.read(eng, "exp")
    assert (data.outcome, data.covariate) == ([1], [None])
    events.write_now(eng, "predictions", [{
        "request_id": "r2", "ts": 3.0, "experiment": "exp", "arm": "a", "model_tag": "m:1",
        "status": "ok", "n_rows": 1}])
    assert events.record_outcome(eng, {"request_id": "r2", "ts": 4.0, "experiment": "exp",
                                       "outcome": 0, "covariate": 2.5})
    assert events.read(eng, "exp").covariate == [None, 2.5]
    eng.dispose()
    old.dispose()


def test_tables_matching_no_revision_are_not_touched(store_url):
    old = at_revision(store_url, "0001", stamped=False)
    with old.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE audit ADD COLUMN extra INTEGER")
    with pytest.raises(SchemaError, match="unexpected column audit.extra"):
        migrate.upgrade(old)
    assert migrate.current(old) is None and "aggregates" not in sa.inspect(old).get_table_names()
    old.dispose()


def test_an_older_revision_is_refused_naming_both_and_the_command(store_url, monkeypatch):
    old = at_revision(store_url, "0001")
    monkeypatch.setenv("WORKBENCH_DB_URL", store_url)  # the default store: no --db needed
    with pytest.raises(SchemaError) as err:
        events.engine()
    assert "is at schema revision 0001" in str(err.value)
    assert f"needs revision {migrate.head()}" in str(err.value)
    assert str(err.value).endswith("Upgrade it with: workbench db upgrade")
    assert migrate.upgrade(old) == migrate.Upgraded("0001", None, migrate.head())
    assert kept(old) == kept(events.engine())
    old.dispose()


def test_a_newer_revision_is_refused(store_url):
    eng = events.engine(store_url)
    with eng.begin() as conn:
        conn.execute(sa.text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = 'ffff'"))
    with pytest.raises(NewerSchema, match="a newer workbench migrated it"):
        events.engine(store_url)
    with pytest.raises(NewerSchema, match="revision ffff"):
        migrate.upgrade(eng)
    assert migrate.current(eng) == "ffff"
    eng.dispose()


def test_upgrade_to_a_revision_behind_the_store_changes_nothing(store_url):
    eng = events.engine(store_url)
    head = migrate.head()
    assert migrate.upgrade(eng, "0001") == migrate.Upgraded(head, None, head)
    with pytest.raises(SchemaError, match="to 'nonsense'.*expected 'head' or one of"):
        migrate.upgrade(eng, "nonsense")
    assert migrate.current(eng) == head
    eng.dispose()


def test_other_applications_tables_do_not_make_a_store_old(store_url):
    eng = plain(store_url)
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE someone_elses (id INTEGER PRIMARY KEY)")
    events.engine(store_url).dispose()
    assert migrate.current(eng) == migrate.head()
    eng.dispose()


def test_replicas_starting_together_on_a_fresh_store_all_succeed(store_url):
    n = 8
    start = threading.Barrier(n)
    errors: list[BaseException] = []

    def replica() -> None:
        try:
            start.wait()
            eng = events.engine(store_url)  # each its own engine, as separate processes
            events.write_now(eng, "predictions", [{
                "request_id": uuid.uuid4().hex, "ts": time.time(), "experiment": "exp",
                "arm": "a", "model_tag": "m:1", "status": "ok", "n_rows": 1}])
            eng.dispose()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    eng = plain(store_url)
    assert migrate.current(eng) == migrate.head()
    assert events.counts(eng, "exp") == {"a": {"predictions": n, "outcomes": 0}}
    eng.dispose()


def test_replica_processes_starting_together_on_a_fresh_store_all_succeed(store_url):
    code = ("import sys; from workbench import events, migrate; "
            "eng = events.engine(sys.argv[1]); print(migrate.current(eng))")
    procs = [subprocess.Popen([sys.executable, "-c", code, store_url], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(4)]
    results = [(p.wait(120), *p.communicate()) for p in procs]
    assert [(rc, out.strip()) for rc, out, _ in results] == [(0, migrate.head())] * 4, [
        err for _, _, err in results]
