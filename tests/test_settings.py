"""The settings: one typed object behind every WORKBENCH_* variable, checked once, and the
README's table generated from it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from workbench import settings
from workbench.errors import ConfigError
from workbench.settings import Settings, load

ROOT = Path(__file__).resolve().parents[1]


def test_words_types_and_defaults():
    s = load({"WORKBENCH_EVENT_ACK": " ASYNC ", "WORKBENCH_TRACING": "yes",
              "WORKBENCH_ACCESS_LOG": "OFF", "WORKBENCH_ARMS": "In_Process",
              "WORKBENCH_PREDICTION_CACHE": "off", "WORKBENCH_MAX_ROWS": "64",
              "WORKBENCH_FOLLOW_GRACE": "0", "WORKBENCH_HOME": "~/wb",
              "WORKBENCH_DB_URL": "", "OTHER": "ignored"})
    assert (s.event_ack, s.tracing, s.access_log, s.arms) == ("async", True, False, "in-process")
    assert (s.prediction_cache, s.max_rows, s.follow_grace) == (0, 64, 0.0)
    assert s.home_dir == Path.home() / "wb" and s.spool_base == Path.home() / "wb" / "spool"
    assert s.db_url is None  # empty: unset
    blank = load({"WORKBENCH_AUTH": " ", "WORKBENCH_PREDICTION_CACHE": "None",
                  "WORKBENCH_PREDICTION_CACHE_REDIS": "  ", "WORKBENCH_EVENT_LOG": " off "})
    assert (blank.auth, blank.prediction_cache, blank.prediction_cache_redis,
            blank.event_log) == (True, 0, None, False)  # blanks unset, values stripped
    defaults = load({})
    assert (defaults.event_ack, defaults.auth, defaults.tracing, defaults.arms) == (
        "durable", True, False, None)
    assert load({}, max_rows=7).max_rows == 7  # an override on top


def test_every_bad_value_is_named_in_one_error_and_no_secret_is_echoed():
    with pytest.raises(ConfigError) as refused:
        load({"WORKBENCH_MAX_ROWS": "many", "WORKBENCH_AUTH": "maybe",
              "WORKBENCH_EVENT_QUEUE_WAIT_SECONDS": "-1", "WORKBENCH_EVENT_ACK": "later",
              "WORKBENCH_FOLLOW_INTERVAL": "nan", "WORKBENCH_KEY_PEPPER": "s3cret-pepper",
              "WORKBENCH_DB_URL": "sqlite:///fine.db"})
    detail = refused.value.detail
    assert set(detail) == {"WORKBENCH_MAX_ROWS", "WORKBENCH_AUTH", "WORKBENCH_EVENT_ACK",
                           "WORKBENCH_EVENT_QUEUE_WAIT_SECONDS", "WORKBENCH_FOLLOW_INTERVAL"}
    assert detail["WORKBENCH_AUTH"] == {"value": "'maybe'", "expected": "expected on or off"}
    assert "'durable' or 'async'" in detail["WORKBENCH_EVENT_ACK"]["expected"]
    assert "WORKBENCH_MAX_ROWS='many'" in refused.value.message
    with pytest.raises(ConfigError) as secret:
        load({}, api_key=12345)  # not a string: refused, and still not echoed
    assert secret.value.detail["WORKBENCH_API_KEY"]["value"] == "(secret)"
    assert "s3cret" not in str(refused.value.detail)


def test_the_process_environment_is_read_once_per_distinct_value(monkeypatch):
    monkeypatch.setenv("WORKBENCH_MAX_ROWS", "12")
    first = load()
    assert first.max_rows == 12 and load() is first  # parsed once, then shared
    monkeypatch.setenv("WORKBENCH_MAX_ROWS", "13")
    assert load().max_rows == 13 and load({}).max_rows == 1024  # a mapping: only it
    with pytest.raises(Exception):  # noqa: B017 (frozen: whichever pydantic raises)
        first.max_rows = 1  # type: ignore[misc]


def test_the_readme_table_is_the_settings():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- settings:[^\n]*-->\n(.*?)\n<!-- /settings -->", readme, re.S)
    assert block, "README.md lost its generated settings table"
    assert block.group(1) == settings.table(), \
        "README's settings table is stale: paste workbench.settings.table() into it"
    named = set(re.findall(r"WORKBENCH_[A-Z_]*[A-Z]", readme))
    assert named <= {settings.variable(f) for f in Settings.model_fields}, \
        "README names variables that are not settings"


def test_nothing_but_the_settings_reads_a_workbench_variable():
    reads = re.compile(r"(?:environ\.get|getenv)\(\s*\"WORKBENCH_|"
                       r"environ\[\"WORKBENCH_[A-Z_]+\"\](?!\s*=)")
    offenders = [f"{path.relative_to(ROOT)}:{n}"
                 for folder in ("src", "bentos", "dashboards")
                 for path in sorted((ROOT / folder).rglob("*.py"))
                 if path.name != "settings.py"
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if reads.search(line)]
    assert offenders == []


def test_workbench_settings_prints_values_and_hides_secrets(monkeypatch):
    from click.testing import CliRunner

    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_KEY_PEPPER", "s3cret-pepper")
    monkeypatch.setenv("WORKBENCH_EVENT_ACK", "async")
    monkeypatch.setenv("WORKBENCH_DB_URL", "postgresql+psycopg://wb:s3cret-db@db:5432/wb")
    monkeypatch.setenv("WORKBENCH_FEATURE_REDIS", "redis:6379,db=1,password=s3cret-feast")
    monkeypatch.setenv("WORKBENCH_PREDICTION_CACHE_REDIS", "redis://:s3cret-r@cache:6379/0")
    shown = CliRunner().invoke(main, ["settings", "--json"])
    assert shown.exit_code == 0, shown.output
    values = json.loads(shown.output)
    assert values["WORKBENCH_EVENT_ACK"] == "async"
    assert values["WORKBENCH_KEY_PEPPER"] == "(set)" and "s3cret" not in shown.output
    assert values["WORKBENCH_DB_URL"] == "postgresql+psycopg://…@db:5432/wb"
    assert values["WORKBENCH_FEATURE_REDIS"] == "redis:6379,db=1,password=…"
    assert "s3cret" not in CliRunner().invoke(main, ["settings"]).output
    monkeypatch.setenv("WORKBENCH_MAX_BODY_BYTES", "4MB")
    refused = CliRunner().invoke(main, ["settings"])
    assert refused.exit_code == 2 and "WORKBENCH_MAX_BODY_BYTES='4MB'" in refused.output
