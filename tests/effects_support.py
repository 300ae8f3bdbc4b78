"""Driving calls with an effect through the real ``toka`` command, for the effect tests
(tests/test_effects_files.py, test_effects_net.py, test_effects_staging.py)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import wasmtime
from http_support import Received, Server, _Handler, serving

from toka.cli.main import main
from toka.core.errors import ExitCode


class Toka:
    """The real ``toka`` command on one home, initialised on creation: run in this
    process (``toka.cli.main.main`` with its own stdin, stdout and stderr), as a
    subprocess would run it but without starting Python for every command."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.ok("init")

    def __call__(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        stdin = io.TextIOWrapper(io.BytesIO((input or "").encode()), encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        saved = {k: v for k, v in os.environ.items() if k.startswith("TOKA_")}
        for key in saved:
            del os.environ[key]
        os.environ["TOKA_HOME"] = str(self.home)
        try:
            with (
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(err),
                mock.patch.object(sys, "stdin", stdin),
            ):
                code = main(list(args))
        finally:
            del os.environ["TOKA_HOME"]
            os.environ.update(saved)
        return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())

    def ok(self, *args: str, input: str | None = None) -> str:
        done = self(*args, input=input)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def js(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def invoke(
        self, tool: str, args: dict[str, Any], *, as_: str | None = None
    ) -> subprocess.CompletedProcess:
        """``toka [--as AGENT] tool invoke TOOL --args JSON --json``, whatever its exit."""
        who = ["--as", as_] if as_ else []
        return self(*who, "tool", "invoke", tool, "--args", json.dumps(args), "--json")

    def outcome(self, tool: str, args: dict[str, Any], *, as_: str | None = None) -> dict:
        """A call that ran: its JSON outcome (exit 0 if it succeeded, 1 if it failed)."""
        done = self.invoke(tool, args, as_=as_)
        assert done.returncode in (ExitCode.OK, ExitCode.FAILED), done.stderr
        result = json.loads(done.stdout)
        assert result["ok"] is (done.returncode == ExitCode.OK)
        return result

    def failed(self, kind: str, tool: str, args: dict[str, Any], *, as_: str | None = None) -> dict:
        """A call that ran and failed with error ``kind``; its JSON outcome."""
        result = self.outcome(tool, args, as_=as_)
        assert result["ok"] is False, result
        assert result["error"]["kind"] == kind, result["error"]
        return result

    def refused(
        self, code: ExitCode, tool: str, args: dict[str, Any], *, as_: str | None = None
    ) -> subprocess.CompletedProcess:
        """A call the kernel refused with exit ``code``: nothing printed on stdout."""
        done = self.invoke(tool, args, as_=as_)
        assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
        assert done.stdout == ""
        return done

    def agent(self, name: str, *caps: str) -> str:
        """A new agent holding one grant of ``caps``; its id."""
        agent = self.js("agent", "spawn", name)["id"]
        self.js("grant", "issue", agent, *caps)
        return agent

    def events(self, kind: str | None = None) -> list[dict]:
        which = ["--kind", kind] if kind else []
        return self.js("events", "list", *which, "--limit", "100000")["events"]

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events()]


def leaks(home: Path, needle: bytes) -> list[str]:
    """The files of the log (``toka.db`` and its ``-wal``/``-shm``) and the blob store that
    hold ``needle``, by name relative to the home."""
    files = [*home.glob("toka.db*"), *(home / "blobs").iterdir()]
    return sorted(
        str(f.relative_to(home)) for f in files if f.is_file() and needle in f.read_bytes()
    )


class _Redirecting(_Handler):
    """``http_support``'s routes, and fixed redirects (302) from the paths in ``REDIRECTS``."""

    REDIRECTS = {"/a/start": "/b/end", "/a/hop": "/a/end"}

    def _route(self) -> None:
        target = self.REDIRECTS.get(self.path)
        if target is None:
            self._handle()
            return
        self.server.received.append(  # type: ignore[attr-defined]
            Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, b"")
        )
        self._answer(302, b"", location=target)

    do_GET = do_POST = _route


def serving_redirects() -> contextlib.AbstractContextManager[Server]:
    """``http_support.serving`` with ``_Redirecting``'s redirects too."""
    return serving(_Redirecting)


def staged_tool(directory: Path, wat: str, files: str, side_effect: str = "idempotent") -> Path:
    """A manifest (and module, built from ``tests/wasm/WAT.wat``) in ``directory`` for a
    WASM tool named ``wat`` whose ``[files]`` table is ``files`` (TOML lines)."""
    directory.mkdir(parents=True, exist_ok=True)
    source = (Path(__file__).parent / "wasm" / f"{wat}.wat").read_text()
    (directory / f"{wat}.wasm").write_bytes(wasmtime.wat2wasm(source))
    manifest = directory / f"{wat}.toml"
    manifest.write_text(
        f'name = "{wat}"\nversion = "1.0.0"\ndescription = "staged, from {wat}.wat"\n'
        f'kind = "wasm"\nmodule = "{wat}.wasm"\nside_effect = "{side_effect}"\n\n'
        f"[files]\n{files}\n"
    )
    return manifest
