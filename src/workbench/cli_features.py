"""``workbench features``: the feature repository and the models trained on it.

    workbench features init [--repo DIR] [--yaml FILE]   the demo's repository, materialised
    workbench features check MODEL [--repo DIR]          skew: definitions since training
    workbench features show MODEL                        the model's feature service

``check`` compares the feature definitions a model was trained on (the fingerprint in its
artifact) with the repository's now, the same check a Predictor makes at startup; it exits
1 when they differ, so a deployment pipeline can stop on it.
"""

from __future__ import annotations

import json

import click

from workbench.cli_common import console, friendly

REPO = click.option("--repo", type=click.Path(file_okay=False),
                    help="The Feast repository (default $WORKBENCH_FEATURE_REPO, else "
                         "$WORKBENCH_HOME/features).")


@click.group()
def features() -> None:
    """Feature management with Feast: the repository, and skew checks of served models."""


@features.command()
@REPO
@click.option("--yaml", "yaml_name", default="feature_store.yaml", show_default=True,
              help="The configuration to use (feature_store.redis.yaml: Redis online store, "
                   "at $WORKBENCH_FEATURE_REDIS).")
@friendly
def init(repo: str | None, yaml_name: str) -> None:
    """Write the demo's feature repository (breast_cancer by patient_id), register its
    definitions and materialise them into the online store; prints the repository path."""
    from workbench import feature_demo
    from workbench.features import repo_path

    err = console(stderr=True)
    path = feature_demo.init_repo(repo_path(repo), yaml=yaml_name,
                                  progress=lambda line: err.print(f"  {line}"))
    click.echo(str(path))


def _spec(ref: str) -> tuple[str, object]:
    from workbench import store
    from workbench.errors import ConfigError
    from workbench.features import FeatureSpec

    tag = store.resolve(ref)
    recorded = store.get(tag).features
    if not recorded:
        raise ConfigError(f"model {tag} was not trained from a feature service",
                          detail={"hint": "workbench train MODEL --features SERVICE "
                                          "--entities PATH --target COLUMN"})
    return tag, FeatureSpec.from_dict(recorded)


@features.command()
@click.argument("model")
@REPO
@click.option("--json", "as_json", is_flag=True)
@friendly
def check(model: str, repo: str | None, as_json: bool) -> None:
    """Does MODEL's feature service still resolve to the definitions it was trained on?"""
    from workbench.features import compare, describe, freshness, open_store, require_feast

    require_feast()
    tag, recorded = _spec(model)
    fs = open_store(repo)
    current = describe(fs, recorded.service)
    problems = compare(recorded, current)
    fresh = freshness(fs, current)
    if as_json:
        click.echo(json.dumps({"model": tag, "service": recorded.service, "ok": not problems,
                               "problems": problems, "fingerprint": {
                                   "trained": recorded.fingerprint,
                                   "now": current.fingerprint}, "freshness": fresh}))
    else:
        out = console()
        out.print(f"{tag}: feature service [bold]{recorded.service}[/], "
                  f"{len(recorded.names)} features")
        for view, f in fresh.items():
            age = f["age_seconds"]
            out.print(f"  {view}: TTL {f['ttl_seconds']:.0f}s, materialised "
                      + ("never" if age is None else f"{age:.0f}s ago"))
        if problems:
            for p in problems:
                out.print(f"[bold red]skew:[/] {p}")
        else:
            out.print(f"[green]ok[/]: definitions match (fingerprint "
                      f"{recorded.fingerprint[:19]})")
    if problems:
        raise SystemExit(1)


@features.command()
@click.argument("model")
@friendly
def show(model: str) -> None:
    """MODEL's feature service, features in order, entity keys and fingerprint (JSON)."""
    tag, spec = _spec(model)
    click.echo(json.dumps({"model": tag} | spec.to_dict(), indent=2))
