"""Shared fixtures: a fresh Toka home, its runtime and the operator's client."""

from __future__ import annotations

from pathlib import Path

import pytest
from toka_cli import run_toka  # noqa: F401  (use `from toka_cli import run_toka` in tests)

from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home


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
