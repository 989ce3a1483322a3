"""The Uncertainty tab's held-out calibration, per model version in the store.

``workbench train`` scores every version on the rows it held out and stores the scores in
the artifact (:func:`workbench.fit.score`). This view reads them back, newest version
first: for a regression, the share of held-out outcomes inside their 90% interval and
whether it is within 90% ± 3% (:func:`workbench.calibration.coverage_band`); for a
classifier, the expected calibration error and a reliability diagram against the
diagonal. Versions trained before a score was stored say what is missing.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import panel as pn

from workbench import calibration, store

logger = logging.getLogger("workbench.dashboard")

TARGET = f"{calibration.COVERAGE_TARGET:.0%}"
BAND = f"{TARGET} ± {calibration.COVERAGE_TOLERANCE:.0%}"  # "90% ± 3%"
COLUMNS = ["version", "aliases", "model", "dataset", "rows", "coverage 90%", BAND,
           "ECE", "accuracy", "note"]
DIAGRAM_VERSIONS = 6  # the newest classifier versions drawn in the reliability diagram


@pn.cache(max_items=256)
def _scores(tag: str) -> dict[str, Any]:
    """A stored version's held-out scores, cached by tag (a stored version never
    changes); a failure raises, and is not cached."""
    return store.get(tag).scores


def scores_of(tag: str) -> dict[str, Any] | str:
    """A stored version's held-out scores, or why they cannot be read: a broken artifact
    never breaks the view, and is tried again on the next refresh."""
    try:
        return _scores(tag)
    except Exception as exc:  # corrupt, removed, unregistered, unreadable: say so
        logger.warning("held-out scores of %s unreadable: %r", tag, exc)
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        return f"artifact unreadable: {message}"


Scores = dict[str, dict[str, Any] | str]  # by tag: held-out scores, or why not (scores_of)


def table(models: list[store.ModelInfo], scores: Scores | None = None) -> pd.DataFrame:
    """One row per model version: its held-out rows and calibration, and a note on what
    is missing. ``scores``: each version's :func:`scores_of`, read here if not given."""
    scores = scores if scores is not None else {m.tag: scores_of(m.tag) for m in models}
    rows = []
    for m in models:
        s = scores[m.tag]
        row: dict[str, Any] = {"version": m.tag, "aliases": ", ".join(m.aliases),
                               "model": m.model, "dataset": m.metadata.get("dataset", ""),
                               "note": s if isinstance(s, str) else ""}
        s = s if isinstance(s, dict) else {}
        row["rows"] = s.get("rows")
        if "coverage_90" in s:
            verdict, chance = calibration.coverage_band(s["coverage_90"], s["rows"])
            row |= {"coverage 90%": s["coverage_90"], BAND: verdict}
            if verdict != "within" and chance > calibration.COVERAGE_TOLERANCE:
                row["note"] = (f"± {chance:.1%} by chance on {s['rows']} rows: too few to "
                               "tell")
        elif m.kind == "regression" and s:
            row["note"] = "no coverage stored"
        if "ece" in s:
            row["ECE"] = s["ece"]
        elif m.kind in ("binary", "multiclass") and s:
            row["note"] = ("no calibration error or reliability stored (trained before "
                           "they were scored): retrain to see them")
        row["accuracy"] = s.get("accuracy")
        if not s and not row["note"]:
            row["note"] = "no held-out rows"
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    text = ["aliases", "dataset", BAND, "note"]
    frame[text] = frame[text].fillna("")
    return frame


def reliability(models: list[store.ModelInfo], scores: Scores | None = None) -> pd.DataFrame:
    """The reliability bins of the newest classifier versions that stored them, with the
    version (and its ECE) as the series name."""
    scores = scores if scores is not None else {m.tag: scores_of(m.tag) for m in models}
    frames = []
    for m in models:
        s = scores[m.tag]
        if isinstance(s, dict) and s.get("reliability"):
            frames.append(pd.DataFrame(s["reliability"]).assign(
                version=f"{m.tag} (ECE {s['ece']:.3f})"))
        if len(frames) == DIAGRAM_VERSIONS:
            break
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["lo", "hi", "rows", "predicted", "observed", "version"])


def heldout_view(*_: Any) -> pn.viewable.Viewable:
    """The held-out calibration of every model version in the store (the arguments are
    ignored: pass the dashboard's refresh counter to redraw when the store changes)."""
    import hvplot.pandas  # noqa: F401

    models = store.list_models()
    parts: list[Any] = ["### Held-out calibration per model version"]
    if not models:
        parts.append(pn.pane.Markdown("No models in the store: `workbench train` one.",
                                      name="heldout-empty"))
        return pn.Column(*parts, sizing_mode="stretch_width")
    scores = {m.tag: scores_of(m.tag) for m in models}  # each artifact read once a render
    frame = table(models, scores)
    notes = frame[frame.note != ""]
    parts += [pn.pane.Markdown(
        "Scored by `workbench train` on the rows it held out. Regression: the share of "
        f"outcomes inside their {TARGET} interval, to be within {BAND}. Classifiers: the "
        f"expected calibration error over {calibration.RELIABILITY_BINS} bins of "
        "P(positive class) for a binary model, of the predicted class's probability for "
        "several classes.", name="heldout-about",
        styles={"font-size": "0.85em", "color": "#6c757d"}),
        pn.widgets.Tabulator(frame.drop(columns="note").round(4), name="heldout-versions",
                             disabled=True, show_index=False, sizing_mode="stretch_width")]
    if len(notes):
        parts.append(pn.pane.Markdown("\n".join(f"- `{r.version}`: {r.note}"
                                                for r in notes.itertuples()),
                                      name="heldout-notes"))
    rel = reliability(models, scores)
    if len(rel):
        diag = pd.DataFrame({"predicted": [0.0, 1.0], "observed": [0.0, 1.0]})
        style = {"x": "predicted", "y": "observed", "by": "version"}
        shown, scored = rel.version.nunique(), int(frame.ECE.notna().sum())
        title = "held-out reliability per model version" + (
            f" (the newest {shown} of {scored})" if scored > shown else "")
        parts.append(rel.hvplot.line(**style, height=340, responsive=True, xlim=(-0.02, 1.02),
                                     ylim=(-0.02, 1.02), legend="bottom",
                                     title=title)
                     * rel.hvplot.scatter(**style, hover_cols=["rows", "lo", "hi"], size=40,
                                          legend="bottom")
                     * diag.hvplot.line(x="predicted", y="observed", color="grey",
                                        line_dash="dashed"))
    return pn.Column(*parts, sizing_mode="stretch_width")
