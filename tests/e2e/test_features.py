"""Features by entity key (issue 15) end to end, on one real server.

The demo's Feast repository is initialised with Redis (a real ``redis-server``) as its
online store; two logistic models are trained from its feature service through the CLI
(``workbench train logistic --features diagnosis_v1 ...``), the experiment gateway bento
is built with the CLI (``workbench build experiment``) and served with ``bentoml serve
TAG``. That one server covers the Predictor too: the bento's Predictor *is*
``bentos/predictor/service.py`` (the experiment bento links it), served by the same
``bentoml serve`` in a process of its own, and the tests call it directly on its socket
(found in the gateway worker's ``BENTOML_RUNNER_MAP``). A second server of the Predictor
from source would cost another JAX start and warm-up on the CI's two cores and test the
same code.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import require
from redis_server import REDIS, redis_server
from servers import Server, bentoml_serve, wait_for

from workbench import events, feature_demo
from workbench.background import launch

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "workbench.cli"]
SERVICE, KEY = feature_demo.SERVICE, feature_demo.ENTITY_KEY
YAML = "feature_store.redis.yaml"
EXPERIMENT = "e2e-features"
CONFIG = f"""
name: {EXPERIMENT}
arms:
  - {{name: control, model: features-champion, weight: 0.5}}
  - {{name: treatment, model: features-challenger, weight: 0.5}}
metric: binary
"""
PATIENTS = [1001, 1002, 1100, 1500]  # read only; the push and outage tests use their own
PUSHED = 1200
OUTAGE = 1450


class Setup:
    """What the module's tests share: the server, clients of its gateway and Predictor,
    the feature repository and its Redis, the event store, the trained tags."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.redis: Server | None = None
        self.redis_port = 0
        self.server: Server | None = None
        self.gateway: httpx.Client | None = None
        self.predictor: httpx.Client | None = None
        self.repo = tmp / "repo"
        self.now = datetime.now(UTC)
        self.tags: dict[str, str] = {}
        self.db = f"sqlite:///{tmp / 'events.db'}"
        self.features: list[str] = []

    def start_redis(self, port: int | None = None) -> None:
        """A redis-server (in memory only) on ``port`` (default: a free one)."""
        if port is None:
            self.redis, url = redis_server(log=self.tmp / "redis.log")
            self.redis_port = urlparse(url).port
            return
        import redis

        self.redis = launch([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], port=port, ready_path=None,
                            log=self.tmp / f"redis-{time.monotonic_ns()}.log")
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)

        def answers() -> bool:
            with contextlib.suppress(redis.ConnectionError):
                return bool(client.ping())
            return False
        try:
            wait_for(answers, 30, "redis-server answering PING")
        finally:
            client.close()

    def close(self) -> None:
        for client in (self.gateway, self.predictor):
            if client is not None:
                client.close()
        for server in (self.server, self.redis):
            if server is not None:
                server.stop()


def _train(name: str, labels: Path, repo: Path, env: dict[str, str], *options: str
           ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "train", "logistic", "--features", SERVICE, "--entities", str(labels),
         "--target", "target", "--feature-repo", str(repo), "--samples", "60", "--warmup",
         "60", "--chains", "1", "--name", name, "--alias", name, "--force", *options],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _predictor_client(server: Server) -> httpx.Client:
    """A client of the Predictor inside the gateway bento, on the socket BentoML gave it
    (a Unix socket, or a TCP port where Unix sockets are off)."""
    import psutil

    def runner_map() -> dict[str, str] | None:
        for proc in psutil.Process(server.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                mapping = proc.environ().get("BENTOML_RUNNER_MAP")
                if mapping and "predictor" in json.loads(mapping):
                    return json.loads(mapping)
        return None

    wait_for(lambda: runner_map() is not None, 30, "the gateway's BENTOML_RUNNER_MAP")
    uri = runner_map()["predictor"]
    if uri.startswith("tcp://"):
        return httpx.Client(base_url="http://" + uri.split("://", 1)[1], timeout=60)
    from bentoml._internal.utils.uri import uri_to_path

    return httpx.Client(base_url="http://predictor", timeout=60,
                        transport=httpx.HTTPTransport(uds=uri_to_path(uri)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    require(REDIS is not None, "redis-server is not installed: apt-get install redis-server "
                               "(make test does this when run as root)")
    s = Setup(tmp_path_factory.mktemp("features"))
    clock = time.perf_counter()
    took: dict[str, float] = {}

    def lap(what: str) -> None:
        nonlocal clock
        took[what] = time.perf_counter() - clock
        clock = time.perf_counter()

    mp = pytest.MonkeyPatch()
    try:
        s.start_redis()
        mp.setenv("WORKBENCH_FEATURE_REDIS", f"127.0.0.1:{s.redis_port}")
        mp.setenv("WORKBENCH_FEATURE_STORE_YAML", YAML)
        mp.setenv("WORKBENCH_FEATURE_REPO", str(s.repo))
        feature_demo.init_repo(s.repo, yaml=YAML, now=s.now)
        lap("init_repo")

        env = dict(os.environ)
        labels = s.repo / "data" / "labels.parquet"
        runs = {"features-champion": _train("features-champion", labels, s.repo, env),
                "features-challenger": _train("features-challenger", labels, s.repo, env,
                                              "--option", "prior_scale=0.3", "--seed", "1")}
        for name, run in runs.items():
            out, err = run.communicate(timeout=600)
            assert run.returncode == 0, f"train {name}:\n{out[-3000:]}\n{err[-3000:]}"
            assert f"features: {SERVICE} (31 features" in err, err[-2000:]
            s.tags[name] = out.strip().splitlines()[-1]
        lap("train x2")

        (s.tmp / "experiment.yaml").write_text(CONFIG)
        # Its arms in a Predictor process, which the tests below also call directly.
        built = subprocess.run([*CLI, "build", "experiment", "--arms", "predictor", "--config",
                                str(s.tmp / "experiment.yaml")], env=env, capture_output=True,
                               text=True, timeout=600)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        tag = built.stdout.strip().splitlines()[-1]
        assert tag.startswith("experiment:"), built.stdout[-2000:]
        lap("build")

        server_env = {k: v for k, v in env.items()
                      if k not in ("WORKBENCH_EXPERIMENT", "WORKBENCH_MODELS")} | {
            "WORKBENCH_DB_URL": s.db, "WORKBENCH_FEATURE_CACHE_SECONDS": "1"}
        s.server = bentoml_serve([tag], env=server_env, log=s.tmp / "gateway.log",
                                 wait_ready=False)
        s.server.wait_ready(300)
        s.gateway = httpx.Client(base_url=s.server.url, timeout=60)
        s.predictor = _predictor_client(s.server)
        lap("serve")
        print("\nsetup: " + ", ".join(f"{k} {v:.0f} s" for k, v in took.items()))
        # The features in the models' order, as the gateway's /metadata lists them.
        arms = s.gateway.get("/metadata").json()["arms"]
        s.features = arms["control"]["features"]
        yield s
    finally:
        s.close()
        mp.undo()


# -- helpers ---------------------------------------------------------------------------------


def raw_rows(s: Setup, patients: list[int], **changed: float) -> list[list[float]]:
    """The patients' features as the dataset has them (with ``changed`` values), the
    on-demand feature computed here, in the model's feature order (``/metadata``)."""
    table, _ = feature_demo.tables(now=s.now)
    rows = table.set_index(KEY).loc[patients].assign(**changed)
    rows = rows.assign(mean_area_per_perimeter=rows.mean_area / rows.mean_perimeter)
    return rows[s.features].to_numpy(np.float64).tolist()


def predict(client: httpx.Client, **payload: Any) -> httpx.Response:
    return client.post("/predict", json=payload)


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()


def same_predictions(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Equal to 1e-6, ``features`` notes aside."""
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert set(a) - {"features"} == set(b) - {"features"}
        for key, value in b.items():
            if key == "features":
                continue
            if isinstance(value, dict):
                assert a[key].keys() == value.keys()
                np.testing.assert_allclose([a[key][k] for k in value], list(value.values()),
                                           rtol=0, atol=1e-6)
            elif isinstance(value, str):
                assert a[key] == value
            else:
                np.testing.assert_allclose(a[key], value, rtol=0, atol=1e-6)


def prediction_rows(s: Setup) -> int:
    eng = events.engine(s.db)
    try:
        with eng.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(events.predictions)
                                ).scalar_one()
    finally:
        eng.dispose()


def entities(*patients: int) -> list[dict[str, Any]]:
    return [{KEY: p} for p in patients]


# -- tests -----------------------------------------------------------------------------------


def test_both_arms_serve_the_feature_service_s_features(setup):
    arms = setup.gateway.get("/metadata").json()["arms"]
    assert {a["tag"] for a in arms.values()} == set(setup.tags.values())
    assert all(a["features"] == setup.features for a in arms.values())
    assert len(setup.features) == 31 and setup.features[-1] == "mean_area_per_perimeter"
    models = ok(setup.predictor.post("/models", json={}))
    assert models["ready"] and set(models["models"]) == set(setup.tags.values())


def test_the_predictor_s_metadata_describes_the_feature_service(setup):
    r = setup.predictor.get("/metadata")
    assert r.status_code == 200, r.text
    meta = r.json()
    assert set(meta["models"]) == set(setup.tags.values())
    for card in meta["models"].values():
        assert card["features"] == setup.features
        assert card["diagnostics"]["max_rhat"] is None  # one chain: no R-hat (JSON null)
        served = card["feature_service"]
        assert served["service"] == SERVICE and served["entity_keys"] == {KEY: "Int64"}
        assert served["policy"]["cache_seconds"] == 1.0 and served["skew"] == []


def test_rows_by_entity_key_get_the_answers_of_the_same_raw_features(setup):
    rows = raw_rows(setup, PATIENTS)
    for tag in setup.tags.values():
        by_key = ok(predict(setup.predictor, entities=entities(*PATIENTS), model=tag))
        raw = ok(predict(setup.predictor, instances=rows, model=tag))
        assert by_key["model"] == raw["model"] == tag
        same_predictions(by_key["predictions"], raw["predictions"])
        age = feature_demo.FEATURES_AGE.total_seconds()
        for p in by_key["predictions"]:
            assert p["features"]["status"] == "online"
            assert age <= p["features"]["age_seconds"] < age + 3600
        assert "features" not in raw["predictions"][0]
        named = ok(predict(setup.predictor, entities=entities(*PATIENTS), model=tag,
                           feature_service=SERVICE))  # may be named; must be the model's
        same_predictions(named["predictions"], raw["predictions"])
    # Through the gateway: each unit's arm answers as its model does on the raw rows.
    arms = setup.gateway.get("/metadata").json()["arms"]
    seen = set()
    for i in range(12):
        body = ok(predict(setup.gateway, unit=f"user-{i}", entities=entities(*PATIENTS)))
        seen.add(body["arm"])
        raw = ok(predict(setup.predictor, instances=rows, model=arms[body["arm"]]["tag"]))
        same_predictions(body["predictions"], raw["predictions"])
    assert seen == {"control", "treatment"}


def test_a_request_time_value_overrides_the_store(setup):
    tag = setup.tags["features-champion"]
    body = ok(predict(setup.predictor, model=tag,
                      entities=[{KEY: PATIENTS[0], "mean_texture": 30.5}]))
    raw = ok(predict(setup.predictor, model=tag,
                     instances=raw_rows(setup, PATIENTS[:1], mean_texture=30.5)))
    same_predictions(body["predictions"], raw["predictions"])
    assert body["predictions"][0]["features"]["overridden"] == ["mean_texture"]


def test_a_pushed_value_is_served_without_a_restart(setup):
    tag = setup.tags["features-champion"]
    pid = setup.server.pid
    before = ok(predict(setup.predictor, model=tag, entities=entities(PUSHED)))
    same_predictions(before["predictions"], ok(predict(
        setup.predictor, model=tag, instances=raw_rows(setup, [PUSHED])))["predictions"])
    feature_demo.push(setup.repo, pd.DataFrame({KEY: [PUSHED], "mean_texture": [35.25]}))
    want = ok(predict(setup.predictor, model=tag,
                      instances=raw_rows(setup, [PUSHED], mean_texture=35.25)))["predictions"]
    assert want != before["predictions"]
    started = time.monotonic()

    def served_new() -> bool:
        got = ok(predict(setup.predictor, model=tag, entities=entities(PUSHED)))
        return abs(got["predictions"][0]["mean"] - want[0]["mean"]) <= 1e-6

    wait_for(served_new, 30, "the pushed value, once the 1 s cache expired")
    print(f"\npushed value served {time.monotonic() - started:.2f} s after the push")
    same_predictions(ok(predict(setup.predictor, model=tag, entities=entities(PUSHED))
                        )["predictions"], want)
    assert setup.server.pid == pid and setup.server.running()  # no restart


BAD = {
    "unknown entity": ({"entities": [{KEY: 99999}]}, 404, "99999"),
    "key as a string": ({"entities": [{KEY: "1001"}]}, 400, KEY),
    "unknown field": ({"entities": [{KEY: 1001, "colour": 2.0}]}, 400, "colour"),
    "other feature service": ({"entities": [{KEY: 1001}], "feature_service": "churn_v9"},
                              400, "churn_v9"),
}


@pytest.mark.parametrize("where", ["predictor", "gateway"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_entity_requests_are_refused_and_serving_goes_on(setup, where, case):
    payload, status, named = BAD[case]
    client = getattr(setup, where)
    unit = {"unit": f"bad-{case}"} if where == "gateway" else {}
    before = prediction_rows(setup)
    r = predict(client, **payload, **unit)
    assert r.status_code == status, r.text
    assert named in json.dumps(r.json()), r.text
    good = ok(predict(client, entities=entities(PATIENTS[0]), **unit))
    assert good["predictions"][0]["features"]["status"] == "online"
    if where == "gateway":  # the good request is logged, the refused one never was
        wait_for(lambda: prediction_rows(setup) >= before + 1, 30, "the good request's row")
    assert prediction_rows(setup) == before + (where == "gateway")


def test_the_event_row_keeps_the_entity_rows_and_the_feature_notes(setup):
    rows = [{KEY: 1001}, {KEY: 1002, "mean_texture": 12.25}]
    body = ok(predict(setup.gateway, unit="logged-user", entities=rows))
    eng = events.engine(setup.db)
    try:
        def stored() -> list[Any]:
            with eng.connect() as conn:
                return conn.execute(sa.select(events.predictions.c.instances,
                                              events.predictions.c.summary,
                                              events.predictions.c.n_rows)
                                    .where(events.predictions.c.request_id ==
                                           body["request_id"])).all()
        wait_for(lambda: len(stored()) == 1, 30, "the event row")
        ((instances, summary, n_rows),) = stored()
    finally:
        eng.dispose()
    assert instances == rows and n_rows == 2
    assert summary == body["predictions"]
    assert [p["features"]["status"] for p in summary] == ["online", "online"]
    assert summary[1]["features"]["overridden"] == ["mean_texture"]


def test_an_online_store_that_is_down_is_a_503_and_raw_rows_are_still_served(setup):
    tag = setup.tags["features-champion"]
    raw = ok(predict(setup.predictor, model=tag, instances=raw_rows(setup, [OUTAGE])))
    port = setup.redis_port
    setup.redis.stop()
    try:
        for client, unit in ((setup.predictor, {}), (setup.gateway, {"unit": "outage"})):
            r = predict(client, entities=entities(OUTAGE), **unit)  # not cached: never read
            assert r.status_code == 503, r.text
            assert "online feature store" in r.json()["error"], r.text
            ok(predict(client, instances=raw_rows(setup, [OUTAGE]), **unit))
        for client in (setup.predictor, setup.gateway):  # raw rows are still served
            assert client.get("/readyz").status_code == 200
        metrics = setup.predictor.get("/metrics").text
        assert "workbench_feature_lookup_errors_total" in metrics
    finally:
        setup.start_redis(port)
    with pytest.MonkeyPatch.context() as mp:  # the new Redis is empty: materialise again
        mp.setenv("WORKBENCH_FEATURE_REDIS", f"127.0.0.1:{port}")
        feature_demo.init_repo(setup.repo, yaml=YAML, now=setup.now)
    started = time.monotonic()
    wait_for(lambda: predict(setup.predictor, model=tag, entities=entities(OUTAGE)
                             ).status_code == 200, 30, "entity requests served again")
    print(f"\nentity requests served again {time.monotonic() - started:.2f} s after "
          "re-materialising")
    same_predictions(ok(predict(setup.predictor, model=tag, entities=entities(OUTAGE))
                        )["predictions"], raw["predictions"])
    body = ok(predict(setup.gateway, unit="outage-user", entities=entities(OUTAGE)))
    assert body["predictions"][0]["features"]["status"] == "online"
