"""Real servers for the tests: started on a random free loopback port, stopped by pid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from workbench.background import BENTOML, start
from workbench.background import BackgroundServer as Server
from workbench.serving import free_port

__all__ = ["BENTOML", "ROOT", "Server", "bentoml_serve", "free_port"]

ROOT = Path(__file__).resolve().parents[1]


def bentoml_serve(target: Sequence[str], *, env: dict[str, str], log: Path,
                  ready_timeout: float = 180, wait_ready: bool = True) -> Server:
    """``bentoml serve TARGET [ARGS...]`` on 127.0.0.1, waiting for ``/readyz``."""
    first, *args = target
    return start(first, args=args, env=env, log=log, wait=wait_ready,
                 ready_timeout=ready_timeout)

