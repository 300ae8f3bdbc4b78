"""Local servers for the HTTP effect's tests (tests/test_effects_http.py): one that records
what it received, raw sockets for misbehaving ones, and a throwaway certificate authority."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

import pytest

from toka.core.tools.effects.http import FetchError, Hop, fetch


class Received(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    """Routes: /echo (200), /missing (404), /to?url=U&status=S and /loop (redirects), /big,
    /endless (a chunked body without end)."""

    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.received.append(  # type: ignore[attr-defined]
            Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        route, query = urlsplit(self.path).path, parse_qs(urlsplit(self.path).query)
        if route == "/to":
            self._answer(int(query["status"][0]), b"", location=query["url"][0])
        elif route == "/loop":
            self._answer(302, b"", location="/loop")
        elif route == "/missing":
            self._answer(404, b"no such thing")
        elif route == "/big":
            self._answer(200, b"x" * 10_000)
        elif route == "/endless":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            with contextlib.suppress(OSError):
                while True:
                    self.wfile.write(b"4000\r\n" + b"y" * 0x4000 + b"\r\n")
        else:
            self._answer(200, b"hello " + body, etag='"v1"')

    do_GET = do_POST = do_PUT = _handle

    def _answer(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Server-Secret", "not recorded")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Server(NamedTuple):
    port: int
    received: list[Received]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def allows(self, host: str, port: int) -> bool:
        return (host, port) == ("127.0.0.1", self.port)


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler] | None = None) -> Iterator[Server]:
    """A recording server on 127.0.0.1 (routes: see ``_Handler``, or a subclass of it),
    for the ``with`` block."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler or _Handler)
    httpd.received = []  # type: ignore[attr-defined]
    # A short poll so that ``shutdown`` at the end of each test returns quickly.
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield Server(httpd.server_address[1], httpd.received)  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextlib.contextmanager
def raw_server(behave: Callable[[socket.socket], None], read_request: bool = True) -> Iterator[int]:
    """A misbehaving server: ``behave(conn)`` runs for each connection; yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn, contextlib.suppress(OSError):
                    if read_request:
                        conn.recv(65536)
                    behave(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept, which a close alone would not
        listener.close()


def fetch_hops(url: str, **overrides) -> list[Hop]:
    """``fetch`` with permissive defaults; returns the hops."""
    args = dict(
        headers={},
        body=None,
        timeout_s=5.0,
        max_bytes=1 << 20,
        max_redirects=0,
        check_hop=lambda method, url: None,
        host_allowed=lambda host, port: host == "127.0.0.1",
    )
    args.update(overrides)
    method = args.pop("method", "GET")
    return list(fetch(method, url, **args).hops)


def fetch_fails(kind: str, url: str, **overrides) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch_hops(url, **overrides)
    assert caught.value.kind == kind, caught.value.message
    return caught.value


def silent(conn: socket.socket) -> None:
    """Read the request, then say nothing."""
    time.sleep(5)


def drip(head: bytes) -> Callable[[socket.socket], None]:
    """Send ``head``, then one byte every 0.2 s for 20 s."""

    def behave(conn: socket.socket) -> None:
        conn.sendall(head)
        for _ in range(100):
            time.sleep(0.2)
            conn.sendall(b"z")

    return behave


class Certs(NamedTuple):
    ca: Path
    cert: Path
    key: Path


def make_certs(d: Path) -> Certs:
    """A throwaway CA, and a leaf certificate it signed for ``localhost`` (a name, no IP)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=toka test")
    openssl("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost")
    (d / "ext").write_text("subjectAltName=DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "ext",
    )  # fmt: skip
    return Certs(d / "ca.pem", d / "leaf.pem", d / "leaf.key")
