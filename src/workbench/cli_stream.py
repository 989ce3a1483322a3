"""``workbench stream``: score a stream of events into another stream, until stopped.

    workbench stream MODEL --source redis://host:6379/0/events --sink redis://host:6379/0/scores
        [--group workbench] [--consumer NAME] [--batch 64] [--claim-idle 30]
        [--max-events N] [--idle-exit SECONDS] [--interval-mass 0.9] [--metrics-port P]
    workbench stream --experiment NAME [--experiment-config PATH] [--events URL] ...

Start N of them with the same ``--group`` to share a stream. Each reads at most ``--batch``
events at a time, scores them (:mod:`workbench.stream`), writes the results, then
acknowledges them; a progress line goes to standard error every few seconds, and on
SIGTERM or Ctrl+C the batch in hand is finished before it exits 0. The last line of
standard output is a JSON summary (counts, events per second, p50/p99 latency).
"""

from __future__ import annotations

import json
from typing import Any

import click

from workbench.cli_common import console, friendly


@click.command()
@click.argument("model", required=False)
@click.option("--source", required=True,
              help="The stream to consume: redis://host:port/db/stream.")
@click.option("--sink", required=True,
              help="Where results go: redis://host:port/db/stream[?dead=NAME&ttl=SECONDS] "
                   "(refusals go to NAME, default STREAM.dead).")
@click.option("--group", default="workbench", show_default=True,
              help="The consumer group: consumers in one group share the stream.")
@click.option("--consumer", help="This consumer's name in the group (default HOSTNAME-PID).")
@click.option("--batch", default=64, show_default=True, type=click.IntRange(1, 4096),
              help="Events read at once: the most in flight (backpressure).")
@click.option("--claim-idle", default=30.0, show_default=True, type=click.FloatRange(0),
              help="Take over entries another consumer left unacknowledged this long.")
@click.option("--max-events", type=click.IntRange(1), help="Stop after this many events.")
@click.option("--idle-exit", type=click.FloatRange(0),
              help="Stop after this many seconds without events.")
@click.option("--interval-mass", default=0.9, show_default=True)
@click.option("--experiment", help="Route each event by its unit through this experiment's "
                                   "live assignment and log it to the event store.")
@click.option("--experiment-config", type=click.Path(dir_okay=False, exists=True),
              help="The experiment's YAML config (default: the one its gateway recorded).")
@click.option("--events", "events_url", help="Event store URL (default: $WORKBENCH_DB_URL "
                                             "or SQLite under $WORKBENCH_HOME).")
@click.option("--metrics-port", type=int, help="Serve Prometheus metrics on 127.0.0.1:PORT.")
@friendly
def stream(model: str | None, source: str, sink: str, group: str, consumer: str | None,
           batch: int, claim_idle: float, max_events: int | None, idle_exit: float | None,
           interval_mass: float, experiment: str | None, experiment_config: str | None,
           events_url: str | None, metrics_port: int | None) -> None:
    """Score the events of a stream with MODEL (alias, name or tag) into another stream."""
    from workbench.errors import ConfigError
    from workbench.inputs import check_interval_mass
    from workbench.stream_redis import default_consumer

    if (model is None) == (experiment is None):
        raise ConfigError("name a MODEL, or an --experiment whose arms name theirs",
                          detail={"expected": "workbench stream MODEL --source URL --sink URL"
                                              " (or --experiment NAME instead of MODEL)"})
    if (experiment_config or events_url) and experiment is None:
        raise ConfigError("--experiment-config and --events need --experiment")
    check_interval_mass(interval_mass)
    err = console(stderr=True)
    consumer = consumer or default_consumer()
    src, snk, routed, scorer = _open(model, source, sink, group, consumer, batch,
                                     claim_idle, experiment, experiment_config, events_url)
    try:
        seconds = scorer.warmup()
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr="127.0.0.1")
        models = ", ".join(scorer.predictors)
        err.print(f"consumer {consumer} in group {group} reading {src.name} into {snk.name} "
                  f"with {models} (compiled in {seconds:.1f}s)"
                  + (f", experiment {experiment}" if experiment else ""))
        stats = _run(src, snk, scorer, routed, batch=batch, interval_mass=interval_mass,
                     consumer=consumer, max_events=max_events, idle_exit=idle_exit, err=err)
    finally:
        scorer.close()
        if routed is not None:
            routed.close()
        src.close()
        snk.close()
    summary = stats.summary()
    err.print(_line(stats, None, final=True))
    click.echo(json.dumps(summary))


def _open(model: str | None, source: str, sink: str, group: str, consumer: str,
          batch: int, claim_idle: float, experiment: str | None,
          experiment_config: str | None, events_url: str | None) -> tuple[Any, ...]:
    """Source and sink first (a bad URL fails before any model loads), then the models."""
    from workbench import store
    from workbench.stream import Scorer, open_sink, open_source

    src = open_source(source, group=group, consumer=consumer, claim_idle=claim_idle)
    try:
        snk = open_sink(sink)
    except BaseException:
        src.close()
        raise
    routed = None
    try:
        if experiment is not None:
            from workbench.stream_experiment import StreamExperiment

            routed = StreamExperiment.open(experiment, db_url=events_url,
                                           config_path=experiment_config)
            tags = list(dict.fromkeys(routed.tags.values()))
        else:
            tags = [store.resolve(model or "")]
        return src, snk, routed, Scorer({tag: store.get(tag) for tag in tags}, batch=batch)
    except BaseException:
        if routed is not None:
            routed.close()
        src.close()
        snk.close()
        raise


def _run(src: Any, snk: Any, scorer: Any, routed: Any, *, err: Any, **options: Any) -> Any:
    """The consumer loop, stopped cleanly by SIGTERM or SIGINT."""
    import asyncio
    import signal
    import threading
    import time

    from workbench.stream import consume

    stop = threading.Event()
    last = [time.monotonic(), 0]

    def progress(stats: Any, backlog: dict[str, Any]) -> None:
        now, handled = time.monotonic(), stats.handled
        rate = (handled - last[1]) / max(now - last[0], 1e-9)
        last[:] = [now, handled]
        err.print(_line(stats, backlog, rate=rate))

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await consume(src, snk, scorer, experiment=routed, stop=stop,
                             progress=progress, **options)

    return asyncio.run(main())


def _line(stats: Any, backlog: dict[str, Any] | None, *, rate: float | None = None,
          final: bool = False) -> str:
    """A progress line: counts, events per second (lately, or on average at the end),
    latency percentiles, and the group's backlog."""
    s = stats.summary()
    rate = s["events_per_second"] if rate is None else rate
    text = (f"{'done: ' if final else ''}{s['scored']:,} scored, {s['duplicate']:,} "
            f"duplicate, {s['refused']:,} refused, {s['claimed']:,} claimed; "
            f"{rate:,.0f} events/s")
    if s["latency_p50_ms"] is not None:
        text += f", latency p50 {s['latency_p50_ms']:.0f} ms p99 {s['latency_p99_ms']:.0f} ms"
    if backlog:
        text += f"; group pending {backlog.get('pending')}, lag {backlog.get('lag')}"
    return text
