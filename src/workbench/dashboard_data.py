"""The dashboard's tables and series: pure functions over the event store's reads.

The read-out itself is :func:`workbench.readout.read_out` (the same numbers as ``GET
/analysis`` and ``workbench analyze``); the functions here only reshape it, the events and
the audit trail into frames that Panel and hvPlot draw. Tested without a browser.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from workbench import events, experiments, readout, store
from workbench.config import ExperimentConfig
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
    """One row per arm: the metric's posterior, P(best), expected loss and lift."""
    rows = []
    for a in result["arms"]:
        lift = a["lift"] or {}
        rows.append({"arm": a["arm"], "control": a["is_control"], "mean": a["mean"],
                     "90% low": (a["interval"] or [None, None])[0],
                     "90% high": (a["interval"] or [None, None])[1],
                     "P(best)": a["prob_best"], "expected loss": a["expected_loss"],
                     "lift": lift.get("mean"), "lift low": lift.get("lo"),
                     "lift high": lift.get("hi")})
    return pd.DataFrame(rows)


def densities(result: dict[str, Any]) -> pd.DataFrame:
    """The posterior density of the metric per arm, long format (x, density, arm)."""
    frames = [pd.DataFrame({"x": a["density"]["x"], "density": a["density"]["y"],
                            "arm": a["arm"]}) for a in result["arms"] if a["density"]]
    return pd.concat(frames) if frames else pd.DataFrame(columns=["x", "density", "arm"])


def evolution(data: events.Events, config: ExperimentConfig, points: int = 8) -> pd.DataFrame:
    """P(best) and expected loss per arm as the experiment went on (cumulative).

    The events counted are the read-out's (:func:`workbench.readout.counted`), but this is
    a history plot, not the verdict: each point uses :data:`EVOLUTION_DRAWS` draws (fewer
    than the read-out's), so its last point may differ from the read-out in the third
    decimal. The verdict is the read-out's.
    """
    mine = readout.counted(data)
    primary = mine.mask(np.isin(mine.arm, [a.name for a in config.arms]))
    if len(primary) < 2:
        return pd.DataFrame(columns=["time", "arm", "P(best)", "expected loss"])
    rows = []
    for cut in np.linspace(primary.ts.min(), primary.ts.max(), points + 1)[1:]:
        part = primary.mask(primary.ts <= cut)
        draws, counts = experiments.metric_draws(part, config, samples=EVOLUTION_DRAWS)
        if min(counts) == 0:
            continue
        higher = config.metric != "brier"
        prob = experiments.prob_best(draws, higher_is_better=higher)
        loss = experiments.expected_loss(draws, higher_is_better=higher)
        for k, arm in enumerate(config.arms):
            rows.append({"time": pd.Timestamp(cut, unit="s"), "arm": arm.name,
                         "P(best)": float(prob[k]), "expected loss": float(loss[k])})
    return pd.DataFrame(rows, columns=["time", "arm", "P(best)", "expected loss"])


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
            if "interval" in r]
    return pd.DataFrame(rows, columns=["arm", "width"])


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
