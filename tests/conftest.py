"""Shared fixtures: a fresh Toka home, its runtime and the operator's client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from toka.core.client import Client
from toka.core.home import Home
from toka.core.runtime import Runtime


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = Home(tmp_path / "home")
    h.init()
    return h


@pytest.fixture
def runtime(home: Home):
    rt = Runtime(home)
    yield rt
    rt.close()


@pytest.fixture
def operator(runtime: Runtime) -> Client:
    return Client(runtime)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("TOKA_HOME", "TOKA_TOKEN", "TOKA_KEY", "TOKA_AS", "TOKA_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


def run_toka(
    *args: str,
    home: Path | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess:
    """Run the real ``toka`` command in a subprocess."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TOKA_")}
    if home is not None:
        full_env["TOKA_HOME"] = str(home)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "toka", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        timeout=timeout,
    )
