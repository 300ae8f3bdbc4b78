"""One HTTP exchange, and the redirects the caller allows, under a per-host capability.

The kernel has checked the capability derived from the first URL before ``fetch`` runs.
What ``fetch`` guarantees on top, and why:

- **No inward reach by accident.** Every hop's host is resolved, and if any address it
  resolves to is not publicly routable (loopback, private, link-local such as the cloud
  metadata address 169.254.169.254, CGNAT, unspecified, multicast, and IPv6 forms wrapping
  those) the hop is refused unless ``host_allowed(host, port)`` says this host was granted
  inward. The check is on the resolved address, so a public-looking name that points
  inside is caught.
- **The checked address is the one connected to.** The name is resolved once per hop and
  the connection goes to that address; a second lookup could be answered differently
  (DNS rebinding).
- **No redirect is followed unchecked.** With ``max_redirects == 0`` a 3xx is the answer.
  Otherwise each next hop is put to ``check_hop(method, url)`` (the kernel's capability
  check), and headers that carry secrets are dropped when the origin changes, so a
  credential meant for one host never reaches another.
- **The whole call is bounded.** ``timeout_s`` covers resolution, connects, TLS, every hop
  and every body; the caller gets control back at the deadline even if a resolver hangs.
- **Bodies are capped.** A body over ``max_bytes`` fails as ``too_large`` without being
  buffered.

Any status (404, 500) is an answer. Everything that stops the call is a ``FetchError`` whose
``hops`` are the exchanges that completed first, so the caller can record what happened.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit

from toka.core.errors import TokaError
from toka.core.tools.effects import _http_wire as wire

# Headers that carry a credential: dropped when a redirect leaves the origin, as browsers do.
SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

# The connection is this module's: its framing and hop-by-hop headers are not the caller's
# to set (a caller's Content-Length or Transfer-Encoding could desynchronise the request).
_TRANSPORT_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)
# Headers that describe the body: they go when a redirect turns the request into a GET.
_BODY_HEADERS = frozenset(
    {"content-type", "content-encoding", "content-language", "content-location"}
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_HOST_NAME = re.compile(r"[a-z0-9_.-]+\Z")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# IPv6 prefixes that carry an IPv4 address a gateway will reach: judge the IPv4 inside.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class Hop(NamedTuple):
    """One request made and its answer."""

    method: str
    url: str  # absolute, as requested; the fragment is never sent
    address: str  # the IP address connected to
    status: int
    headers: dict[str, str]  # content-type, content-length, location, etag, last-modified, date
    body: bytes
    elapsed_ms: float


class Fetched(NamedTuple):
    """Every hop of a call, in order; the last one is the answer."""

    hops: tuple[Hop, ...]

    @property
    def answer(self) -> Hop:
        return self.hops[-1]


class FetchError(TokaError):
    """A call that stopped before an answer.

    ``kind`` is ``refused`` (an inward address not granted, a redirect not granted or past the
    limit, a bad URL, method or header), ``timeout`` (the whole call's deadline passed),
    ``too_large`` (a body over the cap) or ``network`` (resolution, connection, TLS, a
    malformed answer). ``hops`` are the exchanges completed before it stopped.
    """

    def __init__(self, kind: str, message: str, hops: Sequence[Hop] = ()):
        super().__init__(message)
        self.kind = kind
        self.code = kind
        self.hops = tuple(hops)


class _Url(NamedTuple):
    scheme: str
    host: str  # lowercased; an IPv6 literal without brackets
    port: int
    target: str  # the path and query, as sent on the request line
    url: str  # absolute, without the fragment

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


def fetch(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None,
    timeout_s: float,
    max_bytes: int,
    max_redirects: int,
    check_hop: Callable[[str, str], str | None],
    host_allowed: Callable[[str, int], bool],
    keep_headers_same_origin: frozenset[str] = frozenset(),
    resolve: Callable[[str, int], Sequence[str]] | None = None,
) -> Fetched:
    """Perform ``method url`` and the redirects allowed, and return every hop.

    ``check_hop(method, url)`` is asked about each redirect's next hop and returns a refusal
    reason or None. ``host_allowed(host, port)`` says whether a host resolving to a
    non-public address was granted. ``keep_headers_same_origin`` names caller headers that,
    like ``Authorization`` and ``Cookie``, are dropped once a redirect changes the scheme,
    host or port. ``resolve(host, port)`` returns addresses (default: ``getaddrinfo``).
    Callbacks run on the calling thread, never after ``fetch`` has returned.
    """
    if timeout_s <= 0 or max_bytes < 0 or max_redirects < 0:
        raise ValueError("timeout_s must be positive; max_bytes and max_redirects not negative")
    deadline = time.monotonic() + timeout_s
    if not _TOKEN.match(method):
        raise FetchError("refused", f"method {method!r} is not an HTTP token")
    current = _parse_url(url)
    outgoing = _checked_headers(headers)
    secret = SECRET_HEADERS | {name.lower() for name in keep_headers_same_origin}
    exchanges: list[_Exchange] = []
    while True:
        last = _hop(
            method, current, outgoing, body, deadline, max_bytes, host_allowed, resolve, exchanges
        )
        exchanges.append(last)
        done = tuple(e.hop for e in exchanges)
        if max_redirects == 0 or last.hop.status not in _REDIRECTS or last.location is None:
            return Fetched(done)
        if len(exchanges) > max_redirects:
            raise FetchError(
                "refused", f"too many redirects: more than {max_redirects} from {_shown(url)}", done
            )
        try:
            following = _parse_url(urljoin(current.url, last.location))
        except FetchError as exc:
            raise FetchError(
                "refused", f"redirect from {_shown(current.url)}: {exc}", done
            ) from exc
        following_method = _redirected_method(method, last.hop.status)
        reason = check_hop(following_method, following.url)
        if reason is not None:
            raise FetchError(
                "refused",
                f"redirect to {following_method} {_shown(following.url)} refused: {reason}",
                done,
            )
        if following.origin != current.origin:
            outgoing = [(n, v) for n, v in outgoing if n.lower() not in secret]
        if following_method != method:
            body = None
            outgoing = [(n, v) for n, v in outgoing if n.lower() not in _BODY_HEADERS]
        method, current = following_method, following


def is_public_address(address: str) -> bool:
    """Whether ``address`` is globally routable, judging an IPv4 wrapped in IPv6 by itself."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_address(str(ip.ipv4_mapped))
        if any(ip in net for net in _NAT64):
            return is_public_address(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
        if ip in _IPV4_COMPATIBLE:
            return False
        if ip.sixtofour is not None and not is_public_address(str(ip.sixtofour)):
            return False
    # ``is_global`` alone calls multicast and some reserved IPv6 blocks global in 3.11.
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


class _Exchange(NamedTuple):
    """A hop and the raw Location its answer carried (the hop keeps a printable copy)."""

    hop: Hop
    location: str | None


def _hop(
    method: str,
    url: _Url,
    headers: Sequence[tuple[str, str]],
    body: bytes | None,
    deadline: float,
    max_bytes: int,
    host_allowed: Callable[[str, int], bool],
    resolve: Callable[[str, int], Sequence[str]] | None,
    before: Sequence[_Exchange],
) -> _Exchange:
    """One request: resolve, guard, exchange. Failures carry the hops done before it."""
    started = time.monotonic()
    done = tuple(e.hop for e in before)
    try:
        addresses = _literal(url.host)
        if addresses is None:
            lookup = resolve or wire.resolve_host
            addresses = wire.run_bounded(
                deadline, lambda step: wire.resolve_in(step, lookup, url.host, url.port)
            )
        inward = [a for a in addresses if not _is_public(a)]
        if inward and not host_allowed(url.host, url.port):
            raise FetchError(
                "refused",
                f"{url.host} resolves to {inward[0]}, which is not a public address, "
                f"and {url.host}:{url.port} is not granted inward access",
                done,
            )
        reply = wire.run_bounded(
            deadline,
            lambda step: wire.exchange(
                step,
                scheme=url.scheme,
                host=url.host,
                port=url.port,
                addresses=addresses,
                method=method,
                target=url.target,
                headers=headers,
                body=body,
                deadline=deadline,
                max_bytes=max_bytes,
            ),
        )
    except wire.WireError as exc:
        message = f"{method} {_shown(url.url)}: {exc.message}"
        if exc.kind == "timeout":
            message = f"{method} {_shown(url.url)}: the call's deadline passed before an answer"
        raise FetchError(exc.kind, message, done) from exc
    hop = Hop(
        method=method,
        url=url.url,
        address=reply.address,
        status=reply.status,
        headers=reply.headers,
        body=reply.body,
        elapsed_ms=(time.monotonic() - started) * 1000.0,
    )
    return _Exchange(hop, reply.location)


def _literal(host: str) -> list[str] | None:
    """An IP literal is its own address: no lookup."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return None


def _is_public(address: str) -> bool:
    try:
        return is_public_address(address)
    except ValueError:
        return False  # an address the resolver returned but ipaddress cannot read: not trusted


def _redirected_method(method: str, status: int) -> str:
    """The next hop's method, as browsers and RFC 9110 section 15.4 have it."""
    if status == 303 and method not in ("GET", "HEAD"):
        return "GET"
    if status in (301, 302) and method == "POST":
        return "GET"
    return method


def _parse_url(url: str) -> _Url:
    """A URL this module will request, or ``refused``: http(s), a host, no userinfo."""
    if not isinstance(url, str) or not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise FetchError(
            "refused",
            "the URL must be ASCII without spaces or control characters "
            "(percent-encode the path, write the host in punycode)",
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError("refused", f"malformed URL {_shown(url)}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise FetchError("refused", f"scheme {scheme!r} is not http or https")
    if "@" in parts.netloc:
        raise FetchError("refused", "a URL may not carry user information (user:password@)")
    host = parts.hostname or ""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise FetchError("refused", f"malformed IPv6 host in {_shown(url)}") from exc
        netloc_host = f"[{host}]"
    elif _HOST_NAME.match(host):
        netloc_host = host
    else:
        raise FetchError("refused", f"no usable host in {_shown(url)}")
    if port == 0:
        raise FetchError("refused", f"port 0 in {_shown(url)}")
    default = _DEFAULT_PORTS[scheme]
    port = port or default
    netloc = netloc_host if port == default else f"{netloc_host}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Url(scheme, host, port, target, f"{scheme}://{netloc}{target}")


def _checked_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The caller's headers, or ``refused``. Messages name a header, never its value."""
    checked: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise FetchError("refused", f"header name {name!r} is not an HTTP token")
        lowered = name.lower()
        if lowered in _TRANSPORT_HEADERS:
            raise FetchError("refused", f"header {name} is set by the transport, not the caller")
        if lowered in seen:
            raise FetchError("refused", f"header {name} is given twice")
        seen.add(lowered)
        if not isinstance(value, str) or not _is_header_value(value):
            raise FetchError(
                "refused",
                f"header {name} has a value with CR, LF, NUL or another control character, "
                "or a character outside Latin-1",
            )
        checked.append((name, value))
    return checked


def _is_header_value(value: str) -> bool:
    # A CR or LF would start a header of the server's choosing; Latin-1 is what the wire
    # carries (http.client encodes with it); horizontal tab is the one control allowed.
    return all(c == "\t" or (" " <= c <= "\xff" and c != "\x7f") for c in value)


def _shown(url: str) -> str:
    """A URL for a message: the query may carry a secret, so only its presence is shown."""
    head, sep, _ = url.partition("?")
    head = head.partition("#")[0]
    return f"{head}?…" if sep else head
