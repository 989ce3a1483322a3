"""Experiment state and lifecycle actions on a real SQLite store: versioned, audited,
refused when the state does not allow them, and safe when two writers race."""

from __future__ import annotations

import threading

import pytest

from workbench import control, events
from workbench.config import parse
from workbench.errors import Conflict, InputError, ModelNotFound

CONFIG = parse({"name": "ctl", "arms": [{"name": "control", "model": "m1"},
                                        {"name": "treatment", "model": "m2"}]})


@pytest.fixture
def eng(tmp_path):
    eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    events.save_config(eng, CONFIG.name, CONFIG.to_config())
    return eng


def test_first_start_creates_a_running_state_and_a_restart_keeps_it(eng):
    first = control.ensure(eng, CONFIG)
    assert (first.status, first.weights, first.version) == (
        "running", {"control": 0.5, "treatment": 0.5}, 1)
    control.conclude(eng, "ctl", "treatment", actor="alice", reason="clear win")
    again = control.ensure(eng, CONFIG)  # a replica restarting must not undo a decision
    assert again.status == "concluded" and again.winner == "treatment" and again.version == 2
    other = parse(CONFIG.to_config() | {"control": "a", "arms": [{"name": "a", "model": "m"},
                                                 {"name": "b", "model": "n"}]})
    reset = control.ensure(eng, other)
    assert reset.status == "running" and list(reset.weights) == ["a", "b"]
    assert control.history(eng, "ctl")[0]["action"] == "reconfigure"


def test_each_action_bumps_the_version_and_writes_who_what_why_before_after(eng):
    control.ensure(eng, CONFIG)
    control.pause(eng, "ctl", actor="alice", reason="incident 42")
    control.resume(eng, "ctl", actor="bob")
    ramped = control.ramp(eng, "ctl", "treatment", 0.2, actor="carol", reason="step 1")
    assert ramped.weights == pytest.approx({"control": 0.8, "treatment": 0.2})
    done = control.conclude(eng, "ctl", "control", actor="dave", reason="no lift")
    assert done.version == 5 and done.routing("control") == ({"control": 1.0}, "concluded")
    rows = control.history(eng, "ctl")
    assert [r["action"] for r in rows] == ["conclude", "ramp", "resume", "pause", "start"]
    assert [r["actor"] for r in rows[:4]] == ["dave", "carol", "bob", "alice"]
    assert rows[3]["reason"] == "incident 42"
    assert rows[1]["before"]["weights"] == {"control": 0.5, "treatment": 0.5}
    assert rows[1]["after"]["weights"] == pytest.approx({"control": 0.8, "treatment": 0.2})
    assert [r["version"] for r in rows] == [5, 4, 3, 2, 1]
    assert [w for _, w in control.weights_timeline(eng, "ctl")] == [
        {"control": 0.5, "treatment": 0.5}, pytest.approx({"control": 0.8, "treatment": 0.2})]


def test_actions_the_state_does_not_allow_are_refused_and_change_nothing(eng):
    control.ensure(eng, CONFIG)
    with pytest.raises(Conflict, match="not paused"):
        control.resume(eng, "ctl", actor="a")
    with pytest.raises(InputError, match="unknown arm"):
        control.ramp(eng, "ctl", "nope", 0.5, actor="a")
    for bad in (1.5, -0.1, float("nan"), "0.5", True):
        with pytest.raises(InputError, match="invalid weight"):
            control.ramp(eng, "ctl", "treatment", bad, actor="a")
    with pytest.raises(InputError, match="invalid reason"):
        control.pause(eng, "ctl", actor="a", reason="x" * 5000)
    control.conclude(eng, "ctl", "treatment", actor="a")
    for act in (lambda: control.pause(eng, "ctl", actor="a"),
                lambda: control.ramp(eng, "ctl", "treatment", 0.1, actor="a"),
                lambda: control.conclude(eng, "ctl", "control", actor="a")):
        with pytest.raises(Conflict):
            act()
    with pytest.raises(ModelNotFound, match="no experiment 'other'"):
        control.pause(eng, "other", actor="a")
    assert control.require(eng, "ctl").version == 2
    assert len(control.history(eng, "ctl")) == 2


def test_ramp_moves_units_only_into_the_growing_arm():
    weights = {"control": 0.9, "treatment": 0.1}
    assert control.reweigh(weights, "treatment", 0.5, "control") == pytest.approx(
        {"control": 0.5, "treatment": 0.5})
    three = {"control": 0.5, "b": 0.25, "c": 0.25}
    assert control.reweigh(three, "c", 0.5, "control") == pytest.approx(
        {"control": 1 / 3, "b": 1 / 6, "c": 0.5})
    assert control.reweigh({"control": 0.0, "b": 1.0}, "b", 0.4, "control") == pytest.approx(
        {"control": 0.6, "b": 0.4})


def test_an_automatic_action_on_a_stale_version_does_nothing(eng):
    state = control.ensure(eng, CONFIG)
    control.pause(eng, "ctl", actor="human")
    assert control.pause_arm(eng, "ctl", "treatment", "control", actor="guardrail",
                             reason="r", expect_version=state.version) is None
    assert control.require(eng, "ctl").status == "paused"


def test_racing_writers_each_apply_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    engines = [events.engine(url) for _ in range(4)]
    events.save_config(engines[0], CONFIG.name, CONFIG.to_config())
    control.ensure(engines[0], CONFIG)
    weights = [0.1, 0.2, 0.3, 0.4] * 5

    def ramp(i: int) -> None:
        for w in weights[i::4]:
            control.ramp(engines[i], "ctl", "treatment", w, actor=f"writer-{i}")

    threads = [threading.Thread(target=ramp, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = control.history(engines[0], "ctl")
    assert control.require(engines[0], "ctl").version == 1 + len(weights) == len(rows)
    assert sorted(r["version"] for r in rows) == list(range(1, len(weights) + 2))
