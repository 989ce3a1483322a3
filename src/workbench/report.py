"""Terminal renderings shared by the command line: read-outs, experiment state, audit rows.

Tables go to a terminal with rich; the commands print JSON instead with ``--json``.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def console(stderr: bool = False) -> Any:
    """A rich console on stdout (or stderr), 200 columns wide when not a terminal."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False,
                   width=None if stream.isatty() else 200)


def print_readout(readout: dict[str, Any]) -> None:
    from rich.table import Table

    def fmt(v: Any, spec: str = ".4f") -> str:
        return "-" if v is None else format(v, spec)

    table = Table(title=f"{readout['experiment']}: {readout['metric']}", show_header=True)
    relative = readout["metric"] in ("binary", "continuous")
    min_effect = readout.get("min_effect", 0.0)
    beyond = f"P(lift > {min_effect:{'+.1%' if relative else '+.4g'}})" \
        if readout["higher_is_better"] else f"P(lift < {-min_effect:+.4g})"
    for col in ("arm", "predictions", "outcomes", "metric (90% CI)", "P(best)",
                "expected loss", "lift vs control (90% CI)", beyond):
        table.add_column(col)
    for a in readout["arms"]:
        ci = f"{fmt(a['mean'])} [{fmt(a['interval'][0])}, {fmt(a['interval'][1])}]" \
            if a["interval"] else "-"
        lift = a["lift"]
        spec = "+.2%" if lift and lift.get("relative") else "+.4f"
        lift_s = (f"{lift['mean']:{spec}} [{lift['lo']:{spec}}, {lift['hi']:{spec}}]"
                  if lift else ("control" if a["is_control"] else "-"))
        table.add_row(a["arm"], str(a["predictions"]), str(a["outcomes"]), ci,
                      fmt(a["prob_best"], ".3f"), fmt(a["expected_loss"], ".4g"), lift_s,
                      fmt(a.get("prob_min_effect"), ".3f"))
    out = console()
    out.print(table)
    d = readout["decision"]
    out.print(f"decision: [bold]{d['winner'] or d['status']}[/] ({d['reason']})")
    if readout["srm"]:
        s = readout["srm"]
        out.print(("[red]SAMPLE RATIO MISMATCH[/] " if s["mismatch"] else "split ok ")
                  + f"(chi-square p = {s['p_value']:.3g}; observed {s['observed']}, "
                    f"expected {s['expected']})")
    if readout.get("cuped"):
        c = readout["cuped"]
        out.print(f"CUPED: theta {c['theta']:.4g}, rho {c['rho']:.3f}, variance reduced by "
                  f"{c['variance_reduction']:.1%} ({c['outcomes']} outcomes with a covariate)"
                  if c["applied"] else f"CUPED not applied: {c['reason']}")
    if readout.get("skipped"):
        out.print(f"[yellow]{readout['skipped']} stored outcome(s) the metric cannot take "
                  "were skipped[/]")
    if readout.get("counted"):
        out.print(f"counted: {readout['counted']}")


def print_segments(readout: dict[str, Any]) -> None:
    """The segment read-out (:mod:`workbench.segment_readout`): per segment and treatment
    arm, the pooled and unpooled effect on the rate, in points, with 90% intervals."""
    from rich.table import Table

    out = console()
    if not readout["effects"]:
        out.print(f"segments by {readout['attribute']}: {readout.get('note', 'none yet')}")
        return

    def effect(e: dict[str, Any]) -> str:
        mean, lo, hi = (100 * x for x in e["rate_diff"])
        mark = " [green]winner[/]" if e["winner"] else " [red]loser[/]" if e["loser"] else ""
        return f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}] P>0 {e['prob_positive']:.2f}{mark}"

    table = Table(title=f"{readout['experiment']}: binary by {readout['attribute']}, effect "
                        "vs control in points (90% CI)")
    for col in ("segment", "arm", "trials", "control trials", "pooled", "unpooled"):
        table.add_column(col)
    for e in readout["effects"]:
        table.add_row(e["segment"], e["arm"], str(e["trials"]), str(e["control_trials"]),
                      effect(e["pooled"]), effect(e["unpooled"]))
    out.print(table)
    for o in readout["overall"]:
        d, tau = o["d"], o["tau"]
        out.print(f"{o['arm']}: overall log-odds effect {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"
                  f", spread across segments tau {tau[0]:.3f} [{tau[1]:.3f}, {tau[2]:.3f}]")
    t = readout["trials"]
    out.print(f"trials in segments {t['in_segments']}; not in any: {t['unset']} without the "
              f"attribute, {t['other']} past the first values kept, {t['not_recorded']} "
              "folded before it was configured; NUTS divergences "
              f"{readout['diagnostics'].get('divergences', 0)}")


def print_state(state: dict[str, Any]) -> None:
    weights = ", ".join(f"{a} {w:.0%}" for a, w in state["weights"].items())
    winner = f", winner {state['winner']}" if state.get("winner") else ""
    console().print(f"{state['experiment']}: [bold]{state['status']}[/]{winner} "
                    f"(weights {weights}; version {state['version']}, "
                    f"updated {when(state['updated'])})")


def print_audit(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="audit (newest first)", show_header=True)
    for col in ("when", "actor", "action", "reason", "before -> after"):
        table.add_column(col)
    for r in rows:
        table.add_row(when(r["ts"]), r["actor"], r["action"], r["reason"],
                      f"{brief(r['before'])} -> {brief(r['after'])}")
    console().print(table)


def brief(state: dict[str, Any] | None) -> str:
    """A state in a few words: ``running [control 0.50, treatment 0.50]``."""
    if not state:
        return "-"
    weights = ", ".join(f"{a} {float(w):.2f}" for a, w in (state.get("weights") or {}).items())
    winner = f" (winner {state['winner']})" if state.get("winner") else ""
    return f"{state.get('status', '?')}{winner} [{weights}]"


def when(ts: float) -> str:
    """A timestamp as local ``YYYY-MM-DD HH:MM:SS``."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))
