"""Observability with real servers: one request id through gateway and Predictor, JSON log
lines in both, and the workbench's metrics on ``/metrics``.

The module starts its own experiment (gateway and Predictor, each in its own process, so
that the request id is seen crossing from one to the other): a
``bentoml serve`` start empties the Prometheus directory, so metrics are read from a server
started here. Its ``broken`` arm's model is not served, so its requests fall back.
"""

from __future__ import annotations

import json

import httpx
import pytest
from servers import wait_for

from workbench import datasets

from .conftest import serve_experiment

pytestmark = pytest.mark.e2e
ROW = datasets.load("breast_cancer").X[0].tolist()
CONFIG = """
name: e2e-observability
arms:
  - {name: control, model: champion, weight: 0.5}
  - {name: broken, model: challenger, weight: 0.5}
"""


@pytest.fixture(scope="module")
def gateway(champion, challenger, tmp_path_factory):
    # The Predictor serves only the champion: every call for the broken arm fails.
    server, _ = serve_experiment(CONFIG, tmp_path_factory.mktemp("observability"),
                                 env={"WORKBENCH_MODELS": "champion",
                                      "WORKBENCH_ARMS": "predictor"})
    yield server
    server.stop()


def _predict(url: str, unit: str, **headers: str) -> httpx.Response:
    return httpx.post(url + "/predict", json={"unit": unit, "instances": [ROW]},
                      headers=headers, timeout=30)


def _json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _access_lines(server, request_id: str) -> dict[str, list[dict]]:
    """The server's JSON access lines (one per request served) for ``request_id``, by the
    service that wrote them: ``experiment`` (the gateway) and ``predictor``."""
    by_service: dict[str, list[dict]] = {}
    for record in _json_lines(server.output()):
        if record.get("request_id") == request_id and record.get("logger") == "workbench.http":
            by_service.setdefault(record.get("service"), []).append(record)
    return by_service


def test_a_request_id_is_answered_and_logged_by_gateway_and_predictor(gateway):
    r = _predict(gateway.url, "unit-abc", **{"X-Request-ID": "abc-123"})
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "abc-123"
    # The gateway writes its line once the answer is out: wait for it.
    wait_for(lambda: {"experiment", "predictor"} <= set(_access_lines(gateway, "abc-123")),
             30, "JSON log lines with request_id abc-123 from the gateway and the Predictor")
    lines = _access_lines(gateway, "abc-123")
    (line,) = lines["experiment"]
    assert (line["path"], line["status"], line["level"]) == ("/predict", 200, "INFO")
    assert {"timestamp", "level", "logger", "message", "duration_ms"} <= set(line)
    # One Predictor call, or two when the arm failed and the control answered.
    assert [x["path"] for x in lines["predictor"]] in (["/predict"], ["/predict"] * 2)
    assert lines["predictor"][-1]["status"] == 200
    assert '"request_id": "abc-123"' in gateway.output()


def test_a_traceparent_names_a_request_that_brought_no_id(gateway):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = _predict(gateway.url, "unit-trace",
                 traceparent=f"00-{trace_id}-00f067aa0ba902b7-01")
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == trace_id
    wait_for(lambda: {"experiment", "predictor"} <= set(_access_lines(gateway, trace_id)), 30,
             "log lines named by the traceparent's trace-id in both services")


def test_metrics_show_the_batcher_and_the_fallbacks(gateway):
    def fallbacks() -> float:
        text = httpx.get(gateway.url + "/metrics", timeout=30).text
        for line in text.splitlines():
            if line.startswith("workbench_gateway_fallbacks_total{") and \
                    'arm="broken"' in line and 'experiment="e2e-observability"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = fallbacks()  # the earlier tests' requests may have fallen back too
    bodies = [_predict(gateway.url, f"metrics-{i}").json() for i in range(30)]
    fell_back = sum(b.get("fallback_from") == "broken" for b in bodies)
    assert fell_back > 0, bodies[:3]
    wait_for(lambda: fallbacks() >= before + fell_back, 30, "the fallbacks on /metrics")
    assert fallbacks() == before + fell_back
    metrics = httpx.get(gateway.url + "/metrics", timeout=30).text
    assert "workbench_batcher_queue_depth{" in metrics
    assert "workbench_batcher_batch_size_bucket{" in metrics
    assert "workbench_batcher_batch_size_count{" in metrics
    lines = metrics.splitlines()
    assert not [x for x in lines if x.startswith("workbench_batcher") and 'model="unnamed"' in x]

    def total(name: str, *labels: str) -> float:
        return sum(float(x.rsplit(" ", 1)[1]) for x in lines
                   if x.split("{")[0].split(" ")[0] == name and all(lb in x for lb in labels))
    assert total("workbench_gateway_requests_total", 'status="fallback"',
                 'arm="broken"') >= fell_back
    assert total("workbench_events_total", 'outcome="written"', 'table="predictions"') >= 30
    assert total("workbench_event_store_up") == 1.0
