"""The dashboard's tables and series: pure functions over the event store's reads.

The read-out itself is :func:`workbench.readout.read_out` (the same numbers as ``GET
/analysis`` and ``workbench analyze``); the functions here only reshape it, the events and
the audit trail into frames that Panel and hvPlot draw. Tested without a browser. Memory
stays bounded at any number of events: the read-out and its history come from sufficient
statistics (:func:`read_out_with_history`), and the latency and interval plots draw the
most recent events only (:func:`workbench.event_reads.recent`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from workbench import control, event_reads, events, experiments, readout, store
from workbench.aggregates import Fold
from workbench.config import ExperimentConfig
from workbench.folding import fold_events
from workbench.report import brief, when

EVOLUTION_DRAWS = 2000


def traffic(result: dict[str, Any], config: ExperimentConfig) -> pd.DataFrame:
    """Planned against realised traffic per arm."""
    total = sum(a["predictions"] for a in result["arms"]) or 1
    return pd.DataFrame([{"arm": a["arm"], "planned": config.weights[a["arm"]],
                          "live weight": a["weight"], "realised": a["predictions"] / total,
                          "predictions": a["predictions"], "outcomes": a["outcomes"]}
                         for a in result["arms"]])


def summary_table(result: dict[str, Any]) -> pd.DataFrame:
    """One row per arm: the metric's posterior, P(best), expected loss, lift, and
    P(improvement over control > the configured minimum effect)."""
    rows = []
    # lower is better (brier): the improvement is a lift below minus the minimum effect
    beyond = "P(lift > min effect)" if result.get("higher_is_better", True) else \
        "P(lift < -min effect)"
    for a in result["arms"]:
        lift = a["lift"] or {}
        rows.append({"arm": a["arm"], "control": a["is_control"], "mean": a["mean"],
                     "90% low": (a["interval"] or [None, None])[0],
                     "90% high": (a["interval"] or [None, None])[1],
                     "P(best)": a["prob_best"], "expected loss": a["expected_loss"],
                     "lift": lift.get("mean"), "lift low": lift.get("lo"),
                     "lift high": lift.get("hi"),
                     beyond: a.get("prob_min_effect")})
    return pd.DataFrame(rows)


def densities(result: dict[str, Any]) -> pd.DataFrame:
    """The posterior density of the metric per arm, long format (x, density, arm)."""
    frames = [pd.DataFrame({"x": a["density"]["x"], "density": a["density"]["y"],
                            "arm": a["arm"]}) for a in result["arms"] if a["density"]]
    return pd.concat(frames) if frames else pd.DataFrame(columns=["x", "density", "arm"])


def read_out_with_history(eng: Any, config: ExperimentConfig, points: int = 8
                          ) -> tuple[dict[str, Any], list[tuple[float, Fold]]]:
    """The read-out (:func:`workbench.readout.read_out`'s numbers) and, from the same pass
    over the store, the cumulative folds at ``points`` times for :func:`evolution`."""
    names = [a.name for a in config.arms]
    lo, hi, n = event_reads.span(eng, config.name, names)
    cuts = np.linspace(lo, hi, points + 1)[1:].tolist() if n >= 2 else []
    fold, pruned, snapshots = event_reads.fold_all(
        eng, config.name, timeline=control.weights_timeline(eng, config.name), cuts=cuts,
        segment_by=config.segment_by)
    result = readout.read_out(eng, config.name, config=config, fold=fold, pruned=pruned)
    out = result.to_dict()
    if config.segment_by:  # the segment read-out from the same fold (refitted now and then)
        from workbench import segment_readout  # JAX and NumPyro: only when configured

        out["segments"] = segment_readout.latest(fold, config, source=str(eng.url))
    return out, list(zip(cuts, snapshots, strict=True))


def evolution(data: events.Events | list[tuple[float, Fold]], config: ExperimentConfig,
              points: int = 8) -> pd.DataFrame:
    """P(best) and expected loss per arm as the experiment went on (cumulative).

    ``data``: events in memory, or the cumulative folds :func:`read_out_with_history`
    gives. The events counted are the read-out's (:func:`workbench.readout.counted`), but
    this is a history plot, not the verdict: each point uses :data:`EVOLUTION_DRAWS` draws
    (fewer than the read-out's), so its last point may differ from the read-out in the
    third decimal. The verdict is the read-out's.
    """
    history = _history(data, config, points) if isinstance(data, events.Events) else data
    rows = []
    higher = config.metric != "brier"
    for cut, fold in history:
        draws, counts = experiments.fold_draws(fold, config, samples=EVOLUTION_DRAWS)
        if min(counts) == 0:
            continue
        prob = experiments.prob_best(draws, higher_is_better=higher)
        loss = experiments.expected_loss(draws, higher_is_better=higher)
        for k, arm in enumerate(config.arms):
            rows.append({"time": pd.Timestamp(cut, unit="s"), "arm": arm.name,
                         "P(best)": float(prob[k]), "expected loss": float(loss[k])})
    return pd.DataFrame(rows, columns=["time", "arm", "P(best)", "expected loss"])


def _history(data: events.Events, config: ExperimentConfig, points: int
             ) -> list[tuple[float, Fold]]:
    mine = readout.counted(data)
    primary = mine.mask(np.isin(mine.arm, [a.name for a in config.arms]))
    if len(primary) < 2:
        return []
    return [(cut, fold_events(primary.mask(primary.ts <= cut)))
            for cut in np.linspace(primary.ts.min(), primary.ts.max(), points + 1)[1:]]


def latency(data: events.Events, bins: int = 20) -> pd.DataFrame:
    """Per time bin and arm (and model): p50, p95, p99 latency, requests and fallbacks."""
    if not len(data):
        return pd.DataFrame(columns=["time", "arm", "model", "p50", "p95", "p99", "requests",
                                     "errors"])
    frame = pd.DataFrame({"ts": data.ts, "arm": data.arm, "model": data.model_tag,
                          "latency_ms": data.latency_ms, "error": data.status == "fallback"})
    edges = np.linspace(frame.ts.min(), frame.ts.max() + 1e-6, bins + 1)
    frame["time"] = pd.to_datetime(edges[np.clip(np.digitize(frame.ts, edges) - 1, 0, bins - 1)],
                                   unit="s")
    return frame.groupby(["time", "arm", "model"]).agg(
        p50=("latency_ms", lambda s: s.quantile(0.5)),
        p95=("latency_ms", lambda s: s.quantile(0.95)),
        p99=("latency_ms", lambda s: s.quantile(0.99)),
        requests=("latency_ms", "size"), errors=("error", "sum")).reset_index()


def widths(data: events.Events) -> pd.DataFrame:
    """Every served interval's width, per arm."""
    rows = [{"arm": arm, "width": r["interval"][1] - r["interval"][0]}
            for arm, summary in zip(data.arm, data.summary, strict=True) for r in summary or []
            if isinstance(r, dict) and _pair(r.get("interval"))]
    return pd.DataFrame(rows, columns=["arm", "width"])


def _pair(interval: Any) -> bool:
    """A stored interval a width can be taken of (a non-finite bound is stored as null)."""
    return isinstance(interval, list) and len(interval) == 2 and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in interval)


def models_table() -> pd.DataFrame:
    """The model store: one row per version, with its aliases and diagnostics."""
    return pd.DataFrame([{"tag": m.tag, "model": m.model, "kind": m.kind, "created": m.created,
                          "aliases": ", ".join(m.aliases),
                          "diagnostics": "ok" if m.diagnostics_ok else "FAILED",
                          "max R-hat": m.metadata.get("max_rhat"),
                          "min ESS": m.metadata.get("min_ess_bulk"),
                          "divergences": m.metadata.get("divergences")}
                         for m in store.list_models()])


AUDIT_COLUMNS = ["time", "actor", "action", "reason", "before", "after", "version"]


def audit_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Audit rows (:func:`workbench.control.history`, newest first) as a table: when, who,
    what, why, and the state before and after (status, winner, weights)."""
    return pd.DataFrame([{"time": when(r["ts"]), "actor": r["actor"], "action": r["action"],
                          "reason": r["reason"], "before": brief(r["before"]),
                          "after": brief(r["after"]), "version": r["version"]}
                         for r in rows], columns=AUDIT_COLUMNS)


PIPELINE_COLUMNS = ["gateway", "up", "ready", "database", "DB down since", "writer", "queue",
                    "capacity", "spool bytes", "written", "spooled", "replayed", "dead",
                    "refused", "dropped", "backpressure", "restarts", "last error"]
_COUNTS = ("written", "spooled", "replayed", "dead", "refused", "dropped", "backpressure")


def pipeline_table(health: dict[str, dict[str, Any] | str]) -> pd.DataFrame:
    """One row per gateway: its event pipeline from its ``GET /health/all`` body (a dict),
    or, for a gateway that could not be read, why (a string; ``up`` is then False).

    Fields a gateway does not report (an older one) are left empty (None). URLs and the
    database's last error are shown without credentials (:mod:`workbench.redact`).
    """
    return pd.DataFrame(_pipeline_rows(health), columns=PIPELINE_COLUMNS, dtype=object)


def _pipeline_rows(health: dict[str, dict[str, Any] | str]) -> list[dict[str, Any]]:
    from workbench import redact

    rows = []
    for url, body in health.items():
        row: dict[str, Any] = dict.fromkeys(PIPELINE_COLUMNS)
        row["gateway"] = redact.url(url)
        if not isinstance(body, dict):
            rows.append(row | {"up": False, "last error": redact.text(str(body))})
            continue
        store_ = body.get("event_store")
        store_ = store_ if isinstance(store_, dict) else {"dialect": store_}
        writer = body.get("writer") or {}
        spool = body.get("spool") or {}
        up = store_.get("up")
        down_since = store_.get("down_since")
        row |= {"up": True, "ready": body.get("ready"),
                "database": " ".join(str(p) for p in (
                    store_.get("dialect"), {True: "up", False: "DOWN"}.get(up)) if p),
                "DB down since": when(down_since) if isinstance(down_since, int | float)
                else down_since,
                "writer": {True: "alive", False: "STOPPED"}.get(writer.get("alive")),
                "queue": writer.get("queue"), "capacity": writer.get("capacity"),
                "spool bytes": spool.get("bytes"), "restarts": writer.get("restarts"),
                "last error": redact.text(str(store_["last_error"]))
                if store_.get("last_error") else None}
        row |= {k: writer.get(k) for k in _COUNTS}
        rows.append(row)
    return rows


def pipeline_problems(health: dict[str, dict[str, Any] | str]) -> list[str]:
    """What needs an operator's eye in :func:`pipeline_table`'s rows, one line each."""
    out = []
    for r in _pipeline_rows(health):
        g = r["gateway"]
        if not r["up"]:
            out.append(f"{g}: unreachable ({r['last error']})")
            continue
        if r["DB down since"] is not None:
            out.append(f"{g}: the event database is down since {r['DB down since']}; events "
                       "go to the spool and are replayed when it is back")
        if r["writer"] == "STOPPED":
            out.append(f"{g}: the event writer is not running")
        if r["capacity"] and r["queue"] is not None and r["queue"] >= 0.8 * r["capacity"]:
            out.append(f"{g}: the write queue is {r['queue']} of {r['capacity']} "
                       "(503s once it is full)")
        for key, what in (("dead", "refused by the database (kept in the dead-letter file)"),
                          ("refused", "not taken by the database nor the spool (503s)"),
                          ("dropped", "dropped (shadow rows, queue full)")):
            if r[key]:
                out.append(f"{g}: {r[key]} events {what}")
    return out
