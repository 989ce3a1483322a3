"""Request limits shared by every service: rows per request, body size and body kind.

:class:`BodyLimit` is an ASGI middleware that refuses a body over the limit with 413
``{"error": ..., "detail": ...}``, whether the size is declared (``content-length``) or
only found while streaming, before the service parses anything. It also refuses a
form-encoded body with 415: every route takes JSON (OIP's binary extension aside), and
BentoML would otherwise parse a form and answer a malformed one (no multipart boundary)
with a 500.
"""

from __future__ import annotations

import json
from typing import Any

from workbench.settings import Settings

# The defaults; a service passes its own (WORKBENCH_MAX_ROWS, ..., :mod:`workbench.settings`).
MAX_ROWS: int = Settings.model_fields["max_rows"].default
MAX_BODY_BYTES: int = Settings.model_fields["max_body_bytes"].default
FORMS = (b"multipart/form-data", b"application/x-www-form-urlencoded")


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` with 413 (declared or streamed),
    and form-encoded bodies with 415."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send, int(declared))
            return
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media_type in FORMS:
            await _refuse(send, 415, f"unsupported media type {media_type.decode()!r}",
                          {"expected": "application/json"})
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
        await _refuse(send, 413, f"request body too large: {size} bytes",
                      {"expected": f"at most {self.max_bytes} bytes"})


async def _refuse(send: Any, status: int, error: str, detail: Any) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

