"""The workbench's log lines: JSON lines with the request's id, or text."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from workbench import logs, trace
from workbench.errors import ConfigError


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    """Each test configures the ``workbench`` logger; put back what was there."""
    root = logging.getLogger("workbench")
    before = (list(root.handlers), root.level, root.propagate)
    yield
    root.handlers[:] = before[0]
    root.setLevel(before[1])
    root.propagate = before[2]


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_have_the_fields_and_the_request_id_inside_a_request():
    out = io.StringIO()
    logs.configure("json", stream=out, service="predictor")
    log = logging.getLogger("workbench.something")
    log.info("outside %s", "a request")
    token = trace.bind("abc-123")
    try:
        log.warning("inside", extra={"rows": 3, "model": "m:1"})
    finally:
        trace.unbind(token)
    outside, inside = (json.loads(line) for line in _lines(out))
    assert list(outside)[:4] == ["timestamp", "level", "logger", "message"]
    assert outside["level"] == "INFO" and outside["logger"] == "workbench.something"
    assert outside["message"] == "outside a request" and outside["service"] == "predictor"
    assert "request_id" not in outside
    assert datetime.fromisoformat(outside["timestamp"]).utcoffset().total_seconds() == 0
    assert inside["request_id"] == "abc-123" and inside["level"] == "WARNING"
    assert (inside["rows"], inside["model"]) == (3, "m:1")  # extra fields come along


def test_an_explicit_request_id_and_a_traceback_are_kept():
    out = io.StringIO()
    logs.configure("json", stream=out)
    token = trace.bind("the-current-one")
    try:
        try:
            raise ValueError("bad thing")
        except ValueError:
            logging.getLogger("workbench.x").exception("failed", extra={"request_id": "given"})
    finally:
        trace.unbind(token)
    (line,) = _lines(out)
    record = json.loads(line)
    assert record["request_id"] == "given" and "ValueError: bad thing" in record["exc_info"]
    assert record["level"] == "ERROR" and "service" not in record  # not under BentoML


def test_the_text_switch_keeps_the_old_format_plus_the_request_id(monkeypatch):
    monkeypatch.setenv(logs.FORMAT_ENV, "text")
    out = io.StringIO()
    logs.configure(stream=out)
    log = logging.getLogger("workbench.gateway")
    log.info("plain")
    token = trace.bind("abc-123")
    try:
        log.info("in a request")
    finally:
        trace.unbind(token)
    plain, inside = _lines(out)
    assert plain.endswith(" [INFO] [workbench] plain") and "request_id" not in plain
    assert inside.endswith(" [INFO] [workbench] [request_id=abc-123] in a request")
    datetime.strptime(plain.split(" ")[0], logs.DATEFMT)


def test_json_is_the_default_and_a_bad_format_is_refused(monkeypatch):
    monkeypatch.delenv(logs.FORMAT_ENV, raising=False)
    assert logs.log_format() == "json"
    assert logs.log_format(" TEXT ") == "text"
    monkeypatch.setenv(logs.FORMAT_ENV, "yaml")
    with pytest.raises(ConfigError, match="WORKBENCH_LOG_FORMAT") as info:
        logs.configure(stream=io.StringIO())
    assert info.value.detail["WORKBENCH_LOG_FORMAT"] == {
        "value": "'yaml'", "expected": "Input should be 'json' or 'text'"}


def test_configure_replaces_its_own_handler_and_stops_propagation():
    root = logging.getLogger("workbench")
    first = logs.configure("json", stream=io.StringIO())
    second = logs.configure("text", stream=io.StringIO())
    assert first not in root.handlers and second in root.handlers
    assert root.propagate is False and root.level == logging.INFO


def test_log_to_stderr_configures_json_once(monkeypatch, capsys):
    monkeypatch.delenv(logs.FORMAT_ENV, raising=False)
    root = logging.getLogger("workbench")
    root.handlers[:] = []
    logs.log_to_stderr()
    logs.log_to_stderr()  # a second service in the same process: nothing added
    assert len(root.handlers) == 1
    logging.getLogger("workbench.serving").info("ready")
    assert json.loads(capsys.readouterr().err.splitlines()[-1])["message"] == "ready"
