"""An experiment's live state and its lifecycle: the one source of truth for every replica.

The state (status, live weights, winner, version) is a row of ``experiment_state`` in the
event store's database; gateway replicas poll it (:mod:`workbench.routing`) and follow a
change within seconds, with no rebuild. Every change goes through :func:`change`, which
bumps the version with an optimistic compare-and-set (``UPDATE ... WHERE version = v``, so
two replicas or a replica and the CLI never overwrite each other) and writes an ``audit``
row in the same transaction: who, when, what, why, the state before and after.

Statuses and what traffic gets:

- ``running``: units are assigned by the live weights (sticky, :mod:`workbench.assignment`);
- ``paused``: everyone gets the control arm; nothing served counts in the read-out;
- ``concluded``: everyone gets the winner, for good (start a new experiment to test again).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from workbench.config import ExperimentConfig
from workbench.errors import Conflict, InputError, ModelNotFound
from workbench.schema import audit, registry, state

STATUSES = ("running", "paused", "concluded")
ACTIONS = ("start", "reconfigure", "pause", "resume", "ramp", "pause_arm", "conclude",
           "allocate")
MAX_ACTOR = 256
MAX_REASON = 2000


@dataclass(frozen=True)
class State:
    """One experiment's live state, as stored."""

    experiment: str
    status: str
    weights: dict[str, float]
    winner: str | None
    version: int
    updated: float

    def routing(self, control: str) -> tuple[dict[str, float], str]:
        """The weights traffic follows now, and the status its events are logged with."""
        if self.status == "running":
            return self.weights, "ok"
        if self.status == "paused":
            return {control: 1.0}, "paused"
        return {self.winner or control: 1.0}, "concluded"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def get(eng: sa.Engine, experiment: str) -> State | None:
    """The stored state of ``experiment``, or None."""
    with eng.connect() as conn:
        row = conn.execute(sa.select(state).where(state.c.experiment == experiment)).first()
    return None if row is None else _state(row)


def require(eng: sa.Engine, experiment: str) -> State:
    """The stored state, or :class:`ModelNotFound` naming the experiments there are."""
    found = get(eng, experiment)
    if found is None:
        with eng.connect() as conn:
            names = sorted(conn.execute(sa.select(state.c.experiment)).scalars())
        raise ModelNotFound(f"no experiment {experiment!r} in the event store",
                            detail={"experiments": names})
    return found


def ensure(eng: sa.Engine, config: ExperimentConfig, *, actor: str = "gateway") -> State:
    """The state of ``config``'s experiment, created (``running``, the configured weights)
    on first start. A restarted replica keeps what is stored (a concluded experiment stays
    concluded); a config with other arms starts over, audited as ``reconfigure``."""
    arms = [a.name for a in config.arms]
    for _ in range(5):
        current = get(eng, config.name)
        if current is not None and list(current.weights) == arms:
            return current
        now = time.time()
        values = {"status": "running", "weights": config.weights, "winner": None,
                  "updated": now}
        try:
            with eng.begin() as conn:
                if current is None:
                    conn.execute(state.insert().values(experiment=config.name, version=1,
                                                       **values))
                    version, action, reason = 1, "start", "first start of the experiment"
                else:
                    version = current.version + 1
                    done = conn.execute(state.update().where(
                        state.c.experiment == config.name,
                        state.c.version == current.version).values(version=version, **values))
                    if done.rowcount != 1:
                        continue
                    action = "reconfigure"
                    reason = f"the configured arms changed to {arms}"
                conn.execute(audit.insert().values(
                    experiment=config.name, ts=now, actor=actor, action=action, reason=reason,
                    before=current.to_dict() if current else None,
                    after=values | {"version": version}, version=version))
        except sa.exc.IntegrityError:  # another replica created it first
            continue
    return require(eng, config.name)


def change(eng: sa.Engine, experiment: str, action: str, update: Callable[[State], dict[str,
           Any]], *, actor: str, reason: str, expect_version: int | None = None,
           audited: bool = True) -> State | None:
    """Apply ``update`` (current state → changed fields) as one audited, versioned change.

    With ``expect_version`` (automatic actions), nothing happens and None is returned when
    the state has moved on since it was read: another replica acted first.
    """
    actor, reason = _text(actor, "actor", MAX_ACTOR), _text(reason, "reason", MAX_REASON)
    for _ in range(20):
        current = require(eng, experiment)
        if expect_version is not None and current.version != expect_version:
            return None
        fields = update(current)
        now = time.time()
        version = current.version + 1
        with eng.begin() as conn:
            done = conn.execute(state.update().where(
                state.c.experiment == experiment, state.c.version == current.version)
                .values(version=version, updated=now, **fields))
            if done.rowcount != 1:
                continue  # changed under us: read again and re-check
            if audited:
                after = current.to_dict() | fields | {"version": version, "updated": now}
                conn.execute(audit.insert().values(
                    experiment=experiment, ts=now, actor=actor, action=action, reason=reason,
                    before=current.to_dict(), after=after, version=version))
        return require(eng, experiment)
    raise Conflict(f"experiment {experiment!r} kept changing under this action; retry")


# -- the actions ---------------------------------------------------------------------------

def pause(eng: sa.Engine, experiment: str, *, actor: str, reason: str = "") -> State:
    """Send everyone to control; nothing served while paused counts in the read-out."""
    def update(s: State) -> dict[str, Any]:
        _running(s, "pause")
        return {"status": "paused"}
    return _apply(eng, experiment, "pause", update, actor=actor, reason=reason)


def resume(eng: sa.Engine, experiment: str, *, actor: str, reason: str = "") -> State:
    """Assign by the live weights again."""
    def update(s: State) -> dict[str, Any]:
        if s.status != "paused":
            raise Conflict(f"experiment {experiment!r} is {s.status}, not paused",
                           detail={"expected": "resume a paused experiment"})
        return {"status": "running"}
    return _apply(eng, experiment, "resume", update, actor=actor, reason=reason)


def ramp(eng: sa.Engine, experiment: str, arm: str, weight: Any, *, actor: str,
         reason: str = "") -> State:
    """Give ``arm`` the share ``weight`` of traffic; the other arms share the rest in their
    current proportions (control takes it all when they have none). Ramping in steps
    (0.1, 0.25, 0.5) only ever moves units *into* a growing arm."""
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not (
            math.isfinite(weight) and 0 <= weight <= 1):
        raise InputError(f"invalid weight {weight!r}", detail={"expected": "a number in [0, 1]"})
    mode = _mode(eng, experiment)
    if mode == "bandit":
        raise Conflict(f"experiment {experiment!r} allocates by Thompson sampling; its "
                       "weights are the bandit's", detail={"expected": "pause or conclude"})

    def update(s: State) -> dict[str, Any]:
        if s.status == "concluded":
            raise Conflict(f"experiment {experiment!r} is concluded",
                           detail={"winner": s.winner})
        _arm(s, arm)
        return {"weights": reweigh(s.weights, arm, float(weight), _control(eng, s))}
    return _apply(eng, experiment, "ramp", update, actor=actor,
                  reason=reason or f"ramp {arm} to {float(weight):g}")


def pause_arm(eng: sa.Engine, experiment: str, arm: str, control: str, *, actor: str,
              reason: str, expect_version: int | None = None) -> State | None:
    """Take ``arm`` out of traffic and give its share to ``control`` (a guardrail's action)."""
    def update(s: State) -> dict[str, Any]:
        _running(s, "pause an arm of")
        _arm(s, arm)
        weights = dict(s.weights)
        weights[control] = weights.get(control, 0.0) + weights[arm]
        weights[arm] = 0.0
        return {"weights": weights}
    return change(eng, experiment, "pause_arm", update, actor=actor, reason=reason,
                  expect_version=expect_version)


def conclude(eng: sa.Engine, experiment: str, winner: str, *, actor: str, reason: str = "",
             expect_version: int | None = None) -> State | None:
    """End the experiment: from now on everyone gets ``winner``."""
    def update(s: State) -> dict[str, Any]:
        if s.status == "concluded":
            raise Conflict(f"experiment {experiment!r} is already concluded (winner "
                           f"{s.winner!r})", detail={"winner": s.winner})
        _arm(s, winner)
        return {"status": "concluded", "winner": winner}
    return change(eng, experiment, "conclude", update, actor=actor,
                  reason=reason or f"{winner} wins", expect_version=expect_version)


ADMIN_ACTIONS = ("pause", "resume", "ramp", "conclude")  # of ACTIONS, those an admin asks


def act(eng: sa.Engine, experiment: str, action: str, *, actor: str, reason: str = "",
        arm: str | None = None, weight: Any = None, winner: str | None = None) -> State | None:
    """One of the :data:`ADMIN_ACTIONS` by name (an admin's request), with its arguments."""
    if action == "pause":
        return pause(eng, experiment, actor=actor, reason=reason)
    if action == "resume":
        return resume(eng, experiment, actor=actor, reason=reason)
    if action == "ramp":
        return ramp(eng, experiment, arm or "", weight, actor=actor, reason=reason)
    if action == "conclude":
        return conclude(eng, experiment, winner or "", actor=actor, reason=reason)
    raise InputError(f"unknown action {action!r}",
                     detail={"expected one of": list(ADMIN_ACTIONS)})


def allocate(eng: sa.Engine, experiment: str, weights: dict[str, float], *,
             expect_version: int) -> State | None:
    """Set the bandit's weights (not audited: a reallocation every few seconds is the
    configured policy at work, not a decision; the state row keeps the latest)."""
    def update(s: State) -> dict[str, Any]:
        return {"weights": {a: float(weights[a]) for a in s.weights}} \
            if s.status == "running" else {}
    return change(eng, experiment, "allocate", update, actor="bandit", reason="thompson",
                  expect_version=expect_version, audited=False)


def reweigh(weights: dict[str, float], arm: str, weight: float, control: str
            ) -> dict[str, float]:
    """``weights`` with ``arm`` at ``weight`` and the others scaled to share the rest."""
    others = {a: w for a, w in weights.items() if a != arm}
    rest, total = 1.0 - weight, sum(others.values())
    if total > 0:
        scaled = {a: w / total * rest for a, w in others.items()}
    elif arm != control:
        scaled = {a: (rest if a == control else 0.0) for a in others}
    else:
        scaled = {a: rest / len(others) for a in others}
    return {a: (weight if a == arm else scaled[a]) for a in weights}


# -- the audit trail -----------------------------------------------------------------------

def history(eng: sa.Engine, experiment: str | None = None, *, limit: int = 200
            ) -> list[dict[str, Any]]:
    """Audit rows, newest first."""
    query = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
    if experiment is not None:
        query = query.where(audit.c.experiment == experiment)
    with eng.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def weights_timeline(eng: sa.Engine, experiment: str) -> list[tuple[float, dict[str, float]]]:
    """When the weights changed and to what, oldest first (from the audit trail)."""
    query = (sa.select(audit.c.ts, audit.c.after).where(audit.c.experiment == experiment)
             .order_by(audit.c.id))
    out: list[tuple[float, dict[str, float]]] = []
    with eng.connect() as conn:
        for ts, after in conn.execute(query):
            weights = (after or {}).get("weights")
            if isinstance(weights, dict) and (not out or out[-1][1] != weights):
                out.append((float(ts), weights))
    return out


# -- helpers -------------------------------------------------------------------------------

def _apply(eng: sa.Engine, experiment: str, action: str,
           update: Callable[[State], dict[str, Any]], *, actor: str, reason: str) -> State:
    changed = change(eng, experiment, action, update, actor=actor, reason=reason)
    assert changed is not None  # only an expected version can make it a no-op
    return changed


def _state(row: Any) -> State:
    return State(experiment=row.experiment, status=row.status, weights=dict(row.weights),
                 winner=row.winner, version=int(row.version), updated=float(row.updated))


def _running(s: State, what: str) -> None:
    if s.status != "running":
        raise Conflict(f"cannot {what} experiment {s.experiment!r}: it is {s.status}",
                       detail={"expected": "a running experiment"})


def _arm(s: State, arm: Any) -> None:
    if not isinstance(arm, str) or arm not in s.weights:
        raise InputError(f"unknown arm {arm!r}", detail={"expected one of": list(s.weights)})


def _text(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise InputError(f"invalid {what}", detail={"expected": f"a string of at most "
                                                                 f"{limit} characters, no NUL"})
    return value


def _config(eng: sa.Engine, experiment: str) -> dict[str, Any]:
    with eng.connect() as conn:
        return conn.execute(sa.select(registry.c.config)
                            .where(registry.c.name == experiment)).scalar() or {}


def _mode(eng: sa.Engine, experiment: str) -> str:
    return _config(eng, experiment).get("mode", "split")


def _control(eng: sa.Engine, s: State) -> str:
    return _config(eng, s.experiment).get("control") or next(iter(s.weights))
