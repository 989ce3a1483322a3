from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from workbench import batching
from workbench.batching import MicroBatcher, Overloaded


def _doubler(calls: list[tuple[object, int]], gate: threading.Event | None = None):
    def fn(key, X):
        if gate is not None:
            gate.wait(5)
        calls.append((key, len(X)))
        if np.any(X < 0):
            raise ValueError("negative row")
        return {"y": X[:, 0] * 2, "rows": np.arange(len(X))}
    return fn


def test_concurrent_requests_share_calls_and_get_their_own_rows():
    calls: list[tuple[object, int]] = []
    gate = threading.Event()
    batcher = MicroBatcher(_doubler(calls, gate), max_rows=64)

    async def main():
        tasks = [asyncio.create_task(batcher.submit("k", np.full((2, 1), i, np.float32)))
                 for i in range(20)]
        await _until(lambda: batcher.pending == 20)
        gate.set()
        return await asyncio.gather(*tasks)

    results = asyncio.run(main())
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out["y"], [2 * i, 2 * i])
    assert len(calls) < 20  # the first ran alone; the rest queued behind it and batched
    assert batcher.stats.requests == 20 and batcher.stats.rows == 40
    assert max(n for _, n in calls) <= 64


def test_a_failing_request_does_not_fail_its_batch_mates():
    calls: list[tuple[object, int]] = []
    gate = threading.Event()
    batcher = MicroBatcher(_doubler(calls, gate))

    async def main():
        rows = [1.0, 2.0, -1.0, 3.0, 4.0]
        tasks = [asyncio.create_task(batcher.submit("k", np.array([[r]], np.float32)))
                 for r in rows]
        await _until(lambda: batcher.pending == 5)
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[2], ValueError)
    assert [r["y"][0] for i, r in enumerate(results) if i != 2] == [2.0, 4.0, 6.0, 8.0]
    assert batcher.stats.retried > 0


def test_keys_are_never_mixed():
    calls: list[tuple[object, int]] = []
    gate = threading.Event()
    batcher = MicroBatcher(_doubler(calls, gate))

    async def main():
        tasks = [asyncio.create_task(batcher.submit(i % 2, np.ones((1, 1), np.float32)))
                 for i in range(10)]
        await _until(lambda: batcher.pending == 10)
        gate.set()
        return await asyncio.gather(*tasks)

    asyncio.run(main())
    assert {k for k, _ in calls} == {0, 1}
    assert sum(n for _, n in calls) == 10


def test_a_full_queue_is_refused_at_once():
    gate = threading.Event()
    batcher = MicroBatcher(_doubler([], gate), max_queue_rows=4)

    async def main():
        first = asyncio.create_task(batcher.submit("k", np.ones((4, 1), np.float32)))
        await _taken(batcher)  # running: the queue is empty again
        second = asyncio.create_task(batcher.submit("k", np.ones((4, 1), np.float32)))
        await _until(lambda: batcher._queued_rows == 4)
        with pytest.raises(Overloaded):
            await batcher.submit("k", np.ones((1, 1), np.float32))
        gate.set()
        await asyncio.gather(first, second)

    asyncio.run(main())


def test_the_queue_depth_and_batch_sizes_reach_prometheus():
    from prometheus_client import REGISTRY

    def value(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"model": "m-metrics:1"}) or 0.0

    calls: list[tuple[object, int]] = []
    gate = threading.Event()
    batcher = MicroBatcher(_doubler(calls, gate), max_rows=64, name="m-metrics:1")
    waiting: list[float] = []

    async def main():
        first = asyncio.create_task(batcher.submit("k", np.ones((1, 1), np.float32)))
        await _taken(batcher)  # the first runs alone, at once
        rest = [asyncio.create_task(batcher.submit("k", np.ones((3, 1), np.float32)))
                for _ in range(4)]
        await _until(lambda: batcher._queued_rows == 12)
        waiting.append(value("workbench_batcher_queue_depth"))
        gate.set()
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert waiting == [12.0]  # four requests of three rows behind the running one
    assert value("workbench_batcher_queue_depth") == 0.0
    assert value("workbench_batcher_batch_size_count") == batcher.stats.calls == 2
    assert value("workbench_batcher_batch_size_sum") == 13.0
    batcher.close()


def test_closing_answers_what_is_still_queued_and_empties_the_gauge():
    from prometheus_client import REGISTRY

    gate = threading.Event()
    batcher = MicroBatcher(_doubler([], gate), name="m-closed:1")

    async def main():
        first = asyncio.create_task(batcher.submit("k", np.ones((1, 1), np.float32)))
        await _taken(batcher)
        queued = asyncio.create_task(batcher.submit("k", np.ones((5, 1), np.float32)))
        await _until(lambda: batcher._queued_rows == 5)
        batcher.close()
        gate.set()
        with pytest.raises(Overloaded, match="retired"):
            await queued
        first.cancel()

    asyncio.run(main())
    assert REGISTRY.get_sample_value("workbench_batcher_queue_depth",
                                     {"model": "m-closed:1"}) == 0.0


async def _until(condition) -> None:
    """Until ``condition()`` holds, letting the loop run the batcher meanwhile."""
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.001)


async def _taken(batcher: MicroBatcher) -> None:
    """Until the one request submitted is taken off the queue (its call is running)."""
    await _until(lambda: batcher.pending == 1 and not batcher._queue)


def test_a_lone_small_cheap_request_runs_on_the_loop_and_the_rest_on_the_worker(
        monkeypatch):
    """inline_rows: a batch of one small request with nothing queued, of a model whose calls
    have been cheap, is computed on the event loop's thread (no thread hops); the first
    call (its cost unknown), larger ones, requests that arrive together, the retries of a
    failed batch and an expensive model's calls run on the worker."""
    threads: list[tuple[int, str]] = []
    batcher = MicroBatcher(_recorder(threads), max_rows=64, inline_rows=4)

    async def main():
        one = np.ones((1, 1), np.float32)
        first = await batcher.submit("k", one)
        lone = await batcher.submit("k", np.ones((2, 1), np.float32))
        big = await batcher.submit("k", np.ones((5, 1), np.float32))
        with pytest.raises(ValueError, match="negative row"):
            await batcher.submit("k", -one)
        crowd = await asyncio.gather(*(batcher.submit("k", np.full((1, 1), i, np.float32))
                                       for i in range(10)), return_exceptions=True)
        monkeypatch.setattr(batching, "INLINE_SECONDS", 0.0)  # now every call is too dear
        dear = await batcher.submit("k", one)
        return threading.current_thread().name, first, lone, big, crowd, dear

    loop_thread, first, lone, big, crowd, dear = asyncio.run(main())
    np.testing.assert_array_equal(lone["y"], [2, 2])
    assert first["y"][0] == 2 and dear["y"][0] == 2 and len(big["y"]) == 5
    assert [c["y"][0] for c in crowd] == [2 * i for i in range(10)]
    on_worker = [t.startswith("batcher") for _, t in threads]
    assert [n for n, _ in threads[:4]] == [1, 2, 5, 1]
    assert on_worker[:4] == [True, False, True, False]  # cost unknown, lone, big, failing
    assert threads[4][0] == 10 and on_worker[4]  # the crowd arrived together: one batch
    assert threads[-1][0] == 1 and on_worker[-1]  # too dear for the loop
    assert threads[1][1] == threads[3][1] == loop_thread


def test_the_retries_of_a_failed_batch_run_on_the_worker():
    threads: list[tuple[int, str]] = []
    batcher = MicroBatcher(_recorder(threads), max_rows=64, inline_rows=4)

    async def main():
        await batcher.submit("k", np.ones((1, 1), np.float32))  # its cost is known now
        return await asyncio.gather(*(batcher.submit("k", np.full((1, 1), v, np.float32))
                                      for v in (1, -1, 2)), return_exceptions=True)

    out = asyncio.run(main())
    assert out[0]["y"][0] == 2 and isinstance(out[1], ValueError) and out[2]["y"][0] == 4
    assert [n for n, _ in threads[1:]] == [3, 1, 1, 1]  # the batch, then one by one
    assert all(t.startswith("batcher") for _, t in threads[1:])
    assert batcher.stats.retried == 3


def _recorder(threads: list[tuple[int, str]]):
    """A model call that notes its rows and the thread it ran on (and refuses negatives)."""
    def fn(key, X):
        threads.append((len(X), threading.current_thread().name))
        if np.any(X < 0):
            raise ValueError("negative row")
        return {"y": X[:, 0] * 2}
    return fn
