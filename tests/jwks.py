"""A throwaway identity provider for the tests: its own RSA and EC keys, a JWKS file, and
signed tokens (no network)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://idp.test/"
AUDIENCE = "workbench-tests"


class Provider:
    """Signs tokens with its keys and publishes the public halves as a JWKS file."""

    def __init__(self, directory: Path) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwks = Path(directory) / "jwks.json"
        keys = []
        for kid, key, alg in (("rsa-1", self.rsa, "RS256"), ("ec-1", self.ec, "ES256")):
            jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(
                key.public_key()))
            keys.append(jwk | {"kid": kid, "use": "sig", "alg": alg})
        self.jwks.write_text(json.dumps({"keys": keys}))

    def env(self) -> dict[str, str]:
        """The services' settings for this provider."""
        return {"WORKBENCH_JWKS": str(self.jwks), "WORKBENCH_JWT_ISSUER": ISSUER,
                "WORKBENCH_JWT_AUDIENCE": AUDIENCE}

    def token(self, sub: str = "alice", scope: Any = "predict", *, expires_in: float = 300,
              alg: str = "RS256", kid: str | None = None, key: Any = None,
              **claims: Any) -> str:
        """A signed token; ``claims`` override the defaults (``aud=...``, ``iss=...``);
        ``sub=None`` or ``scope=None`` leaves that claim out."""
        now = time.time()
        body = {"iss": ISSUER, "aud": AUDIENCE, "iat": int(now), "exp": int(now + expires_in)
                } | ({"sub": sub} if sub is not None else {}) | (
                    {"scope": scope} if scope is not None else {}) | claims
        signer = key or (self.rsa if alg == "RS256" else self.ec)
        import secrets_scan

        return secrets_scan.register(jwt.encode(body, signer, algorithm=alg, headers={
            "kid": kid or ("rsa-1" if alg == "RS256" else "ec-1")}), "JWT")
