"""Tampering with the log is detected by ``toka verify`` (exit 5, naming the seq).

Each test runs on both backends: on PostgreSQL the attacker owns the database (``raw_log``
turns its append-only triggers and foreign keys off), so the same edits go through."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import msgspec
import pytest
from log_support import make_home, populate, raw_log, run_toka, scalar, tamper, toka_json

from toka.core.log.checkpoints import Checkpoint
from toka.core.log.store import chain_hash
from toka.core.model.ops import SignedOperation
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home

pytestmark = pytest.mark.stores


@pytest.fixture
def home(tmp_path) -> Home:
    h = make_home(tmp_path / "home", checkpoint_interval=10)
    populate(h, tasks=12)
    return h


def observation_seqs(home: Home) -> list[int]:
    with raw_log(home) as conn:
        rows = conn.execute(
            "SELECT seq FROM events WHERE kind = 'observation.emitted' ORDER BY seq"
        ).fetchall()
    return [r[0] for r in rows]


def payload_of(home: Home, seq: int) -> bytes:
    return bytes(scalar(home, "SELECT payload FROM events WHERE seq = ?", (seq,)))


def set_payload(home: Home, seq: int, payload: bytes) -> None:
    """Overwrite event ``seq``'s payload, leaving its hashes as they were."""
    tamper(home, "UPDATE events SET payload = ? WHERE seq = ?", (payload, seq))


def first_row(home: Home, sql: str, args: tuple = ()) -> tuple:
    with raw_log(home) as conn:
        return tuple(conn.execute(sql, args).fetchone())


def rewrite_from(home: Home, seq: int, edit) -> None:
    """As an attacker with the database but no keys: change event ``seq``'s payload with
    ``edit`` and recompute every hash from there on."""
    with raw_log(home) as conn:
        rows = conn.execute(
            "SELECT seq, ts, kind, principal, grant_jti, op_digest, part, payload"
            " FROM events WHERE seq >= ? ORDER BY seq",
            (seq,),
        ).fetchall()
        prev = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq - 1,)).fetchone()[0]
        conn.execute("BEGIN")
        for s, ts, kind, principal, grant, digest, part, payload in rows:
            payload = bytes(payload)
            if s == seq:
                payload = edit(payload)
            new = chain_hash(prev, s, ts, kind, principal, grant, digest, part, payload)
            conn.execute(
                "UPDATE events SET payload = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (payload, prev, new, s),
            )
            prev = new
        conn.execute("COMMIT")


def assert_detected(home: Home, seq: int, *args: str) -> str:
    result = run_toka("verify", *args, home=home.root)
    assert result.returncode == 5, result.stderr
    assert f"seq {seq}" in result.stderr or f"event {seq}" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
    as_json = run_toka("verify", "--json", *args, home=home.root)
    assert as_json.returncode == 5
    assert json.loads(as_json.stdout)["first_bad_seq"] == seq
    return result.stderr


def test_intact_log_verifies_every_part(home):
    report = toka_json("verify", "--signatures", home=home.root)
    assert report["ok"] is True and report["first_bad_seq"] is None
    assert report["checkpoints"] == report["head_seq"] // 10
    assert report["snapshots"] == 3
    assert report["operations"] > 30
    assert report["signatures_checked"] == report["operations"]


def test_verify_prints_no_progress_when_piped(home):
    result = run_toka("verify", home=home.root)
    assert result.returncode == 0
    assert result.stderr == ""


def test_verify_shows_progress_on_a_terminal(home):
    # The log's backend (TOKA_STORE, TOKA_STORE_SCHEMA) is kept, as run_toka does.
    keep = ("TOKA_STORE", "TOKA_STORE_SCHEMA")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKA_") or k in keep}
    env.update(TOKA_HOME=str(home.root), TERM="xterm-256color", COLUMNS="100")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "toka", "verify"],
        stdout=subprocess.PIPE,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    out, _ = proc.communicate(timeout=60)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert proc.returncode == 0
    assert b"ok:" in out
    assert b"verifying" in shown


def test_edited_payload_byte_is_detected(home):
    seq = observation_seqs(home)[5]
    payload = payload_of(home, seq)
    assert b"working" in payload
    set_payload(home, seq, payload.replace(b"working", b"workinG"))
    stderr = assert_detected(home, seq)
    assert "hash does not match" in stderr


def test_deleted_row_is_detected(home):
    seq = observation_seqs(home)[3]
    tamper(home, "DELETE FROM events WHERE seq = ?", (seq,))
    assert "missing" in assert_detected(home, seq)


def test_swapped_payloads_are_detected_at_the_first(home):
    first, second = observation_seqs(home)[2], observation_seqs(home)[7]
    first_payload, second_payload = payload_of(home, first), payload_of(home, second)
    assert first_payload != second_payload
    set_payload(home, first, second_payload)
    set_payload(home, second, first_payload)
    assert_detected(home, first)


def test_rewritten_chain_is_caught_by_the_signed_checkpoint(home):
    """An attacker who edits a payload and recomputes every later hash keeps the chain
    valid; deciding the operation again finds the edited event itself, and even the quick
    chain-only check finds the kernel-signed checkpoint after the edit no longer matches."""
    seq = observation_seqs(home)[4]
    rewrite_from(home, seq, lambda p: p.replace(b"working", b"idling!"))
    stderr = assert_detected(home, seq)
    assert "is not what operation" in stderr and '"note":"idling!"' in stderr
    checkpoint_seq = -(-seq // 10) * 10
    stderr = assert_detected(home, checkpoint_seq, "--quick")
    assert f"checkpoint at seq {checkpoint_seq}" in stderr


def test_altered_checkpoint_state_hash_is_reported(home):
    tamper(home, "UPDATE checkpoints SET state_hash = ? WHERE seq = 20", ("f" * 64,))
    stderr = assert_detected(home, 20)
    assert "signature" in stderr


def test_resigned_checkpoint_with_a_false_state_fails_verify_and_replay_check(home):
    """Even with the kernel key, a checkpoint cannot vouch for a state the log does not
    fold to: verify and replay --check both rebuild it and name the seq."""
    home_id = scalar(home, "SELECT value FROM meta WHERE key = 'home_id'")
    row = first_row(home, "SELECT seq, ts, head_hash FROM checkpoints WHERE seq = 30")
    forged = Checkpoint(home_id, row[0], row[1], row[2], "e" * 64).signed(home.kernel_key())
    tamper(
        home,
        "UPDATE checkpoints SET state_hash = ?, sig = ? WHERE seq = 30",
        (forged.state_hash, forged.sig),
    )
    assert "replay gives state hash" in assert_detected(home, 30)
    replay = run_toka("replay", "--check", home=home.root)
    assert replay.returncode == 5
    assert "seq 30" in replay.stderr
    as_json = run_toka("replay", "--check", "--json", home=home.root)
    assert json.loads(as_json.stdout)["first_bad_seq"] == 30


def test_operation_record_that_does_not_match_its_events_is_detected(home):
    first_seq, signed = first_row(
        home,
        "SELECT first_seq, signed FROM operations WHERE kind = 'observation.emit'"
        " ORDER BY first_seq LIMIT 1 OFFSET 3",
    )
    altered = bytes(signed).replace(b'"working"', b'"resting"')
    assert altered != bytes(signed)
    tamper(home, "UPDATE operations SET signed = ? WHERE first_seq = ?", (altered, first_seq))
    assert "hashes to" in assert_detected(home, first_seq)


def test_forged_operation_signature_is_found_only_with_signatures_flag(home):
    first_seq, raw = first_row(
        home,
        "SELECT first_seq, signed FROM operations WHERE kind = 'task.complete'"
        " ORDER BY first_seq LIMIT 1",
    )
    signed = SignedOperation.from_json(bytes(raw))
    other = SignedOperation.from_json(
        bytes(
            scalar(
                home,
                "SELECT signed FROM operations WHERE kind = 'task.schedule'"
                " ORDER BY first_seq LIMIT 1",
            )
        )
    )
    forged = msgspec.structs.replace(signed, sig=other.sig)
    tamper(
        home,
        "UPDATE operations SET signed = ? WHERE first_seq = ?",
        (forged.to_json(), first_seq),
    )
    assert run_toka("verify", home=home.root).returncode == 0
    stderr = assert_detected(home, first_seq, "--signatures")
    assert "signature does not verify" in stderr


def test_truncated_tail_is_detected_against_an_exported_checkpoint(home, tmp_path):
    exported = tmp_path / "checkpoint.json"
    summary = toka_json("checkpoint", "export", str(exported), home=home.root)
    kept = summary["seq"] - 15
    # A careful attacker removes the tail and everything that mentions it.
    for sql in (
        "DELETE FROM events WHERE seq > ?",
        "DELETE FROM checkpoints WHERE seq > ?",
        "DELETE FROM snapshots WHERE seq > ?",
        "DELETE FROM operations WHERE first_seq > ?",
    ):
        tamper(home, sql, (kept,))
    assert run_toka("verify", home=home.root).returncode == 0
    stderr = assert_detected(home, kept + 1, "--against", str(exported))
    assert f"ends at seq {kept}" in stderr and f"covers seq {summary['seq']}" in stderr


def test_rolled_back_then_extended_log_is_detected_against_an_exported_checkpoint(home, tmp_path):
    exported = tmp_path / "checkpoint.json"
    cp_seq = toka_json("checkpoint", "export", str(exported), home=home.root)["seq"]
    for sql in (
        "DELETE FROM events WHERE seq > ?",
        "DELETE FROM checkpoints WHERE seq > ?",
        "DELETE FROM snapshots WHERE seq > ?",
        "DELETE FROM operations WHERE first_seq > ?",
    ):
        tamper(home, sql, (cp_seq - 5,))
    with Runtime(home) as rt:
        operator = Client(rt)
        for i in range(12):
            operator.observe(next(iter(rt.state.agents)), {"rewritten": i})
    assert run_toka("verify", home=home.root).returncode == 0
    assert "rewritten or rolled back" in assert_detected(home, cp_seq, "--against", str(exported))


def test_exported_checkpoint_verifies_with_only_its_public_key(home, tmp_path):
    exported = tmp_path / "cp.json"
    run_toka("checkpoint", "export", str(exported), home=home.root)
    data = json.loads(exported.read_text())
    cp = msgspec.convert(data["checkpoint"], Checkpoint)
    cp.check_signature(data["public_key"])
    assert data["public_key"] == home.kernel_public_key()
    assert cp.head_hash == scalar(home, "SELECT hash FROM events WHERE seq = ?", (cp.seq,))
    report = toka_json("verify", "--against", str(exported), home=home.root)
    assert report["against_seq"] == cp.seq


def test_replaced_kernel_key_is_detected(home, tmp_path):
    exported = tmp_path / "cp.json"
    run_toka("checkpoint", "export", str(exported), home=home.root)
    home.kernel_key_path.unlink()
    home.kernel_key()
    result = run_toka("verify", "--against", str(exported), home=home.root)
    assert result.returncode == 5
    assert "signature does not verify" in result.stderr


def test_a_rewrite_of_a_young_log_without_checkpoints_is_caught_by_deciding_again(tmp_path):
    """The default interval leaves a young log without any checkpoint: a full rewrite
    of the chain (a forged agent name) passed verify; deciding each operation again
    catches it at the forged event."""
    home = make_home(tmp_path / "home", checkpoint_interval=1000)
    agents = populate(home, tasks=3)
    with raw_log(home) as conn:
        rows = conn.execute(
            "SELECT seq, payload FROM events WHERE kind = 'agent.spawned' ORDER BY seq"
        ).fetchall()
    spawned = next(seq for seq, payload in rows if agents["worker"].encode() in bytes(payload))
    rewrite_from(home, spawned, lambda p: p.replace(b'"worker"', b'"mallory"'))
    tamper(home, "DELETE FROM checkpoints")
    tamper(home, "DELETE FROM snapshots")
    assert json.loads(run_toka("verify", "--quick", "--json", home=home.root).stdout)["ok"]
    stderr = assert_detected(home, spawned)
    assert '"name":"mallory"' in stderr and '"name":"worker"' in stderr
    assert_detected(home, spawned, "--signatures")


def test_deleted_checkpoints_that_the_interval_made_due_are_reported(home):
    head = scalar(home, "SELECT max(seq) FROM events")
    assert head >= 20
    tamper(home, "DELETE FROM checkpoints")
    tamper(home, "DELETE FROM snapshots")
    result = run_toka("verify", home=home.root)
    assert result.returncode == 5
    assert "the checkpoint due once the log passed seq 10 is missing" in result.stderr


def test_an_event_forged_as_part_of_the_genesis_is_caught(home):
    """Genesis events have no signed operation, so they escape deciding again: one
    claimed anywhere after the first two (a root grant for an agent) is forged."""
    agent = json.loads(run_toka("agent", "list", "--json", home=home.root).stdout)["agents"][0][
        "id"
    ]
    seq = observation_seqs(home)[2]

    def forge(_payload: bytes) -> bytes:
        return msgspec.json.encode(
            {
                "jti": "gr-99",
                "subject": agent,
                "caps": ["*:*"],
                "issuer": "kernel",
                "parent": None,
                "iat": 0,
                "exp": 2**40,
                "budgets": {},
                "approve": False,
            }
        )

    rewrite_from(home, seq, forge)
    tamper(
        home,
        "UPDATE events SET kind = 'capability.granted', principal = 'kernel', "
        "grant_jti = NULL, op_digest = 'genesis' WHERE seq = ?",
        (seq,),
    )
    # (the chain is recomputed over the new columns too)
    rewrite_from(home, seq, lambda p: p)
    stderr = assert_detected(home, seq)
    assert "claims to be part of the genesis" in stderr
