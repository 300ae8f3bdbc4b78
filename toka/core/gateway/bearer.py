"""The bearer token that guards ``toka mcp serve --http``, and the gate that checks it.

Without it, any local process (or a web page the browser lets through) could act as
the served principal. The gate is a plain ASGI wrapper: every HTTP request must carry
``Authorization: Bearer <token>`` or is answered 401 before the MCP app sees it.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Any

import msgspec

from toka.core.errors import InvalidInput

MIN_TOKEN_CHARS = 16
ENV_VAR = "TOKA_MCP_TOKEN"


class BearerToken(msgspec.Struct, frozen=True):
    """The token, and whether it was made for this start (then it is shown once)."""

    value: str
    generated: bool


def bearer_token(token_file: str | None, env_value: str | None) -> BearerToken:
    """The token from ``token_file``, else from ``$TOKA_MCP_TOKEN``, else a new random one."""
    if token_file is not None:
        try:
            raw = Path(token_file).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"--token-file {token_file}: cannot read it ({exc})") from None
        return BearerToken(_checked(raw.strip(), f"--token-file {token_file}"), False)
    if env_value:
        return BearerToken(_checked(env_value.strip(), ENV_VAR), False)
    return BearerToken(secrets.token_urlsafe(32), True)


def _checked(token: str, source: str) -> str:
    if len(token) < MIN_TOKEN_CHARS:
        raise InvalidInput(f"{source}: a bearer token needs at least {MIN_TOKEN_CHARS} characters")
    if not token.isascii() or not token.isprintable() or " " in token:
        raise InvalidInput(f"{source}: a bearer token is printable ASCII without spaces")
    return token


class BearerGate:
    """ASGI middleware: HTTP requests without the right bearer token get 401."""

    def __init__(self, app: Any, token: str):
        self.app = app
        self._expected = token.encode("ascii")

    def allows(self, authorization: bytes | None) -> bool:
        scheme, _, presented = (authorization or b"").partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(presented.strip(), self._expected)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if not self.allows(headers.get(b"authorization")):
                await _unauthorized(send)
                return
        await self.app(scope, receive, send)


async def _unauthorized(send: Any) -> None:
    body = b'{"error": "invalid_token", "error_description": "a bearer token is required"}'
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="toka", error="invalid_token"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
