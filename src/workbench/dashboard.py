"""The Panel dashboard: experiments, latency, uncertainty and the model registry, live.

Everything it shows comes from ``workbench`` (the event store through
:mod:`workbench.events`, models through :mod:`workbench.store`); there is no SQL here. The
read-out is :func:`workbench.readout.read_out`, the same as ``GET /analysis`` and
``workbench analyze``. ``dashboards/workbench.py`` serves :class:`Dashboard`; its tables
come from :mod:`workbench.dashboard_data` (pure), the Experiments tab's lifecycle
buttons and audit trail from :mod:`workbench.dashboard_control`, and the Models tab's
feature services and online-store freshness from :mod:`workbench.dashboard_features`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param

from workbench import control, dashboard_features, event_reads, events, readout, store
from workbench import dashboard_data as frames
from workbench.config import ExperimentConfig
from workbench.dashboard_control import Confirmation, ControlPanel
from workbench.dashboard_drift import inputs_view
from workbench.dashboard_heldout import heldout_view
from workbench.dashboard_pipeline import PipelinePanel
from workbench.dashboard_segments import segments_view
from workbench.settings import load


def _empty(text: str) -> pn.pane.Alert:
    return pn.pane.Alert(text, alert_type="info", sizing_mode="stretch_width")


class Dashboard(pn.viewable.Viewer):
    """Tabs for Experiments, Latency, Uncertainty, Models and the gateways' Event pipeline
    (:mod:`workbench.dashboard_pipeline`; ``gateways`` None reads ``WORKBENCH_GATEWAY_URL``),
    refreshed every few seconds."""

    experiment = param.Selector(objects=[], doc="The experiment shown")
    model_tag = param.Selector(objects=[], doc="The model version shown")
    refresh_seconds = param.Number(default=None, bounds=(0.5, None), allow_None=True,
                                   doc="Seconds between refreshes (WORKBENCH_DASHBOARD_REFRESH)")
    version = param.Integer(default=0, doc="Bumped on every refresh that found a change")
    actor = param.String(default="dashboard", doc="Who lifecycle actions are audited as")
    role = param.Selector(default="admin", objects=["admin", "viewer"],
                          doc="admin may act (lifecycle, promote, rollback); viewer may read")

    def __init__(self, db_url: str | None = None, gateways: list[str] | None = None,
                 **params: Any) -> None:
        super().__init__(**params)
        if self.refresh_seconds is None:
            self.refresh_seconds = load().dashboard_refresh
        self.engine = events.engine(db_url)
        self.pipeline = PipelinePanel(gateways)
        self._models_ask = Confirmation(after=self.refresh)
        self.status, self.confirm = self._models_ask.status, self._models_ask.row
        self.promote = pn.widgets.Button(label="Promote to champion", color="primary")
        self.rollback = pn.widgets.Button(label="Roll back champion", color="warning")
        self.promote.on_click(lambda _: self._ask(f"Point champion at {self.model_tag}?",
                                                  self._promote))
        self.rollback.on_click(lambda _: self._ask(
            "Point champion back at its previous target?", self._rollback))
        self.control = ControlPanel(self.engine, decided=self._decided, refresh=self.refresh,
                                    actor=self.actor, may_act=self.role == "admin")
        self.refresh()
        self._follow()
        self.param.watch(self._follow, ["experiment", "version", "actor", "role"])

    # -- state --

    def refresh(self) -> None:
        """Re-read the stores; re-render only when something changed (cheap when idle)."""
        self.pipeline.refresh()
        names = events.experiments(self.engine)
        self.param.experiment.objects = names
        if names and self.experiment not in names:
            self.experiment = names[-1]
        models = store.list_models()
        tags = [m.tag for m in models]
        self.param.model_tag.objects = tags
        if tags and self.model_tag not in tags:
            self.model_tag = tags[0]
        state = control.get(self.engine, self.experiment) if self.experiment else None
        signature = (names, [(m.tag, m.aliases) for m in models],
                     event_reads.signature(self.engine, self.experiment) if self.experiment
                     else (),
                     state.version if state else None)
        if signature != getattr(self, "_signature", None):
            self._signature = signature
            self.updated = time.strftime("%H:%M:%S")
            self.version += 1

    def _data(self) -> tuple[events.Events, ExperimentConfig, dict[str, Any]] | None:
        """The events, config and read-out, computed once per refresh and shared by tabs."""
        if not self.experiment:
            return None
        key = (self.experiment, self.version)
        if getattr(self, "_cached", (None, None))[0] != key:
            self._cached = (key, self._compute())
        return self._cached[1]

    def _compute(self) -> tuple[events.Events, ExperimentConfig, dict[str, Any]]:
        # The one read-out, with its default draws and seed (the numbers of GET /analysis
        # and `workbench analyze`), and the P(best) history from the same pass over the
        # store; the plots draw the most recent events (bounded: event_reads.SAMPLE).
        config = readout.config_of(self.engine, self.experiment)
        result, self._history = frames.read_out_with_history(self.engine, config)
        return event_reads.recent(self.engine, self.experiment), config, result

    def _decided(self) -> str | None:
        """The read-out's decided winner, if any (Conclude's default)."""
        loaded = self._data()
        return loaded[2]["decision"]["winner"] if loaded else None

    def _follow(self, *_: Any) -> None:
        """Keep the control panel on the experiment, version and actor shown."""
        self.control.param.update(experiment=self.experiment, version=self.version,
                                  actor=self.actor, may_act=self.role == "admin")
        self.promote.disabled = self.rollback.disabled = self.role != "admin"

    # -- tabs --

    @param.depends("experiment", "version")
    def experiments_tab(self) -> pn.viewable.Viewable:
        import hvplot.pandas  # noqa: F401

        loaded = self._data()
        if loaded is None:
            return _empty("No experiments in the event store yet. Serve the experiment "
                          "gateway and send traffic (`make demo` does both).")
        data, config, out = loaded
        d = out["decision"]
        srm = out["srm"]
        alerts = [pn.pane.Alert(f"**Decision: {d['winner'] or d['status']}** ({d['reason']})",
                                alert_type="success" if d["winner"] else "secondary")]
        if srm and srm["mismatch"]:
            alerts.append(pn.pane.Alert(f"**Sample ratio mismatch**: chi-square p = "
                                        f"{srm['p_value']:.2g}; the split does not follow the "
                                        "weights, so the read-out is suspect.",
                                        alert_type="danger"))
        if out["skipped"]:
            alerts.append(pn.pane.Alert(
                f"**{out['skipped']} stored outcome(s) skipped**: the metric "
                f"({out['metric']}) cannot take them (written before outcomes were checked); "
                "they are not counted.", alert_type="warning", name="skipped"))
        rule = pn.pane.Markdown(f"Counted: {out['counted']}.", name="counting-rule",
                                styles={"font-size": "0.85em", "color": "#6c757d"})
        dens = frames.densities(out)
        posterior = (dens.hvplot.line(x="x", y="density", by="arm", height=280, responsive=True,
                                      title=f"posterior of the metric ({out['metric']})")
                     if len(dens) else _empty("No outcomes yet: the posteriors appear once "
                                              "feedback arrives."))
        evo = frames.evolution(self._history, config)
        over_time = (evo.hvplot.line(x="time", y="P(best)", by="arm", height=250,
                                     responsive=True, ylim=(0, 1), title="P(best) over time")
                     if len(evo) else _empty("Not enough outcomes for a history yet."))
        counts = pn.pane.Markdown(f"**{out['totals']['predictions']} predictions**, "
                                  f"{out['totals']['outcomes']} outcomes; "
                                  f"updated {self.updated}", name="experiment-counts")
        return pn.Column(
            counts, *alerts, rule,
            pn.Row(pn.Column("### Traffic: planned vs realised",
                             pn.widgets.Tabulator(frames.traffic(out, config), disabled=True,
                                                  show_index=False, sizing_mode="stretch_width")),
                   pn.Column("### Read-out",
                             pn.widgets.Tabulator(frames.summary_table(out), disabled=True,
                                                  show_index=False, sizing_mode="stretch_width"))),
            posterior, over_time, segments_view(out.get("segments"),
                                                attribute=config.segment_by or ""),
            sizing_mode="stretch_width")

    @param.depends("experiment", "version")
    def latency_tab(self) -> pn.viewable.Viewable:
        import hvplot.pandas  # noqa: F401

        loaded = self._data()
        if loaded is None:
            return _empty("No requests logged yet.")
        data = loaded[0]
        frame = frames.latency(data)
        if not len(frame):
            return _empty("No requests logged yet.")
        raw = pd.DataFrame({"latency_ms": data.latency_ms, "arm": data.arm})
        return pn.Column(
            frame.hvplot.line(x="time", y=["p50", "p95", "p99"], by="arm", height=260,
                              responsive=True, ylabel="ms", title="latency percentiles by arm"),
            frame.hvplot.line(x="time", y="p50", by="model", height=220, responsive=True,
                              ylabel="ms", title="median latency by model version"),
            raw.hvplot.hist("latency_ms", by="arm", bins=40, alpha=0.6, height=240,
                            responsive=True, title="latency histogram"),
            frame.groupby("time")[["requests", "errors"]].sum().reset_index().hvplot.line(
                x="time", y=["requests", "errors"], height=220, responsive=True,
                title="requests and fallbacks per time bin"),
            sizing_mode="stretch_width")

    @param.depends("experiment", "version")
    def uncertainty_tab(self) -> pn.viewable.Viewable:
        import hvplot.pandas  # noqa: F401

        parts: list[Any] = []
        loaded = self._data()
        if loaded is not None:
            data, _, out = loaded
            w = frames.widths(data)
            if len(w):
                parts.append(w.hvplot.hist("width", by="arm", bins=30, alpha=0.6, height=240,
                                           responsive=True, title="served interval widths"))
            if out["reliability"]:
                rel = pd.concat([pd.DataFrame(v).assign(arm=k)
                                 for k, v in out["reliability"].items()])
                diag = pd.DataFrame({"predicted": [0, 1], "observed": [0, 1]})
                parts.append(rel.hvplot.line(x="predicted", y="observed", by="arm",
                                              height=260, responsive=True,
                                              title="reliability against feedback")
                              * diag.hvplot.line(x="predicted", y="observed", color="grey",
                                                 line_dash="dashed"))
            if out["coverage"]:
                parts.append(pn.pane.Markdown("**Interval coverage**: " + ", ".join(
                    f"{a}: {c['coverage']:.1%} of {c['rows']}"
                    for a, c in out["coverage"].items())))
            parts.append(inputs_view(self.engine, self.experiment))
        if not parts:
            parts.append(_empty("No served intervals with feedback yet."))
        return pn.Column(*parts, sizing_mode="stretch_width")

    @param.depends("model_tag")
    def whatif_panel(self) -> pn.viewable.Viewable:
        if not self.model_tag:
            return _empty("No models in the store: `workbench train` one.")
        posterior = store.get(self.model_tag)
        from workbench.predict import Predictor

        predictor = Predictor(posterior, buckets=(1,))
        sliders = []
        for i, name in enumerate(posterior.feature_names[:12]):
            loc, scale = float(posterior.x_loc[i]), float(posterior.x_scale[i] or 1.0)
            sliders.append(pn.widgets.FloatSlider(label=name, start=loc - 3 * scale,
                                                  end=loc + 3 * scale, value=loc,
                                                  step=scale / 20))
        hidden = len(posterior.feature_names) - len(sliders)

        def draw(*values: float) -> pn.viewable.Viewable:
            import hvplot.pandas  # noqa: F401

            row = np.asarray(posterior.x_loc, np.float32).copy()
            row[: len(values)] = values
            pred = predictor.predict(row[None, :], draws=predictor.max_draws)
            d = pd.DataFrame({"draw": pred.draws[0]})
            stats = pn.pane.Markdown(f"mean **{pred.mean[0]:.4f}**, std {pred.std[0]:.4f}, "
                                     f"90% interval [{pred.lower[0]:.4f}, "
                                     f"{pred.upper[0]:.4f}]", name="whatif-stats")
            return pn.Column(stats, d.hvplot.hist("draw", bins=30, height=240, responsive=True,
                                                  title="posterior predictive draws"))

        note = f" ({hidden} more features held at their training mean)" if hidden else ""
        return pn.Column(f"### What if: {self.model_tag}{note}",
                         pn.Row(pn.Column(*sliders, width=320),
                                pn.bind(draw, *sliders), sizing_mode="stretch_width"),
                         sizing_mode="stretch_width")

    @param.depends("model_tag", "version")
    def models_view(self) -> pn.viewable.Viewable:
        table = frames.models_table()
        if not len(table):
            return _empty("No models in the store yet: `workbench train logistic --dataset "
                          "breast_cancer --alias champion`.")
        return pn.widgets.Tabulator(table, disabled=True, show_index=False,
                                    sizing_mode="stretch_width")

    @param.depends("version")
    def features_view(self) -> pn.viewable.Viewable:
        """Each model's feature service, and the online store's freshness."""
        return dashboard_features.view(store.list_models())

    @param.depends("model_tag")
    def model_plots(self) -> pn.viewable.Viewable:
        return self._arviz(self.model_tag)

    @staticmethod
    @pn.cache(max_items=8)
    def _arviz(tag: str | None) -> pn.viewable.Viewable:
        if not tag:
            return _empty("Select a model.")
        import arviz as az

        idata = store.get(tag).to_inference_data()
        var_names = [v for v in idata.posterior.data_vars][:3]
        # Explicit hex colours: ArviZ's defaults are RGB float tuples, which Bokeh 3 refuses.
        forest = az.plot_forest(idata, var_names=var_names, combined=True, backend="bokeh",
                                show=False, figsize=(6, 6), colors="#1f77b4")
        rank = az.plot_rank(idata, var_names=var_names[:1], backend="bokeh", show=False,
                            colors=["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"])
        return pn.Row(pn.pane.Bokeh(_first(forest)), pn.pane.Bokeh(_first(rank)))

    # -- actions --

    def _ask(self, question: str, action: Callable[[], str]) -> None:
        """Ask in the Models tab; act on Confirm (the model store's aliases, not audited
        experiment state)."""
        if self.role != "admin":  # the buttons are off too; this holds whatever is sent
            self.status.object = (f"**Refused:** {self.actor} may view but not act (needs an "
                                  "API key with the admin scope)")
            return
        self._models_ask.ask(question, action)

    def _promote(self) -> str:
        tag = store.set_alias("champion", self.model_tag, by=self.actor)
        return f"champion -> {tag} (by {self.actor})"

    def _rollback(self) -> str:
        return f"champion rolled back -> {store.rollback('champion', by=self.actor)}"

    # -- layout --

    def __panel__(self) -> pn.viewable.Viewable:
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.add_periodic_callback(self.refresh, period=int(self.refresh_seconds * 1000))
        controls = pn.Row(pn.widgets.Select.from_param(self.param.experiment, name="experiment"),
                          pn.widgets.Select.from_param(self.param.model_tag, name="model"))
        # Widgets that keep state (sliders, buttons, the confirmation) are placed once;
        # only the views that depend on the data re-render.
        experiments = pn.Column(self.control, self.experiments_tab, self.control.audit(),
                                sizing_mode="stretch_width")
        uncertainty = pn.Column(self.uncertainty_tab, pn.bind(heldout_view, self.param.version),
                                self.whatif_panel, sizing_mode="stretch_width")
        models = pn.Column(self.models_view, pn.Row(self.promote, self.rollback),
                           self.confirm, self.status, self.features_view, self.model_plots,
                           sizing_mode="stretch_width")
        return pn.Column(
            controls,
            pn.Tabs(("Experiments", experiments), ("Latency", self.latency_tab),
                    ("Uncertainty", uncertainty), ("Models", models),
                    ("Event pipeline", self.pipeline),
                    dynamic=True, sizing_mode="stretch_width"),
            sizing_mode="stretch_width")


def _first(plot: Any) -> Any:
    """ArviZ's Bokeh backend returns a figure or an array of figures (a grid)."""
    from bokeh.layouts import gridplot

    if isinstance(plot, np.ndarray):
        return gridplot(plot.tolist()) if plot.ndim == 2 else gridplot([plot.tolist()])
    return plot
