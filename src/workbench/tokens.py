"""JWT bearer tokens from an external identity provider (PyJWT).

Configured by the environment:

- ``WORKBENCH_JWKS``: the provider's public keys, a JSON Web Key Set file path or an
  ``https://`` URL (fetched with PyJWT's client, cached five minutes, refetched for an
  unknown ``kid``). Unset: JWTs are not accepted (API keys still are).
- ``WORKBENCH_JWT_ISSUER``, ``WORKBENCH_JWT_AUDIENCE``: required with ``WORKBENCH_JWKS``;
  a token must carry exactly these ``iss`` and ``aud`` (and an ``exp``).
- ``WORKBENCH_JWT_SCOPE_CLAIM``: the claim holding the scopes (default ``scope``, a
  space-separated string; a list, as in ``scp``, is accepted too).
- ``WORKBENCH_JWT_LEEWAY_SECONDS``: clock skew allowed on ``exp``/``nbf`` (default 30).

Only RS256 and ES256 are accepted; the algorithm is the key's, never the token's choice.
The principal is ``jwt:<sub>`` (``azp`` or ``client_id`` for client-credentials tokens
without ``sub``). Every failure is an :class:`InvalidToken` whose message is safe to send
back (it never contains the token).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from workbench.errors import ConfigError, InvalidToken
from workbench.keys import SCOPES, Principal
from workbench.settings import Settings, load

ALGORITHMS = ("RS256", "ES256")


@dataclass(frozen=True)
class JWTSettings:
    """Where the keys are and what a token must say."""

    jwks: str
    issuer: str
    audience: str
    scope_claim: str = "scope"
    leeway: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> JWTSettings | None:
        """The ``WORKBENCH_JWKS`` / ``WORKBENCH_JWT_*`` settings (:mod:`workbench.settings`;
        default: read now); None when ``WORKBENCH_JWKS`` is unset."""
        s = settings or load()
        jwks = (s.jwks or "").strip()
        if not jwks:
            return None
        issuer, audience = (s.jwt_issuer or "").strip(), (s.jwt_audience or "").strip()
        if not issuer or not audience:
            raise ConfigError("WORKBENCH_JWKS is set but WORKBENCH_JWT_ISSUER or "
                              "WORKBENCH_JWT_AUDIENCE is not", detail={
                                  "expected": "the issuer and audience your identity "
                                              "provider puts in the tokens"})
        return cls(jwks=jwks, issuer=issuer, audience=audience, leeway=s.jwt_leeway_seconds,
                   scope_claim=s.jwt_scope_claim.strip() or "scope")

    @property
    def remote(self) -> bool:
        """True when the key set is fetched over the network (verification may block)."""
        return self.jwks.startswith(("https://", "http://"))


def looks_like_jwt(credential: str) -> bool:
    """Three base64url parts separated by dots (an API key never has a dot)."""
    return credential.count(".") == 2


def scopes_of(claims: Mapping[str, Any], claim: str = "scope") -> frozenset[str]:
    """The workbench scopes in ``claims[claim]`` (space-separated string or list); others
    are ignored."""
    value = claims.get(claim)
    if isinstance(value, str):
        given = value.split()
    elif isinstance(value, list | tuple):
        given = [v for v in value if isinstance(v, str)]
    else:
        given = []
    return frozenset(s for s in given if s in SCOPES)


_FAILURES: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidAudienceError, "the token's audience is not this service's"),
    (jwt.InvalidIssuerError, "the token's issuer is not the configured one"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, f"the token's algorithm is not one of {list(ALGORITHMS)}"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim (exp, iss, aud)"),
    (jwt.exceptions.InvalidSubjectError, "the token's sub is not a string"),
    (jwt.DecodeError, "the token is malformed"),
)


class TokenVerifier:
    """Verifies JWTs against the configured key set.

    Parameters
    ----------
    settings
        From :meth:`JWTSettings.from_settings`.
    """

    def __init__(self, settings: JWTSettings) -> None:
        self.settings = settings
        self._client = jwt.PyJWKClient(settings.jwks, cache_jwk_set=True, lifespan=300,
                                       timeout=5) if settings.remote else None
        self._file: tuple[float, jwt.PyJWKSet] | None = None

    def _from_file(self, kid: str | None) -> jwt.PyJWK:
        path = Path(self.settings.jwks)
        try:
            mtime = path.stat().st_mtime
            if self._file is None or self._file[0] != mtime:  # rotated keys: read again
                self._file = (mtime, jwt.PyJWKSet.from_dict(json.loads(path.read_text())))
        except (OSError, ValueError, jwt.PyJWKSetError) as exc:  # the server's fault: 503
            raise ConfigError(f"cannot read the JWKS file {str(path)!r}: {exc}") from None
        keys = [k for k in self._file[1].keys if k.public_key_use in (None, "sig")]
        if kid is None and len(keys) == 1:
            return keys[0]
        for key in keys:
            if key.key_id == kid:
                return key
        raise InvalidToken("no key in the JWKS matches the token's kid")

    def signing_key(self, token: str) -> jwt.PyJWK:
        """The key that must have signed ``token`` (may fetch the remote key set)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise InvalidToken("the token is malformed") from None
        if header.get("alg") not in ALGORITHMS:
            raise InvalidToken(f"the token's algorithm is not one of {list(ALGORITHMS)}")
        if self._client is None:
            return self._from_file(header.get("kid"))
        try:
            return self._client.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientError as exc:
            raise InvalidToken("no signing key for the token", detail={
                "reason": type(exc).__name__}) from None

    def verify(self, token: str) -> Principal:
        """The token's principal; :class:`InvalidToken` saying why it is refused."""
        key = self.signing_key(token)
        s = self.settings
        try:
            claims = jwt.decode(token, key, algorithms=list(ALGORITHMS), audience=s.audience,
                                issuer=s.issuer, leeway=s.leeway,
                                options={"require": ["exp", "iss", "aud"]})
        except jwt.InvalidTokenError as exc:
            reason = next((m for kind, m in _FAILURES if isinstance(exc, kind)),
                          "the token is invalid")
            raise InvalidToken(reason) from None
        subject = next((claims[c] for c in ("sub", "azp", "client_id")
                        if isinstance(claims.get(c), str) and claims[c]), None)
        if subject is None:
            raise InvalidToken("the token names no subject (sub, azp or client_id)")
        return Principal(f"jwt:{subject}", scopes_of(claims, s.scope_claim))
