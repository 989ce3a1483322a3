"""JWT bearer tokens: issuer, audience, expiry and signature checked against a JWKS file."""

from __future__ import annotations

import os

import jwt
import pytest
from jwks import AUDIENCE, ISSUER, Provider

from workbench.errors import ConfigError
from workbench.settings import load
from workbench.tokens import InvalidToken, JWTSettings, TokenVerifier, looks_like_jwt, scopes_of


@pytest.fixture(scope="module")
def idp(tmp_path_factory) -> Provider:
    return Provider(tmp_path_factory.mktemp("idp"))


@pytest.fixture
def verifier(idp) -> TokenVerifier:
    return TokenVerifier(JWTSettings.from_settings(load(idp.env())))


def test_a_valid_token_gives_its_subject_and_scopes(idp, verifier):
    principal = verifier.verify(idp.token("alice", "predict feedback openid"))
    assert principal.name == "jwt:alice"
    assert principal.scopes == {"predict", "feedback"}  # others ignored
    assert verifier.verify(idp.token("bob", alg="ES256")).name == "jwt:bob"
    service = verifier.verify(idp.token(None, azp="batch-runner", scope="batch"))
    assert (service.name, service.scopes) == ("jwt:batch-runner", {"batch"})


def test_scopes_come_from_the_configured_claim_as_a_string_or_a_list(idp):
    env = idp.env() | {"WORKBENCH_JWT_SCOPE_CLAIM": "scp"}
    verifier = TokenVerifier(JWTSettings.from_settings(load(env)))
    token = idp.token(scope=None, scp=["predict", "admin", 3])
    assert verifier.verify(token).scopes == {"predict", "admin"}
    assert scopes_of({"scope": 7}) == frozenset()


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.token(expires_in=-3600), "expired"),
    (lambda p: p.token(aud="someone-else"), "audience"),
    (lambda p: p.token(iss="https://evil.test/"), "issuer"),
    (lambda p: p.token(key=p.other), "signature"),
    (lambda p: p.token(kid="unknown"), "kid"),
    (lambda p: p.token(expires_in=3600, nbf=9_999_999_999), "not valid yet"),
    (lambda p: p.token(None), "subject"),
    (lambda p: p.token()[:-8] + "AAAAAAAA", "signature"),
    (lambda p: "a.b.c", "malformed"),
    (lambda p: jwt.encode({"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": 9_999_999_999},
                          "s" * 32, algorithm="HS256", headers={"kid": "rsa-1"}), "algorithm"),
    (lambda p: jwt.encode({"sub": "x", "iss": ISSUER, "aud": AUDIENCE}, p.rsa,
                          algorithm="RS256", headers={"kid": "rsa-1"}), "required claim"),
])
def test_bad_tokens_are_refused_saying_why_without_echoing_them(idp, verifier, make, reason):
    token = make(idp)
    with pytest.raises(InvalidToken, match=reason) as caught:
        verifier.verify(token)
    assert token not in str(caught.value.to_dict())


def test_an_es256_token_claiming_the_rsa_key_is_refused(idp, verifier):
    with pytest.raises(InvalidToken):
        verifier.verify(idp.token(alg="ES256", kid="rsa-1"))


def test_settings_need_issuer_and_audience_with_a_jwks(idp):
    assert JWTSettings.from_settings(load({})) is None
    with pytest.raises(ConfigError, match="WORKBENCH_JWT_ISSUER"):
        JWTSettings.from_settings(load({"WORKBENCH_JWKS": str(idp.jwks)}))
    assert JWTSettings.from_settings(load(
        idp.env() | {"WORKBENCH_JWKS": "https://idp/jwks"})).remote


def test_a_rotated_jwks_file_is_read_again(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = Provider(tmp_path / "a"), Provider(tmp_path / "b")
    verifier = TokenVerifier(JWTSettings.from_settings(load(first.env())))
    assert verifier.verify(first.token()).name == "jwt:alice"
    first.jwks.write_text(second.jwks.read_text())
    os.utime(first.jwks, (1, 1))  # a different mtime, whatever the clock's resolution
    assert verifier.verify(second.token("carol")).name == "jwt:carol"
    with pytest.raises(InvalidToken):
        verifier.verify(first.token())


def test_an_unreadable_jwks_file_is_the_servers_fault_not_the_tokens(tmp_path, idp):
    verifier = TokenVerifier(JWTSettings.from_settings(load(idp.env() | {
        "WORKBENCH_JWKS": str(tmp_path / "missing.json")})))
    with pytest.raises(ConfigError, match="cannot read the JWKS file"):
        verifier.verify(idp.token())


def test_a_jwt_looks_different_from_an_api_key():
    assert looks_like_jwt("aaa.bbb.ccc") and not looks_like_jwt("wb_0123456789ab_secret")
