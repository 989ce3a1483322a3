"""The workbench dashboard: ``panel serve dashboards/workbench.py`` or ``workbench dashboard``.

Reads the event store (``WORKBENCH_DB_URL``, else the SQLite file under
``WORKBENCH_HOME``) and the model store (``BENTOML_HOME``); refreshes every
``WORKBENCH_DASHBOARD_REFRESH`` seconds (default 5). Everything is served locally.
"""

import sys
from pathlib import Path

# `panel serve` puts this folder on sys.path, where this file would shadow the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import panel as pn  # noqa: E402

from workbench.dashboard import Dashboard  # noqa: E402

pn.extension("tabulator", design="bootstrap", sizing_mode="stretch_width")

pn.template.BootstrapTemplate(
    title="workbench: Bayesian models in production", main=[Dashboard()],
).servable()
