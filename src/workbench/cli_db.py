"""``workbench db``: the event store's schema revision (:mod:`workbench.migrate`).

    workbench db upgrade [--db URL]
    workbench db current [--db URL]
    workbench db history

Every service, and every other command, creates the tables of an empty store by itself,
and refuses a store at another revision than its own with the command to run: ``upgrade``
(safe to run while replicas start; a store made before migrations is recognised and
stamped first). The database is ``--db``, default ``$WORKBENCH_DB_URL`` or the SQLite file
under ``$WORKBENCH_HOME``: the one the services use.
"""

from __future__ import annotations

import shlex
from typing import Any

import click

from workbench.cli_common import DB, run


@click.group()
def db() -> None:
    """The event store's schema: upgrade it, show its revision, list the revisions."""


def _engine(db_url: str | None) -> Any:
    """An engine on the store without :func:`workbench.migrate.ensure` (which refuses
    exactly the stores these commands are for)."""
    import sqlalchemy as sa

    from workbench import events

    url = db_url or events.default_url()
    if url.startswith("sqlite"):
        return sa.create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
    return sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)


def _where(eng: Any) -> str:
    return eng.url.render_as_string(hide_password=True)


@db.command("upgrade")
@DB
def upgrade(db_url: str | None) -> None:
    """Bring the store to this workbench's schema revision (creating it if empty)."""
    def go() -> None:
        from workbench import migrate

        eng = _engine(db_url)
        done = migrate.upgrade(eng)
        if done.stamped:
            click.echo(f"the event store at {_where(eng)} was made before migrations: "
                       f"its tables are revision {done.stamped}, stamped")
        start = done.stamped or done.before
        if start == done.after:
            click.echo(f"the event store at {_where(eng)} is at revision {done.after} "
                       "(head): nothing to do")
        else:
            click.echo(f"upgraded the event store at {_where(eng)} from "
                       f"{start or 'nothing (empty)'} to revision {done.after} (head)")
        eng.dispose()
    run(go)


@db.command("current")
@DB
def current(db_url: str | None) -> None:
    """The store's schema revision, and whether it is this workbench's."""
    def go() -> None:
        from workbench import migrate

        eng = _engine(db_url)
        found, head = migrate.current(eng), migrate.head()
        eng.dispose()
        command = "workbench db upgrade" + (f" --db {shlex.quote(_where(eng))}" if db_url
                                           else "")
        if found == head:
            click.echo(f"{found} (head)")
        elif found is None:
            click.echo(f"none (an empty store, or one made before migrations: {command} "
                       f"brings either to {head})")
        elif found in {s.revision for s in migrate.revisions()}:
            click.echo(f"{found} (behind this workbench's {head}: {command})")
        else:
            click.echo(f"{found} (unknown to this workbench, whose newest is {head}: "
                       "a newer workbench migrated it)")
    run(go)


@db.command("history")
def history() -> None:
    """Every schema revision this workbench knows, oldest first."""
    from workbench import migrate

    head = migrate.head()
    for script in migrate.revisions():
        mark = " (head)" if script.revision == head else ""
        click.echo(f"{script.revision}{mark}  {script.doc}")
