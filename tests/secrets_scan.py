"""Nothing secret leaks: every API key, JWT and S3 secret the suite creates is registered
here, every HTTP response a test receives is checked for them as it arrives, and every
server log the suite wrote is checked once the session ends (``pytest_sessionfinish`` in
tests/conftest.py turns a finding into a failed run, naming file and secret kind).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

SECRETS: dict[str, str] = {}  # secret -> what it is (never printed in full)
LOGS: list[Path] = []
FOUND: list[str] = []
_lock = threading.Lock()


def register(value: str, kind: str) -> str:
    """Remember ``value`` (at least 12 characters: shorter ones would match by chance)."""
    if isinstance(value, str) and len(value) >= 12:
        with _lock:
            SECRETS[value] = kind
    return value


def scan(text: str, where: str) -> list[str]:
    """The kinds of registered secrets in ``text``, each as ``where: kind``."""
    with _lock:
        found = [f"{where}: {kind}" for value, kind in SECRETS.items() if value in text]
    return found


def check_response(response: Any) -> None:
    try:
        text = response.content.decode("utf-8", "replace")
    except Exception:  # a streamed body not read by the test: nothing was captured
        return
    if found := scan(text, f"response {response.request.method} {response.request.url.path}"):
        FOUND.extend(found)


def install() -> None:
    """Register keys, tokens and server logs as the suite makes them; check responses."""
    import httpx

    from workbench import background, keys

    create = keys.create

    def registered_create(*args: Any, **kwargs: Any) -> str:
        return register(create(*args, **kwargs), "API key")

    keys.create = registered_create
    launch = background.launch

    def logged_launch(*args: Any, **kwargs: Any) -> Any:
        server = launch(*args, **kwargs)
        LOGS.append(Path(server.log))
        return server

    background.launch = logged_launch
    send, asend = httpx.Client.send, httpx.AsyncClient.send

    def checked_send(self: Any, *args: Any, **kwargs: Any) -> Any:
        response = send(self, *args, **kwargs)
        if not kwargs.get("stream"):
            check_response(response)
        return response

    async def checked_asend(self: Any, *args: Any, **kwargs: Any) -> Any:
        response = await asend(self, *args, **kwargs)
        if not kwargs.get("stream"):
            check_response(response)
        return response

    httpx.Client.send = checked_send  # type: ignore[method-assign]
    httpx.AsyncClient.send = checked_asend  # type: ignore[method-assign]


def scan_logs() -> list[str]:
    """Every registered secret found in a server log of this session."""
    found: list[str] = []
    for log in dict.fromkeys(LOGS):
        if log.is_file():
            found += scan(log.read_text(errors="replace"), f"log {log}")
    return found
