"""Two gateway replicas (two `bentoml serve` of one built experiment bento) on one
PostgreSQL, behind HAProxy round-robin: they behave as one gateway."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import pytest
import sqlalchemy as sa
from conftest import require
from servers import HAPROXY, bentoml_serve, load_balancer, replica_env, wait_for

from workbench import control, datasets, events

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
ROWS = datasets.load("breast_cancer").X[:40].tolist()
CONFIG = """
name: e2e-replicas
arms:
  - {name: control, model: champion, weight: 0.5}
  - {name: treatment, model: challenger, weight: 0.5}
metric: binary
"""


@pytest.fixture(scope="module")
def database(postgres_url):
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS replicas"))
        conn.execute(sa.text("CREATE DATABASE replicas"))
    admin.dispose()
    return postgres_url.rsplit("/", 1)[0] + "/replicas"


@pytest.fixture(scope="module")
def cluster(champion, challenger, database, tmp_path_factory):
    require(HAPROXY is not None, "HAProxy is not installed: apt-get install haproxy "
                                 "(make test does this when run as root)")
    tmp = tmp_path_factory.mktemp("replicas")
    (tmp / "experiment.yaml").write_text(CONFIG)
    built = subprocess.run([sys.executable, "-m", "workbench.cli", "build", "experiment",
                            "--config", str(tmp / "experiment.yaml")], capture_output=True,
                           text=True, check=True, timeout=600)
    tag = built.stdout.strip().splitlines()[-1]
    env = {k: v for k, v in os.environ.items() if k not in ("WORKBENCH_EXPERIMENT",
                                                             "WORKBENCH_MODELS")}
    env["WORKBENCH_DB_URL"] = database
    replicas = [bentoml_serve([tag], env=env | replica_env(tmp, i), wait_ready=False,
                              log=tmp / f"replica-{i}.log") for i in range(2)]
    lb = None
    try:
        for replica in replicas:
            replica.wait_ready(240)
        lb = load_balancer([r.url for r in replicas], log=tmp / "haproxy.log")
        yield replicas, lb, events.engine(database)
    finally:
        for server in ([lb] if lb else []) + replicas:
            server.stop()


async def _predict_all(url: str, units: list[str], clients: int = 16) -> dict[str, dict]:
    """POST /predict for every unit with ``clients`` concurrent clients; every answer 200."""
    out: dict[str, dict] = {}
    queue = list(units)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        async def worker() -> None:
            while queue:
                unit = queue.pop()
                r = await client.post("/predict", json={
                    "unit": unit, "instances": [ROWS[hash(unit) % len(ROWS)]]})
                assert r.status_code == 200, r.text
                out[unit] = r.json()
        await asyncio.gather(*(worker() for _ in range(clients)))
    return out


def test_two_replicas_behave_as_one_gateway(cluster):
    (a, b), lb, eng = cluster
    units = [f"user-{i}" for i in range(1000)]
    on_a = asyncio.run(_predict_all(a.url, units))
    on_b = asyncio.run(_predict_all(b.url, units))
    moved = [u for u in units if on_a[u]["arm"] != on_b[u]["arm"]]
    assert not moved, f"{len(moved)} of 1000 units changed arm across replicas"
    arms = [on_a[u]["arm"] for u in units]
    assert 400 < arms.count("treatment") < 600
    through_lb = asyncio.run(_predict_all(lb.url, units[:200]))
    assert all(through_lb[u]["arm"] == on_a[u]["arm"] for u in units[:200])
    accepted = {r["request_id"] for r in [*on_a.values(), *on_b.values(),
                                          *through_lb.values()]}

    # Feedback posted to B for requests that A accepted a moment ago.
    outcomes: dict[str, int] = {}
    with httpx.Client(timeout=30) as client:
        for i in range(40):
            body = client.post(a.url + "/predict", json={"unit": f"fb-{i}",
                                                         "instances": [ROWS[i]]}).json()
            accepted.add(body["request_id"])
            r = client.post(b.url + "/feedback", json={"request_id": body["request_id"],
                                                       "outcome": i % 2})
            assert r.status_code == 200 and r.json()["status"] == "recorded", r.text
            outcomes[body["request_id"]] = i % 2
            again = client.post(a.url + "/feedback", json={"request_id": body["request_id"],
                                                           "outcome": 1 - i % 2})
            assert again.json()["status"] == "duplicate"

        # Conclude on A: new traffic on both replicas goes to the winner within 2 s.
        done = client.post(a.url + "/admin/conclude", json={"winner": "treatment",
                                                            "reason": "e2e"})
        assert done.status_code == 200, done.text
        assert done.json()["state"]["status"] == "concluded"

        def everyone_on_the_winner() -> bool:
            return all(client.post(server.url + "/predict", json={
                "unit": f"new-{i}", "instances": [ROWS[0]]}).json()["arm"] == "treatment"
                for server in (a, b) for i in range(10))
        took = wait_for(everyone_on_the_winner, 2.0, "conclude reaching both replicas")
        print(f"\nconclude reached both replicas in {took:.2f} s")
    after = asyncio.run(_predict_all(lb.url, [f"after-{i}" for i in range(200)]))
    assert {r["arm"] for r in after.values()} == {"treatment"}
    accepted |= {r["request_id"] for r in after.values()}

    # Every accepted prediction and outcome is in the database, exactly once.
    def stored() -> set[str]:
        data = events.read(eng, "e2e-replicas")
        return set(data.request_id)
    wait_for(lambda: accepted <= stored(), 30.0, "accepted predictions written")
    with eng.connect() as conn:
        ids = conn.execute(sa.select(events.predictions.c.request_id).where(
            events.predictions.c.request_id.in_(accepted))).scalars().all()
        kept = dict(conn.execute(sa.select(events.outcomes.c.request_id,
                                           events.outcomes.c.outcome).where(
            events.outcomes.c.experiment == "e2e-replicas")).all())
    assert len(ids) == len(set(ids)) == len(accepted)
    assert kept == outcomes  # the first outcome of each, none twice
    state = control.require(eng, "e2e-replicas")
    assert (state.status, state.winner) == ("concluded", "treatment")
    assert control.history(eng, "e2e-replicas")[0]["actor"].startswith("http:")
