"""The HTTP effect's guarantees, each against a real local server (loopback only).

Wall-clock bounds here check behaviour (a call returns near its deadline instead of hanging),
with a margin of seconds over a sub-second deadline; they measure nothing.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
from http_support import (
    Certs,
    Server,
    drip,
    fetch_fails,
    fetch_hops,
    make_certs,
    raw_server,
    serving,
    silent,
)

from toka.core.tools.effects import _http_wire
from toka.core.tools.effects.http import FetchError, is_public_address


@pytest.fixture
def server() -> Iterator[Server]:
    with serving() as s:
        yield s


@pytest.fixture
def other() -> Iterator[Server]:
    """A second server: another port, so another origin."""
    with serving() as s:
        yield s


# Round trips


def test_get_round_trip_sends_headers_and_records_the_answer(server: Server) -> None:
    (hop,) = fetch_hops(server.url("/echo?x=1#frag"), headers={"X-Probe": "1"})
    (got,) = server.received
    assert (got.method, got.path, got.headers["x-probe"]) == ("GET", "/echo?x=1", "1")
    assert got.headers["connection"] == "close" and "content-length" not in got.headers
    assert got.headers["host"] == f"127.0.0.1:{server.port}"
    assert (hop.method, hop.url, hop.address) == ("GET", server.url("/echo?x=1"), "127.0.0.1")
    assert (hop.status, hop.body) == (200, b"hello ")
    assert set(hop.headers) == {"content-type", "content-length", "etag", "date"}
    assert hop.headers["etag"] == '"v1"' and hop.elapsed_ms > 0


def test_post_sends_body_with_its_length(server: Server) -> None:
    (hop,) = fetch_hops(
        server.url("/echo"), method="POST", body=b"payload", headers={"Content-Type": "a/b"}
    )
    (got,) = server.received
    assert (got.method, got.body, got.headers["content-length"]) == ("POST", b"payload", "7")
    assert got.headers["content-type"] == "a/b"
    assert hop.body == b"hello payload"


def test_error_status_is_an_answer(server: Server) -> None:
    (hop,) = fetch_hops(server.url("/missing"))
    assert (hop.status, hop.body) == (404, b"no such thing")


def test_recorded_header_values_lose_control_characters() -> None:
    answer = b'HTTP/1.1 200 OK\r\nContent-Type: text/\x1b[31mplain\x07\r\nETag: "a\tb"\r\n'
    with raw_server(lambda c: c.sendall(answer + b"Content-Length: 0\r\n\r\n")) as port:
        (hop,) = fetch_hops(f"http://127.0.0.1:{port}/")
    assert hop.headers["content-type"] == "text/[31mplain"
    assert hop.headers["etag"] == '"ab"'


# The private-address guard


def test_loopback_is_refused_without_a_grant(server: Server) -> None:
    asked = []
    err = fetch_fails(
        "refused", server.url("/echo"), host_allowed=lambda h, p: asked.append((h, p))
    )
    assert asked == [("127.0.0.1", server.port)]
    assert server.received == [] and err.hops == ()


def test_a_name_resolving_inward_is_refused(server: Server) -> None:
    err = fetch_fails("refused", server.url("/echo", host="localhost"))
    assert "127.0.0.1" in err.message or "::1" in err.message
    assert server.received == []


def test_a_numeric_host_is_judged_by_its_address(server: Server) -> None:
    fetch_fails("refused", server.url("/echo", host="2130706433"))  # 127.0.0.1 as one number
    assert server.received == []


def test_an_ip_literal_is_asked_about_as_written() -> None:
    asked = []
    fetch_fails("refused", "http://[::1]:9/", host_allowed=lambda h, p: asked.append((h, p)))
    assert asked == [("::1", 9)]


INWARD_V4 = ["169.254.169.254", "10.1.2.3", "192.168.0.1", "100.64.0.1", "0.0.0.0", "224.0.0.1"]
INWARD_V6 = ["::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "fd00::1", "fe80::1", "ff02::1"]


@pytest.mark.parametrize("address", [*INWARD_V4, *INWARD_V6])
def test_inward_addresses_are_refused(address: str) -> None:
    err = fetch_fails("refused", "http://metadata.example/", resolve=lambda h, p: [address])
    assert address in err.message


def test_any_inward_address_among_public_ones_refuses() -> None:
    fetch_fails(
        "refused", "http://mixed.example/", resolve=lambda h, p: ["93.184.216.34", "10.0.0.7"]
    )


def test_a_granted_host_reaches_loopback(server: Server) -> None:
    (hop,) = fetch_hops(server.url("/echo"), host_allowed=server.allows)
    assert hop.status == 200


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_are_public(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize("address", ["2002:7f00:1::", "64:ff9b::7f00:1", "::7f00:1", "240.0.0.1"])
def test_ipv6_wrapping_an_inward_ipv4_is_not_public(address: str) -> None:
    assert not is_public_address(address)


def test_connects_to_the_address_it_checked(server: Server) -> None:
    answers = [["127.0.0.1"], ["10.66.66.66"]]  # a rebinding resolver's two answers
    calls = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return answers[len(calls) - 1]

    allow = lambda h, p: (h, p) == ("pinned.test", server.port)  # noqa: E731
    (hop,) = fetch_hops(
        server.url("/echo", host="pinned.test"), resolve=resolve, host_allowed=allow
    )
    assert calls == [("pinned.test", server.port)]
    assert hop.address == "127.0.0.1"
    assert server.received[0].headers["host"] == f"pinned.test:{server.port}"


# Redirects


def _to(server: Server, target: str, status: int = 302) -> str:
    return server.url(f"/to?status={status}&url={target}")


def test_redirect_is_the_answer_when_none_are_allowed(server: Server) -> None:
    (hop,) = fetch_hops(_to(server, "/echo"))
    assert (hop.status, hop.headers["location"]) == (302, "/echo")
    assert len(server.received) == 1


def test_refused_redirect_fails_and_keeps_the_first_hop(server: Server) -> None:
    asked = []

    def check_hop(method: str, url: str) -> str:
        asked.append((method, url))
        return "not covered by the grant"

    err = fetch_fails("refused", _to(server, "/echo"), max_redirects=3, check_hop=check_hop)
    assert asked == [("GET", server.url("/echo"))]
    assert "not covered by the grant" in err.message
    assert [h.status for h in err.hops] == [302] and len(server.received) == 1


def test_allowed_redirect_is_followed_and_both_hops_recorded(server: Server) -> None:
    hops = fetch_hops(_to(server, "/echo"), max_redirects=1)
    assert [(h.status, h.url) for h in hops] == [
        (302, _to(server, "/echo")),
        (200, server.url("/echo")),
    ]


def test_303_turns_post_into_get_without_body(server: Server) -> None:
    hops = fetch_hops(
        _to(server, "/echo", 303),
        method="POST",
        body=b"form",
        headers={"Content-Type": "a/b"},
        max_redirects=1,
    )
    first, second = server.received
    assert (first.method, first.body) == ("POST", b"form")
    assert (second.method, second.body) == ("GET", b"")
    assert "content-type" not in second.headers and "content-length" not in second.headers
    assert [h.method for h in hops] == ["POST", "GET"]


def test_307_keeps_method_and_body(server: Server) -> None:
    fetch_hops(_to(server, "/echo", 307), method="PUT", body=b"doc", max_redirects=1)
    assert [(r.method, r.body) for r in server.received] == [("PUT", b"doc"), ("PUT", b"doc")]


SECRETS = {"Authorization": "Bearer s3cret", "Cookie": "id=1", "X-Api-Key": "k", "X-Plain": "p"}


def test_secret_headers_are_dropped_on_a_cross_origin_redirect(
    server: Server, other: Server
) -> None:
    fetch_hops(
        _to(server, other.url("/echo")),
        headers=SECRETS,
        max_redirects=1,
        keep_headers_same_origin=frozenset({"x-api-key"}),
    )
    assert server.received[0].headers["authorization"] == "Bearer s3cret"
    landed = other.received[0].headers
    assert landed["x-plain"] == "p"
    assert not {"authorization", "cookie", "x-api-key"} & set(landed)


def test_secret_headers_are_kept_on_a_same_origin_redirect(server: Server) -> None:
    fetch_hops(
        _to(server, "/echo"),
        headers=SECRETS,
        max_redirects=1,
        keep_headers_same_origin=frozenset({"x-api-key"}),
    )
    landed = server.received[1].headers
    assert (landed["authorization"], landed["cookie"], landed["x-api-key"]) == (
        "Bearer s3cret",
        "id=1",
        "k",
    )


def test_too_many_redirects_are_refused(server: Server) -> None:
    err = fetch_fails("refused", server.url("/loop"), max_redirects=2)
    assert "too many redirects" in err.message
    assert [h.status for h in err.hops] == [302, 302, 302]


def test_redirect_to_another_scheme_is_refused_unasked(server: Server) -> None:
    asked = []
    err = fetch_fails(
        "refused",
        _to(server, "file:///etc/passwd"),
        max_redirects=1,
        check_hop=lambda m, u: asked.append(u),
    )
    assert asked == [] and len(err.hops) == 1


def test_every_hop_is_guarded(server: Server) -> None:
    err = fetch_fails(
        "refused",
        _to(server, server.url("/echo", host="localhost")),
        max_redirects=1,
        host_allowed=server.allows,
    )
    assert len(err.hops) == 1 and len(server.received) == 1


# The whole call is bounded in time


def _bounded(url: str, **overrides) -> FetchError:
    started = time.monotonic()
    err = fetch_fails("timeout", url, timeout_s=0.5, **overrides)
    assert time.monotonic() - started < 3.0
    return err


def test_a_server_that_never_answers_is_bounded() -> None:
    with raw_server(silent) as port:
        _bounded(f"http://127.0.0.1:{port}/")


def test_a_body_dripping_one_byte_at_a_time_is_bounded() -> None:
    with raw_server(drip(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")) as port:
        _bounded(f"http://127.0.0.1:{port}/")


def test_headers_that_never_end_are_bounded() -> None:
    with raw_server(drip(b"HTTP/1.1 200 OK\r\nX-Slow: ")) as port:
        _bounded(f"http://127.0.0.1:{port}/")


def test_a_hanging_resolver_is_bounded_and_never_calls_back_late(server: Server) -> None:
    release, returned, asked = threading.Event(), threading.Event(), []

    def resolve(host: str, port: int) -> list[str]:
        release.wait(10)
        returned.set()
        return ["127.0.0.1"]

    _bounded(server.url("/echo", host="slow.test"), resolve=resolve, host_allowed=asked.append)
    release.set()
    assert returned.wait(5)
    time.sleep(0.1)
    assert asked == [] and server.received == []


def test_a_timeout_keeps_the_hops_before_it(server: Server) -> None:
    with raw_server(silent) as port:
        err = _bounded(_to(server, f"http://127.0.0.1:{port}/"), max_redirects=1)
    assert [h.status for h in err.hops] == [302]


def test_each_read_waits_only_for_the_time_left() -> None:
    # The wire alone, with no caller to abandon it: a dripping server still cannot stretch it.
    started = time.monotonic()
    with (
        raw_server(drip(b"HTTP/1.1 200 OK\r\nX-Slow: ")) as port,
        pytest.raises(_http_wire.WireError) as caught,
    ):
        _http_wire.exchange(
            _http_wire.Step(),
            scheme="http",
            host="127.0.0.1",
            port=port,
            addresses=["127.0.0.1"],
            method="GET",
            target="/",
            headers=[],
            body=None,
            deadline=time.monotonic() + 0.5,
            max_bytes=100,
        )
    assert caught.value.kind == "timeout" and time.monotonic() - started < 3.0


# Bodies are capped


def test_a_declared_length_over_the_cap_is_too_large(server: Server) -> None:
    fetch_fails("too_large", server.url("/big"), max_bytes=1000)


def test_a_body_exactly_at_the_cap_is_an_answer(server: Server) -> None:
    (hop,) = fetch_hops(server.url("/big"), max_bytes=10_000)
    assert len(hop.body) == 10_000


def test_an_endless_chunked_body_stops_at_the_cap(server: Server) -> None:
    # Were the body read to its end this would time out, not fail as too_large.
    fetch_fails("too_large", server.url("/endless"), max_bytes=1000, timeout_s=20.0)


def test_an_undeclared_body_over_the_cap_is_too_large() -> None:
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"w" * 5000
    with raw_server(lambda c: c.sendall(answer)) as port:
        fetch_fails("too_large", f"http://127.0.0.1:{port}/", max_bytes=1000)


# Refused requests, and network failures


@pytest.mark.parametrize("name", ["Bad Name", "X:Y", "", "Ünicode", "X\r\nY"])
def test_header_names_must_be_tokens(server: Server, name: str) -> None:
    fetch_fails("refused", server.url("/echo"), headers={name: "v"})
    assert server.received == []


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "a\rb", "a\x00b", "a\x1bb", "€"])
def test_header_values_must_not_break_the_request(server: Server, value: str) -> None:
    err = fetch_fails("refused", server.url("/echo"), headers={"X-Value": value})
    assert value not in err.message and server.received == []


@pytest.mark.parametrize(
    "name", ["Host", "content-length", "Transfer-Encoding", "Connection", "Upgrade"]
)
def test_transport_headers_are_not_the_callers(server: Server, name: str) -> None:
    fetch_fails("refused", server.url("/echo"), headers={name: "1"})
    assert server.received == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://user:pw@127.0.0.1/",
        "http://user@127.0.0.1/",
        "http:///no-host",
        "http://127.0.0.1:99999/",
        "http://127.0.0.1:0/",
        "http://exa mple.com/",
        "http://bücher.example/",
        "http://[::1/",
    ],
)
def test_urls_outside_http_are_refused(url: str) -> None:
    fetch_fails("refused", url)


def test_a_method_must_be_a_token(server: Server) -> None:
    fetch_fails("refused", server.url("/echo"), method="GET /other")
    assert server.received == []


def test_a_closed_port_is_a_network_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    fetch_fails("network", f"http://127.0.0.1:{port}/")


def test_a_failed_lookup_is_a_network_error() -> None:
    def resolve(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    fetch_fails("network", "http://nowhere.example/", resolve=resolve)


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * 200 + b"\r\n",
    ],
    ids=["not-http", "header-line-too-long", "too-many-headers"],
)
def test_a_malformed_answer_is_a_network_error(answer: bytes) -> None:
    with raw_server(lambda c: c.sendall(answer)) as port:
        fetch_fails("network", f"http://127.0.0.1:{port}/")


# TLS: the certificate is verified for the URL's host name, on the pinned address


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test CA")
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_port(certs: Certs) -> Iterator[int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert, certs.key)

    def behave(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(65536)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")

    with raw_server(behave, read_request=False) as port:
        yield port


def _trusting(certs: Certs, monkeypatch: pytest.MonkeyPatch) -> None:
    context = ssl.create_default_context(cafile=str(certs.ca))
    monkeypatch.setattr(_http_wire, "_tls_context", lambda: context)


def test_https_verifies_the_certificate_for_the_host_name(
    certs: Certs, tls_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _trusting(certs, monkeypatch)
    (hop,) = fetch_hops(f"https://localhost:{tls_port}/", host_allowed=lambda h, p: True)
    assert (hop.status, hop.body, hop.address) == (200, b"secure", "127.0.0.1")


def test_https_to_a_name_the_certificate_does_not_coverfetch_fails(
    certs: Certs, tls_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _trusting(certs, monkeypatch)
    err = fetch_fails("network", f"https://127.0.0.1:{tls_port}/")
    assert "TLS" in err.message


def test_https_with_an_untrusted_certificatefetch_fails(tls_port: int) -> None:
    err = fetch_fails("network", f"https://localhost:{tls_port}/", host_allowed=lambda h, p: True)
    assert "TLS" in err.message
