"""The request id: what one request is known by in responses, log lines and the services
it calls.

A request keeps the id its client gave it: an ``X-Request-ID`` of printable ASCII (at most
128 characters, no leading or trailing space), else the trace-id of a valid W3C
``traceparent``; without either it takes the trace-id of the OpenTelemetry span BentoML
opened for it, if any (``WORKBENCH_TRACING=on``: BentoML's own log lines then name it
too), else a fresh random id. :class:`workbench.errors_http.RequestErrors` binds
the id to the request's context (:func:`bind`), where :func:`current` finds it:
:mod:`workbench.logs` writes it into every log line, and :class:`RequestIdPropagator`
sends it on, as ``X-Request-ID``, with every call BentoML's clients make meanwhile (they
inject OpenTelemetry's propagators into each request's headers, beside ``traceparent``).
The gateway's calls to its Predictor carry the id that way (:func:`propagate`), with no
change to the Predictor's API.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)

from workbench import entropy

HEADER = "x-request-id"
TRACEPARENT = "traceparent"
MAX_LENGTH = 128
# Printable ASCII: safe to echo in a header and to write in a log line (no line breaks).
_SANE = re.compile(rf"[\x21-\x7e](?:[\x20-\x7e]{{0,{MAX_LENGTH - 2}}}[\x21-\x7e])?")
# version-traceid-parentid-flags (W3C Trace Context); a later version may append fields.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "workbench_request_id", default=None)


def new() -> str:
    """A fresh random id (32 hex digits)."""
    return entropy.token_hex(16)


def sane(value: str | bytes | None) -> str | None:
    """``value`` when it may serve as a request id (see the module's docstring), else None."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value if value is not None and _SANE.fullmatch(value) else None


def trace_id(traceparent: str | bytes | None) -> str | None:
    """The trace-id (32 hex digits) of a valid W3C ``traceparent`` header, else None.

    Parameters
    ----------
    traceparent
        The header's value, e.g. ``00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01``.

    Returns
    -------
    str or None
        None for a malformed header, version ``ff``, extra fields after a version ``00``
        header, or an all-zero trace-id or parent-id (all invalid by the specification).
    """
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("latin-1")
    match = _TRACEPARENT.fullmatch((traceparent or "").strip())
    if match is None:
        return None
    version, trace, parent, _, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace == "0" * 32 or \
            parent == "0" * 16:
        return None
    return trace


def from_headers(headers: Iterable[tuple[bytes, bytes]] | Mapping[bytes, bytes]) -> str:
    """The id of a request with these (ASGI) headers: its sane ``X-Request-ID``, else its
    ``traceparent``'s trace-id, else the current span's trace-id, else a new one."""
    found = dict(headers)
    return (sane(found.get(HEADER.encode())) or trace_id(found.get(TRACEPARENT.encode()))
            or _span_trace_id() or new())


def _span_trace_id() -> str | None:
    """The trace-id of the current OpenTelemetry span (BentoML opens one per request)."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def current() -> str | None:
    """The id of the request being served in this context, None outside a request."""
    return _current.get()


def bind(request_id: str) -> contextvars.Token[str | None]:
    """Make ``request_id`` the current one (until :func:`unbind` with the token)."""
    return _current.set(request_id)


def unbind(token: contextvars.Token[str | None]) -> None:
    """Restore the id that was current before :func:`bind` returned ``token``."""
    _current.reset(token)


class RequestIdPropagator(TextMapPropagator):
    """An OpenTelemetry propagator that writes the current request id (:func:`current`)
    into outgoing headers as ``X-Request-ID``; it extracts nothing (the receiving side's
    :class:`~workbench.errors_http.RequestErrors` reads the header itself)."""

    def extract(self, carrier: CarrierT, context: Any = None,
                getter: Getter[CarrierT] = default_getter) -> Any:
        from opentelemetry.context import get_current

        return context if context is not None else get_current()

    def inject(self, carrier: CarrierT, context: Any = None,
               setter: Setter[CarrierT] = default_setter) -> None:
        request_id = current()
        if request_id is not None:
            setter.set(carrier, "X-Request-ID", request_id)

    @property
    def fields(self) -> set[str]:
        return {HEADER}


def propagate() -> None:
    """Add :class:`RequestIdPropagator` to OpenTelemetry's global propagators (those set by
    ``OTEL_PROPAGATORS``, by default ``tracecontext,baggage``), once per process."""
    from opentelemetry import propagate as otel
    from opentelemetry.propagators.composite import CompositePropagator

    now = otel.get_global_textmap()
    if _has_ours(now):
        return
    otel.set_global_textmap(CompositePropagator([now, RequestIdPropagator()]))


def _has_ours(propagator: Any) -> bool:
    if isinstance(propagator, RequestIdPropagator):
        return True
    return any(_has_ours(p) for p in getattr(propagator, "_propagators", ()))
