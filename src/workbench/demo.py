"""``workbench demo``: the whole path on this machine, from nothing.

1. fit a logistic regression on scikit-learn's breast-cancer data (the champion) and a
   more strongly regularised one (the challenger); print their diagnostics;
2. store both in BentoML's model store and alias them;
3. predict a few held-out rows locally, with their credible intervals;
4. register and materialise the same data as a Feast feature repository (by patient_id;
   skipped without the ``features`` extra) and read a patient's features back online;
5. build the experiment bento (gateway + Predictor + both models) and serve it;
6. send simulated traffic with outcome feedback, and print the Bayesian read-out.

Each step says what it does; the last line of standard output is the experiment's URL
(the server is stopped at the end unless ``keep_serving``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def run(*, samples: int = 1000, warmup: int = 500, chains: int = 2, rows: int = 5,
        traffic_seconds: float = 20.0, rate: float = 25.0, port: int | None = None,
        keep_serving: bool = False, console: Console | None = None) -> dict[str, Any]:
    """Run the demo; returns what it made (tags, the bento, the read-out)."""
    from workbench import datasets, store
    from workbench.fit import SamplerConfig, fit
    from workbench.predict import Predictor

    console = console or Console(highlight=False)

    def step(title: str, what: str) -> None:
        console.print(f"[bold cyan]{title}[/] {what}")

    _upgrade_store(console)
    data = datasets.load("breast_cancer")
    tags = {}
    for i, (alias, options) in enumerate((("champion", {}),
                                          ("challenger", {"prior_scale": 0.3}))):
        step(f"{i + 1}/7 fit", f"{alias}: logistic regression {options or ''} on "
             f"breast_cancer with NUTS ({chains} chains x {warmup} warmup + {samples} draws)")
        started = time.perf_counter()
        posterior = fit("logistic", data, name=f"demo-{alias}", options=options,
                        config=SamplerConfig(warmup=warmup, samples=samples, chains=chains,
                                             seed=i))
        d = posterior.diagnostics
        console.print(f"    done in {time.perf_counter() - started:.0f}s: max R-hat "
                      f"{d['max_rhat']:.3f}, min bulk ESS {d['min_ess_bulk']:.0f}, min tail ESS "
                      f"{d['min_ess_tail']:.0f}, {d['divergences']} divergences -> "
                      + ("[green]ok[/]" if d["ok"] else "[red]FAILED: "
                         + "; ".join(d["failures"]) + "[/]"))
        console.print(f"    held-out accuracy {posterior.scores['accuracy']:.3f}, log "
                      f"predictive density {posterior.scores['lpd']:.3f} per row")
        tags[alias] = store.save(posterior)
        store.set_alias(alias, tags[alias], force=not d["ok"])
        console.print(f"    stored {tags[alias]} as {alias} (model store: {store.home()})")

    step("3/7 predict", f"the {rows} least certain held-out rows, with 90% credible intervals")
    _, test = datasets.split(data, seed=0)
    predictor = Predictor(store.get("champion"))
    predictor.warmup()
    records = predictor.predict(test.X.astype("float32")).records()
    shown = sorted(range(len(records)), key=lambda i: -records[i]["std"])[:rows]
    table = Table("held-out row", "true", "predicted", "P(benign)", "90% interval", "std")
    for i in shown:
        r = records[i]
        lo, hi = r["interval"]
        table.add_row(str(i), data.target_names[int(test.y[i])], r["label"], f"{r['mean']:.3f}",
                      f"[{lo:.3f}, {hi:.3f}]", f"{r['std']:.3f}")
    console.print(table)

    _features(step, console)
    experiment = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    from workbench.settings import load

    s = load()
    config_path = (s.home_dir if "home" in s.model_fields_set
                   else Path(tempfile.gettempdir())) / "demo-experiment.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(
        f"name: {experiment}\narms:\n  - {{name: champion, model: champion, weight: 0.5}}\n"
        "  - {name: challenger, model: challenger, weight: 0.5}\nmetric: log_score\n"
        "decision: {prob_best: 0.95, min_outcomes: 100}\n")
    step("5/7 build", f"the experiment bento (gateway + Predictor + both models), {experiment}")
    from workbench.build import build_experiment

    bento = build_experiment(str(config_path))
    console.print(f"    {bento}")

    step("6/7 serve", f"bentoml serve {bento}, behind access control: an API key for the demo")
    from workbench import access
    from workbench.background import start

    api_key = _demo_key(experiment) if access.enabled() else None
    server = start(bento, port=port, api_key=api_key)
    url = server.url
    try:
        console.print(f"    ready at {url}")
        step("7/7 experiment", f"{traffic_seconds:.0f}s of simulated traffic ({rate:.0f} req/s) "
             "with outcome feedback, then the Bayesian read-out (metric: each model's log "
             "score on the observed outcomes)")
        from workbench.simulate import simulate

        summary = asyncio.run(simulate(url, duration=traffic_seconds, rate=rate,
                                       progress=console.is_terminal, api_key=api_key))
        s = summary.to_dict()
        console.print(f"    sent {s['sent']}, ok {s['ok']}, errors {s['errors'] or 0}, "
                      f"feedback {s['feedback']}; latency p50 {s['latency_ms']['p50']:.1f} ms, "
                      f"p99 {s['latency_ms']['p99']:.1f} ms")
        import httpx

        _wait_flushed(url, server.headers)  # the event log is written off the request path
        readout = httpx.get(url + "/analysis", timeout=60, headers=server.headers).json()
        from workbench.report import print_readout

        print_readout(readout)
        console.print(f"==> act on it (audited; every gateway replica follows within a "
                      f"second): workbench experiment status|ramp|pause|conclude {experiment}"
                      ", or the dashboard's Experiments tab")
    finally:
        if not keep_serving:
            server.stop()
    return {"tags": tags, "bento": bento, "experiment": experiment, "url": url,
            "readout": readout, "server": server}


def _features(step: Callable[[str, str], None], console: Console) -> None:
    """Register and materialise the demo's Feast feature repository (breast_cancer by
    patient_id), then read one patient's features back from the online store."""
    from workbench.errors import ConfigError
    from workbench.features import INSTALL, repo_path, require_feast

    step("4/7 features", "the same data as Feast feature views by patient_id: register the "
         "definitions, materialise them into the online store (SQLite)")
    try:
        require_feast()
    except ConfigError:
        console.print(f"    skipped: Feast is not installed ({INSTALL})")
        return
    from workbench import feature_demo
    from workbench.features import describe, open_store

    repo = feature_demo.init_repo(repo_path(), progress=lambda line: console.print(
        f"    {line}"))
    store = open_store(repo)
    spec = describe(store, feature_demo.SERVICE)
    first = {feature_demo.ENTITY_KEY: feature_demo.FIRST_PATIENT}
    row = store.get_online_features(features=store.get_feature_service(spec.service),
                                    entity_rows=[first]).to_dict()
    shown = ", ".join(f"{n} {row[n][0]:.4g}" for n in spec.names[:3])
    console.print(f"    {spec.service}: {len(spec.names)} features by {list(spec.entity_keys)}"
                  f" in {repo}; online, patient {first[feature_demo.ENTITY_KEY]}: {shown}, ...")
    console.print(f"    train on them: workbench train logistic --features {spec.service} "
                  f"--entities {repo / 'data' / 'labels.parquet'} --target target; then "
                  "POST /predict {\"entities\": [{\"patient_id\": 1000}]} (notebook 04)")


def _demo_key(experiment: str) -> str:
    """An API key with every scope for this demo run (shown once, also to the dashboard's
    login), exported as ``WORKBENCH_API_KEY`` for the traffic the demo sends."""
    from workbench import events, keys

    name = experiment  # unique per run; `workbench keys revoke NAME` when done
    key = keys.create(events.engine(), name, ["predict", "feedback", "batch", "admin"])
    os.environ["WORKBENCH_API_KEY"] = key
    print(f"    API key {name!r} (shown once; the dashboard's login takes the name and the key):"
          f"\n    {key}", file=sys.stderr)
    return key


def _wait_flushed(url: str, headers: dict[str, str], timeout: float = 30.0) -> None:
    """Until every request the gateway served is in the event store (or ``timeout``)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exp = httpx.get(url + "/experiment", timeout=30, headers=headers).json()
        if exp["events_written"]["predictions"] >= exp["counters"]["requests"] + \
                exp["counters"]["shadow"]:
            return
        time.sleep(0.1)


def _upgrade_store(console: Console) -> None:
    """The demo's event store (made by an earlier version, perhaps) brought to the schema
    this code needs: the demo owns it; a production store is upgraded by its operator
    (``workbench db upgrade``)."""
    import sqlalchemy as sa

    from workbench import events, migrate

    eng = sa.create_engine(events.default_url())
    try:
        done = migrate.upgrade(eng)
    finally:
        eng.dispose()
    if done.stamped:
        console.print(f"    event store made before schema migrations: recognised as "
                      f"revision {done.stamped}, now at {done.after}")
    elif done.before and done.before != done.after:
        console.print(f"    event store upgraded from revision {done.before} to {done.after}")


def live_dashboard(made: dict[str, Any], *, console: Console, port: int = 5006,
                   rate: float = 5.0) -> None:
    """Keep the experiment live (a trickle of simulated traffic) and the dashboard open on
    it, printing its URL, until Ctrl+C; then stop everything (each in its own process
    group, through :mod:`workbench.background`)."""
    from workbench.background import launch
    from workbench.dashboard_serve import serve_command, serve_env
    from workbench.ports import free_port, port_free

    port = port if port_free(port) else free_port()
    env = dict(os.environ) | {"WORKBENCH_GATEWAY_URL": made["url"]}  # the pipeline tab
    if made["server"].api_key:
        env["WORKBENCH_API_KEY"] = made["server"].api_key
    logs = Path(tempfile.gettempdir())
    dash = launch(serve_command(port), port=port, env=serve_env(env),
                  log=logs / f"workbench-dashboard-{port}.log", ready_path=None)
    traffic = launch([sys.executable, "-m", "workbench.cli", "simulate", "--url", made["url"],
                      "--duration", "86400", "--rate", str(rate), "--json"], port=0, env=env,
                     log=logs / f"workbench-traffic-{port}.log", ready_path=None)
    console.print(f"[bold green]dashboard[/] http://127.0.0.1:{port}/workbench  (experiment "
                  f"{made['experiment']} at {made['url']}, live traffic at {rate:.0f} req/s; "
                  "Ctrl+C stops it all)")
    if made["server"].api_key:
        console.print(f"    log in as [bold]{made['experiment']}[/] with the API key printed "
                      "above")
    try:
        dash.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for process in (traffic, dash, made["server"]):
            process.stop()
