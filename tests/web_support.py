"""A real ``toka web`` in a subprocess for tests, and a websocket session's screen as text."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import aiohttp

ANSI = re.compile(r"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|.)")
START_TIMEOUT_S = 30.0
SCREEN_TIMEOUT_S = 30.0


class WebServer(NamedTuple):
    process: subprocess.Popen
    url: str  # the printed URL, token included
    base: str  # http://127.0.0.1:PORT
    token: str
    log: Path  # the server's stderr

    @property
    def origin(self) -> str:
        return self.base

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_web(home: Path, log: Path, *args: str) -> WebServer:
    """``toka web --port 0 ARGS`` on ``home``, once it has printed its URL."""
    keep = ("TOKA_STORE", "TOKA_STORE_SCHEMA")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKA_") or k in keep}
    # A credential the server must not hand to its children.
    env["TOKA_TOKEN"] = "not-for-children"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "toka", "--home", str(home), "web", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            text=True,
        )
    line = process.stdout.readline().strip()  # bounded by the test timeout if it hangs
    if not line.startswith("http"):
        process.kill()
        raise AssertionError(f"toka web printed no URL: {line!r}; log: {log.read_text()}")
    base, _, token = line.partition("/?token=")
    return WebServer(process, line, base, token, log)


def stop_web(server: WebServer) -> int:
    server.process.terminate()
    try:
        return server.process.wait(timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.process.kill()
        return server.process.wait()


def screen_text(data: bytes) -> str:
    return ANSI.sub("", data.decode("utf-8", "replace"))


async def read_until(ws: aiohttp.ClientWebSocketResponse, *needles: str) -> str:
    """Frames from the console until every needle has appeared in the text seen so far
    (escape sequences stripped); fails after SCREEN_TIMEOUT_S with what was seen."""
    seen = b""
    deadline = time.monotonic() + SCREEN_TIMEOUT_S
    while not all(n in screen_text(seen) for n in needles):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                f"not on the screen: {needles}; seen: {screen_text(seen)[-2000:]!r}"
            )
        try:
            message = await ws.receive(timeout=left)
        except TimeoutError:
            continue
        if message.type == aiohttp.WSMsgType.BINARY:
            seen += message.data
        elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            raise AssertionError(f"session closed before {needles}: {screen_text(seen)[-2000:]!r}")
    return screen_text(seen)


def stdin(text: str) -> str:
    return json.dumps(["stdin", text])


def resize(width: int, height: int) -> str:
    return json.dumps(["resize", {"width": width, "height": height}])
