"""Signed checkpoints, snapshots, fast start-up and time travel."""

from __future__ import annotations

import msgspec
import pytest
from log_support import make_home, populate, run_toka, scalar, snapshot_seqs, tamper, toka_json

from toka.core.errors import TokaError
from toka.core.log import snapshots
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home

pytestmark = pytest.mark.stores


@pytest.fixture
def home(tmp_path) -> Home:
    h = make_home(tmp_path / "home", checkpoint_interval=10)
    populate(h, tasks=15)
    return h


def record_reads(monkeypatch, home: Home) -> list[int]:
    """The ``after`` of every ``records`` or ``row_pages`` call on ``home``'s kind of
    store (SQLite's or PostgreSQL's): where folding started."""
    log = home.open_store(readonly=True)
    store = type(log)
    log.close()
    starts: list[int] = []
    records, row_pages = store.records, store.row_pages

    def spy_records(self, after=0, until=None, limit=None):
        starts.append(after)
        return records(self, after, until, limit)

    def spy_row_pages(self, after=0, until=None):
        starts.append(after)
        return row_pages(self, after, until)

    monkeypatch.setattr(store, "records", spy_records)
    monkeypatch.setattr(store, "row_pages", spy_row_pages)
    return starts


def test_a_checkpoint_is_signed_each_time_the_log_crosses_the_interval(home):
    with Runtime(home) as rt:
        cps = rt.log.checkpoints()
        head = rt.state.seq
        public_key = home.kernel_public_key()
        assert public_key is not None
        assert [cp.seq // 10 for cp in cps] == list(range(1, head // 10 + 1))
        for cp in cps:
            # Written at the end of the commit that crossed the boundary.
            assert 0 <= cp.seq - (cp.seq // 10) * 10 < 3
            cp.check_signature(public_key)
            assert cp.head_hash == rt.log.record(cp.seq).hash
            assert cp.state_hash == rt.replay(until=cp.seq).state_hash()
            assert cp.home_id == rt.state.home_id


def test_checkpoint_commits_with_the_events_or_not_at_all(home, monkeypatch):
    with Runtime(home) as rt:
        operator = Client(rt)
        agent = next(iter(rt.state.agents))
        while (rt.state.seq + 1) % 10 != 0:
            operator.observe(agent, "filler")
        head, checkpoints = rt.state.seq, len(rt.log.checkpoints())

        def broken(*args, **kwargs):
            raise OSError("disk full while writing the checkpoint")

        monkeypatch.setattr(snapshots, "write_checkpoint", broken)
        with pytest.raises(TokaError, match="could not be written"):
            operator.observe(agent, "crosses the boundary")
        assert rt.log.head()[0] == head
        assert len(rt.log.checkpoints()) == checkpoints
        assert rt.state.seq == head
        monkeypatch.undo()
        operator.observe(agent, "crosses the boundary, again")
        assert rt.log.checkpoints()[-1].seq == head + 1


def test_startup_from_a_snapshot_equals_a_full_replay(home, monkeypatch):
    newest = snapshot_seqs(home)[0]
    starts = record_reads(monkeypatch, home)
    with Runtime(home) as rt:
        assert starts[0] == newest
        full = rt.replay()
        assert rt.state.state_hash() == full.state_hash()
        # Same dict order too, so the kernel decides identically after a restart.
        assert msgspec.msgpack.encode(rt.state) == msgspec.msgpack.encode(full)


def test_snapshots_are_bounded(home):
    with Runtime(home) as rt:
        assert len(rt.log.checkpoints()) > snapshots.KEEP_SNAPSHOTS
        assert len(rt.log.snapshot_seqs()) == snapshots.KEEP_SNAPSHOTS


def test_corrupted_snapshot_is_ignored_not_trusted(home, monkeypatch):
    newest, previous = snapshot_seqs(home)[:2]
    state = bytes(scalar(home, "SELECT state FROM snapshots WHERE seq = ?", (newest,)))
    tamper(
        home,
        "UPDATE snapshots SET state = ? WHERE seq = ?",
        (state[:40] + b"\x00\xff", newest),
    )
    starts = record_reads(monkeypatch, home)
    with Runtime(home) as rt:
        assert starts[0] == previous
        assert rt.state.state_hash() == rt.replay().state_hash()


def test_forged_snapshot_that_decodes_is_not_trusted(home, monkeypatch):
    """A well-formed snapshot whose content differs (an agent revived) fails the signed
    state hash and start-up falls back."""
    log = home.open_store(readonly=True)
    newest = log.snapshot_seqs()[0]
    state = snapshots.decode_snapshot(log.snapshot(newest))
    log.close()
    agent = next(iter(state.agents.values()))
    agent.status = "paused"
    tamper(
        home,
        "UPDATE snapshots SET state = ? WHERE seq = ?",
        (snapshots.encode_snapshot(state), newest),
    )
    starts = record_reads(monkeypatch, home)
    with Runtime(home) as rt:
        assert starts[0] < newest
        assert rt.state.agents[agent.id].status == "running"
    assert run_toka("verify", home=home.root).returncode == 5


def test_without_any_valid_snapshot_startup_replays_from_genesis(home, monkeypatch):
    tamper(home, "UPDATE snapshots SET state = ?", (b"\x00",))
    starts = record_reads(monkeypatch, home)
    with Runtime(home) as rt:
        assert starts[0] == 0
        assert rt.state.state_hash() == rt.replay().state_hash()


def test_state_at_uses_the_nearest_snapshot_and_matches_replay(home, monkeypatch):
    with Runtime(home) as rt:
        head = rt.state.seq
        snapshots = sorted(rt.log.snapshot_seqs())
        starts = record_reads(monkeypatch, home)
        for seq in (1, 5, snapshots[0] - 1, snapshots[0], snapshots[0] + 3, head):
            starts.clear()
            expected = max([s for s in snapshots if s <= seq], default=0)
            at = rt.state_at(seq)
            assert starts[0] == expected
            assert at.seq == seq
            assert at.state_hash() == rt.replay(until=seq).state_hash()


def test_state_at_cli_shows_the_past(home):
    now = toka_json("state", home=home.root)
    past = toka_json("state", "--at", "12", home=home.root)
    assert past["seq"] == 12 and now["seq"] > 12
    assert past["state_hash"] != now["state_hash"]
    with Runtime(home) as rt:
        assert past["state_hash"] == rt.replay(until=12).state_hash()


def test_replay_check_compares_every_checkpoint_and_the_live_state(home):
    report = toka_json("replay", "--check", home=home.root)
    with Runtime(home) as rt:
        assert report["seq"] == rt.state.seq
        assert report["state_hash"] == rt.state.state_hash()
        assert report["checkpoints"] == len(rt.log.checkpoints())


def test_a_home_made_before_checkpoints_gets_a_kernel_key_on_first_need(tmp_path):
    home = make_home(tmp_path / "old", checkpoint_interval=5)
    home.kernel_key_path.unlink()
    assert home.kernel_public_key() is None
    populate(home, tasks=3)
    public_key = home.kernel_public_key()
    assert public_key is not None
    assert home.kernel_key_path.stat().st_mode & 0o777 == 0o600
    report = toka_json("verify", home=home.root)
    assert report["checkpoints"] >= 2
    # Never replaced once it exists.
    assert home.kernel_key().public_key == public_key


def test_checkpoints_without_a_kernel_key_fail_verification(home):
    home.kernel_key_path.unlink()
    result = run_toka("verify", home=home.root)
    assert result.returncode == 5
    assert "kernel key" in result.stderr and "seq 10" in result.stderr


def test_export_before_any_stored_checkpoint_signs_the_current_head(tmp_path):
    home = make_home(tmp_path / "young", checkpoint_interval=1000)
    target = tmp_path / "cp.json"
    summary = toka_json("checkpoint", "export", str(target), home=home.root)
    assert summary["seq"] == scalar(home, "SELECT max(seq) FROM events")
    assert scalar(home, "SELECT count(*) FROM checkpoints") == 0
    assert toka_json("verify", "--against", str(target), home=home.root)["ok"] is True


def test_exported_checkpoint_covers_the_head(home, tmp_path):
    target = tmp_path / "cp.json"
    summary = toka_json("checkpoint", "export", str(target), home=home.root)
    assert summary["seq"] == scalar(home, "SELECT max(seq) FROM events")
    assert summary["public_key"] == home.kernel_public_key()


def test_snapshots_are_taken_at_every_nth_checkpoint(tmp_path):
    home = make_home(tmp_path / "sparse", checkpoint_interval=5, snapshot_every=3)
    populate(home, tasks=15)
    with Runtime(home) as rt:
        numbers = [cp.seq // 5 for cp in rt.log.checkpoints()]
        assert len(numbers) > 6
        expected = [cp.seq for cp in rt.log.checkpoints() if (cp.seq // 5) % 3 == 0]
        assert sorted(rt.log.snapshot_seqs()) == expected[-snapshots.KEEP_SNAPSHOTS :]
        assert rt.state.state_hash() == rt.replay().state_hash()
