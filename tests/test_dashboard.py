"""The dashboard's logic without a browser (param.trigger drives it as a session would)."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from conftest import make_posterior

from workbench import control, dashboard, dashboard_data, events, readout, report, schema, store
from workbench.config import parse

CONFIG = {"name": "exp-c", "arms": [{"name": "control", "model": "champion"},
                                    {"name": "treatment", "model": "x"}]}


def _log(eng, experiment, n, arms=("control", "treatment"), outcome=True, seed=0,
         rates=None):
    rng = np.random.default_rng(seed)
    rows, outs = [], []
    for i in range(n):
        rid = uuid.uuid4().hex
        arm = arms[i % len(arms)]
        p = float(rates[arm] if rates else rng.uniform(0.05, 0.95))
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
        for table in (schema.outcomes, schema.predictions, schema.registry, schema.audit,
                      schema.state):
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
    data, config, out = app._data()
    assert [a["arm"] for a in out["arms"]] == ["control", "treatment"]
    traffic = dashboard_data.traffic(out, config)
    assert traffic["realised"].sum() == pytest.approx(1.0)
    assert len(dashboard_data.densities(out)) > 0
    evo = dashboard_data.evolution(data, config)
    assert set(evo["arm"]) == {"control", "treatment"} and evo["P(best)"].between(0, 1).all()
    lat = dashboard_data.latency(data)
    assert {"p50", "p95", "p99", "requests", "errors"} <= set(lat.columns)
    assert lat["requests"].sum() == 120
    assert len(dashboard_data.widths(data)) == 120
    latency = {_title(pane): pane.object for pane in app.latency_tab()}
    assert list(latency) == ["latency percentiles by arm", "median latency by model version",
                             "latency histogram", "requests and fallbacks per time bin"]
    assert set(latency["median latency by model version"].keys()) == {"m-control:1",
                                                                      "m-treatment:1"}
    assert _totals(latency["latency histogram"]) == {"control": 60, "treatment": 60}
    assert _totals(latency["requests and fallbacks per time bin"]) == {"requests": 120,
                                                                        "errors": 0}
    tab = app.uncertainty_tab()
    *plots, inputs = tab
    uncertainty = [pane.object for pane in plots]
    assert "No drift to show" in inputs[-1].object  # these models are not in the store
    assert _title(tab[0]) == "served interval widths"
    assert _totals(uncertainty[0]) == {"control": 60, "treatment": 60}  # one row each
    reliability = uncertainty[1].get(0)  # the arms' curves, under the diagonal
    assert set(reliability.keys()) == {"control", "treatment"}


def _title(pane) -> str | None:
    """The title a HoloViews pane's plot is drawn with."""
    import holoviews as hv

    return hv.Store.lookup_options("bokeh", pane.object, "plot").kwargs.get("title")


def _totals(overlay) -> dict[str, float]:
    """Each element of an overlay: the sum of its values (a histogram: its count)."""
    return {key: float(element.dframe().iloc[:, -1].sum())
            for key, element in zip(overlay.keys(), overlay.values(), strict=True)}


def test_the_uncertainty_tab_shows_ood_flags_and_a_planted_drift(db):
    from dataclasses import replace

    from workbench import ood

    rng = np.random.default_rng(3)
    base = make_posterior("binary", name="dash-drift")
    train = rng.normal(base.x_loc, base.x_scale, size=(1000, 4))
    tag = store.save(replace(base, inputs=ood.summarize((train - base.x_loc) / base.x_scale)))
    served = rng.normal(base.x_loc, base.x_scale, size=(400, 4))
    served[:, 1] += 2 * base.x_scale[1]  # the traffic moved in one feature
    eng = events.engine(db)
    events.write_now(eng, "predictions", [
        {"request_id": uuid.uuid4().hex, "parent_id": None, "ts": time.time() - 400 + i,
         "experiment": "exp-d", "arm": "control", "model_tag": tag, "unit": str(i),
         "latency_ms": 1.0, "status": "ok", "fallback_from": None, "n_rows": 1,
         "summary": [{"mean": 0.5, "std": 0.1, "interval": [0.3, 0.7], "distance": 1.0,
                      "ood": i % 4 == 0}], "instances": [row.tolist()]}
        for i, row in enumerate(served)])
    view = dashboard.inputs_view(eng, "exp-d")
    assert view[1].object == f"**Out of distribution**: {tag}: 25.0% of 400 rows"
    table = view[3].value
    top = table.iloc[0]
    assert (top.feature, top.level, top.rows) == ("x1", "major", 400)
    assert set(table.level[table.feature != "x1"]) == {"stable"}


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


def test_the_read_out_is_the_one_read_out_with_skipped_outcomes_and_the_rule_shown(db):
    eng = events.engine(db)
    _log(eng, "exp-r", 60)
    events.save_config(eng, "exp-r", CONFIG | {"name": "exp-r"})
    t = time.time()
    fallback = [{"request_id": f"fb-{i}", "parent_id": None, "ts": t + i, "experiment": "exp-r",
                 "arm": "control", "model_tag": "m-control:1", "unit": f"fb{i}",
                 "latency_ms": 5.0, "status": "fallback", "fallback_from": "treatment",
                 "n_rows": 1, "summary": [{"mean": 0.5, "std": 0.1, "interval": [0.3, 0.7]}],
                 "instances": [[0.0] * 4]} for i in range(4)]
    events.write_now(eng, "predictions", fallback)
    events.write_now(eng, "outcomes", [  # fb-0's outcome is one a binary metric cannot take
        {"request_id": f"fb-{i}", "ts": t, "experiment": "exp-r",
         "outcome": "maybe" if i == 0 else 1} for i in range(4)])
    app = dashboard.Dashboard(db_url=db)
    app.experiment = "exp-r"
    out = app._data()[2]
    assert out == readout.read_out(eng, "exp-r").to_dict()  # the numbers of GET /analysis
    by_arm = {a["arm"]: a for a in out["arms"]}
    assert by_arm["treatment"]["predictions"] == 34  # its fallbacks count for it (ITT)
    assert out["skipped"] == 1
    view = app.experiments_tab()
    assert "1 stored outcome(s) skipped" in _pane(view, "skipped").object
    assert readout.FILTER in _pane(view, "counting-rule").object


def test_lifecycle_buttons_confirm_then_act_and_are_audited(db):
    eng = events.engine(db)
    _log(eng, "exp-c", 40)
    events.save_config(eng, "exp-c", CONFIG)
    control.ensure(eng, parse(CONFIG))
    app = dashboard.Dashboard(db_url=db)
    panel = app.control
    assert "**running**" in panel.state_view().object
    assert panel.winner.options == ["control", "treatment"]

    panel.reason.value = "incident 42"
    panel.pause.clicks += 1
    assert len(panel.confirmation.row.objects) == 3  # question, Confirm, Cancel
    assert control.require(eng, "exp-c").status == "running"  # nothing done yet
    panel.confirmation.row.objects[2].clicks += 1  # Cancel
    assert control.require(eng, "exp-c").status == "running"
    panel.pause.clicks += 1
    version = app.version
    panel.confirmation.row.objects[1].clicks += 1  # Confirm
    assert control.require(eng, "exp-c").status == "paused"
    assert "exp-c paused by dashboard" in panel.confirmation.status.object
    assert app.version == version + 1 and panel.version == app.version  # re-rendered
    assert "**paused**" in panel.state_view().object
    row = control.history(eng, "exp-c")[0]
    assert (row["actor"], row["action"], row["reason"]) == ("dashboard", "pause", "incident 42")
    assert (row["before"]["status"], row["after"]["status"]) == ("running", "paused")
    table = panel.audit_view().value
    assert list(table.iloc[0][["actor", "action", "reason"]]) == ["dashboard", "pause",
                                                                  "incident 42"]
    assert table.iloc[0]["before"].startswith("running") and \
        table.iloc[0]["after"].startswith("paused")
    assert panel.reason.value == ""  # cleared once recorded

    app.actor = "alice"  # a later issue passes the logged-in user's name
    panel.resume.clicks += 1
    panel.confirmation.row.objects[1].clicks += 1
    assert control.require(eng, "exp-c").status == "running"
    assert control.history(eng, "exp-c")[0]["actor"] == "alice"

    panel.ramp_arm.value = "treatment"
    panel.ramp_weight.value = 0.25
    panel.ramp.clicks += 1
    panel.confirmation.row.objects[1].clicks += 1
    assert control.require(eng, "exp-c").weights == pytest.approx(
        {"control": 0.75, "treatment": 0.25})
    assert "treatment 25%" in panel.state_view().object

    panel.winner.value = "treatment"
    panel.conclude.clicks += 1
    panel.confirmation.row.objects[1].clicks += 1
    state = control.require(eng, "exp-c")
    assert (state.status, state.winner) == ("concluded", "treatment")
    assert [r["action"] for r in control.history(eng, "exp-c")] == [
        "conclude", "ramp", "resume", "pause", "start"]


def test_an_action_the_state_does_not_allow_is_refused_as_text(db):
    eng = events.engine(db)
    _log(eng, "exp-c", 20)
    control.ensure(eng, parse(CONFIG))
    app = dashboard.Dashboard(db_url=db)
    before = control.require(eng, "exp-c")
    app.control.resume.clicks += 1  # it is running, not paused
    app.control.confirmation.row.objects[1].clicks += 1
    assert app.control.confirmation.status.object == (
        "**Refused:** experiment 'exp-c' is running, not paused")
    assert control.require(eng, "exp-c") == before
    assert len(control.history(eng, "exp-c")) == 1  # only its start


def test_conclude_defaults_to_the_decided_winner(db):
    eng = events.engine(db)
    _log(eng, "exp-c", 400, rates={"control": 0.2, "treatment": 0.6})
    events.save_config(eng, "exp-c", CONFIG)
    control.ensure(eng, parse(CONFIG))
    app = dashboard.Dashboard(db_url=db)
    app.control.state_view()
    assert app._data()[2]["decision"]["winner"] == "treatment"
    assert app.control.winner.value == "treatment"


def test_without_a_live_state_the_actions_are_off_and_say_why(db):
    eng = events.engine(db)
    _log(eng, "exp-old", 10)  # events from before the control plane: no state row
    app = dashboard.Dashboard(db_url=db)
    assert "No live state recorded for 'exp-old'" in app.control.state_view().object
    assert app.control.pause.disabled and app.control.conclude.disabled
    assert "No lifecycle actions" in app.control.audit_view().object


def _pane(view, name: str):
    import panel as pn

    for pane in view.select(pn.pane.PaneBase):
        if pane.name == name:
            return pane
    raise AssertionError(f"no pane named {name!r}")


def _stats(view) -> str:
    import panel as pn

    for pane in view.select(pn.pane.Markdown):
        if pane.name == "whatif-stats":
            return pane.object
    raise AssertionError("no what-if stats pane")


HEALTH = {"ready": True, "arms": {"control": {"ready": True}}, "state": {"version": 3},
          "event_store": {"dialect": "postgresql", "up": True, "down_since": None,
                          "last_error": None},
          "writer": {"alive": True, "queue": 0, "capacity": 10000, "restarts": 0,
                     "written": 123, "spooled": 0, "replayed": 0, "dead": 0, "dropped": 0,
                     "backpressure": 0},
          "spool": {"path": "/var/spool/workbench", "bytes": 0, "max_bytes": 1073741824}}


def test_the_pipeline_table_reshapes_each_gateways_health():
    down = HEALTH | {
        "ready": False,
        "event_store": {"dialect": "postgresql", "up": False, "down_since": 1_700_000_000.0,
                        "last_error": "cannot reach postgresql://admin:hunter2@db/events"},
        "writer": HEALTH["writer"] | {"queue": 9000, "spooled": 40, "dead": 2, "restarts": 1},
        "spool": {"bytes": 4096}}
    older = {"ready": True, "arms": {}, "event_store": "sqlite"}  # before the pipeline fields
    health = {"http://a:3000": HEALTH, "http://b:3000": down, "http://c:3000": older,
              "http://user:pw@d:3000": "no answer: ConnectError"}
    table = dashboard_data.pipeline_table(health)
    assert list(table.columns) == dashboard_data.PIPELINE_COLUMNS
    a, b, c, d = table.to_dict("records")
    assert (a["up"], a["ready"], a["database"], a["writer"], a["queue"], a["written"],
            a["spool bytes"], a["DB down since"]) == (True, True, "postgresql up", "alive", 0,
                                                      123, 0, None)
    assert (b["ready"], b["database"], b["queue"], b["spooled"], b["dead"], b["restarts"],
            b["spool bytes"]) == (False, "postgresql DOWN", 9000, 40, 2, 1, 4096)
    assert b["DB down since"] == report.when(1_700_000_000.0)
    assert "hunter2" not in b["last error"] and "postgresql://" in b["last error"]
    assert (c["database"], c["writer"], c["queue"]) == ("sqlite", None, None)
    assert (d["gateway"], d["up"], d["last error"]) == ("http://…@d:3000", False,
                                                        "no answer: ConnectError")
    problems = dashboard_data.pipeline_problems(health)
    assert problems == [
        f"http://b:3000: the event database is down since {b['DB down since']}; events go "
        "to the spool and are replayed when it is back",
        "http://b:3000: the write queue is 9000 of 10000 (503s once it is full)",
        "http://b:3000: 2 events refused by the database (kept in the dead-letter file)",
        "http://…@d:3000: unreachable (no answer: ConnectError)"]
    assert dashboard_data.pipeline_problems({"http://a:3000": HEALTH}) == []


@pytest.fixture
def gateway():
    """A stand-in gateway: a real HTTP server answering ``GET /health/all`` with the body
    in ``served`` (503 when not ready), and 401 without ``Bearer k-pipeline``."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    served = {"body": HEALTH}

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.headers.get("Authorization") != "Bearer k-pipeline":
                status, body = 401, {"error": "no key"}
            elif self.path != "/health/all":
                status, body = 404, {"error": "not found"}
            else:
                body = served["body"]
                status = 200 if body["ready"] else 503
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()


def test_the_event_pipeline_tab_reads_the_gateways_health_live(gateway, tmp_path):
    import panel as pn

    from workbench import dashboard_pipeline

    url, served = gateway
    app = dashboard.Dashboard(db_url=f"sqlite:///{tmp_path / 'dash.db'}", gateways=[url + "/"])
    panel = app.pipeline  # read at once, without the key the stand-in requires
    assert panel.gateways == [url] and "refused with 401" in panel.health[url]
    panel = dashboard_pipeline.PipelinePanel(dashboard_pipeline.gateway_urls(f"{url}/, {url}"),
                                             api_key="k-pipeline")
    assert panel.gateways == [url]
    panel.refresh()
    view = panel.view()
    assert _pane(view, "pipeline-ok") is not None
    table = view.select(pn.widgets.Tabulator)[0].value
    assert table.iloc[0]["written"] == 123 and table.iloc[0]["up"]
    version = panel.version
    panel.refresh()  # nothing changed: no re-render
    assert panel.version == version
    served["body"] = HEALTH | {"ready": False, "event_store": HEALTH["event_store"] | {
        "up": False, "down_since": time.time()}}
    panel.refresh()
    assert panel.version == version + 1
    assert "the event database is down since" in _pane(panel.view(),
                                                      "pipeline-problems").object
    gone = dashboard_pipeline.PipelinePanel(["http://127.0.0.1:9"])
    gone.refresh()
    assert gone.health["http://127.0.0.1:9"].startswith("no answer")


def test_without_a_gateway_the_pipeline_tab_says_how_to_configure_one(monkeypatch):
    from workbench import dashboard_pipeline

    monkeypatch.delenv(dashboard_pipeline.GATEWAY_ENV, raising=False)
    panel = dashboard_pipeline.PipelinePanel()
    panel.refresh()
    assert panel.gateways == [] and panel.health == {}
    assert "No gateway configured" in panel.view().object
    monkeypatch.setenv(dashboard_pipeline.GATEWAY_ENV, "http://g1:3000, http://g2:3000/")
    assert dashboard_pipeline.PipelinePanel().gateways == ["http://g1:3000", "http://g2:3000"]


def _tabulator(view, name: str):
    import panel as pn

    for table in view.select(pn.widgets.Tabulator):
        if table.name == name:
            return table.value
    raise AssertionError(f"no table named {name!r}")


def test_the_models_tab_shows_feature_services_and_the_online_stores_freshness(
        tmp_path, monkeypatch):
    pytest.importorskip("feast")
    import sys
    from dataclasses import replace
    from datetime import timedelta

    import panel as pn

    from workbench import dashboard_features, feature_demo, features

    repo = feature_demo.init_repo(tmp_path / "features")
    spec = features.describe(features.open_store(repo), feature_demo.SERVICE)
    tag = store.save(replace(make_posterior("binary", n_features=len(spec.names),
                                            name="dash-features"), features=spec.to_dict()))
    plain = store.save(make_posterior("binary", name="dash-plain"))
    monkeypatch.setenv("WORKBENCH_FEATURE_REPO", str(repo))
    app = dashboard.Dashboard(db_url=f"sqlite:///{tmp_path / 'dash.db'}")

    view = app.features_view()
    services = _tabulator(view, "feature-services").set_index("tag")
    assert plain not in services.index
    assert services.loc[tag, ["feature service", "features", "fingerprint", "definitions"]
                        ].tolist() == ["diagnosis_v1", 31, spec.fingerprint[:19], "match"]
    fresh = _tabulator(view, "feature-views")
    assert fresh["view"].tolist() == ["nuclei_error", "nuclei_mean", "nuclei_worst"]
    assert (fresh["TTL"] == "30d").all() and fresh["within TTL"].all()
    assert fresh["age"].str.fullmatch(r"\d+s|\d+m( \d+s)?").all()  # materialised just now

    # Redefined since training: the repository's TTL is shown, the model's row says so.
    fs = features.open_store(repo)
    mean = fs.get_feature_view("nuclei_mean")
    mean.ttl = timedelta(days=7)
    fs.apply([mean])
    view = app.features_view()
    assert _tabulator(view, "feature-services").set_index("tag").loc[
        tag, "definitions"] == "CHANGED"
    assert _tabulator(view, "feature-views").set_index("view").loc[
        "nuclei_mean", "TTL"] == "7d"

    # No repository, or no Feast: the services are still listed, the store's part says why.
    monkeypatch.setenv("WORKBENCH_FEATURE_REPO", str(tmp_path / "nowhere"))
    view = app.features_view()
    assert "no feature repository at" in _pane(view, "feature-store-problem").object
    assert _tabulator(view, "feature-services").set_index("tag").loc[
        tag, "definitions"] == "unknown"
    assert not [t for t in view.select(pn.widgets.Tabulator) if t.name == "feature-views"]
    monkeypatch.setitem(sys.modules, "feast", None)  # import feast raises ImportError
    monkeypatch.setenv("WORKBENCH_FEATURE_REPO", str(repo))
    assert "no feature repository: Feast is not installed" in _pane(
        app.features_view(), "feature-store-problem").object

    assert [dashboard_features.duration(s) for s in (0, 59, 3600, 90061, 30 * 86400)] == [
        "0s", "59s", "1h", "1d 1h", "30d"]
