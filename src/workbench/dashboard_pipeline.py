"""The dashboard's Event pipeline tab: each gateway's event pipeline, live.

The dashboard learns its gateways from ``WORKBENCH_GATEWAY_URL`` (one URL, or several
separated by commas: every replica, not the load balancer in front of them, since each has
its own writer and spool) and reads each one's ``GET /health/all`` on every refresh, with
``WORKBENCH_API_KEY`` as its bearer token when the gateways require a key (the ``predict``
scope reads ``/health/all``). The table and the warnings above it come from
:func:`workbench.dashboard_data.pipeline_table` and
:func:`~workbench.dashboard_data.pipeline_problems` (pure, tested without a browser).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import panel as pn
import param

from workbench import dashboard_data as frames
from workbench.settings import load

GATEWAY_ENV = "WORKBENCH_GATEWAY_URL"
API_KEY_ENV = "WORKBENCH_API_KEY"
TIMEOUT_SECONDS = 3.0


def gateway_urls(value: str | None = None) -> list[str]:
    """The gateways in ``value`` (else ``WORKBENCH_GATEWAY_URL``): comma- or
    space-separated base URLs, without a trailing slash, each once."""
    raw = (load().gateway_url or "") if value is None else value
    return list(dict.fromkeys(u.rstrip("/") for u in raw.replace(",", " ").split() if u))


def fetch(url: str, *, api_key: str | None = None,
          timeout: float = TIMEOUT_SECONDS) -> dict[str, Any] | str:
    """``GET URL/health/all``: its JSON body (also when it answers 503: not ready), else why
    it could not be read, in a few words (never the key)."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(f"{url}/health/all", headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return f"no answer: {type(exc).__name__}"
    if response.status_code in (401, 403):
        return (f"refused with {response.status_code}: set {API_KEY_ENV} to a key with the "
                "predict scope")
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return f"HTTP {response.status_code} without a JSON health report"
    return body


def fetch_all(urls: list[str], *, api_key: str | None = None) -> dict[str, dict[str, Any] | str]:
    """:func:`fetch` of every gateway at once (a slow one delays the others by nothing)."""
    if not urls:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(urls), 16)) as pool:
        return dict(zip(urls, pool.map(lambda u: fetch(u, api_key=api_key), urls),
                        strict=True))


class PipelinePanel(pn.viewable.Viewer):
    """Per gateway: up and ready, the write queue, the spool, rows written, spooled,
    replayed, dead-lettered and dropped, writer restarts, and since when the database is
    down; the rows that need attention are repeated above the table as warnings.

    Parameters
    ----------
    gateways
        Base URLs of the gateways; None reads ``WORKBENCH_GATEWAY_URL``.
    api_key
        Sent as a bearer token; None reads ``WORKBENCH_API_KEY``.
    """

    version = param.Integer(default=0, doc="Bumped on every refresh that found a change")

    def __init__(self, gateways: list[str] | None = None, api_key: str | None = None,
                 **params: Any) -> None:
        super().__init__(**params)
        self.gateways = gateway_urls(None if gateways is None else ",".join(gateways))
        saved = load().api_key
        self._api_key = api_key if api_key is not None else (
            saved.get_secret_value() if saved else None)
        self.health: dict[str, dict[str, Any] | str] = {}

    def refresh(self) -> None:
        """Read every gateway's health again; re-render only when it changed."""
        health = fetch_all(self.gateways, api_key=self._api_key)
        if health != self.health:
            self.health = health
            self.version += 1

    @param.depends("version")
    def view(self) -> pn.viewable.Viewable:
        if not self.gateways:
            return pn.pane.Alert(
                "No gateway configured: start the dashboard with `workbench dashboard "
                f"--gateway URL` (repeat for replicas) or set {GATEWAY_ENV} (several "
                "URLs comma-separated).",
                alert_type="info", name="no-gateway", sizing_mode="stretch_width")
        problems = frames.pipeline_problems(self.health)
        alerts = [pn.pane.Alert("\n".join(f"- {p}" for p in problems), alert_type="warning",
                                name="pipeline-problems", sizing_mode="stretch_width")
                  if problems else
                  pn.pane.Alert("Every gateway's event pipeline is healthy.",
                                alert_type="success", name="pipeline-ok",
                                sizing_mode="stretch_width")]
        table = pn.widgets.Tabulator(frames.pipeline_table(self.health), disabled=True,
                                     show_index=False, sizing_mode="stretch_width")
        return pn.Column(*alerts, table, sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column("### Event pipeline", self.view, sizing_mode="stretch_width")
