"""The dashboard's login: a Bokeh auth module for ``panel serve --auth-module THIS_FILE``.

People log in with the name and the value of a workbench API key (``workbench keys
create alice --scope predict`` for a viewer, ``--scope admin`` for someone who may act):
keys are stored only as peppered hashes and can be revoked, so the dashboard needs no
password file of its own. After login the browser holds a signed cookie with the name
(``--cookie-secret``, from ``WORKBENCH_DASHBOARD_COOKIE_SECRET``; share it between
dashboard processes behind one load balancer). :func:`role` says what a logged-in name
may do *now*: each session looks the key up again, so a revoked key loses its rights at
its next page load. ``workbench dashboard`` wires this up unless ``WORKBENCH_AUTH=off``.
"""

from __future__ import annotations

import logging
from typing import Any

from panel.auth import BasicLoginHandler, LogoutHandler  # noqa: F401 (Bokeh reads it)

logger = logging.getLogger("workbench.dashboard")

login_url = "/login"
logout_url = "/logout"
MAX_AGE_DAYS = 1.0


def get_user(request_handler: Any) -> str | None:
    """The logged-in name, from the signed cookie; None sends the browser to the login."""
    user = request_handler.get_secure_cookie("user", max_age_days=MAX_AGE_DAYS)
    return user.decode("utf-8") if user else None


class LoginHandler(BasicLoginHandler):
    """Panel's login page and cookie, checking a workbench API key instead of a password
    file: the user name must be the key's name."""

    def _validate(self, username: str, password: str) -> bool:
        from workbench import events, keys

        try:
            principal = keys.verify(events.engine(), password)
        except Exception:  # a database that cannot be read refuses logins, loudly
            logger.exception("dashboard login: cannot check the key of %r", username)
            return False
        ok = principal is not None and principal.name == f"key:{username}"
        logger.info("dashboard login %s for %r", "accepted" if ok else "refused", username)
        return ok


def role(eng: Any, user: str | None) -> str | None:
    """``admin`` (may act), ``viewer`` (may read) or None (no such live key)."""
    if not user:
        return None
    from workbench import keys

    found = next((k for k in keys.list_keys(eng) if k["name"] == user), None)
    if found is None or found["revoked"] is not None:
        return None
    return "admin" if "admin" in found["scopes"] else "viewer"
