"""``http-fetch`` through the real ``toka tool invoke``, against local servers: inward
addresses, URL grants, redirects, secrets, limits, and the class of each call."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from effects_support import Toka, leaks, serving_redirects
from http_support import Server, raw_server, silent

from toka.core.errors import ExitCode

FETCH = "tool.invoke:tool/http-fetch"


@pytest.fixture
def server() -> Iterator[Server]:
    with serving_redirects() as s:
        yield s


@pytest.fixture
def toka(tmp_path: Path) -> Toka:
    return Toka(tmp_path / "home")


def allow(toka: Toka, port: int, host: str = "127.0.0.1") -> None:
    toka.ok("net", "allow", f"{host}:{port}")


def paths(server: Server) -> list[str]:
    return [r.path for r in server.received]


def last_rejection(toka: Toka) -> tuple[str, str]:
    payload = toka.events("operation.rejected")[-1]["payload"]
    return payload["code"], payload["reason"]


def test_loopback_is_refused_until_allowed_and_again_after_revoke(
    toka: Toka, server: Server
) -> None:
    echo = {"url": server.url("/echo")}
    result = toka.failed("refused", "http-fetch", echo)
    assert "127.0.0.1" in result["error"]["message"]
    assert result["effects"] == []

    allow(toka, server.port)
    assert [h["port"] for h in toka.js("net", "list")["hosts"]] == [server.port]
    fetched = toka.outcome("http-fetch", echo)
    assert fetched["ok"] is True
    assert fetched["output"]["status"] == 200
    assert fetched["output"]["body"] == "hello "
    assert [e["url"] for e in fetched["effects"]] == [server.url("/echo")]

    toka.ok("net", "revoke", f"127.0.0.1:{server.port}")
    toka.failed("refused", "http-fetch", echo)
    assert paths(server) == ["/echo"]


def test_a_name_resolving_inward_is_refused_although_its_address_is_allowed(
    toka: Toka, server: Server
) -> None:
    allow(toka, server.port)
    by_name = {"url": server.url("/echo", host="localhost")}
    result = toka.failed("refused", "http-fetch", by_name)
    assert "localhost" in result["error"]["message"]
    assert paths(server) == []

    allow(toka, server.port, host="localhost")
    assert toka.outcome("http-fetch", by_name)["output"]["status"] == 200
    assert paths(server) == ["/echo"]


def test_a_prefix_glob_in_a_url_grant_stays_within_one_segment(toka: Toka, server: Server) -> None:
    allow(toka, server.port)
    place = f"GET/http/127.0.0.1/{server.port}"
    agent = toka.agent("api-client", f"net.http:{place}/api*", FETCH)
    ok = toka.outcome("http-fetch", {"url": server.url("/api-v1")}, as_=agent)
    assert ok["output"]["status"] == 200

    # A `*` that crossed `/` would have let each of these through.
    for path in ("/api/x", "/apiother/x", "/api-v1/admin", "/api-v1/x/y"):
        url = server.url(path)
        done = toka.refused(ExitCode.DENIED, "http-fetch", {"url": url}, as_=agent)
        assert f"net.http:{place}{path}" in done.stderr
        assert last_rejection(toka)[0] == "not_covered"
    # Dots and escaped separators are not folded into something the glob covers.
    for path in ("/api/x/../..", "/api%2Fx", "/api-v1/./x"):
        toka.refused(ExitCode.INVALID, "http-fetch", {"url": server.url(path)}, as_=agent)
    assert paths(server) == ["/api-v1"]
    assert toka.kinds().count("tool.started") == 1


def test_a_host_glob_does_not_match_a_path_that_spells_the_host(toka: Toka, server: Server) -> None:
    agent = toka.agent("gh", "net.http:GET/https/*.github.com/443/*", FETCH)
    url = "https://evil.example/x.github.com/443/y"
    done = toka.refused(ExitCode.DENIED, "http-fetch", {"url": url}, as_=agent)
    assert "net.http:GET/https/evil.example/443/x.github.com/443/y" in done.stderr
    assert last_rejection(toka)[0] == "not_covered"
    assert "tool.started" not in toka.kinds()

    # The same shape on a local server: the host glob covers the host, not a path.
    allow(toka, server.port)
    local = toka.agent("local", f"net.http:GET/http/*.0.0.1/{server.port}/*", FETCH)
    assert toka.outcome("http-fetch", {"url": server.url("/x")}, as_=local)["ok"]
    spelled = f"http://evil.example/x.0.0.1/{server.port}/y"
    toka.refused(ExitCode.DENIED, "http-fetch", {"url": spelled}, as_=local)
    assert paths(server) == ["/x"]


def test_a_redirect_is_followed_only_where_the_grant_reaches(toka: Toka, server: Server) -> None:
    allow(toka, server.port)
    agent = toka.agent("walker", f"net.http:GET/http/127.0.0.1/{server.port}/a/**", FETCH)
    start = server.url("/a/start")

    refused = toka.failed("refused", "http-fetch", {"url": start, "follow_redirects": 1}, as_=agent)
    assert [(e["url"], e["status"]) for e in refused["effects"]] == [(start, 302)]
    assert paths(server) == ["/a/start"]

    answer = toka.outcome("http-fetch", {"url": start, "follow_redirects": 0}, as_=agent)
    assert answer["ok"] is True and answer["output"]["status"] == 302
    assert {k.lower(): v for k, v in answer["output"]["headers"].items()}["location"] == "/b/end"
    assert len(answer["effects"]) == 1

    inside = {"url": server.url("/a/hop"), "follow_redirects": 1}
    followed = toka.outcome("http-fetch", inside, as_=agent)
    assert followed["output"]["status"] == 200
    assert [(e["url"], e["status"]) for e in followed["effects"]] == [
        (server.url("/a/hop"), 302),
        (server.url("/a/end"), 200),
    ]
    assert paths(server) == ["/a/start", "/a/start", "/a/hop", "/a/end"]


def test_secret_headers_reach_the_server_but_never_the_log_or_the_blobs(
    toka: Toka, server: Server
) -> None:
    value = "sk-test-9d2b71f0-never-recorded"
    token = "qtok-4a6e0c-never-recorded"
    body = "posted with a credential 31c8"
    toka.ok("secret", "set", "api", input=value)
    assert toka.js("secret", "list")["secrets"] == ["api"]
    allow(toka, server.port)
    args = {
        "url": server.url(f"/echo?token={token}"),
        "method": "POST",
        "body": body,
        "secret_headers": {"Authorization": "api"},
    }
    done = toka.invoke("http-fetch", args)
    assert done.returncode == ExitCode.OK, done.stderr
    assert value not in done.stdout + done.stderr

    (received,) = server.received
    assert received.headers["authorization"] == value
    assert received.path == f"/echo?token={token}"
    assert received.body == body.encode()

    (effect,) = json.loads(done.stdout)["effects"]
    assert effect["url"] == server.url("/echo")
    assert len(effect["query_hmac"]) == 64
    assert len(effect["request_hmac"]) == 64 and effect["request_sha256"] is None
    assert not (toka.home / "blobs" / hashlib.sha256(body.encode()).hexdigest()).exists()
    assert (toka.home / "toka.db").exists()
    assert leaks(toka.home, value.encode()) == []
    assert value not in json.dumps(toka.events())
    assert toka.js("verify", "--blobs")["ok"] is True


def test_secret_query_parameters_reach_the_server_but_never_the_log_or_the_blobs(
    toka: Toka, server: Server
) -> None:
    token = "qtok-4a6e0c-never-logged"
    toka.ok("secret", "set", "qtoken", input=token)
    allow(toka, server.port)
    args = {"url": server.url("/missing?page=2"), "secret_query": {"token": "qtoken"}}
    (effect,) = toka.outcome("http-fetch", args)["effects"]
    assert server.received[0].path == f"/missing?page=2&token={token}"
    assert effect["query_hmac"] and "?" not in effect["url"]
    assert leaks(toka.home, token.encode()) == []


def test_a_query_and_an_authenticated_body_are_effect_records_only_as_an_hmac(
    toka: Toka, server: Server
) -> None:
    query = "page=qtok-4a6e0c-only-an-hmac"
    body = "posted with a credential b9f2"
    toka.ok("secret", "set", "api", input="sk-test-0c1d")
    allow(toka, server.port)
    args = {
        "url": server.url(f"/missing?{query}"),  # /missing does not echo the body
        "method": "POST",
        "body": body,
        "secret_headers": {"Authorization": "api"},
    }
    (effect,) = toka.outcome("http-fetch", args)["effects"]
    assert effect["query_hmac"] and effect["request_hmac"]
    assert effect["request_sha256"] is None and "?" not in effect["url"]
    assert server.received[0].body == body.encode()
    # The events and the blobs hold neither; the caller's own arguments are its signed
    # operation, kept as signed (a secret belongs in HOME/secrets, sent by name).
    events = json.dumps(toka.events())
    for text in (query, body):
        assert text not in events
        assert [p for p in leaks(toka.home, text.encode()) if not p.startswith("toka.db")] == []


def test_a_plain_request_body_is_kept_as_a_blob(toka: Toka, server: Server) -> None:
    allow(toka, server.port)
    body = "posted in the clear 77e1"
    args = {"url": server.url("/echo"), "method": "POST", "body": body}
    (effect,) = toka.outcome("http-fetch", args)["effects"]
    digest = hashlib.sha256(body.encode()).hexdigest()
    assert effect["request_sha256"] == digest and effect["request_hmac"] is None
    assert leaks(toka.home, body.encode()) != []  # the scan above would have found it


def test_a_response_over_max_bytes_fails_too_large(toka: Toka, server: Server) -> None:
    allow(toka, server.port)
    result = toka.failed("too_large", "http-fetch", {"url": server.url("/big"), "max_bytes": 1000})
    assert "1000" in result["error"]["message"]
    assert toka.outcome("http-fetch", {"url": server.url("/big")})["output"]["size"] == 10_000


def test_a_server_that_never_answers_fails_timeout(toka: Toka) -> None:
    with raw_server(silent) as port:
        allow(toka, port)
        url = f"http://127.0.0.1:{port}/slow"
        result = toka.failed("timeout", "http-fetch", {"url": url, "timeout_ms": 300})
    assert result["effects"] == []


def test_the_intent_is_read_only_for_get_and_external_for_post(toka: Toka, server: Server) -> None:
    allow(toka, server.port)
    for method in ("GET", "POST", "PUT"):
        toka.outcome("http-fetch", {"url": server.url("/echo"), "method": method})
    started = [e["payload"] for e in toka.events("tool.started")]
    assert [(p["caps"][0].split("/")[0], p["side_effect"]) for p in started] == [
        ("net.http:GET", "read_only"),
        ("net.http:POST", "external"),
        ("net.http:PUT", "idempotent"),
    ]
    listed = {c["call"]: c["side_effect"] for c in toka.js("effects", "list", "--all")["calls"]}
    assert sorted(listed.values()) == ["external", "idempotent", "read_only"]
