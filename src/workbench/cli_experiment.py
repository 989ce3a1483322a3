"""``workbench experiment``: the lifecycle of a live experiment, from the command line.

The same actions as the gateway's ``/admin/...`` routes and the dashboard's buttons, on the
same state row in the event store (``--db``, default ``$WORKBENCH_DB_URL`` or the SQLite
file under ``$WORKBENCH_HOME``); every gateway replica follows within a poll. Each action is
audited with the actor ``cli:$USER`` and the ``--reason`` given.

    workbench experiment status [EXP]          # state, read-out, latest audit rows
    workbench experiment pause [EXP] --reason "incident 42"
    workbench experiment resume [EXP]
    workbench experiment ramp [EXP] treatment 0.25
    workbench experiment conclude [EXP] [--winner ARM]
    workbench experiment check [EXP]           # guardrails and auto-conclude, once
    workbench experiment audit [EXP]

EXP may be left out when the store holds one experiment.
"""

from __future__ import annotations

import getpass
import json
from typing import Any

import click

from workbench.cli_common import DB, run

REASON = click.option("--reason", default="", help="Why (kept in the audit trail).")
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def experiment() -> None:
    """Pause, resume, ramp or conclude a live experiment; see its state and audit trail."""


def _engine(db_url: str | None) -> Any:
    from workbench import events

    return events.engine(db_url)


def _name(eng: Any, name: str | None) -> str:
    """NAME, or the only experiment in the store when it is left out."""
    if name:
        return name
    from workbench.errors import InputError
    from workbench.schema import state

    with eng.connect() as conn:
        names = sorted(conn.execute(state.select().with_only_columns(state.c.experiment))
                       .scalars())
    if len(names) != 1:
        raise InputError("name the experiment" if names else "no experiments in the store",
                         detail={"experiments": names})
    return names[0]


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
@click.argument("name", required=False)
@DB
@AS_JSON
def status(name: str | None, db_url: str | None, as_json: bool) -> None:
    """The live state, the read-out and the latest audit rows of NAME."""
    def go() -> None:
        from workbench import control, readout
        from workbench.report import print_audit, print_readout, print_state

        eng = _engine(db_url)
        state = control.require(eng, _name(eng, name))
        name_ = state.experiment
        result = readout.read_out(eng, name_).to_dict()
        rows = control.history(eng, name_, limit=10)
        if as_json:
            click.echo(json.dumps({"state": state.to_dict(), "readout": result,
                                   "audit": rows}, default=str))
            return
        print_state(state.to_dict())
        print_readout(result)
        print_audit(rows)
    run(go)


def _switch(action: str, help_text: str) -> Any:
    """``pause`` or ``resume``: an admin action with a reason and nothing else."""
    @experiment.command(action, help=help_text)
    @click.argument("name", required=False)
    @REASON
    @DB
    @AS_JSON
    def command(name: str | None, reason: str, db_url: str | None, as_json: bool) -> None:
        from workbench import control

        def go() -> None:
            eng = _engine(db_url)
            _done(control.act(eng, _name(eng, name), action, actor=_actor(), reason=reason),
                  as_json)
        run(go)
    return command


pause = _switch("pause", "Send everyone to control until resumed (prints the new state "
                         "version last).")
resume = _switch("resume", "Assign by the live weights again.")


@experiment.command("ramp")
@click.argument("args", nargs=-1, required=True, metavar="[NAME] ARM WEIGHT")
@REASON
@DB
@AS_JSON
def ramp(args: tuple[str, ...], reason: str, db_url: str | None, as_json: bool) -> None:
    """Give ARM the share WEIGHT (0..1) of traffic; the other arms share the rest."""
    def go() -> None:
        from workbench import control
        from workbench.errors import InputError

        if len(args) not in (2, 3):
            raise InputError("ramp takes [NAME] ARM WEIGHT", detail={"got": list(args)})
        *name, arm, weight = args
        try:
            share = float(weight)
        except ValueError:
            raise InputError(f"invalid weight {weight!r}",
                             detail={"expected": "a number in [0, 1]"}) from None
        eng = _engine(db_url)
        _done(control.ramp(eng, _name(eng, name[0] if name else None), arm, share,
                           actor=_actor(), reason=reason), as_json)
    run(go)


@experiment.command("conclude")
@click.argument("name", required=False)
@click.option("--winner", help="The arm everyone gets from now on (default: the read-out's "
                               "decided arm; refused while none is decided).")
@REASON
@DB
@AS_JSON
def conclude(name: str | None, winner: str | None, reason: str, db_url: str | None,
             as_json: bool) -> None:
    """End NAME: all traffic to the winner at once, no rebuild."""
    def go() -> None:
        from workbench import control, readout
        from workbench.errors import Conflict

        eng = _engine(db_url)
        name_ = _name(eng, name)
        chosen = winner
        if chosen is None:
            decision = readout.read_out(eng, name_).decision
            chosen = decision["winner"]
            if chosen is None:
                raise Conflict(f"no arm of {name_!r} is decided yet ({decision['reason']})",
                               detail={"expected": "--winner ARM to conclude anyway"})
        state = control.conclude(eng, name_, chosen, actor=_actor(),
                                 reason=reason or f"{chosen} wins")
        _done(state, as_json)
    run(go)


@experiment.command("check")
@click.argument("name", required=False)
@DB
def check(name: str | None, db_url: str | None) -> None:
    """Evaluate NAME's guardrails and auto-conclude rule once, and act (audited)."""
    def go() -> None:
        from workbench import guardrails, readout

        eng = _engine(db_url)
        actions = guardrails.check(eng, readout.config_of(eng, _name(eng, name)))
        click.echo("\n".join(actions) if actions else "no action: every guardrail holds "
                   "and the auto-conclude rule (if enabled) is not met")
    run(go)


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
    run(go)
