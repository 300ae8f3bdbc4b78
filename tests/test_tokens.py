"""Capability tokens: every forged, malformed or misused token is refused."""

import base64
import json
import time

import jwt
import pytest

from toka.core.errors import TokenExpired, TokenInvalid
from toka.core.model.state import Grant
from toka.core.runtime.tokens import MAX_TOKEN_BYTES, TokenAuthority

SECRET = b"k" * 32
NOW = 1_800_000_000


def grant(**overrides) -> Grant:
    fields = dict(
        jti="gr-9",
        subject="ag-x",
        caps=["task.fail:agent/ag-x"],
        issuer="operator",
        parent="gr-2",
        iat=NOW - 10,
        exp=NOW + 3600,
    )
    fields.update(overrides)
    return Grant(**fields)


@pytest.fixture
def authority() -> TokenAuthority:
    return TokenAuthority(SECRET, "home1")


def claims_of(token: str) -> dict:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_minted_token_verifies_with_all_claims(authority):
    claims = authority.verify(authority.mint(grant(), "thumb"), NOW)
    assert (claims.sub, claims.jti, claims.parent, claims.jkt) == ("ag-x", "gr-9", "gr-2", "thumb")
    assert claims.caps == ["task.fail:agent/ag-x"]


def test_token_signed_with_another_secret_is_refused(authority):
    other = TokenAuthority(b"z" * 32, "home1").mint(grant(), "thumb")
    with pytest.raises(TokenInvalid, match="Signature"):
        authority.verify(other, NOW)


def test_alg_none_is_refused(authority):
    payload = claims_of(authority.mint(grant(), "thumb"))
    forged = jwt.encode(payload, None, algorithm="none")
    with pytest.raises(TokenInvalid, match="alg"):
        authority.verify(forged, NOW)


def test_other_hmac_algorithm_is_refused(authority):
    payload = claims_of(authority.mint(grant(), "thumb"))
    forged = jwt.encode(payload, SECRET * 2, algorithm="HS384")
    with pytest.raises(TokenInvalid, match="alg"):
        authority.verify(forged, NOW)


def test_tampered_payload_is_refused(authority):
    header, body, sig = authority.mint(grant(), "thumb").split(".")
    claims = claims_of(f"{header}.{body}.{sig}")
    claims["caps"] = ["*:*"]
    new_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenInvalid):
        authority.verify(f"{header}.{new_body}.{sig}", NOW)


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "iat", "nbf", "exp", "jti", "caps", "cnf"])
def test_missing_claim_is_refused(authority, claim):
    payload = claims_of(authority.mint(grant(), "thumb"))
    del payload[claim]
    with pytest.raises(TokenInvalid):
        authority.verify(jwt.encode(payload, SECRET, algorithm="HS256"), NOW)


@pytest.mark.parametrize(
    ("claim", "value"), [("aud", "someone-else"), ("iss", "toka:home"), ("iss", "toka:home1x")]
)
def test_wrong_audience_or_issuer_is_refused(authority, claim, value):
    payload = claims_of(authority.mint(grant(), "thumb"))
    payload[claim] = value
    with pytest.raises(TokenInvalid):
        authority.verify(jwt.encode(payload, SECRET, algorithm="HS256"), NOW)


def test_expired_token_is_refused_even_when_cached(authority):
    token = authority.mint(grant(exp=NOW + 60), "thumb")
    authority.verify(token, NOW)  # cached now
    with pytest.raises(TokenExpired):
        authority.verify(token, NOW + 120)


def test_not_yet_valid_token_is_refused(authority):
    token = authority.mint(grant(iat=NOW + 600, exp=NOW + 3600), "thumb")
    with pytest.raises(TokenInvalid):
        authority.verify(token, NOW)


def test_oversize_token_is_refused_before_decoding(authority):
    with pytest.raises(TokenInvalid, match=str(MAX_TOKEN_BYTES)):
        authority.verify("a" * (MAX_TOKEN_BYTES + 1), NOW)


def test_short_secret_is_refused():
    with pytest.raises(ValueError):
        TokenAuthority(b"short", "home1")


def test_real_clock_token_round_trip(authority):
    now = int(time.time())
    token = authority.mint(grant(iat=now, exp=now + 5), "thumb")
    assert authority.verify(token, now).exp == now + 5
