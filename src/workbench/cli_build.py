"""``workbench build predictor|experiment``: bentos from the model store."""

from __future__ import annotations

import click

from workbench.cli_common import friendly as _friendly


@click.group()
def build() -> None:
    """Build bentos (the tag is the last line printed)."""


@build.command("predictor")
@click.option("--model", "models", multiple=True, metavar="ALIAS_OR_TAG",
              help="A model to serve (repeatable; the first is the default). "
                   "Default: champion.")
@click.option("--gpu", is_flag=True, help="Declare a GPU and install JAX's CUDA wheels.")
@click.option("--remote", is_flag=True,
              help="Build without a model: import it at startup from $WORKBENCH_MODEL_URL.")
@click.option("--version", "version_", help="The bento version (default: generated).")
@_friendly
def build_predictor(models: tuple[str, ...], gpu: bool, remote: bool,
                    version_: str | None) -> None:
    """Build the Predictor bento; aliases are resolved to tags now."""
    from workbench.build import build_predictor as _build

    click.echo(_build(list(models), gpu=gpu, remote=remote, version_=version_))


@build.command("experiment")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="Experiment YAML (default: $WORKBENCH_EXPERIMENT, else champion vs "
                   "challenger).")
@click.option("--arms", type=click.Choice(["in-process", "predictor"]),
              help="Serve the arms' models in the gateway's process, or in a Predictor "
                   "process of their own (GPU workers, isolation); frozen into the bento "
                   "(default: $WORKBENCH_ARMS, else in-process).")
@click.option("--version", "version_", help="The bento version (default: generated).")
@_friendly
def build_experiment(config_path: str | None, arms: str | None, version_: str | None) -> None:
    """Build the experiment gateway bento (with every arm's model)."""
    from workbench.build import build_experiment as _build

    click.echo(_build(config_path, arms=arms, version_=version_))
