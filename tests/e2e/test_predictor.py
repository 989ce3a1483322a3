"""The Predictor as users meet it: a real ``bentoml serve`` on a random loopback port."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import wait_for

from workbench import datasets, store
from workbench.predict import Predictor

pytestmark = pytest.mark.e2e


def _rows(n: int = 5) -> list[list[float]]:
    return datasets.load("breast_cancer").X[:n].tolist()


def test_predictions_equal_the_library(predictor, champion):
    rows = _rows(12)
    body = httpx.post(predictor.url + "/predict", json={"instances": rows, "draws": 3}).json()
    local = Predictor(store.get(champion)).predict(rows, draws=3)
    assert body["model"] == champion and body["interval_mass"] == 0.9
    served = body["predictions"]
    np.testing.assert_allclose([p["mean"] for p in served], local.mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose([p["std"] for p in served], local.std, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose([p["interval"] for p in served],
                               np.stack([local.lower, local.upper], 1), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose([p["draws"] for p in served], local.draws, rtol=1e-6, atol=1e-9)
    assert [p["label"] for p in served] == [local.target_names[i] for i in local.label]


def test_rows_by_feature_name_and_model_choice(predictor, champion, regression):
    names = datasets.load("breast_cancer").feature_names
    as_objects = [dict(zip(names, row, strict=True)) for row in _rows(2)]
    by_name = httpx.post(predictor.url + "/predict", json={"instances": as_objects}).json()
    by_list = httpx.post(predictor.url + "/predict", json={"instances": _rows(2)}).json()
    assert by_name["predictions"] == by_list["predictions"]
    for ref in ("reg", regression, regression.split(":")[0]):
        out = httpx.post(predictor.url + "/predict",
                         json={"instances": [[0.1, 0.2, 0.3, 0.4]], "model": ref}).json()
        assert out["model"] == regression and "label" not in out["predictions"][0]
    wide = httpx.post(predictor.url + "/predict",
                      json={"instances": [[0.1, 0.2, 0.3, 0.4]], "model": "reg",
                            "interval_mass": 0.99}).json()["predictions"][0]["interval"]
    narrow = httpx.post(predictor.url + "/predict",
                        json={"instances": [[0.1, 0.2, 0.3, 0.4]], "model": "reg",
                              "interval_mass": 0.5}).json()["predictions"][0]["interval"]
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


ROW = [1.0] * 30
BAD = [
    ("malformed JSON", b'{"instances": [[1, 2]', 400, "Invalid JSON"),
    ("not an object", b"[1, 2, 3]", 400, "validation error"),
    ("missing instances", {"rows": [ROW]}, 400, "instances is required"),
    ("empty instances", {"instances": []}, 400, "instances is empty"),
    ("wrong feature count", {"instances": [[1.0, 2.0]]}, 400, "row 0 has 2 values"),
    ("unknown feature", {"instances": [{"nope": 1.0}]}, 400, "unknown features ['nope']"),
    ("missing features", {"instances": [{"mean radius": 1.0}]}, 400, "missing features"),
    ("NaN", b'{"instances": [[NaN' + b", 1.0" * 29 + b"]]}", 400, "not a finite number"),
    ("infinity", b'{"instances": [[Infinity' + b", 1.0" * 29 + b"]]}", 400,
     "not a finite number"),
    ("huge number", {"instances": [[1e300] + ROW[1:]]}, 400, "not a finite number"),
    ("string", {"instances": [["1.0"] + ROW[1:]]}, 400, "a string is not a number"),
    ("nested junk", {"instances": [[{"a": [1]}] + ROW[1:]]}, 400, "an object is not a number"),
    ("row is a number", {"instances": [5]}, 400, "row 0 is a int"),
    ("too many rows", {"instances": [ROW] * 1025}, 400, "too many rows"),
    ("bad interval_mass", {"instances": [ROW], "interval_mass": 1.5}, 400, "less than 1"),
    ("interval_mass as text", {"instances": [ROW], "interval_mass": "0.9"}, 400,
     "validation error"),
    ("too many draws", {"instances": [ROW], "draws": 100000}, 400, "draws=100000"),
    ("unknown model", {"instances": [ROW], "model": "nope"}, 404, "unknown model 'nope'"),
    ("oversized body", b'{"instances": [' + b"[" + b"1.0," * 1_200_000 + b"1.0]]}", 413,
     "request body too large"),
]


@pytest.mark.parametrize(("case", "payload", "status", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(predictor, case, payload,
                                                                  status, message):
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    r = httpx.post(predictor.url + "/predict", content=content,
                   headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"error", "detail"}
    assert message in json.dumps(body), body
    ok = httpx.post(predictor.url + "/predict", json={"instances": [ROW]})
    assert ok.status_code == 200


def test_64_concurrent_clients_get_no_5xx_and_bad_requests_do_not_spoil_batches(predictor):
    """64 clients x 10 requests; every 7th request is malformed. Counted, not timed."""
    rows = _rows(64)

    async def client(i: int, http: httpx.AsyncClient) -> list[tuple[int, int, bool]]:
        out = []
        for j in range(10):
            bad = (i * 10 + j) % 7 == 0
            payload = {"instances": [rows[i][:5] if bad else rows[i]]}
            r = await http.post("/predict", json=payload)
            ok_body = r.status_code == 200 and len(r.json()["predictions"]) == 1
            out.append((r.status_code, i, ok_body))
        return out

    async def main() -> list[tuple[int, int, bool]]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=predictor.url, timeout=60, limits=limits) as http:
            results = await asyncio.gather(*(client(i, http) for i in range(64)))
        return [r for rs in results for r in rs]

    results = asyncio.run(main())
    statuses = [s for s, _, _ in results]
    expected_bad = sum((n % 7 == 0) for n in range(640))
    assert len(results) == 640
    assert sum(s >= 500 for s in statuses) == 0
    assert statuses.count(400) == expected_bad
    assert statuses.count(200) == 640 - expected_bad
    assert all(ok for s, _, ok in results if s == 200)
    meta = httpx.get(predictor.url + "/metadata").json()
    assert meta["ready"] is True


def test_metadata_describes_models_device_and_startup(predictor, champion, regression):
    meta = httpx.get(predictor.url + "/metadata").json()
    assert meta["default_model"] == champion
    assert meta["aliases"] == {"champion": champion, "reg": regression}
    assert meta["device"] == "cpu"
    assert len(meta["features"]) == 30 and meta["targets"] == ["malignant", "benign"]
    model = meta["models"][champion]
    assert {"diagnostics", "scores", "sampler", "sample_input", "input", "output"} <= set(model)
    assert meta["startup"]["ready_seconds_since_process_start"] > 0
    assert meta["build"]["jax"] and meta["build"]["bento"] == "served from source"
    sample = httpx.post(predictor.url + "/predict", json=meta["sample_input"])
    assert sample.status_code == 200
    assert sample.json()["predictions"] == meta["sample_output"]["predictions"]


def test_log_reports_time_from_process_start_to_ready(predictor):
    assert "from process start to ready" in predictor.output()


def _samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``{(sample name, labels): value}`` of the server's ``/metrics``."""
    text = httpx.get(url + "/metrics", timeout=30).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_health_and_metrics(predictor, champion):
    for path in ("/healthz", "/livez", "/readyz", "/v2/health/live", "/v2/health/ready"):
        assert httpx.get(predictor.url + path).status_code == 200, path
    model = frozenset({("model", champion)})
    rows_key, calls_key = ("workbench_batcher_batch_size_sum", model), \
        ("workbench_batcher_batch_size_count", model)
    before = _samples(predictor.url)
    assert ("workbench_batcher_queue_depth", model) in before  # the champion's own batcher
    rows = np.random.default_rng().normal(size=(7, 30)).tolist()  # never an earlier request's
    r = httpx.post(predictor.url + "/predict", json={"instances": rows, "model": "champion"})
    assert r.status_code == 200 and r.json()["model"] == champion
    wait_for(lambda: _samples(predictor.url).get(rows_key, 0.0) > before.get(rows_key, 0.0),
             30, "the request's rows on /metrics")
    after = _samples(predictor.url)
    assert after[rows_key] == before.get(rows_key, 0.0) + 7  # one call of its seven rows
    assert after[calls_key] == before.get(calls_key, 0.0) + 1
    assert any(name.startswith("bentoml_") for name, _ in after)  # BentoML's, beside ours
    docs = httpx.get(predictor.url + "/docs", follow_redirects=True)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "/predict" in httpx.get(predictor.url + "/docs.json").json()["paths"]


def test_tritonclient_round_trip(predictor, champion):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=predictor.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("champion")
    meta = client.get_model_metadata("champion")
    assert meta["inputs"][0]["shape"] == [-1, 30]
    X = np.asarray(_rows(6), np.float32)
    local = Predictor(store.get(champion)).predict(X)
    for binary in (True, False):
        tensor = triton.InferInput("input", list(X.shape), "FP32")
        tensor.set_data_from_numpy(X, binary_data=binary)
        result = client.infer("champion", [tensor])
        np.testing.assert_allclose(result.as_numpy("mean"), local.mean, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(result.as_numpy("lower"), local.lower, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(result.as_numpy("upper"), local.upper, rtol=1e-6, atol=1e-9)
        assert result.as_numpy("probabilities").shape == (6, 2)
    tensor64 = triton.InferInput("input", list(X.shape), "FP64")
    tensor64.set_data_from_numpy(X.astype(np.float64))
    out = client.infer("champion", [tensor64], outputs=[triton.InferRequestedOutput("std")])
    np.testing.assert_allclose(out.as_numpy("std"), local.std, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1, 30], "data": [1] * 30}]}, 400,
     "unsupported datatype"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}, 400,
     "tensor has 3 features"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 30], "data": [1] * 30}]}, 400,
     "tensor has 30 values"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 30],
                  "data": [float("nan")] * 30}]}, 400, "not a finite number"),
    ({"inputs": []}, 400, "exactly one input tensor"),
])
def test_oip_bad_input(predictor, body, status, message):
    r = httpx.post(predictor.url + "/v2/models/champion/infer", content=json.dumps(body),
                   headers={"content-type": "application/json"})
    assert r.status_code == status and message in r.json()["error"]
    missing = httpx.post(predictor.url + "/v2/models/nope/infer", content=json.dumps(body))
    assert missing.status_code == 404


def test_predict_stream_sends_each_chunk_through_bentoml(predictor, champion):
    rows = datasets.load("breast_cancer").X[:300].tolist()
    seen = []
    with httpx.stream("POST", predictor.url + "/predict/stream", timeout=60,
                      json={"instances": rows, "chunk_rows": 128}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():  # read as they arrive, not after the end
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
    assert [(e.get("start"), e.get("stop")) for e in seen[:-1]] == [(0, 128), (128, 256),
                                                                   (256, 300)]
    assert seen[-1]["rows"] == 300 and seen[-1]["chunks"] == 3
    streamed = [p["mean"] for e in seen[:-1] for p in e["predictions"]]
    local = Predictor(store.get(champion)).predict(rows).mean
    np.testing.assert_allclose(streamed, local, rtol=1e-6, atol=1e-9)
    bad = httpx.post(predictor.url + "/predict/stream", json={"instances": rows[:3] + [[1.0]]})
    assert bad.status_code == 400 and "row 3 has 1 values" in bad.json()["error"]
