"""``workbench experiment``: the lifecycle of a live experiment, from the command line.

The same actions as the gateway's ``/admin/...`` routes and the dashboard's buttons, on the
same state row in the event store (``--db``, default ``$WORKBENCH_DB_URL`` or the SQLite
file under ``$WORKBENCH_HOME``); every gateway replica follows within a poll. Each action is
audited with the actor ``cli:$USER`` and the ``--reason`` given.

    workbench experiment status EXP            # state, read-out, latest audit rows
    workbench experiment pause EXP --reason "incident 42"
    workbench experiment resume EXP
    workbench experiment ramp EXP treatment 0.25
    workbench experiment conclude EXP [--winner ARM]
    workbench experiment check EXP             # guardrails and auto-conclude, once
    workbench experiment audit [EXP]
"""

from __future__ import annotations

import getpass
import json
from typing import Any

import click

DB = click.option("--db", "db_url", help="Event store URL (default: $WORKBENCH_DB_URL or "
                                         "SQLite under $WORKBENCH_HOME).")
REASON = click.option("--reason", default="", help="Why (kept in the audit trail).")
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def experiment() -> None:
    """Pause, resume, ramp or conclude a live experiment; see its state and audit trail."""


def _run(fn: Any) -> Any:
    from workbench.cli import _friendly  # cli.py registers this group at its end

    return _friendly(fn)()


def _engine(db_url: str | None) -> Any:
    from workbench import events

    return events.engine(db_url)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli"


def _done(state: Any, as_json: bool) -> None:
    from workbench.report import print_state

    if as_json:
        click.echo(json.dumps(state.to_dict()))
        return
    print_state(state.to_dict())
    click.echo(state.version)  # the last line, for scripts: the state's new version


@experiment.command("status")
@click.argument("name")
@DB
@AS_JSON
def status(name: str, db_url: str | None, as_json: bool) -> None:
    """The live state, the read-out and the latest audit rows of NAME."""
    def go() -> None:
        from workbench import control, readout
        from workbench.report import print_audit, print_readout, print_state

        eng = _engine(db_url)
        state = control.require(eng, name)
        result = readout.read_out(eng, name).to_dict()
        rows = control.history(eng, name, limit=10)
        if as_json:
            click.echo(json.dumps({"state": state.to_dict(), "readout": result,
                                   "audit": rows}, default=str))
            return
        print_state(state.to_dict())
        print_readout(result)
        print_audit(rows)
    _run(go)


@experiment.command("pause")
@click.argument("name")
@REASON
@DB
@AS_JSON
def pause(name: str, reason: str, db_url: str | None, as_json: bool) -> None:
    """Send everyone to control until resumed (prints the new state version last)."""
    from workbench import control

    _run(lambda: _done(control.pause(_engine(db_url), name, actor=_actor(), reason=reason),
                       as_json))


@experiment.command("resume")
@click.argument("name")
@REASON
@DB
@AS_JSON
def resume(name: str, reason: str, db_url: str | None, as_json: bool) -> None:
    """Assign by the live weights again."""
    from workbench import control

    _run(lambda: _done(control.resume(_engine(db_url), name, actor=_actor(), reason=reason),
                       as_json))


@experiment.command("ramp")
@click.argument("name")
@click.argument("arm")
@click.argument("weight", type=float)
@REASON
@DB
@AS_JSON
def ramp(name: str, arm: str, weight: float, reason: str, db_url: str | None,
         as_json: bool) -> None:
    """Give ARM the share WEIGHT (0..1) of traffic; the other arms share the rest."""
    from workbench import control

    _run(lambda: _done(control.ramp(_engine(db_url), name, arm, weight, actor=_actor(),
                                    reason=reason), as_json))


@experiment.command("conclude")
@click.argument("name")
@click.option("--winner", help="The arm everyone gets from now on (default: the read-out's "
                               "decided arm; refused while none is decided).")
@REASON
@DB
@AS_JSON
def conclude(name: str, winner: str | None, reason: str, db_url: str | None,
             as_json: bool) -> None:
    """End NAME: all traffic to the winner at once, no rebuild."""
    def go() -> None:
        from workbench import control, readout
        from workbench.errors import Conflict

        eng = _engine(db_url)
        chosen = winner
        if chosen is None:
            decision = readout.read_out(eng, name).decision
            chosen = decision["winner"]
            if chosen is None:
                raise Conflict(f"no arm of {name!r} is decided yet ({decision['reason']})",
                               detail={"expected": "--winner ARM to conclude anyway"})
        state = control.conclude(eng, name, chosen, actor=_actor(),
                                 reason=reason or f"{chosen} wins")
        _done(state, as_json)
    _run(go)


@experiment.command("check")
@click.argument("name")
@DB
def check(name: str, db_url: str | None) -> None:
    """Evaluate NAME's guardrails and auto-conclude rule once, and act (audited)."""
    def go() -> None:
        from workbench import guardrails, readout

        eng = _engine(db_url)
        actions = guardrails.check(eng, readout.config_of(eng, name))
        click.echo("\n".join(actions) if actions else "no action: every guardrail holds "
                   "and the auto-conclude rule (if enabled) is not met")
    _run(go)


@experiment.command("audit")
@click.argument("name", required=False)
@click.option("--limit", default=50, show_default=True)
@DB
@AS_JSON
def audit(name: str | None, limit: int, db_url: str | None, as_json: bool) -> None:
    """The audit trail (newest first), of NAME or of every experiment."""
    def go() -> None:
        from workbench import control
        from workbench.report import print_audit

        rows = control.history(_engine(db_url), name, limit=limit)
        if as_json:
            click.echo(json.dumps(rows, default=str))
        else:
            print_audit(rows)
    _run(go)
