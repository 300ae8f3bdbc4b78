"""Places in the world as capability resources, derived by the kernel from a call's arguments.

Pure functions: no I/O, no clock, the same input gives the same resource. What they
guarantee about every resource they return:

- it never holds a wildcard: every byte outside ``A-Z a-z 0-9 . _ ~ -`` of a name is
  percent-encoded (``*``, ``%``, ``/``, ``:`` and spaces included), so a derived resource
  can only be covered, never cover;
- one place has one spelling: paths are refused, not folded, when they hold ``.``,
  ``..`` or empty segments; hosts are lowercased and IDNA-encoded; ports are explicit;
  URL path escapes are decoded and written again one canonical way;
- what is checked is what is used: ``CanonicalUrl.url()`` rebuilds the URL a fetcher must
  send from the same parts the resource is made of.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple
from urllib.parse import unquote_to_bytes, urlsplit

from toka.core.errors import InvalidOperation

FS_ACTIONS = ("fs.read", "fs.write", "fs.list", "fs.mount")
MOUNT_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}\Z")
MAX_PATH_BYTES = 4096
MAX_SEGMENT_BYTES = 255
MAX_URL_LEN = 8192
DEFAULT_PORTS = {"http": 80, "https": 443}

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")
_METHOD_RE = re.compile(r"^[A-Z]{1,16}\Z")
_PORT_RE = re.compile(r"^[0-9]{1,5}\Z")
_LABEL_RE = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
# A last label that is a number (decimal or 0x-hex) makes WHATWG parsers and inet_aton read
# the host as an IPv4 address (``2130706433``, ``127.1``, ``0x7f.0.0.1``): such a host must
# be a canonical dotted quad, or it is refused rather than taken for a name.
_NUMERIC_LABEL_RE = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)\Z")
# Spaces, controls and backslashes, anywhere in a URL: parsers disagree on what they mean
# (WHATWG reads ``\`` as ``/``), so what is checked could differ from what is fetched.
_URL_FORBIDDEN_RE = re.compile(r"[\x00-\x20\x7f\\]")
_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _utf8(text: str, what: str) -> bytes:
    # surrogateescape, as os.fsencode does: a file name that is not UTF-8 keeps its bytes.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidOperation(f"{what} {text!r} is not encodable as UTF-8") from None


def _encode_bytes(data: bytes) -> str:
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in data)


def encode_segment(text: str) -> str:
    """``text`` as one resource segment: UTF-8 bytes outside ``[A-Za-z0-9._~-]`` become
    ``%XX`` (uppercase hex). The result never holds ``*``, ``/``, ``:`` or a bare ``%``."""
    return _encode_bytes(_utf8(text, "name"))


def check_mount_name(mount: str) -> str:
    """``mount`` if it is a mount name (``MOUNT_NAME_RE``), else InvalidOperation."""
    if not isinstance(mount, str) or not MOUNT_NAME_RE.match(mount):
        raise InvalidOperation(
            f"mount name {mount!r} is not a lowercase letter then up to 63 of a-z 0-9 _ -"
        )
    return mount


def path_segments(path: str) -> list[str]:
    """The segments of ``path``, relative to a mount; ``""`` is the mount's root (``[]``).

    Refused (InvalidOperation), never folded: absolute paths, empty segments, ``.`` and
    ``..``, NUL bytes, over 4096 bytes in all or 255 bytes in one segment.
    """
    if not isinstance(path, str):
        raise InvalidOperation(f"path {path!r} is not a string")
    if path == "":
        return []
    if "\x00" in path:
        raise InvalidOperation(f"path {path!r} holds a NUL byte")
    if len(_utf8(path, "path")) > MAX_PATH_BYTES:
        raise InvalidOperation(f"path {path!r} is over {MAX_PATH_BYTES} bytes")
    if path.startswith("/"):
        raise InvalidOperation(f"path {path!r} is absolute; paths are relative to a mount")
    segments = path.split("/")
    for segment in segments:
        if segment == "":
            raise InvalidOperation(f"path {path!r} has an empty segment (doubled or trailing '/')")
        if segment in (".", ".."):
            raise InvalidOperation(f"path {path!r} has a {segment!r} segment")
        if len(_utf8(segment, "path segment")) > MAX_SEGMENT_BYTES:
            raise InvalidOperation(
                f"path {path!r} has a segment over {MAX_SEGMENT_BYTES} bytes: {segment!r}"
            )
    return segments


def fs_resource(action: str, mount: str, path: str) -> str:
    """The capability to do ``action`` on ``path`` in ``mount``:
    ``fs.read:mount/ws/docs/a%20b.md``; the mount's root is ``fs.read:mount/ws``."""
    if action not in FS_ACTIONS:
        raise InvalidOperation(f"{action!r} is not a file action ({', '.join(FS_ACTIONS)})")
    parts = ["mount", check_mount_name(mount), *map(encode_segment, path_segments(path))]
    return f"{action}:{'/'.join(parts)}"


def _ipv6_text(address: ipaddress.IPv6Address) -> str:
    # RFC 5952 written out here, all hex: ``str()`` of an IPv4-mapped address changed
    # between Python versions, and a resource must not.
    value = int(address)
    hextets = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    best_start, best_len, start = -1, 1, None
    for i, word in enumerate([*hextets, 1]):
        if word == 0 and start is None:
            start = i
        elif word != 0 and start is not None:
            if i - start > best_len:
                best_start, best_len = start, i - start
            start = None
    words = [f"{word:x}" for word in hextets]
    if best_start < 0:
        return ":".join(words)
    head, tail = words[:best_start], words[best_start + best_len :]
    return ":".join(head) + "::" + ":".join(tail)


def canonical_host(host: str) -> str:
    """``host`` in its one spelling: a lowercase ASCII (IDNA) name, a dotted-quad IPv4
    address, or a compressed lowercase IPv6 address without brackets."""
    if not isinstance(host, str) or host == "":
        raise InvalidOperation(f"host {host!r} is empty")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in bare:
        if "%" in bare:
            raise InvalidOperation(f"host {host!r} has an IPv6 zone, which is not allowed")
        try:
            return _ipv6_text(ipaddress.IPv6Address(bare))
        except ValueError:
            raise InvalidOperation(f"host {host!r} is not an IPv6 address") from None
    if bare != host:
        raise InvalidOperation(f"host {host!r}: brackets hold only IPv6 addresses")
    try:
        name = host.lower().encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidOperation(f"host {host!r} is not a valid domain name (IDNA)") from None
    labels = name.split(".")
    if _NUMERIC_LABEL_RE.match(labels[-1]):
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            raise InvalidOperation(
                f"host {host!r} looks like an IPv4 address but is not a dotted quad "
                "(like 192.0.2.1)"
            ) from None
    if len(name) > 253 or not all(_LABEL_RE.match(label) for label in labels):
        raise InvalidOperation(
            f"host {host!r} is not a domain name (labels of a-z 0-9 _ -, no empty label)"
        )
    return name


def _check_port(port: object, where: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidOperation(f"port {port!r} of {where!r} is not 1 to 65535")
    return port


class CanonicalUrl(NamedTuple):
    """An http(s) URL in its one spelling. ``path`` holds canonically encoded segments;
    ``query`` is the raw query (``None`` when there is no ``?``), never part of a resource;
    ``trailing_slash`` keeps a dropped final ``/`` for ``url()`` only."""

    scheme: str
    host: str
    port: int
    path: tuple[str, ...]
    query: str | None
    trailing_slash: bool = False

    def url(self) -> str:
        """The absolute URL to send: canonical host, path and port (the default port
        left out), the query as given; never userinfo or a fragment."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        path = "/" + "/".join(self.path)
        if self.trailing_slash and self.path:
            path += "/"
        query = "" if self.query is None else f"?{self.query}"
        return f"{self.scheme}://{host}{port}{path}{query}"

    def without_query(self) -> str:
        """The URL as an effect record keeps it: the query may carry secrets."""
        return self._replace(query=None).url()


def _url_path(raw: str, url: str) -> tuple[tuple[str, ...], bool]:
    if raw in ("", "/"):
        return (), False
    trailing = raw.endswith("/")
    segments = raw[1 : -1 if trailing else None].split("/")
    out = []
    for segment in segments:
        if segment == "":
            raise InvalidOperation(f"URL {url!r} has an empty path segment")
        if _ESCAPE_RE.search(segment):
            raise InvalidOperation(f"URL {url!r} has a '%' that is not an escape like %20")
        data = unquote_to_bytes(segment)
        # A segment that decodes to '.', '..' or holds a separator would mean something
        # else to a server that decodes before it routes (``..%2F`` climbs there).
        if data in (b".", b".."):
            raise InvalidOperation(f"URL {url!r} has a {segment!r} segment")
        if b"/" in data or b"\\" in data:
            raise InvalidOperation(f"URL {url!r} has an escaped separator in {segment!r}")
        out.append(_encode_bytes(data))
    return tuple(out), trailing


def parse_url(url: str) -> CanonicalUrl:
    """``url`` parsed and canonicalized; the fragment is dropped (it is never sent).

    Refused (InvalidOperation): schemes other than http and https, userinfo, a missing
    host, a bad port, spaces, control characters or backslashes, ``.``/``..`` or empty
    path segments (a single trailing ``/`` is allowed and dropped from the segments).
    """
    if not isinstance(url, str) or len(url) > MAX_URL_LEN:
        raise InvalidOperation(f"URL {url!r} is not a string of at most {MAX_URL_LEN} characters")
    if _URL_FORBIDDEN_RE.search(url):
        raise InvalidOperation(f"URL {url!r} holds a space, a control character or a backslash")
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidOperation(f"URL {url!r} is not encodable as UTF-8") from None
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidOperation(f"URL {url!r} does not parse: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidOperation(f"URL {url!r}: scheme {parts.scheme!r} is not http or https")
    netloc = parts.netloc
    if "@" in netloc:
        raise InvalidOperation(f"URL {url!r} has userinfo (user@), which is not allowed")
    if netloc.startswith("["):
        end = netloc.find("]")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise InvalidOperation(f"URL {url!r} has a malformed IPv6 host")
    else:
        host, colon, port_text = netloc.partition(":")
        rest = colon + port_text
    if host == "":
        raise InvalidOperation(f"URL {url!r} has no host")
    port = DEFAULT_PORTS[scheme]
    if rest:
        if not _PORT_RE.match(rest[1:]):
            raise InvalidOperation(f"URL {url!r} has a bad port {rest[1:]!r}")
        port = _check_port(int(rest[1:]), url)
    path, trailing = _url_path(parts.path, url)
    query = parts.query if "?" in url.split("#", 1)[0] else None
    return CanonicalUrl(scheme, canonical_host(host), port, path, query, trailing)


def http_resource(method: str, url: CanonicalUrl | str) -> str:
    """The capability to send ``method`` to ``url``:
    ``net.http:GET/https/api.github.com/443/repos/o/r`` (the query is not part of it).
    ``method`` is case-sensitive: 1 to 16 uppercase letters."""
    if not isinstance(method, str) or not _METHOD_RE.match(method):
        raise InvalidOperation(f"HTTP method {method!r} is not 1 to 16 uppercase letters A-Z")
    canonical = url if isinstance(url, CanonicalUrl) else parse_url(url)
    parts = [method, canonical.scheme, encode_segment(canonical.host), str(canonical.port)]
    return f"net.http:{'/'.join([*parts, *canonical.path])}"


def host_resource(host: str, port: int) -> str:
    """The capability to reach ``host`` on ``port``: ``net.allow:host/<host>/<port>``,
    the host canonicalized as in URLs (IPv6 with or without brackets)."""
    return f"net.allow:host/{encode_segment(canonical_host(host))}/{_check_port(port, host)}"


# A secret's name in ``HOME/secrets/`` (only names travel in operations and events).
SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def secret_resource(name: str, host: str) -> str:
    """``secret.use:secret/<name>/<host>``: sending secret ``name`` to ``host`` (in a
    header of ``http-fetch``). A secret is bound to where it may go, so an agent that
    may reach its own server cannot send the operator's token there."""
    return f"secret.use:secret/{encode_segment(name)}/{encode_segment(canonical_host(host))}"
