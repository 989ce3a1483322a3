"""The dashboard in a real Chromium (Debian's), driven by Playwright, with no internet.

Screenshots of each tab are saved to docs/screenshots/ (see the README).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from conftest import make_posterior
from servers import ROOT, free_port

from workbench import control, events, store
from workbench.background import launch
from workbench.config import parse

from .conftest import log_events

pytestmark = pytest.mark.ui
SHOTS = ROOT / "docs" / "screenshots"
TABS = ("Experiments", "Latency", "Uncertainty", "Models")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A live `panel serve dashboards/workbench.py` over a seeded event and model store."""
    tmp = tmp_path_factory.mktemp("ui")
    db = f"sqlite:///{tmp / 'events.db'}"
    eng = events.engine(db)
    log_events(eng, "ui-experiment", 200)
    config = {"name": "ui-experiment", "arms": [
        {"name": "control", "model": "champion"}, {"name": "treatment", "model": "x"}]}
    events.save_config(eng, "ui-experiment", config)
    control.ensure(eng, parse(config))  # the live state its gateway would have created
    first = store.save(make_posterior("binary", name="ui-model", seed=1))
    second = store.save(make_posterior("binary", name="ui-model", seed=2))
    store.set_alias("champion", first)
    port = free_port()
    env = os.environ | {"WORKBENCH_DB_URL": db, "WORKBENCH_DASHBOARD_REFRESH": "1"}
    server = launch(
        [str(Path(sys.executable).parent / "panel"), "serve",
         str(ROOT / "dashboards" / "workbench.py"), "--address", "127.0.0.1", "--port",
         str(port), "--allow-websocket-origin", f"127.0.0.1:{port}"],
        port=port, env=env, log=tmp / "panel.log", ready_path="/workbench", ready_timeout=120)
    yield {"url": server.url + "/workbench", "engine": eng, "first": first, "second": second,
           "log": server.log}
    server.stop()


@pytest.fixture(scope="module")
def page(browser, site):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.problems = []  # type: ignore[attr-defined]
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.on("requestfailed", lambda r: page.problems.append(f"failed: {r.url}"))
    page.on("request", lambda r: not r.url.startswith(("http://127.0.0.1", "ws://127.0.0.1",
                                                       "data:", "blob:"))
            and page.problems.append(f"external request: {r.url}"))
    page.goto(site["url"], wait_until="networkidle")
    page.get_by_text("predictions", exact=False).first.wait_for(timeout=60_000)
    yield page
    context.close()


def _button(page, name: str):
    return page.get_by_role("button", name=name).filter(visible=True).first


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click() if page.get_by_role("tab", name=name).count() \
        else page.get_by_text(name, exact=True).first.click()


def test_page_loads_with_zero_console_errors_and_nothing_from_the_web(page):
    page.wait_for_timeout(3000)
    assert page.problems == []


def test_each_tab_renders_its_plots(page):
    SHOTS.mkdir(parents=True, exist_ok=True)
    for name in TABS:
        _tab(page, name)
        try:
            page.locator(".bk-Canvas >> visible=true").first.wait_for(timeout=60_000)
        except Exception:
            page.screenshot(path=str(SHOTS / f"failed-{name.lower()}.png"))
            raise AssertionError(f"no visible plot on the {name} tab") from None
        page.wait_for_timeout(2500)
        assert page.locator("canvas >> visible=true").count() > 0, name
        page.screenshot(path=str(SHOTS / f"{name.lower()}.png"), full_page=False)
    assert page.problems == []


def test_the_event_pipeline_tab_says_when_no_gateway_is_configured(page):
    _tab(page, "Event pipeline")
    page.get_by_text("No gateway configured").wait_for(timeout=30_000)
    assert page.problems == []


def test_new_events_appear_after_the_refresh_period(page, site):
    _tab(page, "Experiments")
    counts = page.get_by_text(re.compile(r"\d+ predictions, \d+ outcomes")).filter(
        visible=True).first
    counts.wait_for(timeout=30_000)
    text = counts.inner_text()
    match = re.search(r"(\d+)\s*predictions", text)
    assert match, repr(text)
    before = int(match.group(1))
    log_events(site["engine"], "ui-experiment", 7, seed=before)
    page.get_by_text(f"{before + 7} predictions").filter(visible=True).first.wait_for(
        timeout=20_000)


def test_moving_a_whatif_slider_redraws_the_distribution(page):
    _tab(page, "Uncertainty")
    stats = page.get_by_text(re.compile(r"90% interval \[")).first
    stats.wait_for(timeout=60_000)
    before = stats.inner_text()
    from playwright.sync_api import expect

    handle = page.locator(".noUi-handle").last
    handle.focus()
    for _ in range(30):
        page.keyboard.press("ArrowRight")
    expect(stats).not_to_have_text(before, timeout=20_000)  # Panel renders in shadow DOM


def test_promote_then_rollback_changes_the_alias_shown(page, site):
    _tab(page, "Models")
    page.locator("select").nth(1).select_option(site["second"])
    page.wait_for_timeout(3000)  # the tab re-renders for the selected model
    _button(page, "Promote to champion").click()
    _button(page, "Confirm").click()
    page.get_by_text(f"champion -> {site['second']}").filter(visible=True).first.wait_for(
        timeout=30_000)
    assert store.resolve("champion") == site["second"]
    _button(page, "Roll back champion").click()
    _button(page, "Confirm").click()
    page.get_by_text(f"rolled back -> {site['first']}").filter(visible=True).first.wait_for(
        timeout=30_000)
    assert store.resolve("champion") == site["first"]


def test_pause_asks_then_shows_the_paused_state_and_its_audit_row(page, site):
    _tab(page, "Experiments")
    page.get_by_text("State: running").filter(visible=True).first.wait_for(timeout=30_000)
    reason = page.get_by_placeholder("why (kept in the audit trail)").filter(visible=True).first
    reason.fill("paused from the browser")
    reason.press("Enter")
    _button(page, "Pause").click()
    _button(page, "Confirm").click()
    page.get_by_text("State: paused").filter(visible=True).first.wait_for(timeout=30_000)
    page.get_by_text("paused from the browser").filter(visible=True).first.wait_for(
        timeout=30_000)  # the audit row, with the reason typed
    assert control.require(site["engine"], "ui-experiment").status == "paused"
    assert control.history(site["engine"], "ui-experiment")[0]["actor"] == "dashboard"
    assert page.problems == []
