"""``workbench events``: retention of the event store.

    workbench events prune --older-than 30d [--experiment NAME] [--no-aggregate] [--yes]

``prune`` deletes the predictions older than the cutoff (with their outcomes and shadows),
in batches, after folding each batch into the experiment's aggregate in the same
transaction, so every read-out (``GET /analysis``, ``workbench analyze``, the dashboard,
guardrails, the bandit) keeps counting them. ``--no-aggregate`` deletes without folding:
the read-out then forgets those events. Either way feedback for a pruned request is
answered 404 (see :mod:`workbench.retention`). The database is ``--db``, default
``$WORKBENCH_DB_URL`` or the SQLite file under ``$WORKBENCH_HOME``.
"""

from __future__ import annotations

import re
import time
from typing import Any

import click

from workbench.cli_common import DB, run

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


@click.group()
def events() -> None:
    """Retention of the event store (prune old events, keeping their statistics)."""


def seconds(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or a number of seconds, as seconds."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not found:
        raise click.BadParameter(f"{text!r} is not a duration: expected a number with an "
                                 "optional unit s, m, h, d or w (e.g. 30d)")
    return float(found[1]) * UNITS[found[2] or "s"]


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@events.command("prune")
@click.option("--older-than", "older_than", required=True,
              help="Prune events older than this (e.g. 30d, 12h, 90m; plain = seconds).")
@click.option("--experiment", help="Only this experiment (default: every experiment).")
@click.option("--no-aggregate", "no_aggregate", is_flag=True,
              help="Delete without folding into the aggregate: the read-out forgets them.")
@DB
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def prune(older_than: str, experiment: str | None, no_aggregate: bool, db_url: str | None,
          yes: bool) -> None:
    """Delete old predictions, outcomes and shadows, folding them into the read-out's
    stored aggregate first (unless --no-aggregate)."""
    cutoff = time.time() - seconds(older_than)

    def go() -> None:
        from workbench import events as _events
        from workbench import retention

        eng = _events.engine(db_url)
        names = [experiment] if experiment else _events.experiments(eng)
        todo = {n: retention.candidates(eng, n, cutoff) for n in names}
        total = sum(todo.values())
        if not total:
            click.echo(f"nothing to prune: no events before {_when(cutoff)}")
            return
        fate = ("deleted WITHOUT folding: the read-out forgets them" if no_aggregate else
                "folded into each experiment's aggregate first: the read-out keeps them")
        click.echo(f"{total} prediction(s) before {_when(cutoff)} in "
                   f"{sum(1 for n in todo.values() if n)} experiment(s), {fate}; feedback "
                   "for them will be answered 404")
        if not yes:
            click.confirm("Prune them?", abort=True)
        for name, n in todo.items():
            if n:
                _prune_one(eng, name, cutoff, n, aggregate=not no_aggregate)
    run(go)


def _prune_one(eng: Any, name: str, cutoff: float, n: int, *, aggregate: bool) -> None:
    from workbench import retention

    shown = [0]

    def progress(done: int) -> None:  # a line per 5% or so, on standard error
        if done - shown[0] >= max(n // 20, 1) or done >= n:
            shown[0] = done
            click.echo(f"  {name}: {done}/{n} predictions", err=True)

    out = retention.prune(eng, name, cutoff, aggregate=aggregate, progress=progress)
    kept = "folded into its aggregate" if aggregate else "not folded (forgotten)"
    click.echo(f"{name}: pruned {out['predictions']} prediction(s) and {out['outcomes']} "
               f"outcome(s) before {_when(cutoff)}, {kept}")
