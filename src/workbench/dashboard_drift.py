"""The dashboard's view of served inputs: how many rows each model version flagged out of
distribution (:mod:`workbench.ood`), and each feature's drift against the training inputs
(:mod:`workbench.drift`), over the most recent events."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
import panel as pn

from workbench import drift, event_reads, store

SAMPLE = 2_000  # the most recent predictions read with their rows


def inputs_view(eng: Any, experiment: str) -> pn.viewable.Viewable:
    """A flagged-rows line per model version, then a PSI heatmap and table per feature."""
    import hvplot.pandas  # noqa: F401

    data = event_reads.recent(eng, experiment, limit=SAMPLE, with_instances=True)
    flagged = ood_table(data.model_tag, data.summary)
    table = pd.DataFrame(drift.served(data, _posterior))
    parts: list[Any] = ["### Served inputs against the training inputs"]
    if len(flagged):
        parts.append(pn.pane.Markdown("**Out of distribution**: " + ", ".join(
            f"{r.model}: {r.share:.1%} of {r.rows} rows" for r in flagged.itertuples()),
            name="ood-share"))
    if not len(table):
        parts.append(pn.pane.Markdown(
            "No drift to show: no served rows of a model whose artifact summarises its "
            "training inputs (trained by this version), or the log keeps no rows "
            "(`WORKBENCH_EVENT_INPUTS`).", name="drift-empty"))
        return pn.Column(*parts, sizing_mode="stretch_width")
    window = (f"{pd.Timestamp(table.since.min(), unit='s'):%H:%M:%S} to "
              f"{pd.Timestamp(table.until.max(), unit='s'):%H:%M:%S} UTC")
    parts += [table.hvplot.heatmap(x="feature", y="model", C="psi", cmap="Reds",
                                   height=60 + 40 * table.model.nunique(), responsive=True,
                                   rot=60, title=f"drift (PSI) per feature, {window}"),
              pn.widgets.Tabulator(
                  table.sort_values("psi", ascending=False)[
                      ["model", "feature", "psi", "level", "rows", "by_chance"]].round(4),
                  disabled=True, show_index=False, height=260,
                  sizing_mode="stretch_width")]
    return pn.Column(*parts, sizing_mode="stretch_width")


def ood_table(tags: np.ndarray, summaries: list[Any]) -> pd.DataFrame:
    """Per model version: served rows that carried an ``ood`` flag, and the flagged share."""
    counts: dict[str, list[int]] = {}
    for tag, summary in zip(tags.tolist(), summaries, strict=True):
        for record in summary if isinstance(summary, list) else ():
            if isinstance(record, dict) and isinstance(record.get("ood"), bool):
                seen = counts.setdefault(tag, [0, 0])
                seen[0] += 1
                seen[1] += record["ood"]
    return pd.DataFrame([{"model": t, "rows": n, "share": k / n}
                         for t, (n, k) in counts.items()], columns=["model", "rows", "share"])


def _posterior(tag: str) -> Any:
    """A served version's artifact (None when the store has it not, or not now)."""
    try:
        return _loaded(tag)
    except Exception:  # not cached: it may be imported, or the store answer, later
        return None


@functools.lru_cache(maxsize=32)
def _loaded(tag: str) -> Any:
    return store.get(tag)  # a tag names one immutable version
