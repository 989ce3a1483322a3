"""A row the database refuses, sent through the real gateway: it is kept in the dead-letter
file and counted, the rest of its batch is written, and the writer keeps writing.

The refusal is injected into PostgreSQL itself (a CHECK constraint on the unit, which the
gateway cannot know of), so the bad rows pass every check of the gateway and share group
commits with good ones. A unit PostgreSQL can never store (a NUL character) is a client's
mistake, refused at the edge."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from servers import wait_for

from workbench import events

from .conftest import CLIENTS, health, row, serve_gateway, settled, stop

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]
POISON = "poison-"  # units the database refuses


@pytest.fixture(scope="module")
def gateway(arm_models, postgres_url, tmp_path_factory):
    """A gateway on a database of its own in the session's PostgreSQL, whose predictions
    table refuses units starting with ``poison-``."""
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS faults_writer"))
        conn.execute(sa.text("CREATE DATABASE faults_writer"))
    admin.dispose()
    url = postgres_url.rsplit("/", 1)[0] + "/faults_writer"
    eng = events.engine(url)  # the tables, then the fault
    with eng.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE predictions ADD CONSTRAINT faults_poison "
                             f"CHECK (unit NOT LIKE '{POISON}%')"))
    tmp = tmp_path_factory.mktemp("writer-fault")
    server = serve_gateway(tmp, {"WORKBENCH_DB_URL": url,
                                 "WORKBENCH_SPOOL_DIR": str(tmp / "spool")})
    yield server, eng
    stop(server)
    eng.dispose()


async def _send(url: str, units: list[str]) -> dict[str, httpx.Response]:
    """POST /predict for every unit, ``CLIENTS`` at a time."""
    out: dict[str, httpx.Response] = {}
    todo = list(units)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async def worker() -> None:
            while todo:
                unit = todo.pop(0)
                out[unit] = await client.post("/predict", json={
                    "unit": unit, "instances": [row(len(todo))]})
        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return out


def _stored(eng: sa.Engine, ids: set[str]) -> list[str]:
    with eng.connect() as conn:
        return list(conn.execute(sa.select(events.predictions.c.request_id).where(
            events.predictions.c.request_id.in_(ids))).scalars())


def _dead_metric(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("workbench_events_total{") and 'outcome="dead"' in line
               and 'table="predictions"' in line)


def test_a_refused_row_is_dead_lettered_and_its_batch_written(gateway, report):
    server, eng = gateway
    units = [f"{POISON}{i}" if i % 20 == 7 else f"good-{i}" for i in range(400)]
    answers = asyncio.run(_send(server.url, units))
    statuses = {u: r.status_code for u, r in answers.items()}
    assert set(statuses.values()) == {200}, {u: answers[u].text for u, s in statuses.items()
                                              if s != 200}
    good = {answers[u].json()["request_id"] for u in units if not u.startswith(POISON)}
    poison = {answers[u].json()["request_id"] for u in units if u.startswith(POISON)}
    wait_for(lambda: settled(server.url), 30, "the writer caught up")

    # The writer goes on: later traffic is written too.
    after = asyncio.run(_send(server.url, [f"after-{i}" for i in range(64)]))
    assert {r.status_code for r in after.values()} == {200}
    good |= {r.json()["request_id"] for r in after.values()}

    stored = _stored(eng, good | poison)
    pipeline = health(server.url)
    writer, spool = pipeline["writer"], pipeline["spool"]
    dead_file = Path(spool["path"]) / "dead.jsonl"
    dead = [json.loads(line) for line in dead_file.read_text().splitlines()]
    refused_batches = [int(n) for n in re.findall(r"refused a batch of (\d+) events",
                                                  server.output())]
    report(requests=len(answers) + len(after), poison=len(poison), written=writer["written"],
           dead=writer["dead"], dead_rows=spool["dead_rows"],
           refused_batch_sizes=sorted(refused_batches), restarts=writer["restarts"],
           dead_metric=_dead_metric(server.url))

    assert sorted(stored) == sorted(good), "a good row was lost or written twice"
    assert {d["row"]["request_id"] for d in dead} == poison  # acknowledged, kept on disk
    assert all(d["table"] == "predictions" and "IntegrityError" in d["error"] for d in dead)
    assert writer["dead"] == spool["dead_rows"] == len(poison) == _dead_metric(server.url)
    assert writer["alive"] and writer["restarts"] == 0 and writer["refused"] == 0
    assert max(refused_batches) > 1, "no bad row shared a batch with good ones"


def test_text_the_database_cannot_store_is_refused_at_the_edge(gateway):
    """PostgreSQL stores no NUL character in text: such a unit gets a 4xx naming it, never
    an acknowledgement of a prediction that then cannot be logged; a request id or an
    audit reason with one is a 4xx too, not a 500."""
    server, _ = gateway
    r = httpx.post(server.url + "/predict", json={"unit": "nul\u0000byte",
                                                  "instances": [row(0)]}, timeout=30)
    assert r.status_code == 400, (
        f"answered {r.status_code}: the prediction was acknowledged but its event cannot "
        f"be stored (dead-lettered: {r.text[:200]})")
    assert "unit" in r.json()["error"]
    others = {"/feedback": {"request_id": "0" * 31 + "\u0000", "outcome": 1},
              "/admin/pause": {"reason": "nul\u0000reason"}}
    answered = {path: httpx.post(server.url + path, json=body, timeout=30)
                for path, body in others.items()}
    assert all(400 <= a.status_code < 500 for a in answered.values()), {
        path: f"{a.status_code} {a.text[:120]}" for path, a in answered.items()}
    ok = httpx.post(server.url + "/predict", json={"unit": "after-nul", "instances": [row(1)]},
                    timeout=30)
    assert ok.status_code == 200
