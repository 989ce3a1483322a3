"""The one retry helper: backoff doubling to a cap, each failure logged with its wait, the
wait cut short by a stop, only the named exceptions retried."""

from __future__ import annotations

import asyncio
import threading

import pytest

from workbench import retry
from workbench.errors import InputError, Unavailable


def flaky(failures: int, exc: type[Exception] = Unavailable):
    calls = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise exc(f"down ({len(calls)})")
        return "up"

    return call, calls


def test_retries_until_it_succeeds_logging_each_wait_doubled_up_to_the_cap():
    call, calls = flaky(4)
    logged = []
    for attempt in retry.forever(0.001, 0.004, log=lambda e, s: logged.append((str(e), s))):
        with attempt:
            result = call()
    assert result == "up" and len(calls) == 5
    assert logged == [("down (1)", 0.001), ("down (2)", 0.002), ("down (3)", 0.004),
                      ("down (4)", 0.004)]


def test_an_exception_it_was_not_told_to_retry_is_raised_at_once():
    call, calls = flaky(1, InputError)
    with pytest.raises(InputError):
        for attempt in retry.forever(0.001, 0.01, on=Unavailable, log=lambda e, s: None):
            with attempt:
                call()
    assert len(calls) == 1


def test_a_stop_ends_the_wait_and_raises_the_last_failure():
    stop = threading.Event()
    call, calls = flaky(10**6)

    def log(exc, seconds):
        stop.set()  # the caller is shutting down while a 60 s wait begins

    with pytest.raises(Unavailable, match="down \\(1\\)"):
        for attempt in retry.forever(60, 60, log=log, stop=stop):
            with attempt:
                call()
    assert len(calls) == 1


def test_the_async_form_keeps_the_event_loop_running_while_it_waits():
    call, calls = flaky(2)
    ticks = []

    async def main() -> str:
        async def ticker() -> None:
            while True:
                ticks.append(1)
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        async for attempt in retry.forever_async(0.01, 0.02, log=lambda e, s: None,
                                                 stop=threading.Event()):
            with attempt:
                out = call()
        task.cancel()
        return out

    assert asyncio.run(main()) == "up" and len(calls) == 3
    assert len(ticks) > 1
