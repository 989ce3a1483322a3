"""The workbench's log lines: one JSON object per line under the services, or text.

BentoML configures only its own loggers; :func:`configure` gives the ``workbench.*``
loggers one handler on standard error (:func:`log_to_stderr` calls it when a service
starts). ``WORKBENCH_LOG_FORMAT`` picks the format:

- ``json`` (the default): ``{"timestamp", "level", "logger", "message", "request_id",
  "service", ...}``, one line per record, with the ``extra`` fields of the call and the
  traceback as ``exc_info``; ``request_id`` is the id of the request being served
  (:func:`workbench.trace.current`, absent outside a request), ``service`` the BentoML
  service that wrote it (absent outside one);
- ``text``: ``2025-01-01T12:00:00+0000 [INFO] [workbench] [request_id=abc-123] message``
  (the request id only inside a request).

What is logged is what the call sites pass: keys, tokens and credentials never are (URLs
go through :mod:`workbench.redact` first).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from workbench import trace
from workbench.errors import ConfigError
from workbench.settings import load

FORMAT_ENV = "WORKBENCH_LOG_FORMAT"
FORMATS = ("json", "text")
TEXT = "%(asctime)s [%(levelname)s] [workbench] %(message)s"
TEXT_IN_REQUEST = "%(asctime)s [%(levelname)s] [workbench] [request_id=%(request_id)s] " \
                  "%(message)s"
DATEFMT = "%Y-%m-%dT%H:%M:%S%z"
ROOT = "workbench"


def log_format(value: str | None = None) -> str:
    """``value`` (else ``WORKBENCH_LOG_FORMAT``, else ``json``), checked.

    Raises
    ------
    ConfigError
        For anything but ``json`` or ``text``.
    """
    if value is None:
        return load().log_format
    chosen = value.strip().lower()
    if chosen not in FORMATS:
        raise ConfigError(f"invalid {FORMAT_ENV} {chosen!r}",
                          detail={"expected one of": list(FORMATS)})
    return chosen


class RequestContext(logging.Filter):
    """Puts the current request's id (:func:`workbench.trace.current`) on each record as
    ``request_id``, unless the call gave one in ``extra``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request_id = trace.current()
            if request_id is not None:
                record.request_id = request_id
        return True


class JsonLines(JsonFormatter):
    """One JSON object per record: timestamp (ISO 8601, UTC, milliseconds), level, logger,
    message, then the record's extra fields (``request_id`` among them).

    Parameters
    ----------
    static
        Fields written on every line (e.g. ``{"service": "predictor"}``).
    """

    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__(["levelname", "name", "message"],
                         rename_fields={"levelname": "level", "name": "logger"},
                         static_fields=static or {})

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        log_data["timestamp"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds")
        super().add_fields(log_data, record, message_dict)


class TextLines(logging.Formatter):
    """The text format: :data:`TEXT`, with ``[request_id=...]`` inside a request."""

    def __init__(self) -> None:
        super().__init__(TEXT, DATEFMT)
        self._in_request = logging.PercentStyle(TEXT_IN_REQUEST)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        if getattr(record, "request_id", None) is not None:
            return self._in_request.format(record)
        return super().formatMessage(record)


def formatter(fmt: str | None = None, *, service: str | None = None) -> logging.Formatter:
    """The formatter of ``fmt`` (:func:`log_format`); JSON lines carry ``service``."""
    if log_format(fmt) == "text":
        return TextLines()
    return JsonLines({"service": service} if service else None)


def configure(fmt: str | None = None, *, stream: TextIO | None = None,
              level: int = logging.INFO, service: str | None = None) -> logging.Handler:
    """Give the ``workbench`` loggers their one handler (replacing one this function gave
    before); they stop propagating to the root logger, so nothing is written twice.

    Parameters
    ----------
    fmt
        ``json`` or ``text``; None reads ``WORKBENCH_LOG_FORMAT`` (default ``json``).
    stream
        Where lines go (standard error by default).
    level
        The ``workbench`` logger's level.
    service
        The ``service`` field of JSON lines; by default the BentoML service this process
        serves, if any.

    Returns
    -------
    logging.Handler
        The handler installed.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(fmt, service=service or _service_name()))
    handler.addFilter(RequestContext())
    handler._workbench = True  # type: ignore[attr-defined]  (what a later call replaces)
    root = logging.getLogger(ROOT)
    for old in [h for h in root.handlers if getattr(h, "_workbench", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return handler


def log_to_stderr() -> None:
    """:func:`configure` with the defaults, unless the ``workbench`` loggers have a handler
    already: called when a service starts (BentoML configures only its own loggers), so a
    second service in the same process adds nothing."""
    if not logging.getLogger(ROOT).handlers:
        configure()


def _service_name() -> str | None:
    """The BentoML service served by this process (set in its worker before the service's
    ``__init__``, where :func:`configure` is called), if BentoML is loaded at all."""
    if "bentoml" not in sys.modules:
        return None
    try:
        from bentoml._internal.context import server_context
    except ImportError:  # pragma: no cover - a BentoML without it: no service field
        return None
    return server_context.service_name
