"""Acknowledgement futures: settled from another thread a batch at a time, expired by a
sweep (not a timer per request), and no sweep left scheduled once nobody waits."""

from __future__ import annotations

import asyncio
import threading

import pytest

from workbench.acks import Acks, Expired
from workbench.errors import Unavailable


def _refused() -> Unavailable:
    return Unavailable("refused")


def test_futures_settle_from_another_thread_with_their_outcomes():
    acks = Acks(timeout=5.0)

    async def run():
        futures = [acks.expect() for _ in range(3)]
        outcomes = list(zip(futures, ["written", "spooled", "refused"], strict=True))
        threading.Thread(target=acks.settle, args=(outcomes, _refused)).start()
        return await asyncio.gather(*futures, return_exceptions=True)

    written, spooled, refused = asyncio.run(run())
    assert (written, spooled) == ("written", "spooled")
    assert isinstance(refused, Unavailable)


def test_a_future_nobody_settles_expires_near_its_deadline_and_the_sweep_stops():
    acks = Acks(timeout=0.2)

    async def run():
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Expired):
            await acks.expect()
        waited = loop.time() - started
        scheduled = [h for h in loop._scheduled if not h.cancelled()]  # noqa: SLF001
        return waited, scheduled

    waited, scheduled = asyncio.run(run())
    assert 0.2 <= waited < 0.2 + 2 * acks.every
    assert scheduled == [] and acks._waiting == {}  # noqa: SLF001 (nobody waits: no sweep)


def test_a_settled_future_is_not_expired_later():
    acks = Acks(timeout=0.2)

    async def run():
        future = acks.expect()
        acks.settle([(future, "written")], _refused)
        assert await future == "written"
        late = acks.expect()  # keeps the sweep going past the first deadline
        with pytest.raises(Expired):
            await late
        return future.result()

    assert asyncio.run(run()) == "written"
