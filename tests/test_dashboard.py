"""The dashboard's logic without a browser (param.trigger drives it as a session would)."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from conftest import make_posterior

from workbench import dashboard, events, store


def _log(eng, experiment, n, arms=("control", "treatment"), outcome=True, seed=0):
    rng = np.random.default_rng(seed)
    rows, outs = [], []
    for i in range(n):
        rid = uuid.uuid4().hex
        arm = arms[i % len(arms)]
        p = float(rng.uniform(0.05, 0.95))
        rows.append({"request_id": rid, "parent_id": None, "ts": time.time() - n + i,
                     "experiment": experiment, "arm": arm, "model_tag": f"m-{arm}:1",
                     "unit": str(i), "latency_ms": float(rng.gamma(2, 3)), "status": "ok",
                     "fallback_from": None, "n_rows": 1,
                     "summary": [{"mean": p, "std": 0.1, "interval": [max(p - 0.2, 0), min(
                         p + 0.2, 1)], "probabilities": {"no": 1 - p, "yes": p},
                                  "label": "yes"}], "instances": [[0.0] * 4]})
        if outcome:
            outs.append({"request_id": rid, "ts": time.time(), "experiment": experiment,
                         "outcome": int(rng.random() < p)})
    events.write_now(eng, "predictions", rows)
    events.write_now(eng, "outcomes", outs)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dash.db'}"
    url = request.getfixturevalue("postgres_url")
    eng = events.engine(url)
    with eng.begin() as conn:  # each test starts from an empty store
        for table in (events.outcomes, events.predictions, events.registry):
            conn.execute(table.delete())
    return url


def test_empty_store_shows_an_empty_state_not_a_traceback(db):
    app = dashboard.Dashboard(db_url=db)
    assert app.experiment is None
    view = app.experiments_tab()
    assert "No experiments" in view.object
    assert "No requests" in app.latency_tab().object


def test_tabs_render_from_the_event_store(db):
    eng = events.engine(db)
    _log(eng, "exp-a", 120)
    events.save_config(eng, "exp-a", {"name": "exp-a", "arms": [
        {"name": "control", "model": "champion"}, {"name": "treatment", "model": "x"}]})
    store.save(make_posterior("binary", name="dash-model"))
    app = dashboard.Dashboard(db_url=db)
    assert app.experiment == "exp-a"
    exp = app.experiments_tab()
    assert "120 predictions" in exp[0].object
    data, config, readout = app._data()
    assert [a["arm"] for a in readout["arms"]] == ["control", "treatment"]
    traffic = dashboard.traffic(readout, config)
    assert traffic["realised"].sum() == pytest.approx(1.0)
    assert len(dashboard.densities(readout)) > 0
    evo = dashboard.evolution(data, config)
    assert set(evo["arm"]) == {"control", "treatment"} and evo["P(best)"].between(0, 1).all()
    lat = dashboard.latency(data)
    assert {"p50", "p95", "p99", "requests", "errors"} <= set(lat.columns)
    assert lat["requests"].sum() == 120
    assert len(dashboard.widths(data)) == 120
    assert app.latency_tab() is not None and app.uncertainty_tab() is not None


def test_refresh_picks_up_new_events(db):
    eng = events.engine(db)
    _log(eng, "exp-b", 10)
    app = dashboard.Dashboard(db_url=db)
    before = app.version
    _log(eng, "exp-b", 5, seed=1)
    app.refresh()
    assert app.version == before + 1
    app.refresh()  # nothing new: no re-render
    assert app.version == before + 1
    assert "15 predictions" in app.experiments_tab()[0].object


def test_promote_and_rollback_act_through_the_store(db):
    first = store.save(make_posterior("binary", name="dash-promote", seed=1))
    second = store.save(make_posterior("binary", name="dash-promote", seed=2))
    store.set_alias("champion", first)
    app = dashboard.Dashboard(db_url=db)
    app.model_tag = second
    app._ask("promote?", app._promote)
    assert len(app.confirm.objects) == 3  # the question, Confirm, Cancel: nothing done yet
    assert store.resolve("champion") == first
    app.confirm.objects[1].clicks += 1  # Confirm
    assert store.resolve("champion") == second and "champion -> " in app.status.object
    app._ask("rollback?", app._rollback)
    app.confirm.objects[2].clicks += 1  # Cancel
    assert store.resolve("champion") == second
    app._ask("rollback?", app._rollback)
    app.confirm.objects[1].clicks += 1
    assert store.resolve("champion") == first


def test_whatif_redraws_when_a_feature_moves(db):
    tag = store.save(make_posterior("binary", name="dash-whatif"))
    app = dashboard.Dashboard(db_url=db)
    app.model_tag = tag
    panel = app.whatif_panel()
    sliders = panel[1][0].objects
    redraw = panel[1][1].object  # the function bound to the sliders
    before = _stats(redraw())
    sliders[-1].value = sliders[-1].end
    after = _stats(redraw())
    assert after != before


def _stats(view) -> str:
    import panel as pn

    for pane in view.select(pn.pane.Markdown):
        if pane.name == "whatif-stats":
            return pane.object
    raise AssertionError("no what-if stats pane")
