"""The experiment gateway with real servers, in both of its modes: the arms' models in the
gateway's process, and in a Predictor process of their own (``bentoml.depends``)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections import Counter

import httpx
import numpy as np
import psutil
import pytest
from scipy import stats
from servers import wait_for

from workbench import datasets, events
from workbench.arms import MODES
from workbench.simulate import simulate

from .conftest import serve_experiment

pytestmark = pytest.mark.e2e
ROWS = datasets.load("breast_cancer").X[:50].tolist()

SPLIT = """
name: e2e-split
arms:
  - {name: control, model: champion, weight: 0.5}
  - {name: treatment, model: challenger, weight: 0.5}
shadow: {name: shadow, model: challenger}
metric: binary
decision: {prob_best: 0.95, min_outcomes: 20}
segment_by: country
"""


@pytest.fixture(scope="module", params=MODES)
def split(request, champion, challenger, tmp_path_factory):
    server, db = serve_experiment(SPLIT, tmp_path_factory.mktemp("split"),
                                  env={"WORKBENCH_ARMS": request.param})
    yield server, db
    server.stop()


def _predict(url: str, unit: str, row=None, **extra) -> httpx.Response:
    return httpx.post(url + "/predict", json={"unit": unit, "instances": [row or ROWS[0]]}
                      | extra, timeout=30)


def test_sticky_assignment_and_split(split):
    server, _ = split
    arms = {}
    for i in range(300):
        r = _predict(server.url, f"user-{i}", ROWS[i % 50])
        assert r.status_code == 200, r.text
        body = r.json()
        assert {"request_id", "experiment", "arm", "model", "predictions"} <= set(body)
        assert body["experiment"] == "e2e-split" and body["arm"] != "shadow"
        arms[f"user-{i}"] = body["arm"]
    for i in range(0, 300, 7):  # a unit keeps its arm
        assert _predict(server.url, f"user-{i}").json()["arm"] == arms[f"user-{i}"]
    counts = Counter(arms.values())
    assert set(counts) == {"control", "treatment"}
    assert stats.binomtest(counts["treatment"], 300, 0.5).pvalue > 0.001


def test_shadow_is_logged_but_never_returned(split):
    server, db = split
    ids = [_predict(server.url, f"shadow-user-{i}").json()["request_id"] for i in range(20)]
    eng = events.engine(db)

    def shadows() -> set[str]:  # the log is written off the request path: wait for it
        data = events.read(eng, "e2e-split")
        return set(data.parent_id[data.status == "shadow"])

    wait_for(lambda: set(ids) <= shadows(), 10, "the shadow's rows logged")
    data = events.read(eng, "e2e-split")
    assert set(data.arm[data.status == "shadow"]) == {"shadow"}


def test_feedback_unknown_duplicate_and_bad(split):
    server, _ = split
    rid = _predict(server.url, "fb-user").json()["request_id"]
    first = httpx.post(server.url + "/feedback", json={"request_id": rid, "outcome": 1})
    again = httpx.post(server.url + "/feedback", json={"request_id": rid, "outcome": 0})
    assert first.json()["status"] == "recorded" and again.json()["status"] == "duplicate"
    unknown = httpx.post(server.url + "/feedback", json={"request_id": "nope", "outcome": 1})
    assert unknown.status_code == 404 and "unknown request_id" in unknown.json()["error"]
    bad = httpx.post(server.url + "/feedback", json={"request_id": rid, "outcome": [None]})
    assert bad.status_code == 400 and "invalid outcome" in bad.json()["error"]


def test_bad_feedback_is_refused_before_it_is_stored_and_analysis_stays_200(split):
    server, db = split
    rid = _predict(server.url, "bad-fb-user").json()["request_id"]
    for outcome in ("yes", 5, [], None, "malignant", 0.5, [1, 0]):
        r = httpx.post(server.url + "/feedback", json={"request_id": rid, "outcome": outcome})
        assert r.status_code == 400, (outcome, r.text)
        assert r.json()["detail"]["expected"] == "0, 1, true or false" or \
            "rows" in r.json()["error"]
    assert events.outcome_of(events.engine(db), rid) is None
    assert httpx.post(server.url + "/feedback", json={"request_id": rid,
                                                      "outcome": True}).json()["status"] \
        == "recorded"
    assert httpx.get(server.url + "/analysis").status_code == 200


@pytest.mark.parametrize(("payload", "message"), [
    ({"instances": [ROWS[0]]}, "Field required"),
    ({"unit": "", "instances": [ROWS[0]]}, "unit must be"),
    ({"unit": "u", "instances": [[1.0, 2.0]]}, "has 2 values"),
    ({"unit": "u", "instances": [[float("nan")] * 30]}, "not a finite number"),
    ({"unit": "u", "instances": []}, "instances is empty"),
    ({"unit": "u", "instances": [ROWS[0]], "attributes": {"country": [1]}}, "invalid value"),
    ({"unit": "u", "instances": [ROWS[0]], "attributes": {"a b": "x"}}, "attribute name"),
])
def test_bad_requests_get_a_4xx_and_the_gateway_keeps_serving(split, payload, message):
    server, _ = split
    r = httpx.post(server.url + "/predict", content=json.dumps(payload),
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and message in json.dumps(r.json())
    assert _predict(server.url, "after-bad").status_code == 200


def test_attributes_are_logged_and_read_out_by_segment(split):
    """Units send their country; /analysis/segments reads the binary metric by it, every
    fed-back trial in its segment (the pooled beside the unpooled effect)."""
    server, db = split
    sent: Counter[tuple[str, str]] = Counter()
    for i in range(60):
        country = ("DE", "FR", "US")[i % 3]
        body = _predict(server.url, f"seg-user-{i}", ROWS[i % 50],
                        attributes={"country": country}).json()
        r = httpx.post(server.url + "/feedback", json={"request_id": body["request_id"],
                                                       "outcome": i % 2})
        assert r.status_code == 200, r.text
        sent[(country, body["arm"])] += 1
    eng = events.engine(db)
    wait_for(lambda: sum(a == {"country": "US"} for a in events.read(
        eng, "e2e-split").attributes) >= 20, 10, "the attributes logged")
    r = httpx.get(server.url + "/analysis/segments", timeout=120)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["attribute"] == "country" and out["control"] == "control"
    got = {(e["segment"], "treatment"): e["trials"] for e in out["effects"]} | {
        (e["segment"], "control"): e["control_trials"] for e in out["effects"]}
    assert got == dict(sent)
    for e in out["effects"]:
        for kind in ("pooled", "unpooled"):
            mean, lo, hi = e[kind]["rate_diff"]
            assert lo <= mean <= hi and 0 <= e[kind]["prob_positive"] <= 1
    docs = httpx.get(server.url + "/docs.json").json()
    assert "/analysis/segments" in docs["paths"]


def test_read_outs_health_and_metadata(split, request):
    server, _ = split
    health = httpx.get(server.url + "/health/all")
    assert health.status_code == 200
    assert {a: v["ready"] for a, v in health.json()["arms"].items()} == {
        "control": True, "treatment": True, "shadow": True}
    # The mode asked for is the one serving: a Predictor worker exists only when asked for.
    mode = request.node.callspec.params["split"]
    assert health.json()["arms_served"] == mode
    workers = [" ".join(p.cmdline()) for p in psutil.Process(server.pid).children(True)]
    assert any("--service-name predictor" in w for w in workers) == (mode == "predictor")
    meta = httpx.get(server.url + "/metadata").json()
    assert len(meta["arms"]["control"]["features"]) == 30
    exp = httpx.get(server.url + "/experiment").json()
    assert exp["config"]["name"] == "e2e-split" and exp["weights"]["control"] == 0.5


def test_simulator_then_one_read_out_everywhere(split, tmp_path):
    """/analysis, `workbench analyze`, the dashboard and readout.read_out (what notebook 03
    calls) give the same numbers on the same store."""
    from workbench import readout
    from workbench.dashboard import Dashboard

    server, db = split
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "simulate", "--url",
                          server.url, "--duration", "6", "--rate", "25", "--users", "100",
                          "--json"], capture_output=True, text=True, timeout=120, check=True)
    summary = json.loads(out.stdout)
    assert summary["ok"] > 50 and summary["errors"] == {} and summary["feedback"] == summary["ok"]
    eng = events.engine(db)

    def flushed() -> bool:  # the event writer flushes off the request path
        exp = httpx.get(server.url + "/experiment").json()
        logged = exp["counters"]["requests"] + exp["counters"]["shadow"]
        return exp["events_written"]["predictions"] == logged
    wait_for(flushed, 30, "events written")
    analysis = httpx.get(server.url + "/analysis").json()
    assert {a["arm"] for a in analysis["arms"]} == {"control", "treatment"}
    assert all(a["outcomes"] > 0 for a in analysis["arms"])
    assert analysis["srm"] is not None
    cli = json.loads(subprocess.run([sys.executable, "-m", "workbench.cli", "analyze",
                                     "e2e-split", "--db", db, "--json"], capture_output=True,
                                    text=True, timeout=120, check=True).stdout)
    notebook = json.loads(json.dumps(readout.read_out(eng, "e2e-split").to_dict(),
                                     default=str))
    dashboard = Dashboard(db)
    dashboard.experiment = "e2e-split"
    board = json.loads(json.dumps(dashboard._data()[2], default=str))

    def numbers(r):
        return [(a["arm"], a["predictions"], a["outcomes"], a["mean"], a["prob_best"],
                 a["expected_loss"]) for a in r["arms"]], r["decision"], r["counted"]
    assert numbers(cli) == numbers(analysis) == numbers(notebook) == numbers(board)
    assert cli["arms"][0]["arm"] == "control"  # the recorded config's control arm


def test_batch_job(split):
    server, _ = split
    task = httpx.post(server.url + "/batch/submit", json={"instances": ROWS[:40]}).json()

    def status() -> dict:
        return httpx.get(server.url + "/batch/status", params={"task_id": task["task_id"]}
                         ).json()

    wait_for(lambda: status()["status"] != "in_progress", 30, "the batch job to end")
    assert status()["status"] == "completed", status()
    result = httpx.get(server.url + "/batch/get", params={"task_id": task["task_id"]}).json()
    assert result["rows"] == 40 and len(result["predictions"]) == 40


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_loses_nothing_accepted(mode, champion, challenger, tmp_path):
    """N accepted predictions and N feedbacks, then SIGTERM: exactly N rows each."""
    server, db = serve_experiment(SPLIT, tmp_path, env={"WORKBENCH_ARMS": mode})

    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            async def one(i):
                r = await http.post("/predict", json={"unit": f"durable-{i}",
                                                      "instances": [ROWS[i % 50]]})
                assert r.status_code == 200
                f = await http.post("/feedback", json={"request_id": r.json()["request_id"],
                                                       "outcome": i % 2})
                assert f.status_code == 200
            await asyncio.gather(*(one(i) for i in range(200)))

    try:
        asyncio.run(burst())
    finally:
        assert server.stop(signal.SIGTERM) is not None
    after = events.read(events.engine(db), "e2e-split")
    primary = after.status != "shadow"
    assert int(np.sum(primary)) == 200
    assert sum(o is not None for o, p in zip(after.outcome, primary, strict=True) if p) == 200
    assert "event log closed" in server.output()


@pytest.mark.parametrize("mode", MODES)
def test_fallback_when_an_arm_fails(mode, champion, challenger, tmp_path):
    config = """
name: e2e-fallback
arms:
  - {name: control, model: champion, weight: 0.5}
  - {name: broken, model: challenger, weight: 0.5}
guardrails: {error_rate: 0.2, min_samples: 15}
check_seconds: 0.5
"""
    # The Predictor serves only the champion, so every call for the broken arm fails.
    server, db = serve_experiment(config, tmp_path, env={"WORKBENCH_MODELS": "champion",
                                                         "WORKBENCH_ARMS": mode})
    try:
        bodies = [_predict(server.url, f"fb-{i}").json() for i in range(40)]
        assert all(b["arm"] == "control" and b["predictions"] for b in bodies)
        fell_back = [b for b in bodies if b.get("fallback_from") == "broken"]
        assert 5 < len(fell_back) < 35
        exp = httpx.get(server.url + "/experiment").json()
        assert exp["counters"]["fallbacks"] == len(fell_back)
        health = httpx.get(server.url + "/health/all")
        assert health.status_code == 503 and health.json()["arms"]["broken"]["ready"] is False
        # The guardrail (error rate > 20% over >= 15 requests) pauses the broken arm by
        # itself; its traffic goes to control, and the audit trail says why.
        wait_for(lambda: httpx.get(server.url + "/experiment").json()["weights"]["broken"]
                 == 0.0, 30, "the guardrail pausing the arm")
        audit = httpx.post(server.url + "/admin/state", json={}).json()["audit"][0]
        assert (audit["action"], audit["actor"]) == ("pause_arm", "guardrail")
        assert audit["reason"].startswith("guardrail error_rate: 1 > 0.2")
        after = [_predict(server.url, f"after-{i}").json() for i in range(20)]
        assert all(b["arm"] == "control" and "fallback_from" not in b for b in after)
        eng = events.engine(db)
        wait_for(lambda: int(np.sum(events.read(eng, "e2e-fallback").status == "fallback"))
                 >= len(fell_back), 30, "fallbacks written")
        assert int(np.sum(events.read(eng, "e2e-fallback").status == "fallback")) == \
            len(fell_back)
    finally:
        server.stop()


@pytest.mark.parametrize("mode", MODES)
def test_bandit_shifts_traffic_to_the_better_arm(mode, champion, challenger, tmp_path):
    config = """
name: e2e-bandit
mode: bandit
arms:
  - {name: control, model: champion}
  - {name: better, model: challenger}
metric: binary
bandit: {min_weight: 0.05, update_seconds: 1}
"""
    server, _ = serve_experiment(config, tmp_path, env={"WORKBENCH_ARMS": mode})
    try:
        summary = asyncio.run(simulate(server.url, duration=10, rate=60, users=3000,
                                       effects={"better": 0.6}, progress=False, seed=3))
        assert summary.ok > 300 and not summary.errors
        weights = httpx.get(server.url + "/experiment").json()["weights"]
        assert weights["better"] > 0.8, weights
        assert summary.arms["better"] > summary.arms["control"]
    finally:
        server.stop()
