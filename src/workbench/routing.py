"""Which arm a request goes to: a replica's cache of its experiment's live state.

:class:`LiveState` holds the state row of :mod:`workbench.control` and reads it again every
``poll_seconds`` (one primary-key lookup); a change made anywhere (the CLI, another replica,
a guardrail) reaches this replica's traffic within one poll. Assignment itself is the
deterministic salted hash of :mod:`workbench.assignment`, so every replica sends a unit to
the same arm under the same weights. When the database cannot be read, the replica keeps
the last state it saw, counts the failure and logs it once per outage.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from workbench import assignment, control
from workbench.config import ExperimentConfig

logger = logging.getLogger("workbench.routing")


class LiveState:
    """The experiment's state as this replica last read it.

    Parameters
    ----------
    engine
        The event store holding the state.
    config
        The experiment (its name, arms, control arm and salt).
    poll_seconds
        How often :meth:`refresh` is expected to run (see :meth:`start`).
    """

    def __init__(self, engine: Any, config: ExperimentConfig, *, poll_seconds: float = 1.0
                 ) -> None:
        self.engine = engine
        self.config = config
        self.poll_seconds = poll_seconds
        self.state = control.ensure(engine, config)
        self.read_at = time.time()
        self.failures = 0
        self._failing = False

    @property
    def state(self) -> control.State:
        """The state last read."""
        return self._routing[0]

    @state.setter
    def state(self, state: control.State) -> None:
        """Keep ``state`` with the weights it routes by, in arm order, and the status its
        events are logged with: worked out once per read, not per request (one tuple, so a
        request never sees a state with another's weights)."""
        weights, status = state.routing(self.config.control_arm.name)
        ordered = {a.name: float(weights.get(a.name, 0.0)) for a in self.config.arms}
        if sum(ordered.values()) <= 0:  # cannot happen through control; never divide by 0
            ordered = {self.config.control_arm.name: 1.0}
        self._routing = (state, ordered, status)

    def route(self, unit: str) -> tuple[str, str]:
        """The arm ``unit`` gets now, and the status its event is logged with."""
        _, ordered, status = self._routing
        return assignment.assign(self.config.name, unit, ordered, self.config.salt), status

    def refresh(self) -> bool:
        """Read the state again; True when it changed."""
        try:
            fresh = control.get(self.engine, self.config.name)
        except Exception as exc:  # keep serving on the last known state
            self.failures += 1
            if not self._failing:
                logger.error("cannot read the state of %r (keeping version %d): %s",
                             self.config.name, self.state.version, exc)
            self._failing = True
            return False
        if self._failing:
            logger.info("state of %r readable again", self.config.name)
        self._failing = False
        self.read_at = time.time()
        if fresh is None:  # deleted by hand: recreate from the config
            fresh = control.ensure(self.engine, self.config)
        changed = fresh.version != self.state.version
        if changed:
            logger.info("experiment %r: state version %d -> %d: %s, weights %s%s",
                        self.config.name, self.state.version, fresh.version, fresh.status,
                        fresh.weights, f", winner {fresh.winner}" if fresh.winner else "")
        self.state = fresh
        return changed

    def start(self, stop: threading.Event) -> threading.Thread:
        """Refresh every ``poll_seconds`` on a daemon thread until ``stop`` is set."""
        def loop() -> None:
            while not stop.wait(self.poll_seconds):
                self.refresh()
        thread = threading.Thread(target=loop, name="workbench-state", daemon=True)
        thread.start()
        return thread
