"""Where the workbench keeps its state by default: ``WORKBENCH_HOME`` (``~/.workbench``
when unset) and the event store's URL.

:mod:`workbench.events` opens the store at :func:`default_url` (and re-exports it) and
:mod:`workbench.migrate` names it in its messages; both read it here, so that neither
imports the other.
"""

from __future__ import annotations

from workbench.settings import Settings, load


def default_url(settings: Settings | None = None) -> str:
    """``WORKBENCH_DB_URL``, else the SQLite file under ``WORKBENCH_HOME``
    (:mod:`workbench.settings`; default: read now)."""
    s = settings or load()
    if s.db_url:
        return s.db_url
    home = s.home_dir
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'events.db'}"


__all__ = ["default_url"]
