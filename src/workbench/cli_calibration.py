"""``workbench check-calibration``: simulation-based calibration of a registered model.

    workbench check-calibration MODEL [--simulations N] [--seed S] [--out DIR]
                                      [--option KEY=VALUE ...] [--import MODULE ...]

Draws N parameter sets and datasets from MODEL's prior predictive, fits each with NUTS,
and tests the ranks of the true parameters among the posterior draws for uniformity
(:mod:`workbench.sbc`). Prints a progress line and a table of p-values, writes
``ranks.png`` (the rank histograms) and ``sbc.json`` (ranks, p-values, settings) into
``--out``, and exits 1 when the model is not calibrated, so a pipeline can stop on it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from workbench.cli_common import console, friendly, parse_options

if TYPE_CHECKING:
    from workbench.sbc import Calibration


def _import(target: str) -> None:
    """Import a module by name, or a ``.py`` file by path, for the models it registers."""
    from workbench.errors import ConfigError

    if target.endswith(".py"):
        path = Path(target)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None or not path.is_file():
            raise ConfigError(f"cannot import {target!r}: no such Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return
    try:
        importlib.import_module(target)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {target!r}: {exc}") from None


@click.command("check-calibration")
@click.argument("model")
@click.option("--simulations", default=200, show_default=True,
              help="Datasets drawn from the prior predictive, each fitted with NUTS.")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", "out_dir", default="sbc", show_default=True,
              type=click.Path(file_okay=False), help="Where ranks.png and sbc.json go.")
@click.option("--warmup", type=int, help="NUTS warmup steps per simulation (default 200).")
@click.option("--draws", type=int,
              help="Posterior draws kept per simulation (default 99; a rank takes draws + 1 "
                   "values, a multiple of the number of bins).")
@click.option("--thin", type=int,
              help="Keep one NUTS step in THIN, so the kept draws are near-independent "
                   "(default 3).")
@click.option("--alpha", default=0.01, show_default=True,
              help="Level of the uniformity test, over all parameters (Bonferroni).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A model option, e.g. robust=true (repeatable).")
@click.option("--import", "imports", multiple=True, metavar="MODULE",
              help="A module or .py file that registers MODEL (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly
def check_calibration(model: str, simulations: int, seed: int, out_dir: str,
                      warmup: int | None, draws: int | None, thin: int | None, alpha: float,
                      options: tuple[str, ...], imports: tuple[str, ...],
                      as_json: bool) -> None:
    """Simulation-based calibration of MODEL (logistic, softmax, linear, or a registered
    one): exit 1 when its rank histograms are not uniform."""
    import jax

    from workbench import sbc

    for target in imports:
        _import(target)
    sampler = {"warmup": warmup, "draws": draws, "thin": thin}
    config = sbc.SBCConfig(simulations=simulations, alpha=alpha,
                           **{k: v for k, v in sampler.items() if v is not None})
    err = console(stderr=True)
    opts = sbc.model_options(model, parse_options(options), config)
    err.print(f"calibrating [bold]{model}[/] {opts}: {simulations} simulations "
              f"({config.rows} rows x {config.features} features), NUTS {config.warmup} "
              f"warmup + {config.draws} draws thinned by {config.thin}")

    def progress(done: int, total: int) -> None:
        err.print(f"  fitted {done}/{total} simulations")

    result = sbc.check(jax.random.PRNGKey(seed), model, options=opts, config=config,
                       progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sbc.figure(result).savefig(out / "ranks.png", dpi=100)
    summary = result.to_dict() | {"seed": seed}
    (out / "sbc.json").write_text(json.dumps(summary, indent=1))
    if as_json:
        click.echo(json.dumps({k: v for k, v in summary.items() if k != "ranks"}))
    else:
        _print(result, out)
    if not result.passed:
        sys.exit(1)


def _print(result: Calibration, out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"SBC: {result.model}, {result.config.simulations} simulations, "
                        f"{result.config.n_bins} rank bins", show_header=True)
    for col in ("parameter", "chi-square p", "adjusted p", "verdict"):
        table.add_column(col)
    for name, p in result.p_values.items():
        adjusted = result.adjusted[name]
        table.add_row(name, f"{p:.3g}", f"{adjusted:.3g}",
                      "ok" if adjusted >= result.config.alpha else "[bold red]NOT UNIFORM[/]")
    c = console()
    c.print(table)
    c.print(f"divergent transitions: {result.divergences}; {result.seconds:.1f} s; "
            f"histograms {out / 'ranks.png'}, ranks {out / 'sbc.json'}")
    c.print("calibrated" if result.passed else
            f"[bold red]NOT calibrated[/] at alpha {result.config.alpha} (Bonferroni over "
            f"{len(result.p_values)} parameters)")
