"""The request id: which one a request keeps, and how it travels to the services it calls."""

from __future__ import annotations

import pytest
from opentelemetry import context, propagate

from workbench import trace

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.mark.parametrize(("value", "kept"), [
    ("abc-123", True), ("x" * 128, True), ("a b;c=\"d\"", True), ("~", True),
    ("x" * 129, False), ("", False), (" padded", False), ("padded ", False),
    ("caf\xe9", False), ("line\nbreak", False), ("tab\there", False), (None, False)])
def test_a_request_id_is_printable_ascii_of_at_most_128(value, kept):
    assert trace.sane(value) == (value if kept else None)
    if kept:
        assert trace.sane(value.encode()) == value  # as ASGI hands it over


@pytest.mark.parametrize(("header", "expected"), [
    (PARENT, TRACE_ID),
    (f"01-{TRACE_ID}-00f067aa0ba902b7-01-future-field", TRACE_ID),  # a later version
    (f"00-{TRACE_ID}-00f067aa0ba902b7-01-extra", None),  # version 00 has four fields
    (f"ff-{TRACE_ID}-00f067aa0ba902b7-01", None),
    (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),
    (f"00-{TRACE_ID}-{'0' * 16}-01", None),
    (f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01", None),
    (f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01", None),
    ("", None), (None, None)])
def test_the_trace_id_of_a_traceparent(header, expected):
    assert trace.trace_id(header) == expected


def test_the_id_from_headers_in_order_of_preference():
    assert trace.from_headers([(b"x-request-id", b"mine"), (b"traceparent", PARENT.encode())]) \
        == "mine"
    assert trace.from_headers([(b"x-request-id", b"\x00"), (b"traceparent", PARENT.encode())]) \
        == TRACE_ID
    made = {trace.from_headers([]) for _ in range(3)}
    assert len(made) == 3 and all(len(m) == 32 for m in made)


def test_the_current_span_names_a_request_that_brought_no_id():
    from opentelemetry import trace as otel
    from opentelemetry.trace import NonRecordingSpan, SpanContext

    span = NonRecordingSpan(SpanContext(int(TRACE_ID, 16), 0x00F067AA0BA902B7,
                                        is_remote=False))
    with otel.use_span(span):
        assert trace.from_headers([]) == TRACE_ID


def test_the_id_is_bound_to_the_context_and_restored():
    assert trace.current() is None
    outer = trace.bind("outer")
    inner = trace.bind("inner")
    assert trace.current() == "inner"
    trace.unbind(inner)
    assert trace.current() == "outer"
    trace.unbind(outer)
    assert trace.current() is None


def test_outgoing_calls_carry_the_id_beside_traceparent():
    trace.propagate()
    trace.propagate()  # once per process, however often asked
    chain = propagate.get_global_textmap()
    assert "x-request-id" in chain.fields and "traceparent" in chain.fields
    headers: dict[str, str] = {}
    propagate.inject(headers)
    assert "X-Request-ID" not in headers  # outside a request there is nothing to send
    token = trace.bind("abc-123")
    try:
        propagate.inject(headers)
    finally:
        trace.unbind(token)
    assert headers["X-Request-ID"] == "abc-123"
    given = context.set_value("k", "v")  # extract gives back the context it was handed
    assert trace.RequestIdPropagator().extract({"X-Request-ID": "in"}, given) is given
    assert trace.RequestIdPropagator().extract({"X-Request-ID": "in"}) == context.get_current()
