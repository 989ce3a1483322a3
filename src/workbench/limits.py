"""Request limits shared by every service: rows per request and body size.

:class:`BodyLimit` is an ASGI middleware that refuses a body over the limit with 413
``{"error": ..., "detail": ...}``, whether the size is declared (``content-length``) or
only found while streaming, before the service parses anything.
"""

from __future__ import annotations

import json
import os
from typing import Any

MAX_ROWS = int(os.environ.get("WORKBENCH_MAX_ROWS", "1024"))
MAX_BODY_BYTES = int(os.environ.get("WORKBENCH_MAX_BODY_BYTES", str(4 * 1024 * 1024)))


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` with 413 (declared or streamed)."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send, int(declared))
            return
        seen = 0
        started = answered = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen, answered
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # streamed past the limit: answer 413 ourselves,
                    if not started and not answered:  # and the app sees a disconnect
                        answered = True
                        await self._too_large(send, seen)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if answered:  # the 413 was the answer; whatever the app says after is dropped
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not answered:  # the app's reaction to the disconnect we gave it
                raise

    async def _too_large(self, send: Any, size: int) -> None:
        body = json.dumps({"error": f"request body too large: {size} bytes",
                           "detail": {"expected": f"at most {self.max_bytes} bytes"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

