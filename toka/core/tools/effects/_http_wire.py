"""The wire under ``http``: one request to a pinned address, every step against one deadline.

``http`` decides what may be asked and where; this module only moves bytes, and keeps three
promises about it:

- **It connects to the address it was given.** The connection classes override ``connect``
  so that ``http.client`` never looks the name up again: a second lookup could answer with
  an address nobody checked (DNS rebinding).
- **Nothing outlives the deadline.** Each step runs in a daemon thread (``run_bounded``); the
  caller stops waiting at the deadline and shuts the step's socket down, which wakes any
  blocked read or write. Every read also sets the socket's timeout to the time left, so a
  server dripping one byte at a time cannot stretch a step even without the caller's help.
- **A body is never buffered past its cap.** It is read at most ``max_bytes + 1`` bytes at a
  time, and a declared ``Content-Length`` over the cap is refused before any of it is read.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import io
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

_T = TypeVar("_T")

RECORDED_HEADERS = ("content-type", "content-length", "location", "etag", "last-modified", "date")
_CHUNK = 64 * 1024
# Methods whose request carries a body by definition: they get ``Content-Length: 0`` when
# the caller gives none, as http.client does, so a server never waits for a body.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class WireError(Exception):
    """One step failed; ``http`` turns it into a ``FetchError`` carrying the hops so far."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


class Reply(NamedTuple):
    """What one exchange brought back."""

    address: str
    status: int
    headers: dict[str, str]
    location: str | None  # raw, for the redirect check; ``headers`` holds it made printable
    body: bytes


class Step:
    """One piece of work in a worker thread, which the caller may abandon at the deadline.

    The caller's shutdown and the worker's close take the same lock: a socket closed by one
    thread while another still uses its descriptor could hit an unrelated file that reused
    the number, so only the worker closes, and never while the caller is shutting down.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._abandoned = False
        self._sock: socket.socket | None = None
        self.done = threading.Event()
        self.result: object = None
        self.error: Exception | None = None

    def adopt(self, sock: socket.socket) -> None:
        """Make ``sock`` the one the caller shuts down if it gives up."""
        with self._lock:
            self._sock = sock
            if self._abandoned:
                raise WireError("timeout", "abandoned at the deadline")

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            if self._sock is not None:
                # ``socket.socket.shutdown`` even for a TLS socket: SSLSocket.shutdown would
                # also clear its TLS state, which the worker may be using right now.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def finish(self, close: Callable[[], None]) -> None:
        """Run the worker's cleanup under the lock, so it never races the caller's shutdown."""
        with self._lock:
            self._sock = None
            with contextlib.suppress(OSError):
                close()


def run_bounded(deadline: float, work: Callable[[Step], _T]) -> _T:
    """``work(step)`` in a daemon thread; its result, or ``WireError("timeout")`` at the deadline.

    After the caller gives up the worker touches nothing but its own ``Step``: its result is
    dropped, and the caller's callbacks are never run from it.
    """
    step = Step()

    def run() -> None:
        try:
            step.result = work(step)
        except Exception as exc:
            step.error = exc
        finally:
            step.done.set()

    threading.Thread(target=run, name="toka-http", daemon=True).start()
    if not step.done.wait(max(0.0, deadline - time.monotonic())):
        step.abandon()
        raise WireError("timeout", "the deadline passed")
    if step.error is not None:
        raise step.error
    return step.result  # type: ignore[return-value]


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to for a TCP connection, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve_in(
    step: Step, resolve: Callable[[str, int], Sequence[str]], host: str, port: int
) -> list[str]:
    """``resolve`` with its failures as network errors (it runs in a worker: see ``run_bounded``)."""
    try:
        addresses = [str(a) for a in resolve(host, port)]
    except (OSError, UnicodeError) as exc:
        raise WireError("network", f"could not resolve {host}: {exc}") from exc
    if not addresses:
        raise WireError("network", f"{host} resolved to no address")
    return addresses


class _DeadlineReader(io.RawIOBase):
    """The socket as ``HTTPResponse`` reads it: each read may wait only for the time left."""

    def __init__(self, sock: socket.socket, deadline: float):
        super().__init__()
        self._sock = sock
        # ``makefile`` rather than ``recv_into`` on the socket: the socket's descriptor then
        # stays open until this reader closes, as http.client expects once it has handed the
        # socket over to the response.
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int | None:  # type: ignore[override]
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the deadline passed while reading")
        self._sock.settimeout(remaining)
        return self._raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineSocket:
    """What ``HTTPResponse`` is given instead of the socket: it only calls ``makefile``."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to addresses checked beforehand, never to a fresh lookup of the host."""

    def __init__(self, host: str, port: int, addresses: Sequence[str], step: Step, deadline: float):
        super().__init__(host, port)
        self._addresses = addresses
        self._step = step
        self._deadline = deadline
        self.address = ""

    def response_class(self, sock: socket.socket, method: str | None = None):  # type: ignore[override]
        return http.client.HTTPResponse(_DeadlineSocket(sock, self._deadline), method=method)

    def connect(self) -> None:
        failure: OSError | None = None
        for address in self._addresses:
            try:
                sock = socket.create_connection((address, self.port), _time_left(self._deadline))
            except TimeoutError:
                raise
            except OSError as exc:
                # Unreachable here (say, IPv6 without a route): try the next checked address.
                failure = exc
                continue
            self.sock = sock
            self.address = address
            self._step.adopt(sock)
            # Headers and body leave in two writes; without this, Nagle's algorithm and the
            # peer's delayed ACK hold the body back.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return
        assert failure is not None
        raise failure


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """TLS over the pinned connection; the certificate is verified for the URL's host name."""

    default_port = http.client.HTTPS_PORT

    def connect(self) -> None:
        super().connect()
        tls = _tls_context().wrap_socket(
            self.sock, server_hostname=self.host, do_handshake_on_connect=False
        )
        self.sock = tls
        self._step.adopt(tls)  # adopted before the handshake so a stalled one can be woken
        tls.settimeout(_time_left(self._deadline))
        tls.do_handshake()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The system's trust store with hostname checks; built once, on the first https call."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


def _time_left(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the deadline passed")
    return remaining


def exchange(
    step: Step,
    *,
    scheme: str,
    host: str,
    port: int,
    addresses: Sequence[str],
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes | None,
    deadline: float,
    max_bytes: int,
) -> Reply:
    """Send one request to the first reachable address in ``addresses`` and read the answer.

    Runs in a worker (``run_bounded``). Any status is a reply; failures are ``WireError``.
    """
    cls = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    conn = cls(host, port, addresses, step, deadline)
    response: http.client.HTTPResponse | None = None
    try:
        names = {name.lower() for name, _ in headers}
        conn.putrequest(method, target, skip_accept_encoding="accept-encoding" in names)
        for name, value in headers:
            conn.putheader(name, value)
        conn.putheader("Connection", "close")
        if body is not None or method in _BODY_METHODS:
            conn.putheader("Content-Length", str(len(body or b"")))
        conn.connect()
        conn.sock.settimeout(_time_left(deadline))
        conn.endheaders(body)
        response = conn.getresponse()
        if response.length is not None and response.length > max_bytes:
            raise WireError(
                "too_large", f"the answer declares {response.length} bytes, over {max_bytes}"
            )
        return Reply(
            address=conn.address,
            status=response.status,
            headers=_recorded_headers(response),
            location=response.getheader("location"),
            body=_read_capped(response, max_bytes),
        )
    except WireError:
        raise
    except TimeoutError as exc:
        raise WireError("timeout", "the deadline passed") from exc
    except ssl.SSLError as exc:  # before OSError: SSLError is one
        raise WireError("network", f"TLS with {host} failed: {exc}") from exc
    except http.client.HTTPException as exc:
        raise WireError("network", f"malformed answer from {host}: {exc!r}") from exc
    except OSError as exc:
        raise WireError("network", f"connection to {host} port {port} failed: {exc}") from exc
    finally:
        step.finish(lambda: _close(conn, response))


def _close(conn: http.client.HTTPConnection, response: http.client.HTTPResponse | None) -> None:
    if response is not None:
        response.close()
    conn.close()


def _read_capped(response: http.client.HTTPResponse, max_bytes: int) -> bytes:
    """The body, or ``too_large`` as soon as one byte past ``max_bytes`` has arrived."""
    parts: list[bytes] = []
    total = 0
    while True:
        part = response.read(min(_CHUNK, max_bytes + 1 - total))
        if not part:
            return b"".join(parts)
        total += len(part)
        if total > max_bytes:
            raise WireError("too_large", f"the answer's body exceeds {max_bytes} bytes")
        parts.append(part)


def _recorded_headers(response: http.client.HTTPResponse) -> dict[str, str]:
    """The headers worth recording, as printable text: a server's bytes are data, not control."""
    recorded = {}
    for name in RECORDED_HEADERS:
        value = response.getheader(name)
        if value is not None:
            recorded[name] = "".join(c for c in value if c.isprintable())
    return recorded
