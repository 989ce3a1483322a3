"""The dashboard's experiment control panel: live state, lifecycle buttons, audit trail.

The buttons act through :mod:`workbench.control`, the same functions as ``workbench
experiment`` and the gateway's admin routes, on the state row every gateway replica follows:
Pause, Resume, Ramp (an arm to a share of traffic) and Conclude (a winner, by default the
read-out's). Each asks first (:class:`Confirmation`), is audited with the panel's ``actor``
and the reason typed, and when the state does not allow it (a
:class:`~workbench.errors.Conflict`, e.g. resuming a running experiment) says why in the
status line instead of raising. What is shown is the stored state, read again on every
refresh, so a change made elsewhere (the CLI, a guardrail) appears here too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import panel as pn
import param

from workbench import control
from workbench.dashboard_data import audit_table
from workbench.errors import WorkbenchError
from workbench.report import brief, when

logger = logging.getLogger(__name__)

AUDIT_ROWS = 50


class Confirmation:
    """Ask, then act: a question with Confirm and Cancel in :attr:`row`; the action runs on
    Confirm only, and what it returns (or why it was refused) is shown in :attr:`status`.

    Parameters
    ----------
    after
        Called once an answer is given (the dashboard's refresh).
    """

    def __init__(self, after: Callable[[], None] | None = None) -> None:
        self.row = pn.Row()
        self.status = pn.pane.Markdown("", name="status")
        self.after = after

    def ask(self, question: str, action: Callable[[], str]) -> None:
        yes = pn.widgets.Button(label="Confirm", color="danger")
        no = pn.widgets.Button(label="Cancel")

        def done(do: bool) -> None:
            self.row.objects = []
            if do:
                self.status.object = self.attempt(action)
            if self.after is not None:
                self.after()

        yes.on_click(lambda _: done(True))
        no.on_click(lambda _: done(False))
        self.row.objects = [pn.pane.Markdown(f"**{question}**"), yes, no]

    @staticmethod
    def attempt(action: Callable[[], str]) -> str:
        """What ``action`` returns, or why it was refused: shown to the user, never a
        traceback (an unexpected error's traceback goes to the server's log)."""
        try:
            return action()
        except WorkbenchError as exc:
            return f"**Refused:** {exc.message}"
        except Exception as exc:
            logger.exception("dashboard action failed")
            return f"**Refused:** {exc}"


class ControlPanel(pn.viewable.Viewer):
    """The live state of one experiment and the buttons that change it.

    Parameters
    ----------
    engine
        The event store holding the state and the audit trail.
    decided
        Returns the read-out's decided winner (or None): Conclude's default.
    refresh
        Called after every answered confirmation (the dashboard's refresh), so that the
        state, the audit trail and the read-out show the change at once.
    """

    experiment = param.String(default=None, allow_None=True, doc="The experiment shown")
    version = param.Integer(default=0, doc="Bumped by the dashboard on every change")
    actor = param.String(default="dashboard", doc="Who the actions are audited as")
    may_act = param.Boolean(default=True, doc="False for a viewer: buttons off, refused")

    def __init__(self, engine: Any, *, decided: Callable[[], str | None] = lambda: None,
                 refresh: Callable[[], None] | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.engine = engine
        self.decided = decided
        self.confirmation = Confirmation(after=refresh)
        fixed: dict[str, Any] = {"sizing_mode": "fixed"}
        button = fixed | {"width": 110, "align": "end"}
        self.reason = pn.widgets.TextInput(label="Reason", width=480, **fixed,
                                           placeholder="why (kept in the audit trail)")
        self.pause = pn.widgets.Button(label="Pause", color="warning", **button)
        self.resume = pn.widgets.Button(label="Resume", color="success", **button)
        self.ramp_arm = pn.widgets.Select(label="Arm", options=[], width=160, **fixed)
        self.ramp_weight = pn.widgets.EditableFloatSlider(
            label="Weight", start=0.0, end=1.0, fixed_start=0.0, fixed_end=1.0, step=0.05,
            value=0.5, width=240, **fixed)
        self.ramp = pn.widgets.Button(label="Ramp", color="primary", **button)
        self.winner = pn.widgets.Select(label="Winner", options=[], width=160, **fixed)
        self.conclude = pn.widgets.Button(label="Conclude", color="danger", **button)
        self.pause.on_click(lambda _: self.ask_pause())
        self.resume.on_click(lambda _: self.ask_resume())
        self.ramp.on_click(lambda _: self.ask_ramp())
        self.conclude.on_click(lambda _: self.ask_conclude())
        self.ramp_arm.param.watch(lambda _: self._current_weight(), "value")
        self.state: control.State | None = None
        self._arms: list[str] | None = None
        self._weights: dict[str, float] | None = None
        self._decided: str | None = None

    # -- the actions (each asks first) --

    def ask_pause(self) -> None:
        self._ask(f"Pause {self.experiment}? Everyone gets the control arm and nothing "
                  "served counts until it is resumed.", "paused",
                  lambda name, reason: control.pause(self.engine, name, actor=self.actor,
                                                     reason=reason))

    def ask_resume(self) -> None:
        self._ask(f"Resume {self.experiment}? Units are assigned by the live weights "
                  "again.", "resumed",
                  lambda name, reason: control.resume(self.engine, name, actor=self.actor,
                                                      reason=reason))

    def ask_ramp(self) -> None:
        arm, weight = self.ramp_arm.value, float(self.ramp_weight.value)
        self._ask(f"Ramp {arm} of {self.experiment} to {weight:.0%} of traffic? The other arms "
                  "share the rest.", "ramped",
                  lambda name, reason: control.ramp(self.engine, name, arm or "", weight,
                                                    actor=self.actor, reason=reason))

    def ask_conclude(self) -> None:
        winner, decided = self.winner.value, self.decided()
        note = "" if winner == decided else (
            f" (the read-out decided {decided})" if decided else
            " (the read-out has not decided a winner)")
        self._ask(f"Conclude {self.experiment} with {winner} as the winner{note}? Everyone gets "
                  f"{winner}, for good.", "concluded",
                  lambda name, reason: control.conclude(self.engine, name, winner or "",
                                                        actor=self.actor, reason=reason))

    def _ask(self, question: str, done: str,
             act: Callable[[str, str], control.State | None]) -> None:
        name, reason = self.experiment, self.reason.value
        if not self.may_act:  # the buttons are off too; this holds whatever the browser sends
            self.confirmation.status.object = (f"**Refused:** {self.actor} may view but not "
                                               "act (needs an API key with the admin scope)")
            return
        if not name:
            self.confirmation.status.object = "**Refused:** no experiment selected"
            return

        def action() -> str:
            state = act(name, reason)
            self.reason.value = ""
            return (f"{name} {done} by {self.actor}: {brief(state.to_dict())}, version "
                    f"{state.version}" if state else f"{name}: nothing changed")

        self.confirmation.ask(question, action)

    # -- views --

    @param.depends("experiment", "version")
    def state_view(self) -> pn.viewable.Viewable:
        """The stored state: status, weights, winner, version."""
        self.state = control.get(self.engine, self.experiment) if self.experiment else None
        self._sync()
        if self.state is None:
            return pn.pane.Alert(
                f"No live state recorded for {self.experiment!r}: the experiment gateway "
                "records it when it starts, and the lifecycle actions need it."
                if self.experiment else "No experiment selected.",
                alert_type="info", sizing_mode="stretch_width", name="experiment-state")
        s = self.state
        weights = ", ".join(f"{a} {w:.0%}" for a, w in s.weights.items())
        winner = f" · winner **{s.winner}**" if s.winner else ""
        return pn.pane.Markdown(f"State: **{s.status}**{winner} · weights {weights} · "
                                f"version {s.version} · changed {when(s.updated)}",
                                name="experiment-state")

    @param.depends("experiment", "version")
    def audit_view(self) -> pn.viewable.Viewable:
        """The experiment's audit trail, newest first."""
        rows = control.history(self.engine, self.experiment, limit=AUDIT_ROWS) \
            if self.experiment else []
        if not rows:
            return pn.pane.Alert("No lifecycle actions recorded yet.", alert_type="info",
                                 sizing_mode="stretch_width", name="audit")
        return pn.widgets.Tabulator(audit_table(rows), disabled=True, show_index=False,
                                    pagination="local", page_size=10,
                                    sizing_mode="stretch_width")

    def audit(self) -> pn.viewable.Viewable:
        return pn.Column("### Audit trail", self.audit_view, sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        # The widgets are placed once (they keep what was typed and chosen); only the state
        # line re-renders on a refresh.
        return pn.Column(
            "### Lifecycle", self.state_view,
            pn.Row(self.reason, self.pause, self.resume),
            pn.Row(self.ramp_arm, self.ramp_weight, self.ramp, pn.Spacer(width=40),
                   self.winner, self.conclude),
            self.confirmation.row, self.confirmation.status, sizing_mode="stretch_width")

    # -- helpers --

    def _sync(self) -> None:
        """Fit the selectors to the state's arms and Conclude's default to the read-out."""
        arms = list(self.state.weights) if self.state else []
        for button in (self.pause, self.resume, self.ramp, self.conclude):
            button.disabled = self.state is None or not self.may_act
        if arms != self._arms:
            self._arms = arms
            self.ramp_arm.options = arms
            self.ramp_arm.value = arms[-1] if arms else None
            self.winner.options = arms
            self.winner.value = arms[0] if arms else None
            self._decided = None
        weights = dict(self.state.weights) if self.state else {}
        if weights != self._weights:  # a change, not every refresh: keep what was typed
            self._weights = weights
            self._current_weight()
        decided = self.decided() if arms else None
        if decided != self._decided and decided in arms:  # a new verdict, not every refresh
            self.winner.value = decided
        self._decided = decided

    def _current_weight(self) -> None:
        if self.state is not None and self.ramp_arm.value in self.state.weights:
            self.ramp_weight.value = round(float(self.state.weights[self.ramp_arm.value]), 4)
