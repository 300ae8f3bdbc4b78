"""``toka web``: the console in a browser, through the real server in a subprocess.

The gate (token, cookie, Origin, Host, session cap, headers, a log without the token),
a real console session over the websocket protocol, the CLI's refusals, and one opt-in
check in headless Chromium (``TOKA_TEST_BROWSER=1``; see the README).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from toka_cli import run_toka
from web_support import WebServer, read_until, resize, start_web, stdin, stop_web

from toka.core.runtime.home import Home

BROWSER = os.environ.get("TOKA_TEST_BROWSER") == "1"
SHOTS = os.environ.get("TOKA_TEST_BROWSER_SHOTS")  # keep the screenshots here, if set
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One server for the module's gate and session checks, on a fresh home."""
    root = tmp_path_factory.mktemp("web")
    Home(root / "home").init()
    web = start_web(root / "home", root / "server.log")
    yield web
    stop_web(web)


def get(url: str, **kwargs) -> tuple[int, dict[str, str], str]:
    async def go():
        async with (
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session,
            session.get(url, allow_redirects=False, **kwargs) as response,
        ):
            return response.status, dict(response.headers), await response.text()

    return asyncio.run(go())


def cookie(server: WebServer) -> dict[str, str]:
    return {"Cookie": f"toka_console={server.token}"}


def ws_status(server: WebServer, headers: dict[str, str]) -> int:
    """The status a websocket handshake to ``/ws`` gets with ``headers``."""

    async def go():
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            try:
                async with session.ws_connect(f"{server.base}/ws", headers=headers):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    return asyncio.run(go())


class TestGate:
    def test_the_page_without_a_token_is_forbidden(self, server):
        status, _, body = get(f"{server.base}/")
        assert status == 403
        assert "?token=" in body
        assert server.token not in body

    def test_a_wrong_token_is_forbidden(self, server):
        status, headers, body = get(f"{server.base}/?token=" + "x" * len(server.token))
        assert (status, "set-cookie" in {h.lower() for h in headers}) == (403, False)
        assert "wrong token" in body

    def test_a_wrong_cookie_is_forbidden(self, server):
        status, _, body = get(f"{server.base}/", headers={"Cookie": "toka_console=guess"})
        assert status == 403
        assert "not this server's" in body

    def test_the_token_sets_a_strict_cookie_and_leaves_the_address_bar(self, server):
        status, headers, _ = get(server.url)
        assert status == 302
        assert headers["Location"] == "/"
        set_cookie = headers["Set-Cookie"]
        assert set_cookie.startswith(f"toka_console={server.token};")
        flags = {part.strip().lower() for part in set_cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        assert "secure" not in flags  # plain http on loopback: a Secure cookie would be lost

    def test_the_page_with_the_cookie_has_the_terminal_and_names_the_signer(self, server):
        status, _, body = get(f"{server.base}/", headers=cookie(server))
        assert status == 200
        assert f'data-session-websocket-url="ws://{server.base.split("://")[1]}/ws"' in body
        assert "Signing as operator from a browser session" in body
        assert server.token not in body

    @pytest.mark.parametrize("path", ["/", "/?token=nope", "/ws", "/no-such-page"])
    def test_pages_and_refusals_are_not_cached_framed_or_referred(self, server, path):
        _, headers, _ = get(f"{server.base}{path}", headers=cookie(server))
        assert {k: headers.get(k) for k in PAGE_HEADERS} == PAGE_HEADERS
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]

    def test_static_assets_need_no_cookie(self, server):
        status, headers, body = get(f"{server.base}/static/css/xterm.css")
        assert status == 200
        assert ".xterm" in body
        assert headers["X-Content-Type-Options"] == "nosniff"

    def test_a_foreign_host_header_is_refused_even_with_the_cookie(self, server):
        port = server.base.rsplit(":", 1)[1]
        headers = {**cookie(server), "Host": f"rebound.example:{port}"}
        status, _, body = get(f"{server.base}/", headers=headers)
        assert status == 403
        assert "Host" in body

    def test_the_websocket_without_the_cookie_is_forbidden(self, server):
        assert ws_status(server, {"Origin": server.origin}) == 403

    def test_the_websocket_from_a_foreign_origin_is_forbidden_with_the_cookie(self, server):
        port = int(server.base.rsplit(":", 1)[1])
        other = f"http://127.0.0.1:{port + 1}"  # same site, another port: SameSite lets the cookie through
        assert ws_status(server, {**cookie(server), "Origin": other}) == 403
        assert ws_status(server, cookie(server)) == 403  # no Origin at all

    def test_the_token_never_reaches_the_log(self, server):
        get(server.url)
        get(f"{server.base}/?token=wrong-{server.token}")
        log = server.log_text()
        assert "GET / 302" in log  # the exchange was logged, without its query
        assert server.token not in log
        assert "?token" not in log


class TestSessions:
    def test_a_session_shows_the_console_and_takes_keys(self, server):
        async def go():
            async with (
                aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session,
                session.ws_connect(
                    f"{server.base}/ws?width=120&height=40",
                    headers={**cookie(server), "Origin": server.origin},
                ) as ws,
            ):
                await ws.send_str(resize(120, 40))
                first = await read_until(ws, "Signing as operator from a browser session")
                assert "these keys" not in first
                await ws.send_str(stdin("?"))
                await read_until(ws, "these keys", "esc to close")

        asyncio.run(go())
        log = server.log_text()
        assert "session started for 127.0.0.1" in log
        assert "Application failed to start" not in log

    def test_sessions_beyond_the_cap_get_503(self, home, tmp_path):
        server = start_web(home.root, tmp_path / "server.log", "--max-sessions", "2")
        try:
            assert asyncio.run(self.third_of_two(server)) == 503
        finally:
            assert stop_web(server) == 0

    def test_metrics_beside_the_console_count_what_the_log_holds(self, home, tmp_path):
        server = start_web(home.root, tmp_path / "server.log", "--metrics", "127.0.0.1:0")
        try:
            found = re.search(r"metrics at (http://\S+)", server.log_text())
            assert found, server.log_text()
            with urllib.request.urlopen(found.group(1), timeout=10) as response:
                scraped = response.read().decode()
            head = home.open_store(readonly=True).head()[0]
            assert f"toka_log_head_seq {float(head)}" in scraped
        finally:
            assert stop_web(server) == 0

    @staticmethod
    async def third_of_two(server: WebServer) -> int:
        """Open two sessions, then the status the third handshake gets."""
        headers = {**cookie(server), "Origin": server.origin}
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            opened = [await session.ws_connect(f"{server.base}/ws", headers=headers) for _ in "ab"]
            try:
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await session.ws_connect(f"{server.base}/ws", headers=headers)
            finally:
                for ws in opened:
                    await ws.close()
            return refused.value.status


class TestCommand:
    def test_headless_commands_import_neither_aiohttp_nor_textual_serve(self):
        code = (
            "import sys; from toka.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('aiohttp', 'textual_serve', 'toka.web') if m in sys.modules))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.stdout.strip() == "[]", out.stderr

    @pytest.mark.parametrize(
        ("args", "code", "message"),
        [
            (["--port", "70000"], 2, "a port is 0-65535"),
            (["--max-sessions", "0"], 2, "at least one session"),
            (["--public-url", "ftp://console.example"], 4, "must start with http:// or https://"),
            (["--public-url", "https://example.com/console"], 4, "has a path"),
            (["--public-url", "https://user:pw@example.com"], 4, "user name or password"),
            (["--public-url", "https://"], 4, "names no host"),
            (["--host", "0.0.0.0"], 4, "listens on every address: give --public-url"),
            (["--as", "nobody"], 4, "no private key for 'nobody'"),
        ],
    )
    def test_bad_options_are_refused_by_name(self, home, args, code, message):
        done = run_toka("web", "--port", "0", *args, home=home.root, timeout=30)
        assert (done.returncode, done.stdout) == (code, "")
        assert message in done.stderr

    def test_a_port_in_use_is_refused_clearly(self, home, tmp_path):
        server = start_web(home.root, tmp_path / "server.log")
        try:
            port = server.base.rsplit(":", 1)[1]
            done = run_toka("web", "--port", port, home=home.root, timeout=30)
        finally:
            stop_web(server)
        assert done.returncode == 1
        assert f"toka: error: cannot listen on 127.0.0.1:{port}: " in done.stderr

    def test_another_host_than_loopback_warns_about_exposure(self, home, tmp_path):
        server = start_web(
            home.root, tmp_path / "server.log", "--host", "0.0.0.0",
            "--public-url", "https://console.example",
        )  # fmt: skip
        try:
            assert server.url.startswith("https://console.example/?token=")
        finally:
            stop_web(server)
        log = server.log_text()
        assert "warning: listening on 0.0.0.0" in log
        assert "ssh -L" in log

    def test_children_get_no_toka_credentials(self):
        from toka.cli.web_cmds import child_environment

        environ = {
            "PATH": "/bin", "TOKA_TOKEN": "t", "TOKA_KEY": "k", "TOKA_AS": "a",
            "TOKA_STORE": "s", "TOKA_STORE_SCHEMA": "x", "TOKA_LLM_API_KEY": "l",
        }  # fmt: skip
        assert child_environment(environ, runner=False) == {
            "PATH": "/bin", "TOKA_STORE": "s", "TOKA_STORE_SCHEMA": "x",
        }  # fmt: skip
        assert child_environment(environ, runner=True)["TOKA_LLM_API_KEY"] == "l"

    def test_the_web_driver_variable_names_only_the_web_driver(self, tmp_path):
        other = {"TEXTUAL_DRIVER": "textual.drivers.linux_driver:LinuxDriver"}
        done = run_toka("tui", home=tmp_path / "home", env=other)
        assert done.returncode == 1
        assert "toka tui needs a terminal" in done.stderr


@pytest.mark.skipif(
    not BROWSER,
    reason="opt-in: TOKA_TEST_BROWSER=1 drives the console in headless Chromium "
    "(apt-get install chromium chromium-driver; pip install 'selenium<4.52')",
)
def test_the_console_in_headless_chromium(server, tmp_path):
    """Through the printed URL to the console's page, the console drawn, ``?`` taking."""
    missing = [p for p in ("chromium", "chromedriver") if shutil.which(p) is None]
    assert not missing, f"TOKA_TEST_BROWSER=1 needs {missing} on PATH"
    try:
        from selenium import webdriver
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        pytest.fail("TOKA_TEST_BROWSER=1 needs selenium: pip install 'selenium<4.52'")

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,800",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    shots = Path(SHOTS) if SHOTS else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    browser = webdriver.Chrome(
        service=webdriver.ChromeService(shutil.which("chromedriver")), options=options
    )
    try:
        wait = WebDriverWait(browser, 30)
        browser.get(server.url)
        assert browser.current_url == f"{server.base}/"  # the token left the address bar
        assert "Signing as operator" in browser.find_element(By.ID, "signing").text
        blank = browser.get_screenshot_as_png()
        # textual.js marks the body when the console's first bytes arrive; the canvas
        # is drawn after: wait for a screen unlike the blank page that holds still.
        wait.until(
            lambda b: "-first-byte" in b.find_element(By.TAG_NAME, "body").get_attribute("class")
        )
        console = settled(browser, wait, unlike=blank)
        (shots / "console.png").write_bytes(console)
        browser.find_element(By.CSS_SELECTOR, ".xterm").click()
        webdriver.ActionChains(browser).send_keys("?").perform()
        helped = settled(browser, wait, unlike=console)
        (shots / "console-help.png").write_bytes(helped)
        body = browser.find_element(By.TAG_NAME, "body").get_attribute("class")
        assert "-closed" not in body
        refused = [
            e["message"] for e in browser.get_log("browser") if "Content Security" in e["message"]
        ]
        assert refused == []
    finally:
        browser.quit()


def settled(browser, wait, *, unlike: bytes) -> bytes:
    """The first screenshot that differs from ``unlike`` and equals the one before it."""
    shots = [unlike]

    def still(b) -> bool:
        shots.append(b.get_screenshot_as_png())
        return shots[-1] != unlike and shots[-1] == shots[-2]

    wait.until(still)
    return shots[-1]


def test_a_session_runs_toka_tui_on_the_home_as_the_chosen_principal(tmp_path):
    import argparse
    import shlex

    from toka.cli.context import Context
    from toka.cli.web_cmds import child_command

    home = tmp_path / "a home; $(rm -rf)"
    args = argparse.Namespace(
        home=str(home), as_principal="ops", store=None, durability=None, runner=False
    )
    words = shlex.split(child_command(Context(args), "/usr/bin/python3"))
    assert words == [
        "/usr/bin/python3", "-m", "toka", "--home", str(home.resolve()), "--as", "ops",
        "tui", "--no-runner",
    ]  # fmt: skip
    args.runner = True
    assert shlex.split(child_command(Context(args), "py"))[-1] == "tui"
