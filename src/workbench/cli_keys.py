"""``workbench keys``: API keys for the services, in the event store's database.

    workbench keys create NAME --scope predict [--scope feedback ...] [--rate-limit 10/second]
    workbench keys list
    workbench keys revoke NAME

``create`` prints the key as the last line of standard output, once: only its hash is
stored (peppered with ``$WORKBENCH_KEY_PEPPER``, which the services must share). Every
service stops accepting a revoked key within ``$WORKBENCH_KEY_CACHE_SECONDS`` (default 5).
The database is ``--db``, default ``$WORKBENCH_DB_URL`` or the SQLite file under
``$WORKBENCH_HOME``: the one the services use.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from workbench.cli_common import DB, run
from workbench.keys import SCOPES


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (scopes: predict, feedback, batch, admin)."""


def _engine(db_url: str | None) -> Any:
    from workbench import events

    return events.engine(db_url)


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@keys.command("create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(SCOPES), help="A scope the key grants (repeat for more).")
@click.option("--rate-limit", help="This key's own limit in the limits library's notation, "
                                   "e.g. '10/second' (default: each route group's).")
@DB
def create(name: str, scopes: tuple[str, ...], rate_limit: str | None,
           db_url: str | None) -> None:
    """Create the key NAME; prints it last, once (store it now: it cannot be shown again)."""
    def go() -> None:
        from workbench import keys as _keys

        key = _keys.create(_engine(db_url), name, scopes, rate_limit=rate_limit)
        limit = rate_limit or "each route group's default"
        click.echo(f"created API key {name!r}: scopes {', '.join(_keys.check_scopes(scopes))}"
                   f"; rate limit {limit}")
        click.echo("It is shown once, below; only its hash is kept. Send it as "
                   "'Authorization: Bearer KEY' or 'X-API-Key: KEY'.")
        click.echo(key)
    run(go)


@keys.command("list")
@DB
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(db_url: str | None, as_json: bool) -> None:
    """Every key: name, public id, scopes, rate limit, created, revoked (no secrets)."""
    def go() -> None:
        from workbench import keys as _keys

        rows = _keys.list_keys(_engine(db_url))
        if as_json:
            click.echo(json.dumps(rows))
            return
        if not rows:
            click.echo("no API keys (workbench keys create NAME --scope predict)")
            return
        header = f"{'name':24} {'id':12} {'scopes':32} {'rate limit':14} {'created':19} revoked"
        click.echo(header)
        for r in rows:
            click.echo(f"{r['name']:24} {r['key_id']:12} {','.join(r['scopes']):32} "
                       f"{r['rate_limit'] or '-':14} {_when(r['created']):19} "
                       f"{_when(r['revoked'])}")
    run(go)


@keys.command("revoke")
@click.argument("name")
@DB
def revoke(name: str, db_url: str | None) -> None:
    """Revoke the key NAME (services refuse it within a few seconds)."""
    def go() -> None:
        from workbench import keys as _keys

        row = _keys.revoke(_engine(db_url), name)
        cache = _keys.KeyCache(None).ttl
        click.echo(f"revoked API key {name!r} at {_when(row['revoked'])}; every service "
                   f"refuses it within {cache:g} s")
    run(go)
