"""A log written before the one-way layout still verifies and replays to the same state.

``tests/fixtures/legacy-home.tar.gz`` was written by commit 7b5a1a8's code with
``tests/fixtures/make_legacy_home.py``: every event kind, signed checkpoints, snapshots,
approvals, a failed tool call, refusals. It must never be regenerated.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from toka_cli import run_toka

from toka.core.runtime import Runtime
from toka.core.runtime.home import Home

FIXTURE = Path(__file__).parent / "fixtures" / "legacy-home.tar.gz"


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path


def expected(root: Path) -> dict:
    return json.loads((root / "expected.json").read_text())


def toka_json(root: Path, *args: str) -> dict:
    result = run_toka(*args, "--json", home=root / "home")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_legacy_log_verifies_with_signatures_and_against_its_exported_checkpoint(legacy):
    report = toka_json(legacy, "verify", "--signatures")
    assert report["ok"] and report["first_bad_seq"] is None
    assert report["head_seq"] == expected(legacy)["seq"]
    assert report["checkpoints"] == 7 and report["snapshots"] == 2
    assert report["signatures_checked"] == report["operations"] > 0
    against = toka_json(legacy, "verify", "--against", str(legacy / "checkpoint.json"))
    assert against["ok"] and against["against_seq"] == expected(legacy)["seq"]


def test_legacy_log_replays_to_the_recorded_state_hash(legacy):
    want = expected(legacy)
    check = toka_json(legacy, "replay", "--check")
    assert check["ok"] and check["checkpoints"] == 7
    assert (check["seq"], check["state_hash"]) == (want["seq"], want["state_hash"])
    # Start-up from the old snapshot plus the tail reaches the same state.
    state = toka_json(legacy, "state")
    assert state["state_hash"] == want["state_hash"]
    for seq, state_hash in want["state_at"].items():
        assert toka_json(legacy, "state", "--at", seq)["state_hash"] == state_hash, seq


def test_legacy_log_folds_to_the_same_state_in_process(legacy):
    want = expected(legacy)
    with Runtime(Home(legacy / "home")) as rt:
        assert rt.state.state_hash() == want["state_hash"]
        assert rt.replay().state_hash() == want["state_hash"]
        assert rt.state_at(64).state_hash() == want["state_at"]["64"]
