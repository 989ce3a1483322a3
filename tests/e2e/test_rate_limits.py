"""Rate limits shared by two gateway replicas on one real Redis: a key limited to N requests
per second gets about N per second in total across both, the rest 429 with Retry-After, and
another key is unaffected."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter

import httpx
import pytest
from conftest import make_posterior
from servers import ROOT, bentoml_serve, replica_env

from workbench import events, keys, store

pytestmark = pytest.mark.e2e
N = 20  # requests per second for the limited key
ROWS = [[0.1, -0.2, 0.3, 0.4]]
CONFIG = """
name: e2e-limits
arms:
  - {name: control, model: limits-a, weight: 0.5}
  - {name: treatment, model: limits-b, weight: 0.5}
metric: continuous
"""


@pytest.fixture(scope="module")
def replicas(redis_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits")
    for arm, seed in (("a", 21), ("b", 22)):
        store.save(make_posterior("regression", name=f"limits-{arm}", seed=seed),
                   alias=f"limits-{arm}", force=True)
    (tmp / "experiment.yaml").write_text(CONFIG)
    db = f"sqlite:///{tmp / 'events.db'}"  # one event store (and key table) for both
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_MODELS"} | {
        "WORKBENCH_EXPERIMENT": str(tmp / "experiment.yaml"), "WORKBENCH_DB_URL": db,
        "WORKBENCH_AUTH": "on", "WORKBENCH_KEY_PEPPER": "limits-pepper",
        "WORKBENCH_REDIS_URL": redis_url}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_KEY_PEPPER", "limits-pepper")
        eng = events.engine(db)
        made = {"limited": keys.create(eng, "limited", ["predict"], rate_limit=f"{N}/second"),
                "other": keys.create(eng, "other", ["predict"])}
    servers = [bentoml_serve(["service:Experiment", "--working-dir",
                              str(ROOT / "bentos" / "experiment")], env=env | replica_env(tmp, i),
                             log=tmp / f"replica-{i}.log", wait_ready=False) for i in range(2)]
    try:
        for server in servers:
            server.wait_ready(240)
        yield servers, made
    finally:
        for server in servers:
            server.stop()


async def load(urls: list[str], made: dict[str, str], until: float, clients: int = 6
               ) -> list[tuple[str, str, float, float, int, str | None]]:
    """Requests from ``clients`` concurrent clients of the limited key (spread over both
    replicas) and one of the other key, until the clock reaches ``until``: (key, replica,
    time sent, time answered, status, Retry-After) each."""
    out: list[tuple[str, str, float, float, int, str | None]] = []
    async with httpx.AsyncClient(timeout=30) as client:
        async def worker(i: int, name: str) -> None:
            n = 0
            while time.time() < until:
                url = urls[(i + n) % len(urls)]
                n += 1
                sent = time.time()
                r = await client.post(url + "/predict", json={"unit": f"u{i}-{n}",
                                                              "instances": ROWS},
                                      headers={"Authorization": f"Bearer {made[name]}"})
                out.append((name, url, sent, time.time(), r.status_code,
                            r.headers.get("retry-after")))
        await asyncio.gather(*(worker(i, "limited") for i in range(clients)),
                             worker(0, "other"))
    return out


def test_two_replicas_on_one_redis_enforce_one_limit(replicas):
    servers, made = replicas
    urls = [s.url for s in servers]
    start = time.time()
    first, last = math.floor(start) + 1, math.floor(start) + 5  # four whole seconds
    answers = asyncio.run(load(urls, made, until=last))
    limited = [a for a in answers if a[0] == "limited"]
    assert {a[4] for a in limited} <= {200, 429}, Counter(a[4] for a in limited)
    # Windows are whole seconds of the (shared) clock, and the limit is counted when the
    # request arrives: some time between sending it and its answer (which, for an accepted
    # request, also waits for its event to be durable). A request is in second w for sure
    # when it was sent and answered within w; one that straddles a second boundary could
    # be in either and is left out of the per-second bound (a handful in each run).
    accepted = Counter(math.floor(t) for _, _, t, _, status, _ in limited if status == 200)
    surely = Counter(math.floor(t) for _, _, t, back, status, _ in limited
                     if status == 200 and math.floor(t) == math.floor(back))
    refused = Counter(math.floor(t) for _, _, t, _, status, _ in limited if status == 429)
    windows = range(first, last)
    total = sum(accepted[w] for w in windows)
    print(f"\naccepted per second (by time sent): {[accepted[w] for w in windows]}, "
          f"surely in that second: {[surely[w] for w in windows]} (limit {N}); "
          f"refused: {[refused[w] for w in windows]}; requests: {len(answers)}")
    assert all(refused[w] > 0 for w in windows), "the load must exceed the limit"
    assert abs(total - N * len(windows)) <= 0.1 * N * len(windows)
    assert max(surely[w] for w in windows) <= N
    for url in urls:  # both replicas served some and refused some: one limit, shared
        statuses = {a[4] for a in limited if a[1] == url}
        assert statuses == {200, 429}, (url, statuses)
    retry = {a[5] for a in limited if a[4] == 429}
    assert retry == {"1"}  # whole seconds to the end of a one-second window
    other = [a[4] for a in answers if a[0] == "other"]
    assert other and set(other) == {200}, Counter(other)
    metrics = httpx.get(urls[0] + "/metrics", timeout=30).text
    assert 'workbench_rate_limited_total{group="predict"}' in metrics


def test_a_429_says_what_the_limit_is(replicas):
    servers, made = replicas
    headers = {"Authorization": f"Bearer {made['limited']}"}
    with httpx.Client(timeout=30) as client:
        for _ in range(N * 3):
            r = client.post(servers[0].url + "/predict", headers=headers,
                            json={"unit": "u", "instances": ROWS})
            if r.status_code == 429:
                break
    assert r.status_code == 429
    assert r.json() == {"error": "rate limit exceeded", "detail": {
        "limit": f"{N} per 1 second", "group": "predict",
        "retry_after": int(r.headers["retry-after"])}}
