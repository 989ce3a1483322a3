"""Following alias moves, with real parts: posteriors in the session's model store, a real
:class:`ModelServer` compiling real buckets, the registry written by ``store.set_alias``.
Each test has its own alias (other tests share the store); waits are on conditions."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from conftest import make_posterior

from workbench import artifact, store
from workbench.errors import ModelNotFound
from workbench.follow import AliasFollower, followed, wanted
from workbench.predict import Predictor
from workbench.serving import ModelServer

ROW = [[0.5, -0.2, 0.1, 1.0]]


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        pause.wait(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def versions() -> dict[str, str]:
    """Three versions of one model; ``bad`` has a damaged artifact (checksum mismatch)."""
    tags = {key: store.save(make_posterior("binary", name="follow-unit", seed=seed))
            for key, seed in (("first", 1), ("second", 2), ("bad", 3))}
    file = store.path(tags["bad"]) / artifact.FILENAME
    data = bytearray(file.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    file.write_bytes(bytes(data))
    return tags


@pytest.fixture
def alias(request: pytest.FixtureRequest, versions: dict[str, str]) -> str:
    name = "follow-" + request.node.name.removeprefix("test_").replace("_", "-")[:40]
    store.set_alias(name, versions["first"])
    return name


@pytest.fixture
def following(alias: str) -> Iterator[Callable[..., tuple[ModelServer, AliasFollower]]]:
    """``start(**options)``: a warmed-up server of ``alias``, followed on a thread."""
    started: list[AliasFollower] = []

    def start(grace: float = 0.0, **options: Any) -> tuple[ModelServer, AliasFollower]:
        server = ModelServer({alias: store.resolve(alias)}, load=store.get, buckets=(1, 4))
        follower = AliasFollower(server, interval=0.02, grace=grace, **options)
        server.warmup()
        started.append(follower.start())
        return server, follower

    yield start
    for follower in started:
        follower.stop()


def predict(server: ModelServer, model: str | None = None) -> dict[str, Any]:
    return asyncio.run(server.predict(ROW, model=model))


def test_the_server_swaps_to_the_version_the_alias_moves_to(alias, versions, following):
    first, second = versions["first"], versions["second"]
    server, follower = following()
    assert predict(server)["model"] == first

    store.set_alias(alias, second)
    wait_for(lambda: server.refs[alias] == second, "the swap")
    for ref in (None, alias, second):
        assert predict(server, ref)["model"] == second
    local = Predictor(store.get(second)).predict(ROW)
    np.testing.assert_allclose(predict(server)["predictions"][0]["mean"], local.mean[0],
                               rtol=1e-6)
    meta = server.metadata()
    assert meta["default_model"] == second and list(meta["models"]) == [second]
    assert meta["aliases"] == {alias: second}
    assert meta["sample_output"]["model"] == second and meta["sample_output"]["predictions"]
    (swap,) = meta["follow"]["swaps"]
    assert (swap["alias"], swap["from"], swap["to"]) == (alias, first, second)
    assert meta["follow"]["error"] is None and meta["follow"]["watching"] == {alias: second}
    assert list(server.status()["models"]) == [second]
    # with no grace, the old version is dropped once idle
    wait_for(lambda: first not in server.status()["lookup"], "the old version dropped")
    with pytest.raises(ModelNotFound):
        server.resolve(first)


def test_the_old_version_answers_by_its_tag_until_it_is_retired(alias, versions, following):
    first, second = versions["first"], versions["second"]
    server, follower = following(grace=3600.0)
    store.set_alias(alias, second)
    wait_for(lambda: server.refs[alias] == second, "the swap")
    assert predict(server, first)["model"] == first  # a request that named it still works
    assert follower.describe()["retiring"] == [first]
    assert first not in server.metadata()["models"]
    assert server.retire(first) and not server.retire(first)
    with pytest.raises(ModelNotFound):
        server.resolve(first)


def test_no_request_fails_while_the_swap_happens_under_traffic(alias, versions, following):
    first, second = versions["first"], versions["second"]
    server, _ = following()

    async def traffic() -> list[list[str]]:
        seen: list[list[str]] = [[] for _ in range(8)]
        deadline = time.monotonic() + 120

        async def client(answers: list[str]) -> None:
            while time.monotonic() < deadline and answers[-5:] != [second] * 5:
                answers.append((await server.predict(ROW, model=alias))["model"])

        store.set_alias(alias, second)  # the follower compiles while the clients ask
        await asyncio.gather(*(client(answers) for answers in seen))  # any error fails
        return seen

    for answers in asyncio.run(traffic()):
        assert answers[-1] == second
        switched = answers.index(second)
        assert set(answers[:switched]) <= {first} and set(answers[switched:]) == {second}


def test_a_version_that_cannot_be_served_keeps_the_old_one_until_the_next_move(
        alias, versions, following):
    first, second, bad = versions["first"], versions["second"], versions["bad"]
    server, follower = following()
    store.set_alias(alias, bad)  # its metadata passes; its artifact does not
    error = wait_for(lambda: server.metadata()["follow"]["error"], "the failure reported")
    assert bad in error and "CorruptArtifact" in error and "checksum" in error
    assert server.status()["follow"]["failures"][alias]["tag"] == bad
    assert predict(server)["model"] == first and server.metadata()["default_model"] == first

    store.set_alias(alias, second)  # the next change is followed, and clears the failure
    wait_for(lambda: server.refs[alias] == second, "the swap after the failure")
    assert predict(server)["model"] == second
    assert server.metadata()["follow"]["error"] is None


def test_a_version_already_served_under_another_ref_is_reused(alias, versions):
    first, second = versions["first"], versions["second"]
    server = ModelServer({alias: first, "pinned": second}, load=store.get, buckets=(1, 4))
    follower = AliasFollower(server, interval=0.02, grace=0.0, refs=[alias])
    server.warmup()
    compiled = server.models[second].predictor
    store.set_alias(alias, second)
    (swap,) = follower.check()  # one look, on this thread
    assert swap["to"] == second and server.models[second].predictor is compiled
    assert server.refs == {alias: second, "pinned": second}
    assert follower.check() == []  # the registry did not change since


def test_only_the_refs_given_follow(alias, versions):
    server = ModelServer({alias: versions["first"]}, load=store.get, buckets=(1, 4))
    follower = AliasFollower(server, interval=0.02, refs=[])
    server.warmup()
    store.set_alias(alias, versions["second"])
    assert follower.check() == [] and server.refs[alias] == versions["first"]


def test_following_is_on_from_source_and_never_in_a_built_bento(monkeypatch):
    monkeypatch.delenv("WORKBENCH_FOLLOW_ALIASES", raising=False)
    assert wanted(None, built=False) and not wanted(None, built=True)
    assert not wanted("true", built=True)
    assert not wanted("false", built=False) and wanted("yes", built=False)
    assert not wanted(None, built=False, default=False)  # the gateway's own Predictor
    assert wanted("true", built=False, default=False)
    monkeypatch.setenv("WORKBENCH_FOLLOW_ALIASES", "0")
    assert not wanted(None, built=False) and wanted("1", built=False)
    monkeypatch.setenv("WORKBENCH_FOLLOW_ALIASES", "true")
    assert wanted(None, built=False, default=False) and not wanted(None, built=True)
    assert followed("champion, reg=e2e-regression:abc,challenger") == ["champion", "challenger"]


def test_a_server_without_a_follower_says_why():
    posterior = make_posterior("binary")
    source = ModelServer({"m:1": "m:1"}, load=lambda tag: posterior, buckets=(1,))
    assert source.following()["enabled"] is False
    built = ModelServer({"m:1": "m:1"}, load=lambda tag: posterior, buckets=(1,),
                        bento="predictor:abc")
    assert "built bento" in built.status()["follow"]["reason"]


def test_an_unreadable_registry_is_reported_and_the_next_change_read(alias, versions):
    server = ModelServer({alias: versions["first"]}, load=store.get, buckets=(1, 4))
    follower = AliasFollower(server, interval=0.02, grace=0.0)
    server.warmup()
    registry = store.registry_file()
    good = registry.read_text()
    try:
        registry.write_text("{not json")  # a hand edit gone wrong
        assert follower.check() == []
        assert "alias registry" in server.metadata()["follow"]["error"]
    finally:
        registry.write_text(good)
    store.set_alias(alias, versions["second"])
    (swap,) = follower.check()
    assert swap["to"] == versions["second"] and server.metadata()["follow"]["error"] is None
