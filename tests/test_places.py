"""Places as resources: paths, mounts, URLs and hosts, derived one canonical way."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toka.core.errors import InvalidOperation
from toka.core.model import caps, places

# Encoding


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("plain-name_1.txt~", "plain-name_1.txt~"),
        ("a b", "a%20b"),
        ("*", "%2A"),
        ("%", "%25"),
        ("a/b", "a%2Fb"),
        ("x:y", "x%3Ay"),
        ("ü", "%C3%BC"),
        ("\udcff", "%FF"),
    ],
)
def test_encode_segment_percent_encodes_every_byte_outside_the_unreserved_set(text, encoded):
    assert places.encode_segment(text) == encoded


@given(st.text(max_size=20))
def test_an_encoded_segment_is_a_valid_wildcard_free_resource_segment(text):
    encoded = places.encode_segment(text)
    assert "*" not in encoded and "/" not in encoded
    if encoded:
        assert caps.parse(f"fs.read:{encoded}")
        assert caps.matches(f"fs.read:{encoded}", f"fs.read:{encoded}")


def test_encode_segment_refuses_a_lone_surrogate_that_stands_for_no_byte():
    with pytest.raises(InvalidOperation):
        places.encode_segment("\ud800")


# Paths and mounts


def test_path_segments_split_a_relative_path_and_the_empty_path_is_the_root():
    assert places.path_segments("docs/a b.md") == ["docs", "a b.md"]
    assert places.path_segments("") == []


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/etc/passwd", "absolute"),
        ("a//b", "empty segment"),
        ("a/", "empty segment"),
        (".", "'.' segment"),
        ("a/./b", "'.' segment"),
        ("..", "'..' segment"),
        ("docs/../secret", "'..' segment"),
        ("a\x00b", "NUL"),
        ("a/" * 2048 + "b", "over 4096 bytes"),
        ("x" * 256, "over 255 bytes"),
        ("ü" * 128, "over 255 bytes"),
    ],
)
def test_path_segments_refuse_rather_than_fold(path, says):
    with pytest.raises(InvalidOperation) as refused:
        places.path_segments(path)
    assert says in refused.value.message
    assert repr(path)[:40] in refused.value.message


def test_path_segments_accept_the_longest_segment_and_path():
    assert places.path_segments("x" * 255) == ["x" * 255]
    assert len(places.path_segments("/".join(["y" * 255] * 16))) == 16


def test_fs_resource_names_the_mount_and_the_encoded_path():
    assert places.fs_resource("fs.read", "ws", "docs/a b.md") == "fs.read:mount/ws/docs/a%20b.md"
    assert places.fs_resource("fs.list", "ws", "") == "fs.list:mount/ws"
    assert places.fs_resource("fs.write", "ws", "*/%") == "fs.write:mount/ws/%2A/%25"


def test_fs_resource_refuses_other_actions_and_bad_mount_names():
    with pytest.raises(InvalidOperation):
        places.fs_resource("net.http", "ws", "a")
    for bad in ["", "Ws", "1ws", "w s", "ws/x", "w" * 65, "..", "*"]:
        assert not places.MOUNT_NAME_RE.match(bad)
        with pytest.raises(InvalidOperation) as refused:
            places.fs_resource("fs.read", bad, "a")
        assert repr(bad) in refused.value.message
    assert places.check_mount_name("ws-2_b") == "ws-2_b"


def test_a_docs_grant_covers_paths_below_docs_and_no_sibling():
    grant = "fs.read:mount/ws/docs/**"
    assert caps.matches(grant, places.fs_resource("fs.read", "ws", "docs"))
    assert caps.matches(grant, places.fs_resource("fs.read", "ws", "docs/a/b.md"))
    assert not caps.matches(grant, places.fs_resource("fs.read", "ws", "docs-private/x"))
    assert not caps.matches(grant, places.fs_resource("fs.read", "ws2", "docs/x"))


def test_a_file_named_with_a_star_is_not_a_wildcard():
    star_file = places.fs_resource("fs.read", "ws", "*")
    assert not caps.matches(star_file, places.fs_resource("fs.read", "ws", "secret"))


# URLs


def test_parse_url_canonicalizes_scheme_host_port_and_path():
    url = places.parse_url("HTTPS://API.GitHub.com/repos/%7Eo/r%2a?per_page=5#top")
    assert url == places.CanonicalUrl(
        "https", "api.github.com", 443, ("repos", "~o", "r%2A"), "per_page=5"
    )
    assert url.url() == "https://api.github.com/repos/~o/r%2A?per_page=5"


@pytest.mark.parametrize(
    ("url", "port"),
    [("http://a.example/", 80), ("https://a.example/", 443), ("https://a.example:8443/", 8443)],
)
def test_default_ports_are_made_explicit(url, port):
    assert places.parse_url(url).port == port
    assert f"/{port}" in places.http_resource("GET", url)


def test_idna_hosts_are_encoded():
    url = places.parse_url("https://bücher.example/")
    assert url.host == "xn--bcher-kva.example"
    assert places.http_resource("GET", url) == "net.http:GET/https/xn--bcher-kva.example/443"


def test_ip_hosts_are_canonical():
    assert places.parse_url("http://192.0.2.1:8080/").host == "192.0.2.1"
    v6 = places.parse_url("http://[2001:DB8:0:0::1]/x")
    assert v6.host == "2001:db8::1"
    assert v6.url() == "http://[2001:db8::1]/x"
    assert places.http_resource("GET", v6) == "net.http:GET/http/2001%3Adb8%3A%3A1/80/x"
    assert places.parse_url("http://[::ffff:1.2.3.4]/").host == "::ffff:102:304"


def test_the_path_root_and_one_trailing_slash_give_the_same_resource():
    assert places.parse_url("https://a.example").path == ()
    assert places.parse_url("https://a.example/").path == ()
    with_slash = places.parse_url("https://a.example/x/")
    assert with_slash.path == ("x",)
    assert places.http_resource("GET", with_slash) == places.http_resource(
        "GET", "https://a.example/x"
    )
    # The slash is still sent: dropping it would fetch another page.
    assert with_slash.url() == "https://a.example/x/"


def test_the_query_is_kept_but_never_part_of_the_resource():
    url = places.parse_url("https://a.example/search?q=secret&x=1")
    assert url.query == "q=secret&x=1"
    assert url.url().endswith("?q=secret&x=1")
    assert places.http_resource("GET", url) == "net.http:GET/https/a.example/443/search"
    assert places.parse_url("https://a.example/search").query is None
    assert places.parse_url("https://a.example/search?").query == ""


def test_the_fragment_is_dropped():
    url = places.parse_url("https://a.example/x#section?not-a-query")
    assert url.query is None
    assert url.url() == "https://a.example/x"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://a.example/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("https://user:pass@a.example/", "userinfo"),
        ("https://api.github.com@evil.example/", "userinfo"),
        ("https:///x", "no host"),
        ("https://:443/x", "no host"),
        ("https://a.example:0/", "port"),
        ("https://a.example:65536/", "port"),
        ("https://a.example:-1/", "port"),
        ("https://a.example:x/", "port"),
        ("https://a.example:/", "port"),
        ("https://a.example/a b", "space"),
        ("https://a.example/a\tb", "control"),
        ("https://a.example/a\nb", "control"),
        ("https://a.example\\@evil.example/", "backslash"),
        ("https://a.example/a/../b", "'..' segment"),
        ("https://a.example/a/./b", "'.' segment"),
        ("https://a.example/a/%2e%2E/b", "'%2e%2E' segment"),
        ("https://a.example/..%2Fadmin", "escaped separator"),
        ("https://a.example/a//b", "empty path segment"),
        ("https://a.example/a%zz", "not an escape"),
        ("https://[::1/", "does not parse"),
        ("https://[fe80::1%25eth0]/", "zone"),
        ("https://api%2Egithub.com/", "not a domain name"),
        ("https://a..example/", "not a valid domain name"),
        ("https://a.example./", "not a domain name"),
        ("http://2130706433/", "not a dotted quad"),
        ("http://127.1/", "not a dotted quad"),
        ("http://0x7f.0.0.1/", "not a dotted quad"),
        ("http://0177.0.0.1/", "not a dotted quad"),
    ],
)
def test_parse_url_refuses(url, says):
    with pytest.raises(InvalidOperation) as refused:
        places.parse_url(url)
    assert says in refused.value.message


@pytest.mark.parametrize("method", ["get", "Get", "", "G3T", "GET ", "X" * 17])
def test_http_resource_refuses_methods_that_are_not_1_to_16_uppercase_letters(method):
    with pytest.raises(InvalidOperation):
        places.http_resource(method, "https://a.example/")


def test_http_resource_names_method_scheme_host_port_and_path():
    assert (
        places.http_resource("GET", "https://api.github.com/repos/o/r")
        == "net.http:GET/https/api.github.com/443/repos/o/r"
    )
    assert places.http_resource("PROPFIND", "http://a.example:8080").startswith(
        "net.http:PROPFIND/http/a.example/8080"
    )


def test_a_github_grant_covers_github_hosts_and_no_lookalike():
    grant = "net.http:GET/https/*.github.com/443/**"
    assert caps.matches(grant, places.http_resource("GET", "https://api.github.com/repos/x"))
    assert caps.matches(grant, places.http_resource("GET", "https://API.github.com"))
    for url in [
        "https://evil.example/x.github.com/443/y",
        "https://api.github.com.evil.example/",
        "http://api.github.com/repos/x",
        "https://api.github.com:8443/repos/x",
    ]:
        assert not caps.matches(grant, places.http_resource("GET", url)), url
    assert not caps.matches(grant, places.http_resource("POST", "https://api.github.com/x"))


# Hosts


def test_host_resource_uses_the_url_host_rules():
    assert places.host_resource("API.GitHub.com", 443) == "net.allow:host/api.github.com/443"
    assert places.host_resource("bücher.example", 80) == "net.allow:host/xn--bcher-kva.example/80"
    assert places.host_resource("[::1]", 53) == "net.allow:host/%3A%3A1/53"
    assert places.host_resource("::1", 53) == "net.allow:host/%3A%3A1/53"


@pytest.mark.parametrize(
    ("host", "port"),
    [("a.example", 0), ("a.example", 65536), ("a.example", True), ("", 80), ("a b", 80)],
)
def test_host_resource_refuses_bad_hosts_and_ports(host, port):
    with pytest.raises(InvalidOperation):
        places.host_resource(host, port)
