"""Shared fixtures: a fresh Toka home, its runtime and the operator's client; the
console's seeded worlds (tests/snapshots/world.py; a file needing another overrides)."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest
from snapshots.world import effects_world, seeded_world
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


@pytest.fixture
def world(tmp_path: Path):
    """The console's seeded world: agents, tasks, grants, tools and their events."""
    with closing(seeded_world(tmp_path / "home")) as w:
        yield w


@pytest.fixture
def effects(tmp_path: Path):
    """The seeded world with a mount and calls with an effect, ended and open."""
    with closing(effects_world(tmp_path / "effects-home")) as w:
        yield w


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("TOKA_HOME", "TOKA_TOKEN", "TOKA_KEY", "TOKA_AS", "TOKA_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
