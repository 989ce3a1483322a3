"""The dashboard behind its login, in a real Chromium: API keys are the credentials; a
viewer reads but cannot act, an admin acts and the audit trail names them."""

from __future__ import annotations

import os

import pytest
from conftest import make_posterior
from servers import free_port

from workbench import control, events, keys, store
from workbench.background import launch
from workbench.config import parse
from workbench.dashboard_serve import serve_command, serve_env

from .conftest import log_events

pytestmark = pytest.mark.ui


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("login")
    db = f"sqlite:///{tmp / 'events.db'}"
    eng = events.engine(db)
    log_events(eng, "login-experiment", 40)
    config = {"name": "login-experiment", "arms": [
        {"name": "control", "model": "champion"}, {"name": "treatment", "model": "x"}]}
    events.save_config(eng, "login-experiment", config)
    control.ensure(eng, parse(config))
    tag = store.save(make_posterior("binary", name="login-model", seed=3))
    made = {"viewer": keys.create(eng, "vera", ["predict"]),
            "admin": keys.create(eng, "adam", ["admin", "predict"])}
    port = free_port()
    env = serve_env(os.environ | {"WORKBENCH_DB_URL": db, "WORKBENCH_AUTH": "on",
                                  "WORKBENCH_DASHBOARD_REFRESH": "1"})
    server = launch(serve_command(port, login=True), port=port, env=env, log=tmp / "panel.log",
                    ready_path="/login", ready_timeout=120)
    yield {"url": server.url, "engine": eng, "keys": made, "tag": tag, "log": server.log}
    server.stop()


def _login(browser, site, name: str, key: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.goto(site["url"] + "/workbench")
    page.wait_for_url("**/login**", timeout=30_000)  # no session: the login page
    page.locator("input[name=username]").fill(name)
    page.locator("input[name=password]").fill(key)
    page.locator("button[type=submit], input[type=submit]").first.click()
    page.get_by_text("State: running").filter(visible=True).first.wait_for(timeout=60_000)
    return context, page


def _button(page, name: str):
    return page.get_by_role("button", name=name).filter(visible=True).first


def test_a_wrong_key_does_not_get_in(browser, site):
    context = browser.new_context()
    page = context.new_page()
    page.goto(site["url"] + "/workbench")
    page.wait_for_url("**/login**", timeout=30_000)
    page.locator("input[name=username]").fill("vera")
    page.locator("input[name=password]").fill(site["keys"]["admin"])  # adam's key: not hers
    page.locator("button[type=submit], input[type=submit]").first.click()
    page.get_by_text("Invalid username or password").first.wait_for(timeout=30_000)
    context.close()


def test_a_viewer_reads_but_cannot_act(browser, site):
    context, page = _login(browser, site, "vera", site["keys"]["viewer"])
    try:
        page.get_by_text("vera (viewer)").first.wait_for(timeout=30_000)
        assert _button(page, "Pause").is_disabled()
        page.get_by_text("Models", exact=True).first.click()
        assert _button(page, "Promote to champion").is_disabled()
        assert control.require(site["engine"], "login-experiment").status == "running"
    finally:
        context.close()


def test_an_admin_acts_and_the_audit_trail_names_them(browser, site):
    context, page = _login(browser, site, "adam", site["keys"]["admin"])
    try:
        page.get_by_text("adam (admin)").first.wait_for(timeout=30_000)
        _button(page, "Pause").click()
        _button(page, "Confirm").click()
        page.get_by_text("State: paused").filter(visible=True).first.wait_for(timeout=30_000)
        row = control.history(site["engine"], "login-experiment")[0]
        assert (row["action"], row["actor"]) == ("pause", "dashboard:adam")
        page.get_by_text("dashboard:adam").filter(visible=True).first.wait_for(timeout=30_000)
    finally:
        context.close()
