"""Access control for every service: one ASGI middleware, :class:`Access`.

A request sends ``Authorization: Bearer <API key or JWT>`` or ``X-API-Key: <API key>``
(never in the URL, so that no access log holds one). Then:

- ``/healthz``, ``/livez``, ``/readyz``, ``/metrics`` are always open;
- every other route needs a valid credential (else 401 with
  ``WWW-Authenticate: Bearer realm="workbench"``) carrying the route's scope (else 403
  naming it), see :func:`required_scope`; unknown routes need ``admin`` (deny by default);
- the principal (``key:NAME`` or ``jwt:SUBJECT``) is put in the ASGI scope's ``state``
  (:func:`principal_of`, :func:`actor`: the gateway audits admin actions with it);
- the principal's rate limit for the route group applies (:mod:`workbench.ratelimit`):
  429 with ``Retry-After``.

``WORKBENCH_AUTH=off`` turns all of it off (logged as a warning once per process): for
local experiments only; the default is ``on``, so nothing is left open by accident.

A request that arrives over a Unix domain socket is trusted: BentoML serves a service's
dependencies (the Predictor inside the experiment gateway) on a socket in a private
(0700) temporary directory, reachable only by the server's own user, while every public
listener is TCP. So the gateway calls its Predictor without a credential, and no
credential exists that could leak (with ``BENTOML_NO_UDS`` set BentoML uses loopback TCP
instead: then the dependency refuses the gateway, which is logged at startup).

API keys are checked in the event store's database (``WORKBENCH_DB_URL``), with a cache of
a few seconds (:class:`workbench.keys.KeyCache`); JWTs against the configured JWKS
(:mod:`workbench.tokens`). Error bodies never contain the credential.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from workbench.settings import Settings, load

if TYPE_CHECKING:  # imported when auth is on: a service with it off needs none of them
    from workbench.keys import KeyCache, Principal
    from workbench.ratelimit import RateLimiter
    from workbench.tokens import TokenVerifier

logger = logging.getLogger("workbench.access")

OPEN = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
PREDICT = frozenset({"/predict", "/predict/stream", "/metadata", "/models", "/experiment",
                     "/analysis", "/analysis/segments", "/health/all", "/docs", "/",
                     "/docs.json", "/schema.json"})
# The Open Inference Protocol, and the static files of the docs page served at /.
PREDICT_PREFIXES = ("/v2/", "/static_content/", "/assets/")
REALM = 'Bearer realm="workbench"'
SEND = "Authorization: Bearer <API key or JWT>, or X-API-Key: <API key>"
_warned_off = threading.Event()


class Refused(Exception):
    """A credential that is not accepted (401); the message, safe to send, says why."""


def required_scope(path: str) -> str | None:
    """The scope ``path`` needs; None for the open health and metrics routes."""
    if path in OPEN:
        return None
    if path in PREDICT or path == "/v2" or path.startswith(PREDICT_PREFIXES):
        return "predict"
    for scope in ("feedback", "batch", "admin"):
        if path == f"/{scope}" or path.startswith(f"/{scope}/"):
            return scope
    return "admin"


def enabled() -> bool:
    """``WORKBENCH_AUTH`` (:mod:`workbench.settings`): ``on`` (the default) or ``off``."""
    return load().auth


def credential(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The API key or JWT a request sends, else None."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
    return None


def principal_of(scope: Any) -> str | None:
    """The principal :class:`Access` recorded for a request (an ASGI scope or a Starlette
    request), else None (auth off, or an open route)."""
    scope = getattr(scope, "scope", scope)
    return (scope.get("state") or {}).get("principal")


def actor(request: Any) -> str:
    """Who acts, for the audit trail: the principal, else ``http:<client ip>``."""
    found = principal_of(request)
    if found:
        return found
    client = getattr(request, "client", None)
    return f"http:{client.host if client else 'unknown'}"


def over_unix_socket(scope: dict[str, Any]) -> bool:
    """True when the request came over a Unix domain socket (the server address has no
    port): BentoML's private channel to a dependency."""
    server = scope.get("server")
    return isinstance(server, tuple | list) and len(server) == 2 and server[1] is None


class Access:
    """ASGI middleware: authentication, scopes and rate limits (see the module's docstring).

    Parameters
    ----------
    app
        The ASGI app it guards.
    on
        Default: ``WORKBENCH_AUTH``.
    keys
        Verifies API keys; default a :class:`~workbench.keys.KeyCache` on the event store.
    tokens
        Verifies JWTs; default from :meth:`~workbench.tokens.JWTSettings.from_settings` (None:
        JWTs are refused).
    limiter
        Default a :class:`~workbench.ratelimit.RateLimiter` from the settings.
    settings
        Where the defaults come from (:mod:`workbench.settings`; default: read now).
    """

    def __init__(self, app: Any, *, on: bool | None = None, keys: KeyCache | None = None,
                 tokens: TokenVerifier | None = None, limiter: RateLimiter | None = None,
                 settings: Settings | None = None) -> None:
        self.app = app
        s = settings or load()
        self.on = s.auth if on is None else on
        if not self.on:
            if not _warned_off.is_set():
                _warned_off.set()
                logger.warning("WORKBENCH_AUTH=off: every route is open to anyone who can "
                               "reach this port (local experiments only)")
            return
        from workbench.keys import KeyCache
        from workbench.ratelimit import RateLimiter
        from workbench.tokens import JWTSettings, TokenVerifier

        if keys is None:
            from workbench import events

            keys = KeyCache(lambda: events.engine(), ttl=s.key_cache_seconds)
        self.keys = keys
        jwt = JWTSettings.from_settings(s) if tokens is None else None
        self.tokens = tokens or (TokenVerifier(jwt) if jwt else None)
        self.limiter = limiter or RateLimiter(settings=s)
        self.denied = _denied_counter()
        if os.environ.get("BENTOML_NO_UDS"):
            logger.warning("BENTOML_NO_UDS is set: dependencies listen on loopback TCP and "
                           "refuse calls without a credential")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not self.on or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        group = required_scope(scope["path"])
        if group is None:
            await self.app(scope, receive, send)
            return
        if over_unix_socket(scope):
            scope.setdefault("state", {})["principal"] = "internal"
            await self.app(scope, receive, send)
            return
        presented = credential(scope.get("headers") or [])
        if presented is None:
            await self._refuse(scope, receive, send, 401, "authentication required",
                               {"expected": SEND}, REALM)
            return
        try:
            principal = await self._authenticate(presented)
        except Refused as exc:
            await self._refuse(scope, receive, send, 401, str(exc), {"expected": SEND},
                               f'{REALM}, error="invalid_token"')
            return
        except Exception:  # the key store cannot be read: not the client's fault
            logger.exception("access: cannot verify a credential now (the key store or JWKS)")
            await self._refuse(scope, receive, send, 503, "cannot verify credentials now; "
                               "retry shortly", None, headers=[(b"retry-after", b"1")])
            return
        if group not in principal.scopes:
            await self._refuse(scope, receive, send, 403, f"this route needs the "
                               f"{group!r} scope", {"needed": group, "granted": sorted(
                                   principal.scopes)},
                               f'{REALM}, error="insufficient_scope", scope="{group}"')
            return
        scope.setdefault("state", {})["principal"] = principal.name
        decision = await self.limiter.hit(principal.name, group, principal.rate_limit)
        if not decision.allowed:
            retry = [(b"retry-after", str(decision.retry_after).encode())]
            if decision.unavailable:
                await self._refuse(scope, receive, send, 503, "rate limits cannot be "
                                   "checked now; retry shortly", None, headers=retry)
            else:
                await self._refuse(scope, receive, send, 429, "rate limit exceeded", {
                    "limit": decision.limit, "group": group,
                    "retry_after": decision.retry_after}, headers=retry)
            return
        await self.app(scope, receive, send)

    async def _authenticate(self, presented: str) -> Principal:
        """The credential's principal; :class:`Refused` if it is not accepted."""
        from workbench.keys import key_id
        from workbench.tokens import InvalidToken, looks_like_jwt

        if looks_like_jwt(presented):
            if self.tokens is None:
                raise Refused("JWTs are not accepted here (no WORKBENCH_JWKS)")
            try:
                if self.tokens.settings.remote:  # may fetch the key set: off the event loop
                    return await asyncio.to_thread(self.tokens.verify, presented)
                return self.tokens.verify(presented)
            except InvalidToken as exc:
                raise Refused(exc.message) from None
        principal = None
        if key_id(presented) is not None:
            hit, principal = self.keys.cached(presented)
            if not hit:
                principal = await asyncio.to_thread(self.keys.verify, presented)
        if principal is None:
            raise Refused("unknown or revoked API key")
        return principal

    async def _refuse(self, scope: dict[str, Any], receive: Any, send: Any, status: int,
                      error: str, detail: Any, challenge: str | None = None, *,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.denied.labels(status=str(status)).inc()
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"error": error, "detail": detail}).encode()
        head = [(b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()), *(headers or [])]
        if challenge:
            head.append((b"www-authenticate", challenge.encode()))
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": body})


_COUNTER: list[Any] = []


def _denied_counter() -> Any:
    """A Prometheus counter of refused requests by status (one per process)."""
    if not _COUNTER:
        from prometheus_client import Counter

        _COUNTER.append(Counter("workbench_access_denied",
                                "Requests refused by access control", ["status"]))
    return _COUNTER[0]

