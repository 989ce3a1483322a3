"""The prediction cache, with real parts: real :class:`ModelServer` s compiling real buckets,
a real ``redis-server`` (the session's) as the L2 that "replicas" share, alias moves made
with ``prepare`` + ``repoint`` as :mod:`workbench.follow` makes them. Every test has tags
of its own, so that nothing another test left in the shared Redis can answer it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import make_posterior
from prometheus_client import REGISTRY

from workbench.artifact import Posterior
from workbench.cache import PredictionCache, keys_of
from workbench.errors import ConfigError
from workbench.ports import free_port
from workbench.predict import Predictor
from workbench.serving import ModelServer

ROWS = [[0.5, -0.2, 0.1, 1.0], [1.0, 0.0, -1.0, 2.0], [0.0, 0.3, 0.0, -0.7]]


@pytest.fixture(scope="module")
def posteriors() -> dict[str, Posterior]:
    """Two versions of one model (different draws: different answers)."""
    return {"a": make_posterior("binary", seed=1), "b": make_posterior("binary", seed=2)}


def serve(models: dict[str, str], load: Callable[[str], Posterior],
          cache: PredictionCache | int | None) -> ModelServer:
    server = ModelServer(models, load=load, buckets=(1, 4), cache=cache)
    server.warmup()
    assert server.ready, server.error
    return server


def means(answer: dict[str, Any]) -> np.ndarray:
    return np.array([p["mean"] for p in answer["predictions"]])


def metric(level: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("workbench_prediction_cache_total",
                                     {"level": level, "outcome": outcome}) or 0.0


def test_repeated_rows_are_answered_from_l1_exactly_as_computed(posteriors):
    server = serve({"cache-l1:1": "cache-l1:1"}, lambda tag: posteriors["a"], cache=100)
    batcher = server.models["cache-l1:1"].batcher

    async def scenario() -> tuple[dict[str, Any], ...]:
        first = await server.predict(ROWS)
        # the same rows, reordered, as objects by feature name, beside one new row
        again = await server.predict([dict(zip(("x0", "x1", "x2", "x3"), r, strict=True))
                                      for r in ROWS[::-1]] + [[9.0, 9.0, 9.0, 9.0]])
        again["predictions"][0]["mean"] = -1.0  # a caller changing its answer...
        third = await server.predict(ROWS[2:])  # ...changes nothing kept
        return first, again, third

    first, again, third = asyncio.run(scenario())
    assert again["predictions"][1:3] == first["predictions"][1::-1]
    assert third["predictions"] == first["predictions"][2:]
    assert batcher.stats.rows == 4  # three rows, then only the new one
    assert server.cache.counts == {("l1", "miss"): 4, ("l1", "hit"): 4}
    uncached = Predictor(posteriors["a"]).predict(ROWS + [[9.0] * 4])
    np.testing.assert_allclose(means(first), uncached.mean[:3], rtol=1e-6)


def test_interval_mass_and_draws_are_part_of_the_key(posteriors):
    server = serve({"cache-key:1": "cache-key:1"}, lambda tag: posteriors["a"], cache=100)

    async def scenario() -> list[dict[str, Any]]:
        return [await server.predict(ROWS[:1], **options) for options in (
            {}, {"draws": 3}, {}, {"interval_mass": 0.5}, {"draws": 3})]

    plain, drawn, plain_again, narrow, drawn_again = (
        a["predictions"][0] for a in asyncio.run(scenario()))
    assert "draws" not in plain and plain_again == plain
    assert len(drawn["draws"]) == 3 and drawn_again == drawn
    assert narrow["interval"][1] - narrow["interval"][0] < plain["interval"][1] - plain[
        "interval"][0]
    assert server.cache.counts == {("l1", "miss"): 3, ("l1", "hit"): 2}
    X = np.array(ROWS, np.float32)
    base = keys_of("m:1", X, 0.9, 0)
    assert len(set(base)) == 3
    for other in (keys_of("m:2", X, 0.9, 0), keys_of("m:1", X, 0.8, 0),
                  keys_of("m:1", X, 0.9, 1), keys_of("m:1", X, 0.9, 0, 7.5)):  # ood rate
        assert not set(other) & set(base)
    assert keys_of("m:1", X.astype(np.float64), 0.9, 0) == base


def test_a_moved_alias_never_serves_a_stale_cached_answer(posteriors, redis_url):
    a, b = "cache-move:a", "cache-move:b"
    versions = {a: posteriors["a"], b: posteriors["b"]}
    expected = {tag: Predictor(p).predict(ROWS).mean for tag, p in versions.items()}
    assert not np.allclose(expected[a], expected[b], rtol=1e-3)  # a stale answer would show
    server = serve({"champion": a}, versions.__getitem__,
                   PredictionCache(100, redis_url=redis_url))

    async def ask(who: ModelServer, ref: str | None = "champion", times: int = 2
                  ) -> list[dict[str, Any]]:
        answers = [await who.predict(ROWS, model=ref) for _ in range(times)]
        await who.cache.aclose()
        return answers

    for answer in asyncio.run(ask(server)):  # computed, then from L1
        assert answer["model"] == a
        np.testing.assert_allclose(means(answer), expected[a], rtol=1e-6)
    assert server.cache.counts[("l1", "hit")] == 3

    gone = server.repoint("champion", server.prepare(b))  # what the follower does
    assert gone is not None and gone.tag == a
    assert server.cache.counts[("l1", "invalidated")] == 3
    for ref in ("champion", None, b):
        for answer in asyncio.run(ask(server, ref)):
            assert answer["model"] == b
            np.testing.assert_allclose(means(answer), expected[b], rtol=1e-6)
    # The old version still answers by its exact tag, with its own numbers, until retired.
    (old,) = asyncio.run(ask(server, a, times=1))
    np.testing.assert_allclose(means(old), expected[a], rtol=1e-6)
    assert server.retire(a) and server.cache.counts[("l1", "invalidated")] == 6

    # A replica that serves the alias by b already: b's entries from L2, never a's.
    replica = serve({"champion": b}, versions.__getitem__,
                    PredictionCache(100, redis_url=redis_url))
    (answer,) = asyncio.run(ask(replica, times=1))
    assert answer["model"] == b and replica.cache.counts[("l2", "hit")] == 3
    np.testing.assert_allclose(means(answer), expected[b], rtol=1e-6)
    assert replica.models[b].batcher.stats.rows == 0


def test_a_row_computed_by_one_replica_is_an_l2_hit_on_another(posteriors, redis_url):
    tag = "cache-replicas:1"
    first, second = (serve({tag: tag}, lambda t: posteriors["a"],
                           PredictionCache(100, redis_url=redis_url)) for _ in range(2))
    hits_before = metric("l2", "hit")

    async def ask(server: ModelServer) -> dict[str, Any]:
        answer = await server.predict(ROWS)
        await server.cache.aclose()
        return answer

    computed = asyncio.run(ask(first))
    shared = asyncio.run(ask(second))
    assert shared == computed
    assert first.cache.counts == {("l1", "miss"): 3, ("l2", "miss"): 3}
    assert second.cache.counts == {("l1", "miss"): 3, ("l2", "hit"): 3}
    assert second.models[tag].batcher.stats.rows == 0  # nothing computed on the second
    assert metric("l2", "hit") - hits_before == 3
    asyncio.run(ask(second))
    assert second.cache.counts[("l1", "hit")] == 3  # kept in its L1 as well


def test_an_unreachable_l2_costs_nothing_but_a_count(posteriors):
    tag = "cache-down:1"
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    server = serve({tag: tag}, lambda t: posteriors["a"], PredictionCache(0, redis_url=down))
    errors_before = metric("l2", "error")

    async def scenario() -> list[dict[str, Any]]:
        return [await server.predict(ROWS), await server.predict(ROWS[:1])]

    answers = asyncio.run(scenario())
    np.testing.assert_allclose(means(answers[0]), Predictor(posteriors["a"]).predict(ROWS).mean,
                               rtol=1e-6)
    np.testing.assert_allclose(answers[1]["predictions"][0]["interval"],
                               answers[0]["predictions"][0]["interval"], rtol=1e-6)
    # the first request's rows failed on Redis, the second's skipped it (left alone a while)
    assert server.cache.counts == {("l2", "error"): 4}
    assert metric("l2", "error") - errors_before == 4
    assert server.models[tag].batcher.stats.rows == 4


def test_bypassed_and_switched_off_requests_touch_nothing(posteriors):
    tag = "cache-off:1"
    server = serve({tag: tag}, lambda t: posteriors["a"], cache=100)
    served = server.models[tag]
    X = np.array(ROWS, np.float32)
    records = asyncio.run(server.cache.records(served, X, 0.9, 0, bypass=True))
    np.testing.assert_allclose([r["mean"] for r in records],
                               Predictor(posteriors["a"]).predict(ROWS).mean, rtol=1e-6)
    assert not server.cache.counts and len(server.cache.l1) == 0
    off = ModelServer({tag: tag}, load=lambda t: posteriors["a"], cache=0)
    assert not off.cache.on and off.cache.describe()["enabled"] is False


def test_configuration_from_the_environment(monkeypatch):
    for name in ("WORKBENCH_PREDICTION_CACHE", "WORKBENCH_PREDICTION_CACHE_REDIS",
                 "WORKBENCH_PREDICTION_CACHE_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    assert not PredictionCache.from_settings().on  # off by default
    monkeypatch.setenv("WORKBENCH_PREDICTION_CACHE", "5000")
    monkeypatch.setenv("WORKBENCH_PREDICTION_CACHE_REDIS", "redis://user:secret@cache:6379/2")
    monkeypatch.setenv("WORKBENCH_PREDICTION_CACHE_SECONDS", "60")
    server = ModelServer({"m:1": "m:1"}, load=lambda t: make_posterior("binary"))
    described = server.cache.describe()
    assert described["rows"] == 5000 and described["seconds"] == 60.0
    assert described["redis"] == "redis://cache:6379" and "secret" not in str(described)
    assert server.metadata()["cache"] == described  # what GET /metadata says
    assert ModelServer({"m:1": "m:1"}, load=lambda t: make_posterior("binary"),
                       cache=7).cache.rows == 7  # an argument wins over the environment
    for name, value, expected in (
            ("WORKBENCH_PREDICTION_CACHE", "lots", "valid integer"),
            ("WORKBENCH_PREDICTION_CACHE", "-1", "greater than or equal to 0"),
            ("WORKBENCH_PREDICTION_CACHE_SECONDS", "soon", "valid number"),
            ("WORKBENCH_PREDICTION_CACHE_SECONDS", "0", "greater than 0")):
        with monkeypatch.context() as env:
            env.setenv(name, value)
            with pytest.raises(ConfigError, match=name) as raised:
                PredictionCache.from_settings()
            assert expected in raised.value.detail[name]["expected"]
    with monkeypatch.context() as env:
        env.setenv("WORKBENCH_PREDICTION_CACHE", "off")
        assert PredictionCache.from_settings().rows == 0
