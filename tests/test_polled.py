"""The pollers' cache: one computation per key at a time, an answer reused for its ttl (or
while its counts are unchanged), and the previous answer while a slow one is computed."""

from __future__ import annotations

import threading

from workbench.polled import Polled


def test_an_answer_is_reused_for_its_ttl_and_copied_for_each_caller():
    polled, calls = Polled(), []

    def compute():
        calls.append(1)
        return {"n": len(calls)}

    first = polled.get("k", 3600, compute)
    first["n"] = 99  # a caller's copy
    assert polled.get("k", 3600, compute) == {"n": 1} and len(calls) == 1
    assert polled.get("k", 0, compute) == {"n": 2}  # past its ttl: computed again
    assert polled.get("other", 3600, compute) == {"n": 3}


def test_with_counts_an_answer_is_reused_while_they_are_unchanged():
    polled, calls = Polled(), []

    def compute():
        calls.append(1)
        return len(calls)

    assert polled.get("k", 0, compute, counts=[1, 2]) == 1
    assert polled.get("k", 0, compute, counts=[1, 2]) == 1  # same counts: same answer
    assert polled.get("k", 0, compute, counts=[1, 3]) == 2
    assert polled.get("k", 3600, compute, counts=[1, 4]) == 2  # changed, but still fresh


def test_stale_while_busy_answers_at_once_while_another_thread_computes():
    polled = Polled(stale_while_busy=True)
    polled.get("k", 0, lambda: "old")
    started, release, out = threading.Event(), threading.Event(), {}

    def slow():
        started.set()
        assert release.wait(10)
        return "new"

    worker = threading.Thread(target=lambda: out.update(first=polled.get("k", 0, slow)))
    worker.start()
    assert started.wait(10)
    assert polled.get("k", 0, lambda: "never") == "old"  # not blocked behind the fit
    release.set()
    worker.join(10)
    assert out["first"] == "new" and polled.get("k", 3600, lambda: "never") == "new"


def test_without_it_callers_wait_for_the_computation_in_flight():
    polled = Polled()
    started, release, answers = threading.Event(), threading.Event(), []

    def slow():
        started.set()
        assert release.wait(10)
        return "new"

    def never():
        raise AssertionError("computed twice")

    first = threading.Thread(target=lambda: answers.append(polled.get("k", 3600, slow)))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=lambda: answers.append(polled.get("k", 3600, never)))
    second.start()  # no answer yet: it can only return the first's, once it is there
    release.set()
    first.join(10)
    second.join(10)
    assert answers == ["new", "new"]
