"""Promotion that serves: a real ``bentoml serve`` of the Predictor from source follows
``workbench models alias`` (the real CLI) live, under 16 concurrent clients, with no failed
request. Its own alias (``follow-champion``): other tests share the session's store."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import httpx
import pytest
from conftest import make_posterior
from servers import ROOT, bentoml_serve

from workbench import store

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ALIAS = "follow-champion"
ROW = [[0.5, -0.2, 0.1, 1.0]]
CLIENTS = 16


@pytest.fixture(scope="module")
def versions() -> tuple[str, str]:
    old = store.save(make_posterior("binary", name="e2e-follow", seed=11))
    new = store.save(make_posterior("binary", name="e2e-follow", seed=12))
    store.set_alias(ALIAS, old)
    return old, new


async def _until(condition, what: str, deadline: float) -> None:
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _traffic_across_a_move(url: str, env: dict[str, str], new: str
                                 ) -> list[list[tuple[int, str | None]]]:
    """16 clients ask continuously; once each has an answer, the CLI moves the alias; they
    stop once each has seen ``new`` three times in a row (or the deadline passes)."""
    deadline = time.monotonic() + 120
    answers: list[list[tuple[int, str | None]]] = [[] for _ in range(CLIENTS)]
    stop = asyncio.Event()

    async def client(mine: list[tuple[int, str | None]], http: httpx.AsyncClient) -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            r = await http.post("/predict", json={"instances": ROW, "model": ALIAS})
            mine.append((r.status_code, r.json().get("model") if r.status_code == 200
                         else r.text))

    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        tasks = [asyncio.create_task(client(mine, http)) for mine in answers]
        await _until(lambda: all(answers), "every client's first answer", deadline)
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workbench.cli", "models", "alias", ALIAS, new, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await cli.communicate()
        assert cli.returncode == 0, err.decode()
        assert out.decode().strip().splitlines()[-1] == new
        await _until(lambda: all(m[-3:] == [(200, new)] * 3 for m in answers),
                     "every client answered by the new version", deadline)
        stop.set()
        await asyncio.gather(*tasks)
    return answers


def test_a_predictor_served_from_source_follows_the_alias_under_load(versions, tmp_path):
    old, new = versions
    env = dict(os.environ) | {"WORKBENCH_FOLLOW_INTERVAL": "0.2"}
    env.pop("WORKBENCH_MODELS", None)
    server = bentoml_serve(["service:Predictor", "--working-dir",
                            str(ROOT / "bentos" / "predictor"), "--arg", f"models={ALIAS}"],
                           env=env, log=tmp_path / "predictor.log")
    try:
        before = httpx.get(server.url + "/metadata").json()
        assert before["default_model"] == old and before["follow"]["enabled"] is True

        answers = asyncio.run(_traffic_across_a_move(server.url, env, new))

        failed = [a for mine in answers for a in mine if a[0] != 200]
        assert not failed, failed[:5]
        for mine in answers:  # each client: the old version, then only the new one
            models = [model for _, model in mine]
            switched = models.index(new)
            assert set(models[:switched]) <= {old} and set(models[switched:]) == {new}
        assert any(model == old for mine in answers for _, model in mine)

        meta = httpx.get(server.url + "/metadata").json()
        assert meta["default_model"] == new and meta["aliases"] == {ALIAS: new}
        assert list(meta["models"]) == [new] and meta["follow"]["error"] is None
        assert meta["follow"]["swaps"][-1] | {"at": None, "seconds": None} == {
            "alias": ALIAS, "from": old, "to": new, "at": None, "seconds": None}
        assert list(httpx.post(server.url + "/models", json={}).json()["models"]) == [new]
        assert f"{ALIAS} now serves {new}" in server.output()
    finally:
        server.stop()
