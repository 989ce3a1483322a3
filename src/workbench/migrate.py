"""The event store's schema version: which revision a database is at, and bringing it to
the one this code needs.

The revisions are Alembic scripts in ``workbench/migrations/versions``, written by hand in
Alembic operations; :func:`head` is the newest. Alembic is driven from here, with a
:class:`~alembic.config.Config` built in code (users need no ``alembic.ini``).

:func:`ensure`, which :func:`workbench.events.engine` calls on every engine it makes,
costs one small query when the store is at head. It creates the tables of an empty
database, and refuses any other store with a :class:`~workbench.errors.SchemaError` that
names the command to run, ``workbench db upgrade``, which is :func:`upgrade`: a store is
never altered behind its operator's back. Both migrate inside one transaction that first
takes a lock (PostgreSQL: ``pg_advisory_xact_lock``; SQLite: ``BEGIN EXCLUSIVE``) and then
reads the version again, so that replicas starting together on a fresh store migrate it
once and the others find it done. A store made before migrations (by
``metadata.create_all``, with no ``alembic_version`` table) is recognised by its tables
and stamped with the revision they match before it is upgraded.
"""

from __future__ import annotations

import functools
import logging
import shlex
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import Script, ScriptDirectory

from workbench.errors import NewerSchema, SchemaError
from workbench.home import default_url

logger = logging.getLogger("workbench.migrate")

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"
_PG_LOCK = 0x776F726B62656E63  # pg_advisory_xact_lock's key: b"workbenc" as a bigint
# Alembic's `op` and `context` are module globals while a migration runs: one at a time
# per process (the database lock serialises processes, this lock threads).
_ALEMBIC = threading.Lock()

Tables = dict[str, frozenset[str]]  # table name -> its column names


class Upgraded(NamedTuple):
    """What :func:`upgrade` did."""

    before: str | None
    """The revision found; None for an empty store or one made before migrations."""
    stamped: str | None
    """The revision a store made before migrations was recognised as, else None."""
    after: str
    """The store's revision now."""


def config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration for the event store's migrations.

    Parameters
    ----------
    connection
        The connection that ``migrations/env.py`` runs the migrations on, inside its
        transaction; None for what needs no database (history, new revisions).

    Returns
    -------
    alembic.config.Config
        ``script_location`` at the package's ``migrations`` folder.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    """The revision this code needs: the newest in ``migrations/versions``."""
    found = _script().get_current_head()
    assert found is not None, "workbench/migrations/versions holds no revision"
    return found


def revisions() -> list[Script]:
    """Every revision, oldest first (``.revision``, ``.doc``)."""
    return list(reversed(list(_script().walk_revisions())))


def current(eng: sa.Engine) -> str | None:
    """The store's revision; None when it has none (an empty store, or one made before
    migrations)."""
    with eng.connect() as conn:
        return _version(conn)


def ensure(eng: sa.Engine) -> None:
    """Make sure the store is at :func:`head`; create the tables of an empty one.

    Parameters
    ----------
    eng
        The event store.

    Raises
    ------
    SchemaError
        The store has tables but is at an older revision, or has no revision (made by a
        workbench before migrations): ``workbench db upgrade`` brings it to head.
    NewerSchema
        The store is at a revision this code does not know: a newer workbench migrated it.
    """
    target = head()
    try:
        with eng.connect() as conn:
            found = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    except sa.exc.DBAPIError:  # no version table: the locked path below tells why
        found = []
    if [tuple(row) for row in found] == [(target,)]:
        return
    with _locked(eng) as conn:  # another replica may have migrated it meanwhile
        version = _version(conn)
        if version == target:
            return
        if version is None and not _tables(conn):
            _upgrade(conn, target)
            logger.info("created the event store's tables at %s (schema revision %s)",
                        _where(eng), target)
            return
        if version is not None and version not in _known():
            raise _newer(eng, version)
        raise SchemaError(
            f"the event store at {_where(eng)} "
            + ("was made by an earlier workbench, before schema migrations (it has tables "
               "but no schema revision)" if version is None
               else f"is at schema revision {version}")
            + f"; this workbench needs revision {target}. Upgrade it with: {_command(eng)}")


def upgrade(eng: sa.Engine, revision: str = "head") -> Upgraded:
    """Bring the store to ``revision``: what ``workbench db upgrade`` runs.

    A store made before migrations is first stamped with the revision its tables match.
    Replicas may call this at once: the first migrates, the others find it done.

    Parameters
    ----------
    eng
        The event store.
    revision
        Where to go (default: :func:`head`).

    Returns
    -------
    Upgraded
        The revision found, the one stamped (if any), and the one reached.

    Raises
    ------
    NewerSchema
        The store is at a revision this code does not know.
    SchemaError
        A store without a revision whose tables match none of this code's revisions, or an
        unknown ``revision``. (A ``revision`` the store is past already changes nothing.)
    """
    from alembic.util import CommandError

    with _locked(eng) as conn:
        before = _version(conn)
        stamped = None
        if before is not None and before not in _known():
            raise _newer(eng, before)
        if before is None and _tables(conn):
            stamped = _recognise(eng, conn)
            with _ALEMBIC:
                command.stamp(config(conn), stamped)
            logger.info("stamped the event store at %s made before migrations with "
                        "revision %s (its tables match)", _where(eng), stamped)
        try:
            _upgrade(conn, revision)
        except CommandError as exc:
            raise SchemaError(f"cannot upgrade the event store at {_where(eng)} to "
                              f"{revision!r}: {exc}; expected 'head' or one of this "
                              f"workbench's revisions: {', '.join(_known())}") from exc
        after = _version(conn)
    assert after is not None
    if after != (stamped or before):
        logger.info("upgraded the event store at %s from %s to %s", _where(eng),
                    stamped or before, after)
    return Upgraded(before, stamped, after)


# -- the store ------------------------------------------------------------------------------

@contextmanager
def _locked(eng: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that holds the store's migration lock until it ends."""
    with eng.connect() as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
        elif conn.dialect.name == "sqlite":
            # the driver begins nothing before DDL: this is the transaction, taken with
            # the write lock at once (waiting up to the busy timeout for another writer)
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
        yield conn


def _version(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    return ",".join(sorted(rows)) or None


def _upgrade(conn: sa.Connection, revision: str) -> None:
    with _ALEMBIC:
        command.upgrade(config(conn), revision)


def _columns(conn: sa.Connection, names: Sequence[str] | None = None) -> Tables:
    """The columns of the store's tables (of those in ``names`` only, if given)."""
    inspector = sa.inspect(conn)
    return {t: frozenset(c["name"] for c in inspector.get_columns(t))
            for t in inspector.get_table_names()
            if t != VERSION_TABLE and (names is None or t in names)}


def _tables(conn: sa.Connection) -> Tables:
    """The store's tables that some revision has (a shared PostgreSQL database may hold
    other applications' tables too)."""
    known = sorted({t for tables in _expected().values() for t in tables})
    return _columns(conn, known)


def _recognise(eng: sa.Engine, conn: sa.Connection) -> str:
    """The newest revision whose tables and columns are exactly the store's."""
    found = _tables(conn)
    expected = _expected()
    for revision in reversed(expected):
        if expected[revision] == found:
            return revision
    nearest = min(expected, key=lambda r: len(_differences(expected[r], found)))
    raise SchemaError(
        f"the event store at {_where(eng)} has no schema revision and its tables match "
        f"none of this workbench's revisions ({', '.join(expected)}), so it cannot be "
        f"upgraded safely; compared with revision {nearest}: "
        f"{'; '.join(_differences(expected[nearest], found))}")


def _differences(expected: Tables, found: Tables) -> list[str]:
    out = [f"table {t} missing" for t in sorted(expected.keys() - found.keys())]
    out += [f"unexpected table {t}" for t in sorted(found.keys() - expected.keys())]
    for t in sorted(expected.keys() & found.keys()):
        out += [f"{t}.{c} missing" for c in sorted(expected[t] - found[t])]
        out += [f"unexpected column {t}.{c}" for c in sorted(found[t] - expected[t])]
    return out


@functools.cache
def _expected() -> dict[str, Tables]:
    """Each revision's tables and columns, oldest first, read back from an in-memory
    SQLite database migrated one revision at a time (the scripts are the only record)."""
    eng = sa.create_engine("sqlite://")
    out: dict[str, Tables] = {}
    with eng.connect() as conn:
        for script in revisions():
            with conn.begin():
                _upgrade(conn, script.revision)
                out[script.revision] = _columns(conn)
    eng.dispose()
    return out


def _known() -> list[str]:
    return [s.revision for s in revisions()]


# -- messages -------------------------------------------------------------------------------

def _where(eng: sa.Engine) -> str:
    return eng.url.render_as_string(hide_password=True)


def _command(eng: sa.Engine) -> str:
    """``workbench db upgrade``, with ``--db`` unless the store is the default one."""
    try:
        default = sa.make_url(default_url())
    except OSError:  # an unwritable WORKBENCH_HOME: name the store explicitly
        default = None
    if eng.url == default:
        return "workbench db upgrade"
    return f"workbench db upgrade --db {shlex.quote(_where(eng))}"


def _newer(eng: sa.Engine, version: str) -> NewerSchema:
    return NewerSchema(
        f"the event store at {_where(eng)} is at schema revision {version}, which this "
        f"workbench does not know (its newest is {head()}): a newer workbench migrated it. "
        "Use that workbench's version (or newer) with this store; expected a store at "
        f"revision {head()} or older")


__all__: Sequence[str] = ["MIGRATIONS", "Upgraded", "config", "current", "ensure", "head",
                          "revisions", "upgrade"]
