"""The read-only view of a home (toka.core.runtime.view): the state a Runtime loads, with
the same checks and errors, and none of the writer's machinery imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from log_support import make_home, populate, run_toka, snapshot_seqs, tamper

from toka.core.errors import HomeError, IntegrityFailure, InvalidInput
from toka.core.model.keys import KeyPair, public_key_from_pem
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home
from toka.core.runtime.view import StateView

pytestmark = pytest.mark.stores


@pytest.fixture
def home(tmp_path) -> Home:
    h = make_home(tmp_path / "home", checkpoint_interval=10)
    populate(h, tasks=15)
    return h


def _observe_until(home: Home, done) -> None:
    with Runtime(home) as rt:
        client = Client(rt)
        agent = next(iter(rt.state.agents))
        while not done(rt.state.seq):
            client.observe(agent, {"n": rt.state.seq})


def _same_as_runtime(home: Home) -> None:
    with Runtime(home) as rt, StateView(home) as view:
        assert view.state.seq == rt.state.seq
        assert view.state.state_hash() == rt.state.state_hash()
        assert view.head_hash == rt.head_hash


def test_the_view_loads_what_a_runtime_loads_with_a_tail_and_without(home):
    _observe_until(home, lambda seq: seq % 10 == 3)
    _same_as_runtime(home)  # a snapshot and a tail of 3 events
    _observe_until(home, lambda seq: seq % 10 == 0)
    with StateView(home) as view:
        assert snapshot_seqs(home)[0] == view.state.seq  # the head is a snapshot
    _same_as_runtime(home)


def test_a_snapshot_that_does_not_check_out_is_skipped_as_by_a_runtime(home):
    newest = snapshot_seqs(home)[0]
    tamper(home, "UPDATE snapshots SET state = ? WHERE seq = ?", (b"\x00\xff", newest))
    _same_as_runtime(home)


def test_a_tail_that_does_not_link_fails_as_a_runtime_does(home):
    _observe_until(home, lambda seq: seq % 10 == 3)
    with StateView(home) as view:
        head = view.state.seq
    tamper(home, "DELETE FROM events WHERE seq = ?", (head - 1,))
    with pytest.raises(IntegrityFailure) as by_runtime:
        Runtime(home)
    with pytest.raises(IntegrityFailure) as by_view:
        StateView(home)
    assert str(by_view.value) == str(by_runtime.value)
    for command in (["agent", "list"], ["task", "list"], ["events", "list"]):
        result = run_toka(*command, home=home.root)
        assert result.returncode == 5, result
        assert "does not link to the chain" in result.stderr


def test_a_missing_home_or_kernel_secret_is_refused_as_by_a_runtime(tmp_path, home):
    with pytest.raises(HomeError, match="no Toka home"):
        StateView(Home(tmp_path / "nowhere"))
    home.secret_path.write_bytes(b"short")
    with pytest.raises(HomeError) as by_runtime:
        Runtime(home)
    with pytest.raises(HomeError) as by_view:
        StateView(home)
    assert str(by_view.value) == str(by_runtime.value)


_PROBE = """
import io, json, sys
from contextlib import redirect_stdout
from toka.cli.main import main
with redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

# What only writing needs, and what only other commands need.
WRITER_ONLY = (
    "toka.core.runtime._runtime",
    "toka.core.runtime.admission",
    "toka.core.runtime.tokens",
    "toka.core.runtime.pipeline",
    "jwt",
    "cryptography",
    "textual",
)


def _modules_of(home: Home, *argv: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, "--home", str(home.root), *argv],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["code"] == 0
    return {m.split(".")[0] if not m.startswith("toka.") else m for m in result["modules"]}


@pytest.mark.sqlite_only
def test_listing_commands_import_none_of_the_writer(home):
    _observe_until(home, lambda seq: seq % 10 == 0)  # the head is a snapshot: no tail
    with StateView(home) as view:
        agent = next(iter(view.state.agents))
    listing = (
        ["agent", "list"],
        ["task", "list"],
        ["events", "list", "--limit", "5"],
        ["agent", "show", agent],
        ["grant", "list"],
        ["state"],
    )
    for argv in listing:
        loaded = _modules_of(home, *argv)
        assert not loaded & set(WRITER_ONLY), argv
        # Nothing to fold: not even the kernel's rules are imported.
        assert "toka.core.kernel" not in loaded, argv
    _observe_until(home, lambda seq: seq % 10 == 2)  # a tail: the kernel folds it
    loaded = _modules_of(home, "agent", "list")
    assert "toka.core.kernel" in loaded
    assert not loaded & set(WRITER_ONLY)


def test_a_public_key_read_from_pem_is_the_key_pair_s():
    for _ in range(20):
        key = KeyPair.generate()
        assert public_key_from_pem(key.to_pem()) == key.public_key
        crlf = key.to_pem().replace(b"\n", b"\r\n")
        assert public_key_from_pem(crlf) == key.public_key
    with pytest.raises(InvalidInput):
        public_key_from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(InvalidInput):
        public_key_from_pem(b"not a key")
