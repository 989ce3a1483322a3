"""How the dashboard is served: ``panel serve dashboards/workbench.py`` on loopback, behind
the login of :mod:`workbench.dashboard_auth` unless ``WORKBENCH_AUTH=off``."""

from __future__ import annotations


def serve_command(port: int, host: str = "127.0.0.1", *, login: bool | None = None
                  ) -> list[str]:
    """``panel serve dashboards/workbench.py`` on ``host:port`` (loopback by default),
    behind the login of :mod:`workbench.dashboard_auth` unless ``WORKBENCH_AUTH=off``
    (run it with :func:`serve_env`, which carries the cookie secret)."""
    import sys
    from pathlib import Path

    from workbench import access, dashboard_auth
    from workbench.build import bentos_dir

    app = bentos_dir().parent / "dashboards" / "workbench.py"
    cmd = [str(Path(sys.executable).parent / "panel"), "serve", str(app), "--address", host,
           "--port", str(port), "--allow-websocket-origin", f"{host}:{port}"]
    if access.enabled() if login is None else login:
        cmd += ["--auth-module", dashboard_auth.__file__]
    return cmd


def serve_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` plus the login cookies' secret (``WORKBENCH_DASHBOARD_COOKIE_SECRET``, else a
    fresh one: logins then last as long as the process), passed by environment so that it
    never shows in a process list."""
    import secrets

    secret = env.get("WORKBENCH_DASHBOARD_COOKIE_SECRET") or secrets.token_urlsafe(32)
    return env | {"PANEL_COOKIE_SECRET": secret, "BOKEH_COOKIE_SECRET": secret}
