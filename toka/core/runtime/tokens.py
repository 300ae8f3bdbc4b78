"""Capability tokens: HS256 JWTs minted and verified by the kernel."""

from __future__ import annotations

import threading

import jwt
import msgspec

from toka.core.errors import Denied, TokenExpired, TokenInvalid
from toka.core.model import caps
from toka.core.model.keys import thumbprint
from toka.core.model.state import Grant, WorldState

MAX_TOKEN_BYTES = 8192
AUDIENCE = "toka-kernel"
REQUIRED_CLAIMS = ["iss", "sub", "aud", "iat", "nbf", "exp", "jti", "caps", "cnf"]
LEEWAY_S = 5


class Claims(msgspec.Struct, frozen=True):
    iss: str
    sub: str
    aud: str
    iat: int
    nbf: int
    exp: int
    jti: str
    caps: list[str]
    parent: str | None
    cnf: dict[str, str]

    @property
    def jkt(self) -> str:
        return self.cnf.get("jkt", "")


class TokenAuthority:
    """Mints tokens for grants and verifies presented tokens, caching by digest."""

    def __init__(self, secret: bytes, home_id: str):
        if len(secret) < 32:
            raise ValueError("the kernel secret must be at least 32 bytes")
        self._secret = secret
        self.issuer = f"toka:{home_id}"
        self._cache: dict[str, Claims] = {}
        self._lock = threading.Lock()

    def mint(self, grant: Grant, holder_thumbprint: str) -> str:
        payload = {
            "iss": self.issuer,
            "sub": grant.subject,
            "aud": AUDIENCE,
            "iat": grant.iat,
            "nbf": grant.iat,
            "exp": grant.exp,
            "jti": grant.jti,
            "caps": list(grant.caps),
            "parent": grant.parent,
            "cnf": {"jkt": holder_thumbprint},
        }
        return jwt.encode(payload, self._secret, algorithm="HS256", headers={"typ": "JWT"})

    def token_for(self, state: WorldState, principal: str, required: list[str], now_s: int) -> str:
        """The token of ``principal``'s best active grant for ``required``: the newest that
        covers all of it, else the newest active one (the kernel then says what is missing)."""
        grants = state.active_grants(principal, now_s)
        if not grants:
            raise Denied(f"{principal} holds no active grant")
        covering = [g for g in grants if all(caps.covers(g.caps, c) for c in required)]
        grant = (covering or grants)[-1]
        return self.mint(grant, thumbprint(state.principals[principal]))

    def verify(self, token: str, now_s: int) -> Claims:
        """Check signature, algorithm, claims, audience and issuer; ``exp`` on every call."""
        if not isinstance(token, str) or len(token.encode()) > MAX_TOKEN_BYTES:
            raise TokenInvalid(f"token missing or larger than {MAX_TOKEN_BYTES} bytes")
        # Keyed by the token itself: a hit is a string comparison, no hashing of our own.
        claims = self._cache.get(token)
        if claims is None:
            claims = self._decode(token, now_s)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[token] = claims
        if claims.exp + LEEWAY_S <= now_s:
            raise TokenExpired(f"token {claims.jti} expired")
        if claims.nbf - LEEWAY_S > now_s:
            raise TokenInvalid(f"token {claims.jti} is not valid yet")
        return claims

    def _decode(self, token: str, now_s: int) -> Claims:
        try:
            raw = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={
                    "require": REQUIRED_CLAIMS,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired("token expired") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid(f"token rejected: {exc}") from exc
        if raw["iat"] - LEEWAY_S > now_s:
            raise TokenInvalid("token issued in the future")
        try:
            return msgspec.convert(raw, Claims)
        except msgspec.ValidationError as exc:
            raise TokenInvalid(f"token claims malformed: {exc}") from exc
