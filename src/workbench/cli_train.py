"""``workbench train``: fit a model on a bundled dataset, a CSV, or a Feast feature
service (point-in-time correct), store it, and print its tag last."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import click

from workbench.cli_common import console as _console
from workbench.cli_common import friendly as _friendly
from workbench.cli_common import parse_options as _parse_options


@click.command()
@click.argument("model")
@click.option("--dataset", help="A bundled dataset: breast_cancer, iris, wine, diabetes.")
@click.option("--csv", "csv_path", type=click.Path(exists=True, dir_okay=False),
              help="A CSV file instead of a bundled dataset (needs --target).")
@click.option("--target", help="The outcome column of --csv or --entities.")
@click.option("--features", "service", metavar="FEATURE_SERVICE",
              help="Train on a Feast feature service (needs --entities and --target).")
@click.option("--entities", type=click.Path(exists=True, dir_okay=False),
              help="Parquet/CSV of entity keys, event_timestamp and --target: each row "
                   "gets its features as of its timestamp (point-in-time correct).")
@click.option("--feature-repo", type=click.Path(file_okay=False),
              help="The Feast repository (default WORKBENCH_FEATURE_REPO).")
@click.option("--name", help="Name in the model store (default MODEL-DATASET).")
@click.option("--alias", help="Point this alias (e.g. champion) at the new model.")
@click.option("--force", is_flag=True, help="Set --alias even if diagnostics fail.")
@click.option("--samples", default=1000, show_default=True, help="Draws per chain.")
@click.option("--warmup", default=500, show_default=True, help="Warmup steps per chain.")
@click.option("--chains", default=2, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--test-fraction", default=0.2, show_default=True,
              help="Rows held out for scoring.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A model option, e.g. robust=true or prior_scale=0.5 (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_friendly
def train(model: str, dataset: str | None, csv_path: str | None, target: str | None,
          service: str | None, entities: str | None, feature_repo: str | None,
          name: str | None, alias: str | None, force: bool, samples: int, warmup: int,
          chains: int, seed: int, test_fraction: float, options: tuple[str, ...],
          as_json: bool) -> None:
    """Fit MODEL (logistic, softmax, linear, or a registered one) and store it."""
    import numpyro

    numpyro.set_host_device_count(min(chains, os.cpu_count() or 1))
    import warnings

    from workbench import datasets, store
    from workbench.fit import DiagnosticsWarning, SamplerConfig, fit

    err = _console(stderr=True)
    spec = None
    if service:
        from workbench.features import dataset as feature_dataset

        if not (entities and target):
            raise click.UsageError("--features needs --entities PATH and --target COLUMN")
        data, spec, dropped = feature_dataset(service, entities, target, repo=feature_repo)
        err.print(f"features: {service} ({len(spec.names)} features, fingerprint "
                  f"{spec.fingerprint[:19]}); {dropped} entity row(s) left out (no value as "
                  "of their timestamp)")
    else:
        data = datasets.load(dataset, csv=csv_path, target=target)
    err.print(f"fitting [bold]{model}[/] on {data.name}: {len(data)} rows, "
              f"{len(data.feature_names)} features, {chains} chain(s) x "
              f"({warmup} warmup + {samples} draws)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DiagnosticsWarning)
        posterior = fit(model, data, name=name, options=_parse_options(options),
                        config=SamplerConfig(warmup=warmup, samples=samples, chains=chains,
                                             seed=seed, test_fraction=test_fraction))
    if spec is not None:
        posterior = dataclasses.replace(posterior, features=spec.to_dict())
    for w in caught:
        if issubclass(w.category, DiagnosticsWarning):
            err.print(f"[bold yellow]warning:[/] {w.message}")
    tag = store.save(posterior)
    aliased = None
    if alias:
        from workbench.errors import DiagnosticsRefused

        try:
            store.set_alias(alias, tag, force=force)
            aliased = alias
        except DiagnosticsRefused as exc:
            err.print(f"[bold yellow]not aliased:[/] {exc.message}; {exc.detail['hint']}")
    if as_json:
        click.echo(json.dumps({"tag": tag, "alias": aliased,
                               "diagnostics": posterior.diagnostics,
                               "scores": posterior.scores}, default=str))
    else:
        _print_fit(posterior, aliased)
    click.echo(tag)


def _print_fit(posterior: Any, alias: str | None) -> None:
    from rich.table import Table

    d, s = posterior.diagnostics, posterior.scores
    table = Table(title="diagnostics", show_header=True)
    for col in ("max R-hat", "min bulk ESS", "min tail ESS", "divergences", "verdict"):
        table.add_column(col)
    table.add_row(f"{d['max_rhat']:.3f}", f"{d['min_ess_bulk']:.0f}", f"{d['min_ess_tail']:.0f}",
                  str(d["divergences"]), "ok" if d["ok"] else "FAILED: " + "; ".join(d["failures"]))
    console = _console()
    console.print(table)
    console.print(held_out(s))
    if s.get("reliability"):
        what = (f"P({posterior.target_names[-1]})" if posterior.kind == "binary"
                else "predicted class")
        bins = Table(title=f"held-out reliability, {what}")
        for col in ("bin", "rows", "predicted", "observed"):
            bins.add_column(col, justify="right")
        for b in s["reliability"]:
            bins.add_row(f"{b['lo']:.1f}-{b['hi']:.1f}", str(b["rows"]), f"{b['predicted']:.3f}",
                         f"{b['observed']:.3f}")
        console.print(bins)
    if alias:
        console.print(f"alias {alias} -> this model")


def held_out(scores: dict[str, Any]) -> str:
    """The held-out line: each score, and the calibration said in words (90% interval
    coverage against its target for a regression, the ECE for a classifier)."""
    from workbench import calibration as c

    if not scores:
        return "held-out: no rows held out"
    shown = [f"{k} {v:.4g}" for k, v in scores.items()
             if isinstance(v, float) and k not in ("coverage_90", "ece")]
    if "coverage_90" in scores:
        verdict, chance = c.coverage_band(scores["coverage_90"], scores["rows"])
        shown.append(f"90% interval coverage {scores['coverage_90']:.1%} (target "
                     f"{c.COVERAGE_TARGET:.0%} ± {c.COVERAGE_TOLERANCE:.0%}: {verdict}; "
                     f"± {chance:.1%} by chance on {scores['rows']} rows)")
    if "ece" in scores:
        shown.append(f"expected calibration error {scores['ece']:.3f} "
                     f"({c.RELIABILITY_BINS} equal-width bins)")
    return f"held-out ({scores.get('rows', 0)} rows): " + ", ".join(shown)
