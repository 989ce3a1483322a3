"""The event store's tables, in one place: what every replica reads and writes.

- ``predictions``: every served prediction (primary, fallback, shadow, or served while the
  experiment was paused or concluded), keyed by its request id, with the unit's attributes
  when the client sent them (segments, :mod:`workbench.segments`);
- ``outcomes``: the feedback on a prediction, at most one per request id (the primary key
  is the de-duplication every replica shares), with the unit's pre-period covariate when
  the client sent one (CUPED, :mod:`workbench.cuped`);
- ``experiments``: the configuration each experiment last ran with;
- ``experiment_state``: the live state of each experiment (status, weights, winner, a
  version bumped on every change), the single source of truth that replicas poll;
- ``audit``: every lifecycle action, human or automatic: who, when, what, why, before and
  after;
- ``aggregates``: per experiment, the sufficient statistics of events pruned from the two
  event tables (``workbench events prune``), which every read-out adds to the live events;
- ``api_keys``: the API keys every service accepts (:mod:`workbench.keys`): a public id,
  the peppered hash of the key (never the key), scopes, an optional rate limit, and when it
  was created and revoked.
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa

from workbench.errors import InputError

metadata = sa.MetaData()

predictions = sa.Table(
    "predictions", metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("parent_id", sa.String(64), index=True),  # the primary request of a shadow
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("experiment", sa.String(128), nullable=False, index=True),
    sa.Column("arm", sa.String(128), nullable=False),
    sa.Column("model_tag", sa.String(256), nullable=False),
    sa.Column("unit", sa.String(256)),
    sa.Column("latency_ms", sa.Float),
    # ok | fallback | shadow | paused | concluded (see workbench.readout for which count)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("fallback_from", sa.String(128)),
    sa.Column("n_rows", sa.Integer, nullable=False),
    sa.Column("summary", sa.JSON),  # the served predictions
    sa.Column("instances", sa.JSON),  # the input rows
    # the unit's, e.g. {"country": "DE"} (workbench.units); SQL NULL when not sent
    sa.Column("attributes", sa.JSON(none_as_null=True)),
)

outcomes = sa.Table(
    "outcomes", metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("experiment", sa.String(128), nullable=False, index=True),
    sa.Column("outcome", sa.JSON, nullable=False),  # a number, or one per row
    sa.Column("covariate", sa.Float),  # the unit's pre-period value, for CUPED (optional)
)

registry = sa.Table(
    "experiments", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)

state = sa.Table(
    "experiment_state", metadata,
    sa.Column("experiment", sa.String(128), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # running | paused | concluded
    sa.Column("weights", sa.JSON, nullable=False),  # {arm: share}, summing to 1
    sa.Column("winner", sa.String(128)),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)

audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment", sa.String(128), nullable=False, index=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("before", sa.JSON),
    sa.Column("after", sa.JSON),
    sa.Column("version", sa.Integer, nullable=False),  # the state's version after the action
)

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False, unique=True),  # public, in the key
    sa.Column("hash", sa.String(64), nullable=False),  # HMAC-SHA256(pepper, key), hex
    sa.Column("scopes", sa.JSON, nullable=False),  # ["predict", "feedback", ...]
    sa.Column("rate_limit", sa.String(128)),  # the limits library's notation, e.g. 10/second
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("revoked", sa.Float),  # when revoked; None while it is valid
)

aggregates = sa.Table(
    "aggregates", metadata,
    sa.Column("experiment", sa.String(128), primary_key=True),
    sa.Column("upto", sa.Float, nullable=False),  # events before this time are folded in here
    sa.Column("stats", sa.JSON, nullable=False),  # workbench.aggregates' mergeable statistics
    sa.Column("updated", sa.Float, nullable=False),
)


def check_fits(table: str, row: dict[str, Any]) -> None:
    """InputError (a 4xx) when a value is longer than its column (the database would refuse
    the row after the request was acknowledged)."""
    for name, width in _widths(table):
        value = row.get(name)
        if isinstance(value, str) and len(value) > width:
            raise InputError(f"{name} is {len(value)} characters long",
                             detail={"expected": f"at most {width} characters"})


@functools.cache
def _widths(table: str) -> tuple[tuple[str, int], ...]:
    """The table's columns of bounded width, and their widths."""
    return tuple((c.name, c.type.length) for c in metadata.tables[table].columns
                 if getattr(c.type, "length", None))
