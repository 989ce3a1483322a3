"""``workbench models``: list, show, alias, roll back, export and import the model store's
posteriors."""

from __future__ import annotations

import json

import click

from workbench.cli_common import console as _console
from workbench.cli_common import friendly as _friendly


@click.group()
def models() -> None:
    """List, inspect, alias, roll back, export and import stored posteriors."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def models_list(as_json: bool) -> None:
    """Every workbench model in the store, newest first."""
    from dataclasses import asdict

    from rich.table import Table

    from workbench import store

    rows = store.list_models()
    if as_json:
        click.echo(json.dumps([asdict(m) for m in rows], default=str))
        return
    if not rows:
        click.echo(f"no workbench models in {store.home()}; fit one with `workbench train`")
        return
    table = Table(show_header=True)
    for col in ("tag", "model", "kind", "created", "diagnostics", "aliases"):
        table.add_column(col)
    for m in rows:
        table.add_row(m.tag, m.model, m.kind, m.created, "ok" if m.diagnostics_ok else "FAILED",
                      ", ".join(m.aliases))
    _console().print(table)


@models.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def models_show(ref: str, as_json: bool) -> None:
    """Everything a stored posterior says about itself (REF: alias, tag or name)."""
    from workbench import store

    posterior = store.get(ref)
    out = {"tag": store.resolve(ref)} | posterior.attrs() | {
        "aliases": [a for a, t in store.aliases().items() if t == store.resolve(ref)],
        "draws": posterior.n_draws}
    if as_json:
        click.echo(json.dumps(out, default=str))
        return
    from rich.pretty import Pretty

    _console().print(Pretty(out))


@models.command("alias")
@click.argument("alias")
@click.argument("ref")
@click.option("--force", is_flag=True, help="Even if the model's diagnostics failed.")
@_friendly
def models_alias(alias: str, ref: str, force: bool) -> None:
    """Point ALIAS at REF (a tag, a name, or another alias)."""
    from workbench import store

    tag = store.set_alias(alias, ref, force=force)
    click.echo(f"{alias} -> {tag}", err=True)
    click.echo(tag)


@models.command("rollback")
@click.argument("alias")
@_friendly
def models_rollback(alias: str) -> None:
    """Point ALIAS back at its previous target."""
    from workbench import store

    tag = store.rollback(alias)
    click.echo(f"{alias} -> {tag}", err=True)
    click.echo(tag)


@models.command("export")
@click.argument("ref")
@click.argument("url")
@_friendly
def models_export(ref: str, url: str) -> None:
    """Export REF to URL (a folder, a path, or an FS URL such as s3://bucket/key)."""
    from workbench import store

    click.echo(store.export(ref, url))


@models.command("import")
@click.argument("url")
@_friendly
def models_import(url: str) -> None:
    """Import a model exported with `workbench models export`; prints its tag."""
    from workbench import store

    click.echo(store.import_(url))
