"""A real MCP server (tests/mcp_servers/notes_server.py, written with the official SDK)
registered in a Toka home over stdio or streamable HTTP, for the MCP tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from effects_support import Toka

SERVER = Path(__file__).parent / "mcp_servers" / "notes_server.py"
TOKEN = "notes-token-5b0c1d"  # the secret the server is given: never in the log


class Notes(NamedTuple):
    """A registered notes server: its name in Toka, and the files it writes in the world."""

    toka: Toka
    name: str
    notes: Path  # one line per act (send_note, slow, crash)
    drift: Path  # written: send_note's definition changes
    transport: str

    def lines(self) -> list[str]:
        return self.notes.read_text().splitlines() if self.notes.exists() else []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the notes server exited: {log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the notes server did not start listening")


@contextmanager
def notes_server(toka: Toka, world: Path, transport: str, name: str = "notes") -> Iterator[Notes]:
    """The notes server registered as ``name`` (``stdio``: Toka starts it; ``http``: it
    runs here, on a free port, for the ``with`` block), its secret set."""
    world.mkdir(parents=True, exist_ok=True)
    notes, drift = world / "notes.txt", world / "drift.txt"
    env = {"NOTES_FILE": str(notes), "DRIFT_FILE": str(drift)}
    toka.ok("secret", "set", "notes-token", input=TOKEN + "\n")
    if transport == "stdio":
        pairs = [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
        toka.ok(
            "mcp", "add", name, *pairs, "--env-secret", "NOTES_TOKEN=notes-token",
            "--", sys.executable, str(SERVER),
        )  # fmt: skip
        yield Notes(toka, name, notes, drift, transport)
        return
    port = _free_port()
    log = world / "http-server.log"
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, str(SERVER), "--http", str(port)],
            env={**os.environ, **env},
            stdout=err,
            stderr=err,
        )
    try:
        _wait_listening(port, process, log)
        toka.ok(
            "mcp", "add", name, "--url", f"http://127.0.0.1:{port}/mcp",
            "--header-secret", "X-Notes-Token=notes-token",
        )  # fmt: skip
        yield Notes(toka, name, notes, drift, transport)
    finally:
        process.kill()
        process.wait()
