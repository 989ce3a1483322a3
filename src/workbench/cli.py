"""The ``workbench`` command line.

Commands that create something print its tag as the last line of standard output, so
scripts can capture it: ``TAG=$(workbench train ... | tail -n1)``. Tables go to a
terminal; ``--json`` prints JSON instead. Errors print one line to standard error and
exit with status 2.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")


from workbench.cli_common import console as _console  # noqa: E402
from workbench.cli_common import friendly as _friendly  # noqa: E402
from workbench.cli_common import parse_options as _parse_options  # noqa: E402


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="workbench")
def main() -> None:
    """Bayesian models in production: fit, store, serve, experiment."""


# -- predict -----------------------------------------------------------------------------

@main.command()
@click.argument("ref")
@click.option("--input", "input_path", type=click.File("r"), default="-",
              help="JSON rows (a list, or {\"instances\": [...]}); default standard input.")
@click.option("--interval-mass", default=0.9, show_default=True)
@click.option("--draws", default=0, show_default=True, help="Also return N draws per row.")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def predict(ref: str, input_path: Any, interval_mass: float, draws: int, as_json: bool) -> None:
    """Predict locally (no server) with the posterior behind REF."""
    from workbench import store
    from workbench.errors import InputError
    from workbench.predict import Predictor

    try:
        payload = json.load(input_path)
    except json.JSONDecodeError as exc:
        raise InputError(f"the input is not valid JSON: {exc}") from None
    rows = payload.get("instances") if isinstance(payload, dict) else payload
    predictor = Predictor(store.get(ref))
    records = predictor.predict(rows, interval_mass=interval_mass, draws=draws).records()
    if as_json:
        click.echo(json.dumps({"model": store.resolve(ref), "interval_mass": interval_mass,
                               "predictions": records}))
        return
    _print_predictions(records, interval_mass)


def _print_predictions(records: list[dict[str, Any]], mass: float) -> None:
    from rich.table import Table

    table = Table(show_header=True)
    pct = f"{mass:.0%}"
    for col in ("row", "label", "mean", "std", f"{pct} interval"):
        table.add_column(col)
    for i, r in enumerate(records):
        lo, hi = r["interval"]
        table.add_row(str(i), str(r.get("label", "")), f"{r['mean']:.4g}", f"{r['std']:.3g}",
                      f"[{lo:.4g}, {hi:.4g}]")
    _console().print(table)


# -- serve -------------------------------------------------------------------------------

@main.command()
@click.argument("bento", type=click.Choice(["predictor", "experiment"]))
@click.option("--port", default=3000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Loopback unless told otherwise.")
@click.option("--model", "models", multiple=True, help="predictor: models to serve.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="experiment: the experiment YAML.")
def serve(bento: str, port: int, host: str, models: tuple[str, ...],
          config_path: str | None) -> None:
    """Serve a bento from source with `bentoml serve` (Ctrl+C stops it)."""
    from workbench.build import bentos_dir

    env = dict(os.environ)
    if config_path:
        env["WORKBENCH_EXPERIMENT"] = os.path.abspath(config_path)
    cmd = [os.path.join(os.path.dirname(sys.executable), "bentoml"), "serve",
           f"service:{bento.capitalize()}", "--working-dir", str(bentos_dir() / bento),
           "--host", host, "--port", str(port)]
    if models:
        cmd += ["--arg", "models=" + ",".join(models)]
    os.execve(cmd[0], cmd, env)


@main.command()
@click.option("--port", default=5006, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Loopback unless told otherwise.")
@click.option("--db", "db_url", help="Event store URL (default: $WORKBENCH_DB_URL or SQLite).")
@click.option("--gateway", "gateways", multiple=True, metavar="URL",
              help="A gateway whose event pipeline to show (repeat for replicas; default: "
                   "$WORKBENCH_GATEWAY_URL).")
def dashboard(port: int, host: str, db_url: str | None, gateways: tuple[str, ...]) -> None:
    """Serve the Panel dashboard (Experiments, Latency, Uncertainty, Models, Event
    pipeline)."""
    from workbench.dashboard_serve import serve_command, serve_env

    env = serve_env(dict(os.environ) | ({"WORKBENCH_DB_URL": db_url} if db_url else {})
                    | ({"WORKBENCH_GATEWAY_URL": ",".join(gateways)} if gateways else {}))
    cmd = serve_command(port, host)
    click.echo(f"dashboard: http://{host}:{port}/workbench"
               + (" (log in with an API key's name and value)" if "--auth-module" in cmd
                  else ""), err=True)
    os.execve(cmd[0], cmd, env)


# -- experiments -------------------------------------------------------------------------

@main.command()
@click.option("--url", required=True, help="The experiment gateway, e.g. http://127.0.0.1:3000")
@click.option("--users", default=200, show_default=True, help="Distinct units.")
@click.option("--duration", default=30.0, show_default=True, help="Seconds of traffic.")
@click.option("--rate", default=20.0, show_default=True, help="Requests per second.")
@click.option("--dataset", default="breast_cancer", show_default=True,
              help="Whose held-out rows to send.")
@click.option("--effect", "effects", multiple=True, metavar="ARM=DELTA",
              help="Plant an effect on an arm's outcomes, e.g. challenger=0.1 (repeatable).")
@click.option("--attribute", "attributes", multiple=True, metavar="NAME=V1,V2,...",
              help="A unit attribute sent with every request, each unit keeping one of the "
                   "values (the first the most common), e.g. country=DE,FR,US (repeatable; "
                   "for segment_by).")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_friendly
def simulate(url: str, users: int, duration: float, rate: float, dataset: str,
             effects: tuple[str, ...], attributes: tuple[str, ...], seed: int,
             as_json: bool) -> None:
    """Send realistic traffic to a gateway and feed back outcomes; print a summary."""
    import asyncio

    from workbench.simulate import simulate as _simulate

    planted = {k: float(v) for k, v in _parse_options(effects).items()}
    sent = {k: v.split(",") for k, _, v in (a.partition("=") for a in attributes)}
    summary = asyncio.run(_simulate(url, dataset=dataset, users=users, duration=duration,
                                    rate=rate, effects=planted, seed=seed, attributes=sent,
                                    progress=sys.stderr.isatty() and not as_json))
    out = summary.to_dict()
    if as_json:
        click.echo(json.dumps(out))
        return
    console = _console()
    console.print(f"sent {out['sent']}, ok {out['ok']}, errors {out['errors'] or 0}, "
                  f"feedback {out['feedback']}, fallbacks {out['fallbacks']}")
    console.print("per arm: " + ", ".join(f"{a} {n}" for a, n in sorted(out["arms"].items())))
    console.print(f"latency p50 {out['latency_ms']['p50']:.1f} ms, "
                  f"p99 {out['latency_ms']['p99']:.1f} ms")


@main.command()
@click.argument("experiment")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="The experiment's YAML (default: the config the gateway recorded).")
@click.option("--metric", type=click.Choice(["binary", "continuous", "log_score", "brier"]),
              help="Without --config: the metric (default binary).")
@click.option("--db", "db_url", help="Event store URL (default: $WORKBENCH_DB_URL or SQLite).")
@click.option("--segments", is_flag=True,
              help="Also the binary metric by the config's segment_by attribute, pooled "
                   "beside unpooled.")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def analyze(experiment: str, config_path: str | None, metric: str | None, db_url: str | None,
            segments: bool, as_json: bool) -> None:
    """Print the Bayesian read-out of EXPERIMENT from the event store."""
    from workbench import control, event_reads, events, readout
    from workbench.config import load as load_config
    from workbench.errors import ConfigError
    from workbench.report import print_readout, print_segments

    eng = events.engine(db_url)
    if not event_reads.exists(eng, experiment):
        raise ConfigError(f"no events for experiment {experiment!r}",
                          detail={"experiments": events.experiments(eng)})
    config = load_config(config_path) if config_path else readout.config_of(
        eng, experiment, metric=metric)
    fold, pruned, _ = event_reads.fold_all(  # one pass over the store for both read-outs
        eng, experiment, timeline=control.weights_timeline(eng, experiment),
        segment_by=config.segment_by if segments else None)
    result = readout.read_out(eng, experiment, config=config, fold=fold,
                              pruned=pruned).to_dict()
    if segments:
        from workbench import segment_readout  # JAX and NumPyro: only when asked

        result["segments"] = segment_readout.from_fold(fold, config)
    if as_json:
        click.echo(json.dumps(result, default=str))
        return
    print_readout(result)
    if segments:
        print_segments(result["segments"])


# -- demo --------------------------------------------------------------------------------

@main.command()
@click.option("--samples", default=1000, show_default=True)
@click.option("--warmup", default=500, show_default=True)
@click.option("--chains", default=2, show_default=True)
@click.option("--traffic-seconds", default=20.0, show_default=True)
@click.option("--port", type=int, help="Serve the experiment on this port (default: free).")
@click.option("--dashboard/--no-dashboard", default=False, show_default=True,
              help="End with the dashboard open on the live experiment (until Ctrl+C).")
@_friendly
def demo(samples: int, warmup: int, chains: int, traffic_seconds: float,
         port: int | None, dashboard: bool) -> None:
    """Everything, from nothing, on this machine (see the README)."""
    import numpyro

    numpyro.set_host_device_count(min(chains, os.cpu_count() or 1))
    from workbench import demo as _demo

    made = _demo.run(samples=samples, warmup=warmup, chains=chains, port=port,
                     traffic_seconds=traffic_seconds, console=_console(),
                     keep_serving=dashboard)
    if dashboard:
        _demo.live_dashboard(made, console=_console())
    click.echo(made["experiment"])


@main.command("settings")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def settings_(as_json: bool) -> None:
    """Every WORKBENCH_* setting: its default and its value here (secrets never shown). A
    value that does not parse is refused, naming the variable and what it expects."""
    from workbench import settings

    current = settings.load()
    if as_json:
        click.echo(json.dumps({settings.variable(name): settings.shown(value)
                               for name, value in current}))
        return
    click.echo(settings.table(current))


from workbench.cli_build import build  # noqa: E402  (cli_build.py)
from workbench.cli_calibration import check_calibration  # noqa: E402  (cli_calibration.py)
from workbench.cli_db import db  # noqa: E402  (cli_db.py)
from workbench.cli_events import events  # noqa: E402  (cli_events.py)
from workbench.cli_experiment import experiment  # noqa: E402  (cli_experiment.py)
from workbench.cli_features import features  # noqa: E402  (cli_features.py)
from workbench.cli_keys import keys  # noqa: E402  (cli_keys.py)
from workbench.cli_models import models  # noqa: E402  (cli_models.py)
from workbench.cli_promote import promote  # noqa: E402  (its own module: cli_promote.py)
from workbench.cli_score import score  # noqa: E402  (cli_score.py)
from workbench.cli_stream import stream  # noqa: E402  (cli_stream.py)
from workbench.cli_train import train  # noqa: E402  (cli_train.py)

main.add_command(train)
main.add_command(experiment)
main.add_command(promote)
main.add_command(keys)
main.add_command(build)
main.add_command(models)
main.add_command(events)
main.add_command(db)
main.add_command(features)
main.add_command(score)
main.add_command(stream)
main.add_command(check_calibration)

if __name__ == "__main__":  # pragma: no cover
    main()
