"""``POST /predict/stream``: server-sent events a chunk at a time, the Predictor's numbers,
and every refusal a plain 4xx before anything is streamed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_posterior
from starlette.testclient import TestClient

from workbench import predictor_http
from workbench.limits import MAX_ROWS
from workbench.predict import Predictor
from workbench.serving import ModelServer


@pytest.fixture(scope="module")
def posterior():
    return make_posterior("binary", n_features=3, draws=200, seed=8)


@pytest.fixture(scope="module")
def server(posterior):
    served = ModelServer({"m:1": "m:1"}, load=lambda tag: posterior, buckets=(8, 64))
    served.warmup()
    assert served.ready, served.error
    return served


@pytest.fixture(scope="module")
def client(server):
    with TestClient(predictor_http.app(lambda: server)) as c:
        yield c


def events(text: str) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a text/event-stream body."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_chunks_arrive_in_order_with_the_predictor_s_numbers(client, posterior):
    rows = np.random.default_rng(3).normal(size=(MAX_ROWS + 476, 3)).round(4).tolist()
    r = client.post("/predict/stream", json={"instances": rows, "chunk_rows": 500,
                                             "interval_mass": 0.8})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    got = events(r.text)
    assert [name for name, _ in got] == ["chunk"] * 3 + ["done"]
    assert [(d["start"], d["stop"], d["rows"]) for _, d in got[:-1]] == [
        (0, 500, 1500), (500, 1000, 1500), (1000, 1500, 1500)]
    done = got[-1][1]
    assert done["rows"] == 1500 and done["chunks"] == 3 and done["model"] == "m:1"
    assert done["interval_mass"] == 0.8
    streamed = [p for _, d in got[:-1] for p in d["predictions"]]
    local = Predictor(posterior).predict(rows[:MAX_ROWS], interval_mass=0.8).records()
    local += Predictor(posterior).predict(rows[MAX_ROWS:], interval_mass=0.8).records()
    np.testing.assert_allclose([p["mean"] for p in streamed], [p["mean"] for p in local],
                               atol=1e-6)
    np.testing.assert_allclose([p["interval"] for p in streamed],
                               [p["interval"] for p in local], atol=1e-6)


def test_the_default_chunk_is_the_largest_bucket(client):
    got = events(client.post("/predict/stream", json={"instances": [[0.1, 0.2, 0.3]] * 100,
                                                      "draws": 2}).text)
    assert [d["stop"] for _, d in got[:-1]] == [64, 100]
    assert len(got[0][1]["predictions"][0]["draws"]) == 2


BAD = [
    ("not JSON", b'{"instances": [[1', "the body is not JSON"),
    ("not an object", b"[1, 2]", "the body must be a JSON object"),
    ("no instances", {"model": "m:1"}, "instances is required"),
    ("unknown field", {"instances": [[1, 2, 3]], "rows": 1}, "unknown field(s) ['rows']"),
    ("bad row in the last chunk", {"instances": [[1.0, 2.0, 3.0]] * 70 + [[1.0, "x", 3.0]],
                                   "chunk_rows": 10}, "row 70, feature"),
    ("wrong width", {"instances": [[1.0, 2.0]]}, "row 0 has 2 values"),
    ("chunk_rows zero", {"instances": [[1, 2, 3]], "chunk_rows": 0}, "chunk_rows must be"),
    ("chunk_rows text", {"instances": [[1, 2, 3]], "chunk_rows": "5"}, "chunk_rows must be"),
    ("interval mass", {"instances": [[1, 2, 3]], "interval_mass": 1.5}, "interval_mass"),
    ("entities", {"entities": [{"id": 1}]}, "answered by /predict only"),
]


@pytest.mark.parametrize("body, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_refusals_are_plain_4xx_before_anything_is_streamed(client, body, message):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = client.post("/predict/stream", **kwargs)
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert message in r.json()["error"]
    assert client.post("/predict/stream", json={"instances": [[1, 2, 3]]}).status_code == 200


def test_unknown_model_is_404_and_not_ready_is_503(client, posterior):
    r = client.post("/predict/stream", json={"instances": [[1, 2, 3]], "model": "nope"})
    assert r.status_code == 404 and "unknown model 'nope'" in r.json()["error"]
    cold = ModelServer({"m:1": "m:1"}, load=lambda tag: posterior, buckets=(8,))
    with TestClient(predictor_http.app(lambda: cold)) as c:
        r = c.post("/predict/stream", json={"instances": [[1, 2, 3]]})
    assert r.status_code == 503 and r.json()["detail"] == {"ready": False}


def test_the_route_is_in_the_openapi_document(server):
    documented = predictor_http.app(lambda: server)
    paths = {route.path for route in documented.routes}
    assert "/predict/stream" in paths
    from workbench import predict_stream

    op = predict_stream.openapi()["post"]
    assert "text/event-stream" in op["responses"]["200"]["content"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "instances"]
