"""Rate limits per principal and route group: aligned fixed windows, in memory or shared in a
real Redis, and what happens when Redis is down."""

from __future__ import annotations

import asyncio
import logging

import pytest
from records import Records
from servers import free_port

from workbench import ratelimit
from workbench.errors import ConfigError
from workbench.ratelimit import DEFAULTS, RateLimiter, retry_after

T0 = 1_700_000_000.0  # a whole second


def run(coro):
    return asyncio.run(coro)


async def hits(limiter: RateLimiter, n: int, principal: str = "key:a", group: str = "predict",
               override: str | None = None, now: float = T0) -> list[ratelimit.Decision]:
    return [await limiter.hit(principal, group, override, now=now) for _ in range(n)]


def test_defaults_are_the_designs_and_the_environment_overrides_them(monkeypatch):
    assert DEFAULTS == {"predict": "1000/second", "feedback": "1000/second",
                        "batch": "100/minute", "admin": "10/second"}
    monkeypatch.setenv("WORKBENCH_RATE_LIMIT_BATCH", "5/minute")
    monkeypatch.setenv("WORKBENCH_RATE_LIMIT_ADMIN", "off")
    limiter = RateLimiter(storage_url="")
    assert [str(i) for i in limiter.limits_for("batch", None)] == ["5 per 1 minute"]
    assert limiter.limits_for("admin", None) == []
    assert all(d.allowed for d in run(hits(limiter, 50, group="admin")))
    monkeypatch.setenv("WORKBENCH_RATE_LIMIT_PREDICT", "lots")
    with pytest.raises(ConfigError, match="invalid rate limit"):
        RateLimiter(storage_url="")
    with pytest.raises(ConfigError, match="ON_REDIS_ERROR"):
        RateLimiter({}, storage_url="", on_error="maybe")
    with pytest.raises(ConfigError, match="WORKBENCH_REDIS_URL"):
        RateLimiter({}, storage_url="http://user:pw@host")


def test_a_window_admits_its_limit_then_refuses_until_the_next_whole_window():
    limiter = RateLimiter({"predict": "3/second"}, storage_url="")
    first = run(hits(limiter, 5, now=T0 + 0.2))
    assert [d.allowed for d in first] == [True, True, True, False, False]
    assert first[-1].retry_after == 1 and first[-1].limit == "3 per 1 second"
    assert all(d.allowed for d in run(hits(limiter, 3, now=T0 + 1.0)))  # the next second
    assert limiter.counters == {"allowed": 6, "limited": 2, "storage_errors": 0}
    slow = RateLimiter({"batch": "2/minute"}, storage_url="")
    assert [d.allowed for d in run(hits(slow, 3, group="batch", now=T0 + 15))] == [
        True, True, False]
    assert run(hits(slow, 1, group="batch", now=T0 + 15))[0].retry_after == 45 - (T0 % 60)


def test_principals_and_groups_count_apart_and_a_keys_own_limit_replaces_the_default():
    limiter = RateLimiter({"predict": "2/second", "feedback": "2/second"}, storage_url="")
    assert [d.allowed for d in run(hits(limiter, 3, "key:a"))] == [True, True, False]
    assert [d.allowed for d in run(hits(limiter, 2, "key:b"))] == [True, True]
    assert [d.allowed for d in run(hits(limiter, 2, "key:a", "feedback"))] == [True, True]
    assert [d.allowed for d in run(hits(limiter, 6, "key:c", override="5/second"))] == [
        True] * 5 + [False]
    several = run(hits(limiter, 4, "key:d", override="10/second;3/minute"))
    assert [d.allowed for d in several] == [True, True, True, False]
    assert several[-1].limit == "3 per 1 minute"


def test_retry_after_is_whole_seconds_to_the_window_end_and_at_least_one():
    assert retry_after(1, T0 + 0.999) == 1 and retry_after(1, T0) == 1
    assert retry_after(60, T0 - T0 % 60 + 0.5) == 60
    assert retry_after(3600, T0 - T0 % 3600 + 3599.9) == 1


def test_replicas_on_one_redis_share_one_limit(redis_url):
    async def go() -> list[bool]:
        a = RateLimiter({"predict": "10/second"}, storage_url=redis_url)
        b = RateLimiter({"predict": "10/second"}, storage_url=redis_url)
        now = T0 + 7 + 0.5  # a window no other test uses
        out = []
        for i in range(16):
            out.append((await (a if i % 2 else b).hit("key:shared", "predict", now=now))
                       .allowed)
        return out
    assert run(go()).count(True) == 10


@pytest.mark.parametrize("policy, allowed, status", [
    ("local", [True, True, False], None), ("open", [True, True, True], None),
    ("closed", [False, False, False], "unavailable")])
def test_when_redis_is_down_the_policy_decides_and_it_is_counted_and_logged(
        policy, allowed, status):
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    limiter = RateLimiter({"predict": "2/second"}, storage_url=down, on_error=policy)
    with Records("workbench.ratelimit") as logged:
        decisions = run(hits(limiter, 3))
    assert [d.allowed for d in decisions] == allowed
    if status:
        assert all(d.unavailable and d.retry_after >= 1 for d in decisions)
    assert limiter.counters["storage_errors"] == 1  # then Redis is left alone for a second
    assert len(logged.records) == 1 and logged.records[0].levelno == logging.WARNING
    assert policy in logged.text() and "127.0.0.1" in logged.text()


def test_redis_credentials_never_reach_the_log():
    limiter = RateLimiter({"predict": "1/second"},
                          storage_url=f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    with Records("workbench.ratelimit") as logged:
        run(hits(limiter, 1))
    assert "hunter2" not in logged.text() and limiter.where.startswith("redis://127.0.0.1")
