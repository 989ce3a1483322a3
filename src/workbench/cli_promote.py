"""``workbench promote``: point an alias (``champion`` by default) at a model version, and
say exactly how that reaches traffic.

A Predictor served from the store (``bentoml serve service:Predictor --working-dir
bentos/predictor``) follows the move within seconds (:mod:`workbench.follow`). A built
bento is immutable by design (its models were frozen at build time): the new version
reaches traffic by a rebuild, a new image and a rolling update of the Deployment in
``deploy/k8s/predictor.yaml`` (``maxUnavailable: 0``: old pods serve until new ones are
ready). As every command that moves something, it prints the tag last.
"""

from __future__ import annotations

import click

# deploy/k8s: the namespace, the Predictor's Deployment and container, and the image name
# kustomization.yaml gives it (tests/test_cli_promote.py keeps these equal to the files).
NAMESPACE = "workbench"
DEPLOYMENT = "predictor"
CONTAINER = "predictor"
IMAGE = "registry.example.com/workbench/predictor"


def next_steps(alias: str, tag: str, previous: str | None, *, image: str = IMAGE
               ) -> list[str]:
    """What happens now that ``alias`` points at ``tag`` (was ``previous``), as lines."""
    moved = (f"{alias} already points at {tag}" if previous == tag
             else f"{alias}: {previous or '(new alias)'} -> {tag}")
    return [
        moved,
        "",
        "Served from the store (bentoml serve service:Predictor --working-dir "
        f"bentos/predictor --arg models={alias}):",
        f"  follows within seconds: it loads {tag} and compiles it in the background while "
        "the old version answers, then switches; /metadata names the new tag.",
        "",
        "Built bentos serve the models frozen into them at build time; rebuild and roll out:",
        f"  TAG=$(workbench build predictor --model {alias} | tail -n1)",
        f"  IMAGE={image}:${{TAG#*:}}",
        '  bentoml containerize "$TAG" -t "$IMAGE" && docker push "$IMAGE"',
        f'  kubectl -n {NAMESPACE} set image deployment/{DEPLOYMENT} {CONTAINER}="$IMAGE"',
        f"  kubectl -n {NAMESPACE} rollout status deployment/{DEPLOYMENT}",
        f"  (an experiment whose arms name {alias}: workbench build experiment, then the "
        "same for deployment/experiment)",
        "",
    ]


@click.command()
@click.argument("ref", metavar="ALIAS_OR_TAG")
@click.option("--alias", default="champion", show_default=True,
              help="The alias to point at ALIAS_OR_TAG.")
@click.option("--force", is_flag=True, help="Even if the model's diagnostics failed.")
@click.option("--image", default=IMAGE, show_default=True,
              help="The Predictor's image repository, for the printed rollout commands.")
def promote(ref: str, alias: str, force: bool, image: str) -> None:
    """Point ALIAS (default champion) at ALIAS_OR_TAG and print what happens next; the tag
    is the last line."""
    from workbench.cli_common import friendly as _friendly

    _friendly(_promote)(ref, alias, force, image)


def _promote(ref: str, alias: str, force: bool, image: str) -> None:
    from workbench import store

    previous = store.aliases().get(alias)
    tag = store.set_alias(alias, ref, force=force)
    for line in next_steps(alias, tag, previous, image=image):
        click.echo(line)
    click.echo(tag)
