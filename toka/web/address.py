"""Where the console is served and where the browser reaches it: the checked public URL."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

from toka.core.endpoints import host_for_url
from toka.core.errors import InvalidInput


class PublicAddress(NamedTuple):
    """The address a browser uses: its origin (``scheme://host[:port]``), the ``Host``
    header it sends, and whether it is https (cookie ``Secure``, websocket ``wss``)."""

    origin: str
    host: str
    secure: bool


DEFAULT_PORTS = {"http": 80, "https": 443}


def netloc(scheme: str, host: str, port: int) -> str:
    """``host[:port]`` with the scheme's default port left out, as browsers send it."""
    shown = host_for_url(host)
    return shown if DEFAULT_PORTS[scheme] == port else f"{shown}:{port}"


def bound_address(host: str, port: int) -> PublicAddress:
    """The public address when there is no ``--public-url``: the bound one, over http."""
    where = netloc("http", host, port)
    return PublicAddress(origin=f"http://{where}", host=where, secure=False)


def parse_public_url(url: str) -> PublicAddress:
    """``--public-url``: http(s), a host, nothing else. The console has no base path
    (textual-serve serves at ``/``), so a path, query or fragment is refused by name."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"--public-url {url!r} is not a URL: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise InvalidInput(f"--public-url {url!r} must start with http:// or https://")
    if not parts.hostname:
        raise InvalidInput(f"--public-url {url!r} names no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(f"--public-url {url!r} must not carry a user name or password")
    if parts.path not in ("", "/"):
        raise InvalidInput(
            f"--public-url {url!r} has a path: the console is served at / only, "
            "so give the proxy a host name of its own"
        )
    if parts.query or parts.fragment:
        raise InvalidInput(f"--public-url {url!r} must not have a query or fragment")
    where = netloc(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme])
    return PublicAddress(
        origin=f"{parts.scheme}://{where}", host=where, secure=parts.scheme == "https"
    )
