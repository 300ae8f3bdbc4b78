"""Shared fixtures: a fresh Toka home, its runtime and the operator's client; the
console's seeded worlds (tests/snapshots/world.py; a file needing another overrides);
the log's backend.

A module marked ``pytest.mark.stores`` runs each of its tests on both backends: the
``store_backend`` fixture is parametrised over ``sqlite`` and ``postgresql``, and for
``postgresql`` every home the test makes (in this process or in a ``toka`` subprocess)
keeps its log in a fresh schema of the session's throwaway server (``TOKA_STORE``).
``pytest.mark.sqlite_only`` keeps one test of such a module on SQLite.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pg_support
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
    for var in (
        "TOKA_HOME",
        "TOKA_TOKEN",
        "TOKA_KEY",
        "TOKA_AS",
        "TOKA_DEBUG",
        "TOKA_STORE",
        "TOKA_STORE_SCHEMA",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "stores: run each test of the module on SQLite and on PostgreSQL",
        "sqlite_only: a test of a `stores` module that is about SQLite itself",
        "pg_only: a test of the PostgreSQL log itself (needs the throwaway server)",
    ):
        config.addinivalue_line("markers", line)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    node = metafunc.definition
    if "store_backend" not in metafunc.fixturenames or not node.get_closest_marker("stores"):
        return
    if node.get_closest_marker("pg_only"):
        metafunc.parametrize("store_backend", ["postgresql"], indirect=True)
    elif not node.get_closest_marker("sqlite_only"):
        metafunc.parametrize("store_backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(scope="session")
def pg_server():
    """The session's PostgreSQL server (started once), or ``TOKA_TEST_PG_DSN``'s."""
    mode = pg_support.mode()
    if mode == "off":
        pytest.skip("PostgreSQL tests are off (TOKA_TEST_PG=off)")
    reason = pg_support.unavailable_reason()
    if reason is not None:
        if mode == "require":
            pytest.fail(f"PostgreSQL tests are required (TOKA_TEST_PG=require): {reason}")
        pytest.skip(reason)
    dsn = pg_support.existing_dsn()
    if dsn:
        yield pg_support.Server(dsn)
        return
    with pg_support.throwaway_server() as server:
        yield server


@pytest.fixture(autouse=True)
def store_backend(request: pytest.FixtureRequest, _isolated_env, monkeypatch: pytest.MonkeyPatch):
    """The log's backend for this test: ``sqlite`` unless parametrised."""
    backend = getattr(request, "param", "sqlite")
    if backend != "postgresql":
        yield backend
        return
    server = request.getfixturevalue("pg_server")
    schema = server.new_schema()
    monkeypatch.setenv("TOKA_STORE", pg_support.url(server))
    monkeypatch.setenv("TOKA_STORE_SCHEMA", schema)
    yield backend
    server.drop_schema(schema)
