"""An experiment on a stream: each event routed by its unit, its prediction logged.

The same routing and the same event rows as the gateway (:mod:`workbench.gateway`): the
experiment's live state (:class:`~workbench.routing.LiveState`, polled, so ``pause``,
``ramp`` and ``conclude`` reach the stream within a poll), the sticky salted assignment of
:mod:`workbench.assignment`, and one ``predictions`` row per event written by an
:class:`~workbench.writer.EventWriter` with durable acknowledgements: the consumer
acknowledges an event to its source only once its row is committed (or spooled). The row's
``request_id`` is the event's (or derived from its id), so feedback works as for the
gateway, the read-out is the same, and a redelivered event does not log a second row.

A stream has no shadow arm: the shadow of a config is ignored here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

from workbench import events
from workbench.config import ExperimentConfig
from workbench.errors import ConfigError
from workbench.routing import LiveState
from workbench.settings import load
from workbench.writer import EventWriter


class StreamExperiment:
    """Routing and logging of one experiment for a stream consumer.

    Parameters
    ----------
    engine
        The event store (state, config and prediction rows).
    config
        The experiment.
    tags
        The model tag scoring each arm's events, by arm name.
    writer
        The event writer (default: one with durable acknowledgements).
    poll_seconds
        How often the live state is read again.
    inputs
        What a row logs of its event's input rows, as the gateway's ``inputs``: ``raw``,
        ``hash`` or ``none`` (default: ``WORKBENCH_EVENT_INPUTS``).
    """

    def __init__(self, engine: Any, config: ExperimentConfig, tags: Mapping[str, str], *,
                 writer: EventWriter | None = None, poll_seconds: float = 1.0,
                 inputs: str | None = None) -> None:
        missing = [a.name for a in config.arms if a.name not in tags]
        if missing:
            raise ConfigError(f"no model for arms {missing}",
                              detail={"expected": [a.name for a in config.arms]})
        self.inputs = events.check_inputs(load().event_inputs if inputs is None else inputs)
        self.engine = engine
        self.config = config
        self.tags = dict(tags)
        self.writer = writer or EventWriter(engine, ack="durable")
        self.live = LiveState(engine, config, poll_seconds=poll_seconds)
        self._stop = threading.Event()
        self.live.start(self._stop)

    @classmethod
    def open(cls, name: str, *, db_url: str | None = None, config_path: str | None = None,
             resolve: Any = None) -> StreamExperiment:
        """The experiment ``name`` as its gateway recorded it in the event store at
        ``db_url`` (or as configured in ``config_path``, then recorded); ``resolve`` turns an
        arm's model reference into a tag (default: the model store's)."""
        from workbench import config as _config
        from workbench import store

        engine = events.engine(db_url)
        if config_path:
            config = _config.load(config_path)
            if config.name != name:
                raise ConfigError(f"{config_path} configures {config.name!r}, not {name!r}")
            events.save_config(engine, config.name, config.to_config())
        else:
            stored = events.load_config(engine, name)
            if not stored:
                raise ConfigError(f"experiment {name!r} has no recorded config in the event "
                                  "store", detail={"expected": "start its gateway once, or "
                                                               "pass --experiment-config PATH",
                                                   "experiments": events.experiments(engine)})
            config = _config.parse(stored, source=f"recorded config of {name!r}")
        resolve = resolve or store.resolve
        return cls(engine, config, {a.name: resolve(a.model) for a in config.arms})

    def route(self, unit: str) -> tuple[str, str]:
        """The arm ``unit`` gets now, and the status its row is logged with."""
        return self.live.route(unit)

    def row(self, *, request_id: str, unit: str, arm: str | None, tag: str,
            records: list[dict[str, Any]], status: str | None, latency_ms: float,
            instances: Any, attributes: dict[str, str] | None = None) -> dict[str, Any]:
        """The ``predictions`` row of one scored event, shaped as the gateway's, with what
        :attr:`inputs` says to keep of its input rows (lists, or an array)."""
        return events.prediction_row(
            request_id=request_id, experiment=self.config.name, arm=arm or "", model_tag=tag,
            unit=unit, records=records, status=status or "ok", latency_ms=latency_ms,
            instances=events.logged_inputs(instances, self.inputs), attributes=attributes)

    async def log(self, rows: list[dict[str, Any]]) -> None:
        """Make ``rows`` durable (all of them, or :class:`~workbench.errors.Unavailable`)."""
        await asyncio.gather(*(self.writer.submit("predictions", r) for r in rows))

    def close(self) -> None:
        """Stop following the state; write everything accepted."""
        self._stop.set()
        self.writer.close()
