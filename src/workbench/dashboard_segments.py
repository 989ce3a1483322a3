"""The dashboard's view of a segment read-out (:func:`workbench.segments.read_out`): per
segment and treatment arm, the pooled and unpooled effects side by side, as a forest plot
and a table, with the overall pooled effect."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import panel as pn

if TYPE_CHECKING:  # the segment model imports JAX: the dashboard need not, to draw
    from workbench.segments import SegmentReadout

COLOURS = {"pooled": "#1f77b4", "unpooled": "#ff7f0e"}
OFFSET = 0.18  # each read-out's distance from its segment's row in the forest plot
NOT_CONFIGURED = ("Segments: set `segment_by` in the experiment config and send `attributes` "
                  "with /predict; the read-out per segment appears once outcomes arrive.")
ABOUT = ("Each segment's effect is read two ways. **Pooled**: one hierarchical model of every "
         "segment, in which a segment's effect is the overall effect plus a deviation its data "
         "must support, so small segments shrink toward the overall effect. **Unpooled**: each "
         "segment on its own (Beta-Binomial per arm); read this way, many segments produce "
         "false winners by chance (about {share:.0%} of them at P(effect > 0) >= {threshold} "
         "when nothing works), so trust a segment's call when the pooled read-out makes it too. "
         "The solid line: the pooled effect averaged over segments by their trials.")


def segments_view(readout: SegmentReadout | dict[str, Any] | None, *,
                  attribute: str) -> pn.viewable.Viewable:
    """A forest plot and a table of ``readout`` (the dataclass or its ``to_dict()``, as
    served over HTTP) segmented by ``attribute``; None: what to configure."""
    title = f"### Segments by `{attribute}`" if attribute else "### Segments"
    if readout is None:
        return pn.Column(title, pn.pane.Alert(NOT_CONFIGURED, alert_type="info",
                                              name="segments-empty"),
                         sizing_mode="stretch_width")
    data = readout if isinstance(readout, dict) else readout.to_dict()
    frame = effects_frame(data)
    if not len(frame):
        return pn.Column(title, pn.pane.Alert(
            f"No segment of `{attribute}` has outcomes in every arm yet.", alert_type="info",
            name="segments-empty"), sizing_mode="stretch_width")
    return pn.Column(
        title,
        pn.pane.Markdown(overall_text(data), name="segments-overall"),
        pn.pane.HoloViews(forest(frame, data), name="segments-plot",
                          sizing_mode="stretch_width"),
        pn.widgets.Tabulator(table(frame), disabled=True, show_index=False,
                             name="segments-table", sizing_mode="stretch_width"),
        pn.pane.Markdown(ABOUT.format(threshold=data["threshold"],
                                      share=1 - data["threshold"]), name="segments-about",
                         styles={"font-size": "0.85em", "color": "#6c757d"}),
        sizing_mode="stretch_width")


def effects_frame(data: dict[str, Any]) -> pd.DataFrame:
    """One row per (segment, treatment arm) and read-out: counts, the rate difference in
    points (mean, lo, hi of the 90% interval), P(effect > 0) and the call."""
    rows = []
    for e in data["effects"]:
        for readout in COLOURS:
            r = e[readout]
            mean, lo, hi = (100 * float(v) for v in r["rate_diff"])
            rows.append({"segment": e["segment"], "arm": e["arm"], "trials": e["trials"],
                         "control_trials": e["control_trials"], "readout": readout,
                         "mean": mean, "lo": lo, "hi": hi, "p": float(r["prob_positive"]),
                         "call": "winner" if r["winner"] else "loser" if r["loser"] else ""})
    return pd.DataFrame(rows, columns=["segment", "arm", "trials", "control_trials", "readout",
                                       "mean", "lo", "hi", "p", "call"])


def overall_points(frame: pd.DataFrame) -> dict[str, float]:
    """Per treatment arm, the pooled rate difference (points) averaged over segments
    weighted by their trials: the posterior mean of the effect on the experiment's mix of
    segments (a mean of means is exact; its interval is not in the read-out)."""
    pooled = frame[frame.readout == "pooled"]
    weights = pooled.trials + pooled.control_trials
    return {arm: float(np.average(g["mean"], weights=weights[g.index]))
            if weights[g.index].sum() > 0 else float(g["mean"].mean())
            for arm, g in pooled.groupby("arm", sort=False)}


def overall_text(data: dict[str, Any]) -> str:
    """The overall pooled effect per treatment arm, and the fit's divergences if any."""
    parts = [f"**Overall ({o['arm']} vs {data['control']})**: log-odds {o['d'][0]:+.3f} "
             f"[{o['d'][1]:+.3f}, {o['d'][2]:+.3f}], P(effect > 0) {o['prob_positive']:.3f}; "
             f"spread across segments {o['tau'][0]:.3f}" for o in data["overall"]]
    t = data.get("trials")  # the event store's read-out says what is in no segment
    if t and t["unset"] + t["other"] + t["not_recorded"]:
        parts.append(f"Trials in segments: {t['in_segments']}; in none: {t['unset']} without "
                     f"the attribute, {t['other']} past the first values kept, "
                     f"{t['not_recorded']} counted before it was configured.")
    divergences = data.get("diagnostics", {}).get("divergences", 0)
    if divergences:
        parts.append(f"**{divergences} divergent transitions** in the pooled fit: read its "
                     "intervals with care.")
    return "  \n".join(parts)


def forest(frame: pd.DataFrame, data: dict[str, Any]) -> Any:
    """Per treatment arm, each segment's 90% interval and mean, pooled and unpooled offset
    side by side, and the overall pooled effect as a vertical line."""
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401  (the options below are Bokeh's)

    overall = overall_points(frame)
    segments = list(dict.fromkeys(frame.segment))
    row = {s: len(segments) - 1 - i for i, s in enumerate(segments)}  # first on top
    plots = []
    for arm, g in frame.groupby("arm", sort=False):
        layers = [hv.VLine(0).opts(color="grey", line_dash="dotted"),
                  hv.VLine(overall[arm]).opts(color=COLOURS["pooled"], alpha=0.5,
                                              line_width=2)]
        for readout, colour in COLOURS.items():
            part = g[g.readout == readout]
            y = part.segment.map(row) + (-OFFSET if readout == "pooled" else OFFSET)
            part = part.assign(y=y, y1=y)
            layers.append(hv.Segments(part, kdims=["lo", "y", "hi", "y1"]).opts(
                color=colour, line_width=2))
            layers.append(hv.Scatter(part, kdims=["mean"],
                                     vdims=["y", "segment", "p", "call"], label=readout).opts(
                color=colour, size=7, tools=["hover"]))
        plots.append(hv.Overlay(layers).opts(
            title=f"{arm} − {data['control']}: rate difference (points), 90% intervals",
            xlabel="rate difference (points)", ylabel="", responsive=True,
            height=120 + 28 * len(segments), yticks=[(y, s) for s, y in row.items()],
            legend_position="top_right", show_grid=True))
    return hv.Layout(plots).cols(1)


def table(frame: pd.DataFrame) -> pd.DataFrame:
    """The table's rows: one per (segment, treatment arm), both read-outs side by side."""
    def cell(r: Any) -> str:
        return f"{r['mean']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}]"

    pooled = frame[frame.readout == "pooled"].reset_index(drop=True)
    unpooled = frame[frame.readout == "unpooled"].reset_index(drop=True)
    return pd.DataFrame({
        "segment": pooled.segment, "arm": pooled.arm, "trials": pooled.trials,
        "control trials": pooled.control_trials,
        "pooled (points)": pooled.apply(cell, axis=1), "P(effect > 0) pooled": pooled.p.round(3),
        "pooled call": pooled.call,
        "unpooled (points)": unpooled.apply(cell, axis=1),
        "P(effect > 0) unpooled": unpooled.p.round(3), "unpooled call": unpooled.call})
