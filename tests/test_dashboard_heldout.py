"""The Uncertainty tab's held-out calibration per model version, read from the store."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import panel as pn
import pytest
from conftest import make_posterior

from workbench import dashboard, store
from workbench.dashboard_heldout import heldout_view, reliability, table
from workbench.fit import score


def _scored(kind: str, name: str, rows: int = 400, seed: int = 0):
    """A posterior with known draws, scored on rows simulated from its own mean
    parameters (so it is about calibrated)."""
    posterior = make_posterior(kind, name=name, seed=seed)
    rng = np.random.default_rng(seed)
    X = rng.normal(posterior.x_loc, posterior.x_scale, size=(rows, len(posterior.x_loc)))
    means = {k: v.mean(axis=(0, 1)) for k, v in posterior.samples.items()}
    linear = means["intercept"] + posterior.standardize(X) @ means["coef"]
    if kind == "binary":
        y = (rng.random(rows) < 1 / (1 + np.exp(-linear))).astype(np.int64)
    else:
        y = (linear + rng.normal(0, means["sigma"], rows)) * posterior.y_scale + posterior.y_loc
    return replace(posterior, scores=score(posterior, X, y))


@pytest.fixture(scope="module")
def versions() -> dict[str, str]:
    regression = _scored("regression", "heldout-reg")
    classifier = _scored("binary", "heldout-clf")
    old = make_posterior("binary", name="heldout-old")  # trained before ECE was scored
    old = replace(old, scores={"rows": 50, "accuracy": 0.9, "lpd": -0.3})
    few = make_posterior("regression", name="heldout-few")
    few = replace(few, scores={"rows": 30, "rmse": 1.0, "lpd": -1.0, "coverage_90": 0.8})
    return {"regression": store.save(regression), "classifier": store.save(classifier),
            "old": store.save(old), "few": store.save(few),
            "unscored": store.save(make_posterior("multiclass", name="heldout-none"))}


def test_the_table_shows_coverage_ece_and_what_is_missing(versions):
    models = [m for m in store.list_models() if m.tag in versions.values()]
    frame = table(models).set_index("version")
    reg, clf = frame.loc[versions["regression"]], frame.loc[versions["classifier"]]
    assert reg["rows"] == 400 and reg["90% ± 3%"] == "within"
    assert 0.87 <= reg["coverage 90%"] <= 0.93 and np.isnan(reg["ECE"])
    assert clf["rows"] == 400 and 0 < clf["ECE"] < 0.1 and clf["note"] == ""
    assert reg["dataset"] == "" and reg["model"] == "linear"
    old = frame.loc[versions["old"]]
    assert np.isnan(old["ECE"]) and old["accuracy"] == 0.9
    assert old["note"].startswith("no calibration error or reliability stored")
    few = frame.loc[versions["few"]]
    assert few["90% ± 3%"] == "below" and few["note"].startswith("± 5.5% by chance on 30 rows")
    assert frame.loc[versions["unscored"], "note"] == "no held-out rows"

    rel = reliability(models)
    assert set(rel["version"]) == {f"{versions['classifier']} (ECE {clf['ECE']:.3f})"}
    assert rel["rows"].sum() == 400


def test_the_view_renders_the_table_and_a_reliability_diagram_in_the_dashboard(versions,
                                                                               tmp_path):
    view = heldout_view()
    view.get_root()  # builds the Bokeh models, as a browser session would
    shown = {t.name: t.value for t in view.select(pn.widgets.Tabulator)}
    assert set(versions.values()) <= set(shown["heldout-versions"]["version"])
    (diagram,) = view.select(pn.pane.HoloViews)
    lines, points, diagonal = diagram.object.values()
    label = reliability([m for m in store.list_models() if m.tag == versions["classifier"]]
                        )["version"][0]
    assert label in set(lines.keys()) & set(points.keys())
    assert points[label].dframe()["rows"].sum() == 400  # each bin a point, rows on hover
    assert diagonal.dframe()["observed"].tolist() == [0.0, 1.0]
    assert f"`{versions['old']}`: no calibration error" in view.select(
        lambda o: getattr(o, "name", "") == "heldout-notes")[0].object

    # wired into the dashboard's Uncertainty tab, redrawn with its refresh counter
    app = dashboard.Dashboard(db_url=f"sqlite:///{tmp_path / 'dash.db'}")
    tabs = app.__panel__().select(pn.Tabs)[0]
    uncertainty = tabs[tabs._names.index("Uncertainty")]
    assert any(t.name == "heldout-versions" for t in uncertainty.select(pn.widgets.Tabulator))
