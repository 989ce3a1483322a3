"""The workbench dashboard: ``panel serve dashboards/workbench.py`` or ``workbench dashboard``.

Reads the event store (``WORKBENCH_DB_URL``, else the SQLite file under
``WORKBENCH_HOME``) and the model store (``BENTOML_HOME``); refreshes every
``WORKBENCH_DASHBOARD_REFRESH`` seconds (default 5), and then the ``GET /health/all`` of
the gateways in ``WORKBENCH_GATEWAY_URL`` (comma-separated; ``WORKBENCH_API_KEY`` when they
need a key) for the Event pipeline tab. Everything is served locally.
Viewing needs a login with an API key (``workbench dashboard`` passes ``--auth-module``
:mod:`workbench.dashboard_auth`); acting needs the key's admin scope. ``WORKBENCH_AUTH=off``
drops the login (everyone may act) for local experiments.
"""

import sys
from pathlib import Path

# `panel serve` puts this folder on sys.path, where this file would shadow the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import panel as pn  # noqa: E402

from workbench import access, dashboard_auth, events  # noqa: E402
from workbench.dashboard import Dashboard  # noqa: E402

pn.extension("tabulator", design="bootstrap", sizing_mode="stretch_width")


def session() -> tuple[list, list]:
    """This session's page: the dashboard for the logged-in user's role (admin or viewer),
    or a refusal when the user's key is gone; everyone is admin with WORKBENCH_AUTH=off."""
    if not access.enabled():
        return [Dashboard()], []
    user = pn.state.user
    role = dashboard_auth.role(events.engine(), user)
    header = [pn.pane.Markdown(f"**{user}** ({role or 'no access'}) · [log out](/logout)",
                               styles={"color": "white"}, name="user")]
    if role is None:
        return [pn.pane.Alert(f"{user!r} has no live API key: ask an admin for one "
                              "(`workbench keys create NAME --scope predict`).",
                              alert_type="danger")], header
    return [Dashboard(actor=f"dashboard:{user}", role=role)], header


main, header = session()
pn.template.BootstrapTemplate(
    title="workbench: Bayesian models in production", main=main, header=header,
).servable()
