"""Where the workbench keeps its state by default: ``WORKBENCH_HOME`` (``~/.workbench``
when unset) and the event store's URL.

:mod:`workbench.events` opens the store at :func:`default_url` (and re-exports it) and
:mod:`workbench.migrate` names it in its messages; both read it here, so that neither
imports the other.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_url() -> str:
    """``WORKBENCH_DB_URL``, else the SQLite file under ``WORKBENCH_HOME``."""
    if url := os.environ.get("WORKBENCH_DB_URL"):
        return url
    home = Path(os.environ.get("WORKBENCH_HOME") or Path.home() / ".workbench")
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'events.db'}"


__all__ = ["default_url"]
