"""Where Toka's own servers listen (`toka mcp serve --http`, `toka web`, `toka metrics
serve`): ``HOST:PORT`` as typed, whether a host is loopback, a listening socket."""

from __future__ import annotations

import ipaddress
import socket

from toka.core.errors import InvalidInput, TokaError


def is_loopback(host: str) -> bool:
    """``localhost``, or a loopback IP address (brackets and an IPv6 scope allowed)."""
    host = host.removeprefix("[").removesuffix("]").split("%")[0]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_for_url(host: str) -> str:
    """``host`` as written in a URL: an IPv6 literal in brackets, names in lower case."""
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host.lower()


def parse_host_port(
    text: str, option: str, *, default_host: str | None = None, example: str = ""
) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT`` (PORT 0: any free one) as ``(host, port)``; with
    ``default_host``, ``PORT`` and ``:PORT`` too. A bad one is refused naming ``option``."""
    host, sep, port = text.rpartition(":")
    if not sep and default_host is not None:
        host, port = "", text
    host = host.removeprefix("[").removesuffix("]") or (default_host or "")
    if not host or not port.isdecimal() or int(port) > 65535:
        form = "[HOST:]PORT with PORT" if default_host is not None else "HOST:PORT (PORT"
        close = "" if default_host is not None else ")"
        raise InvalidInput(
            f"{option} {text!r}: expected {form} in 0..65535{close}"
            + (f", e.g. {example}" if example else "")
        )
    return host, int(port)


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (port 0: any free port; ask the socket which)."""
    sock = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise TokaError(
            f"cannot listen on {host_for_url(host)}:{port}: {exc.strerror or exc}"
        ) from None
    return sock
