"""What travels on a stream: events in, results and refusals out, transport-neutral.

An **event** is a mapping of fields:

- ``instances`` (required): JSON, a list of rows or one row; rows as lists in feature
  order or objects keyed by feature name (as ``POST /predict``);
- ``unit`` (optional; required with an experiment): what assignment is sticky by;
- ``request_id`` (optional): the id its prediction is logged and fed back under; by
  default one derived from the event's id (:func:`derived_request_id`), the same on every
  delivery;
- ``attributes`` (optional; read with an experiment): JSON, the unit's attributes as
  ``POST /predict`` takes them (:mod:`workbench.units`), logged for segments.

Its **result** carries ``event_id``, ``request_id``, ``model`` (the tag),
``predictions`` (JSON: the records of ``POST /predict``), ``interval_mass``, ``consumer``,
and ``unit``, ``experiment``, ``arm`` when it has them. A **refusal** (a bad event,
dead-lettered) carries ``event_id``, ``reason``, ``consumer`` and the original ``event``
(JSON). Both are keyed by ``SOURCE/EVENT_ID``: what a sink de-duplicates by.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.errors import InputError
from workbench.feedback import check_request_id
from workbench.units import EXPECTED_ATTRIBUTES, check_attributes, check_unit


@dataclass(frozen=True)
class Event:
    """One event as a source delivers it: its id, raw fields, its time in the stream
    (seconds since the epoch), and whether it was taken over from another consumer."""

    id: str
    fields: Mapping[str, bytes | str]
    time: float
    claimed: bool = False


@dataclass(frozen=True)
class Result:
    """What a sink writes for one event: a result, or a refusal (``refused``) for its
    dead-letter place; ``key`` is what it de-duplicates by."""

    key: str
    fields: dict[str, str]
    refused: bool = False


@dataclass
class Job:
    """An event that passed its checks: its rows, ids, and the model (and arm) it goes to."""

    event: Event
    X: np.ndarray
    request_id: str
    unit: str | None
    tag: str
    arm: str | None = None
    status: str | None = None
    attributes: dict[str, str] | None = None


def prepare(event: Event, stream: str, scorer: Any, experiment: Any = None) -> Job:
    """``event`` checked on its own and routed to a model (an arm's, with an experiment);
    :class:`~workbench.errors.InputError` saying what is wrong with it otherwise."""
    fields = {k: _text(k, v) for k, v in event.fields.items()}
    raw = fields.get("instances")
    if raw is None:
        raise InputError("the event has no instances field",
                         detail={"expected": "instances: a JSON list of rows"})
    try:
        instances = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"instances is not valid JSON: {exc}") from None
    if isinstance(instances, dict) or (isinstance(instances, list) and instances and
                                       not isinstance(instances[0], list | dict)):
        instances = [instances]  # one row
    unit = check_unit(fields["unit"]) if "unit" in fields else None
    attributes = None
    if experiment is not None and "attributes" in fields:  # the unit's, logged (segments)
        try:
            attributes = check_attributes(json.loads(fields["attributes"]))
        except json.JSONDecodeError as exc:
            raise InputError(f"attributes is not valid JSON: {exc}",
                             detail={"expected": EXPECTED_ATTRIBUTES}) from None
    request_id = check_request_id(fields["request_id"]) if "request_id" in fields else \
        derived_request_id(stream, event)
    arm = status = None
    tag = scorer.default
    if experiment is not None:
        if unit is None:
            raise InputError("the event has no unit: events are routed to an arm by unit",
                             detail={"experiment": experiment.config.name})
        arm, status = experiment.route(unit)
        tag = experiment.tags[arm]
    X = scorer.predictors[tag].validate(instances)
    return Job(event, X, request_id, unit, tag, arm, status, attributes)


def derived_request_id(stream: str, event: Event) -> str:
    """The request id of an event that brings none: its time in milliseconds (12 hex
    digits, as :func:`workbench.feedback.new_request_id`), then 20 hex digits of a hash of
    its stream and id; the same for every delivery of the event."""
    digest = hashlib.sha256(f"{stream}\0{event.id}".encode()).hexdigest()[:20]
    return f"{int(event.time * 1000):012x}{digest}"


def result(job: Job, records: list[dict[str, Any]], stream: str, mass: float,
           consumer: str, experiment: Any = None) -> Result:
    """The result of a scored event."""
    fields = {"event_id": job.event.id, "request_id": job.request_id, "model": job.tag,
              "predictions": json.dumps(records), "interval_mass": repr(mass),
              "consumer": consumer}
    if job.unit is not None:
        fields["unit"] = job.unit
    if experiment is not None:
        fields |= {"experiment": experiment.config.name, "arm": job.arm or ""}
    return Result(f"{stream}/{job.event.id}", fields)


def refusal(event: Event, stream: str, error: BaseException, consumer: str) -> Result:
    """The dead letter of an event that cannot be scored, with the reason."""
    reason = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
    detail = getattr(error, "detail", None)
    if isinstance(detail, dict) and "expected" in detail:
        reason += f" (expected {json.dumps(detail['expected'], default=str)})"
    original = {k: v if isinstance(v, str) else v.decode("utf-8", "replace")
                for k, v in event.fields.items()}
    return Result(f"{stream}/{event.id}", {
        "event_id": event.id, "reason": reason, "consumer": consumer,
        "event": json.dumps(original)}, refused=True)


def _text(name: str, value: bytes | str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"field {name!r} is not UTF-8 text") from None
