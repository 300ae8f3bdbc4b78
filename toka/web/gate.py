"""Who may reach the console: the per-start token, its cookie, the Origin and the Host.

textual-serve checks nothing, and a page on another port of the same host (same site, so
``SameSite`` does not help) can open its websocket. The gate is one aiohttp middleware:

* ``GET /?token=T`` with the right token (compared in constant time) sets the cookie and
  redirects to ``/``, so the token leaves the address bar and the history;
* every other route but the static assets needs the cookie;
* the ``Host`` header must be the bound address or the public host (DNS rebinding);
* the websocket also needs ``Origin`` equal to the public origin, exactly.

Every refusal is a 403 with a specific reason; pages are never cached or framed.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from toka.web.address import PublicAddress

COOKIE = "toka_console"
STATIC_PREFIX = "/static/"
WEBSOCKET_PATH = "/ws"

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token() -> str:
    """A fresh access token for one start of ``toka web``."""
    return secrets.token_urlsafe(32)


def same_secret(given: str, token: str) -> bool:
    """Constant-time comparison (any text: a non-ASCII guess is just wrong)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode())


def content_security_policy(public: PublicAddress) -> str:
    """Scripts and styles from the console's own static files; the websocket only to the
    console; never inside a frame."""
    ws_origin = ("wss" if public.secure else "ws") + public.origin[public.origin.index(":") :]
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            # xterm.js adds <style> elements for its theme and cell sizes.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            f"connect-src {ws_origin}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


class Gate:
    """The access rules of one server start: its token, public address and bound hosts."""

    def __init__(self, token: str, public: PublicAddress, bound_hosts: set[str]) -> None:
        self.token = token
        self.public = public
        self.hosts = {public.host.lower(), *(h.lower() for h in bound_hosts)}
        self.page_headers = {
            **PAGE_HEADERS,
            "Content-Security-Policy": content_security_policy(public),
        }

    def refusal(self, request: web.Request) -> str | None:
        """Why ``request`` may not pass, or None. The token exchange is not decided here."""
        if request.host.lower() not in self.hosts:
            return "unexpected Host header: open the console at the URL `toka web` printed"
        if request.path.startswith(STATIC_PREFIX):
            return None
        cookie = request.cookies.get(COOKIE)
        if cookie is None:
            return "no access: open the URL with ?token= that `toka web` printed at start"
        if not same_secret(cookie, self.token):
            return "no access: the console cookie is not this server's (it restarted?); open the new URL"
        if request.path == WEBSOCKET_PATH:
            origin = request.headers.get("Origin")
            if origin is None:
                return "websocket refused: no Origin header"
            if origin != self.public.origin:
                return "websocket refused: it comes from another origin than the console's"
        return None

    def exchange(self, given: str) -> web.Response:
        """``GET /?token=``: the cookie and a redirect to ``/``, or a 403."""
        if not same_secret(given, self.token):
            return web.Response(status=403, text="wrong token: use the URL `toka web` printed")
        response = web.Response(status=302, headers={"Location": "/"})
        response.set_cookie(
            COOKIE,
            self.token,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.public.secure,
        )
        return response

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/" and "token" in request.query and request.host.lower() in self.hosts:
            return self.exchange(request.query["token"])
        reason = self.refusal(request)
        if reason is not None:
            return web.Response(status=403, text=reason)
        return await handler(request)

    async def add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """``on_response_prepare``: every page, refusal and the websocket handshake are
        never cached, framed or referred; static assets only are cacheable."""
        if request.path.startswith(STATIC_PREFIX):
            response.headers["X-Content-Type-Options"] = "nosniff"
        else:
            response.headers.update(self.page_headers)
