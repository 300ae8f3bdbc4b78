"""Durability: what an acknowledged operation survives, and the SQLite traps avoided.

What an acknowledged operation survives is tested on both backends; the tests of
SQLite's own machinery (PRAGMAs, its VFS, its locking) are ``sqlite_only``."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import apsw
import pytest
from log_support import make_home, raw_log, run_toka, toka_json

from toka.core.errors import StoreUnavailable, TokaError
from toka.core.log.sqlite import SqliteStore as EventLog
from toka.core.model import ops
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home

pytestmark = pytest.mark.stores


class CountingVFS(apsw.VFS):
    """The default VFS, counting xSync calls per file."""

    def __init__(self, name: str):
        self.syncs: collections.Counter[str] = collections.Counter()
        self.name = name
        super().__init__(name, "")

    def xOpen(self, name, flags):
        return _CountingFile(self, name, flags)


class _CountingFile(apsw.VFSFile):
    def __init__(self, vfs: CountingVFS, name, flags):
        self._vfs = vfs
        self._name = name.filename() if isinstance(name, apsw.URIFilename) else name
        super().__init__("", name, flags)

    def xSync(self, flags):
        self._vfs.syncs[os.path.basename(self._name)] += 1
        return super().xSync(flags)


@pytest.fixture(scope="module")
def counting_vfs():
    vfs = CountingVFS("toka-test-counting")
    yield vfs
    vfs.unregister()


@pytest.mark.sqlite_only  # SQLite's PRAGMAs; PostgreSQL's setting is tested below
@pytest.mark.parametrize(
    ("configured", "override", "pragma"),
    [("full", None, 2), ("normal", None, 1), ("full", "normal", 1), ("normal", "full", 2)],
)
def test_durability_sets_pragma_synchronous(tmp_path, configured, override, pragma):
    home = Home(tmp_path / "home")
    home.init()
    home.config_path.write_text(f'durability = "{configured}"\n')
    with Runtime(home, durability=override) as rt:
        assert rt.durability == (override or configured)
        assert rt.log.conn.execute("PRAGMA synchronous").fetchone()[0] == pragma
        assert rt.log.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.pg_only
def test_durability_sets_synchronous_commit_on_postgresql(tmp_path, store_backend):
    """PostgreSQL's counterpart: ``full`` keeps the server's ``synchronous_commit = on``
    (a commit is flushed to the server's WAL before it is acknowledged), ``normal`` turns
    it off for the writer's session (a server crash may lose the last commits)."""
    home = Home(tmp_path / "home")
    home.init()
    for configured, override, setting in [
        ("full", None, "on"),
        ("normal", None, "off"),
        ("full", "normal", "off"),
        ("normal", "full", "on"),
    ]:
        home.config_path.write_text(f'durability = "{configured}"\n')
        with Runtime(home, durability=override) as rt:
            assert rt.durability == rt.log.durability == (override or configured)
            Client(rt).spawn_agent(f"durable-{configured}-{override}")  # opens the writer
            writer = rt.log._wconn
            assert writer.execute("SHOW synchronous_commit").fetchone()[0] == setting


def test_durability_flag_overrides_the_config(tmp_path):
    home = make_home(tmp_path / "home")
    assert toka_json("info", home=home.root)["durability"] == "full"
    assert toka_json("--durability", "normal", "info", home=home.root)["durability"] == "normal"


@pytest.mark.sqlite_only  # counts SQLite's syncs through an APSW VFS
@pytest.mark.parametrize(("durability", "synced"), [("full", True), ("normal", False)])
def test_full_durability_syncs_the_wal_on_every_commit(
    tmp_path, monkeypatch, counting_vfs, durability, synced
):
    home = make_home(tmp_path / "home", checkpoint_interval=1000)

    def counting_log(self, durability="full", **kwargs):
        kwargs.pop("listen", None)
        return EventLog(self.db_path, durability, vfs=counting_vfs.name, **kwargs)

    monkeypatch.setattr(Home, "open_store", counting_log)
    with Runtime(home, durability=durability) as rt:
        operator = Client(rt)
        agent, _ = operator.spawn_agent("durable")
        counting_vfs.syncs.clear()
        for i in range(8):
            operator.observe(agent, {"i": i})
            wal_syncs = counting_vfs.syncs["toka.db-wal"]
            # Each acknowledged commit has been synced before submit returned.
            assert wal_syncs == (i + 1 if synced else 0)


class FailingSyncVFS(apsw.VFS):
    """The default VFS, whose WAL syncs fail while ``failing`` is set (a dying disk)."""

    def __init__(self, name: str):
        self.failing = False
        self.name = name
        super().__init__(name, "")

    def xOpen(self, name, flags):
        return _FailingFile(self, name, flags)


class _FailingFile(apsw.VFSFile):
    def __init__(self, vfs: FailingSyncVFS, name, flags):
        self._vfs = vfs
        self._wal = str(name.filename() if isinstance(name, apsw.URIFilename) else name)
        self._wal = self._wal.endswith("-wal")
        super().__init__("", name, flags)

    def xSync(self, flags):
        if self._wal and self._vfs.failing:
            raise apsw.IOError("simulated fsync failure")
        return super().xSync(flags)


@pytest.mark.sqlite_only  # fsync failures injected through an APSW VFS
def test_a_commit_whose_sync_fails_is_refused_and_leaves_nothing_behind(tmp_path, monkeypatch):
    vfs = FailingSyncVFS("toka-test-failing-sync")
    try:
        home = make_home(tmp_path / "home", checkpoint_interval=1000)

        def failing_log(self, durability="full", **kwargs):
            kwargs.pop("listen", None)
            return EventLog(self.db_path, durability, vfs=vfs.name, **kwargs)

        monkeypatch.setattr(Home, "open_store", failing_log)
        with Runtime(home) as rt:
            operator = Client(rt)
            agent, _ = operator.spawn_agent("durable")
            head = rt.state.seq
            signed = operator.sign(ops.EmitObservation(agent, {"i": 1}))
            vfs.failing = True
            with pytest.raises(TokaError, match="could not be written"):
                rt.submit(signed)
            with pytest.raises(TokaError, match="could not be written"):
                operator.submit_async(ops.EmitObservation(agent, {"i": 2})).result(10)
            assert rt.state.seq == head  # not acknowledged, not applied
            vfs.failing = False
            # The connection is usable again, and the refused operation was never kept:
            # resubmitting it applies it (not a replay).
            outcome = rt.submit(signed)
            assert not outcome.replayed and outcome.first_seq == head + 1
        assert toka_json("verify", home=home.root)["ok"] is True
    finally:
        vfs.unregister()


@pytest.mark.sqlite_only  # SQLite's own locking (BUSY_SNAPSHOT, busy timeout)
def test_deferred_read_then_write_hits_busy_snapshot_but_event_log_write_does_not(tmp_path):
    """The SQLITE_BUSY_SNAPSHOT trap: a deferred transaction that read before another
    connection committed cannot write, whatever the busy timeout; BEGIN IMMEDIATE can."""
    home = make_home(tmp_path / "home")
    mine = EventLog(home.db_path)
    theirs = EventLog(home.db_path)
    try:
        mine.conn.execute("BEGIN")
        mine.conn.execute("SELECT count(*) FROM events").fetchone()
        with theirs.write():
            theirs.set_meta("written-by", "another connection")
        started = time.monotonic()
        with pytest.raises(apsw.BusyError):
            mine.set_meta("written-by", "me")
        assert time.monotonic() - started < 5  # not the 30 s busy timeout: it cannot wait
        mine.conn.execute("ROLLBACK")

        with mine.write():
            head = mine.head()[0]
            with pytest.raises(apsw.BusyError):
                # While we hold the write lock, the other connection cannot sneak in.
                theirs.conn.setbusytimeout(50)
                with theirs.write():
                    pass
            mine.set_meta("head-seen", str(head))
        assert mine.meta("head-seen") == str(head)
    finally:
        mine.close()
        theirs.close()


@pytest.mark.pg_only
def test_a_second_writer_gives_up_after_its_lock_timeout_on_postgresql(tmp_path, store_backend):
    """PostgreSQL's counterpart of the second half above: while one store holds the
    writer lock, another cannot sneak in; it waits its lock timeout, then gives up saying
    so, and the holder commits."""
    home = make_home(tmp_path / "home")
    with home.config_path.open("a") as config:
        config.write("store_lock_timeout_s = 1\n")
    mine = home.open_store()
    theirs = home.open_store()
    try:
        with mine.write():
            head = mine.head()[0]
            lock = "another writer held the log's lock for over 1 s"
            with pytest.raises(StoreUnavailable, match=lock), theirs.write():
                pass
            mine.set_meta("head-seen", str(head))
        assert mine.meta("head-seen") == str(head)
        with theirs.write():  # the lock is free again: the other store writes
            theirs.set_meta("written-by", "theirs")
        assert mine.meta("written-by") == "theirs"
    finally:
        mine.close()
        theirs.close()


def test_event_log_write_waits_for_a_busy_writer_instead_of_failing(tmp_path):
    home = make_home(tmp_path / "home")
    holder = home.open_store()
    waiter = home.open_store()
    locked = threading.Event()

    def hold() -> None:
        with holder.write():
            holder.set_meta("holder", "yes")
            locked.set()
            time.sleep(0.3)

    thread = threading.Thread(target=hold)
    thread.start()
    locked.wait(5)
    with waiter.write():
        assert waiter.meta("holder") == "yes"  # it waited, then saw the commit
        waiter.set_meta("waiter", "yes")
    thread.join()
    assert holder.meta("waiter") == "yes"
    holder.close()
    waiter.close()


WRITER = textwrap.dedent(
    """
    import sys
    from toka.core.runtime.client import Client
    from toka.core.runtime.home import Home
    from toka.core.runtime import Runtime

    rt = Runtime(Home(sys.argv[1]))
    name = sys.argv[2]
    operator = Client(rt)

    def ack(outcome):
        # Acknowledged: submit returned. Printed only after that.
        print(outcome.first_seq, outcome.last_seq, outcome.nonce, flush=True)

    agent, outcome = operator.spawn_agent(f"killme-{name}")
    ack(outcome)
    me = Client(rt, agent)
    i = 0
    while True:
        i += 1
        if i % 11 == 0:
            # One operation, several events: terminating cancels tasks, revokes grants.
            doomed, outcome = operator.spawn_agent(f"doomed-{name}-{i}")
            ack(outcome)
            for t in range(3):
                ack(operator.schedule(doomed, f"doomed task {t}"))
            ack(operator.terminate(doomed, "end of round"))
        elif i % 3 == 0:
            ack(operator.schedule(agent, f"task {i}"))
        else:
            ack(me.observe(agent, {"i": i, "writer": name}))
    """
)


def _read_lines(stream, sink: list[str]) -> None:
    for line in stream:
        sink.append(line)


def test_kill_9_at_random_moments_loses_no_acknowledged_operation(tmp_path):
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    home = make_home(tmp_path / "home", checkpoint_interval=7)
    acked: list[tuple[int, int, str]] = []
    for round_ in range(8):
        procs = []
        for n in range(2):
            proc = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(home.root), f"{round_}-{n}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            lines: list[str] = []
            reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines))
            reader.start()
            procs.append((proc, lines, reader))
        deadline = time.monotonic() + 20
        while not all(lines for _, lines, _ in procs) and time.monotonic() < deadline:
            time.sleep(0.01)
        for proc, _, _ in procs:
            time.sleep(rng.uniform(0.02, 0.5))
            proc.send_signal(signal.SIGKILL)
        for proc, lines, reader in procs:
            proc.wait(10)
            reader.join(10)
            # A line cut short by the kill was never acknowledged.
            for line in lines:
                if line.endswith("\n"):
                    first, last, nonce = line.split()
                    acked.append((int(first), int(last), nonce))
    assert len(acked) > 50, f"seed {seed}: writers acknowledged too little to test"
    print(f"seed {seed}: {len(acked)} acknowledged operations")

    with raw_log(home) as conn:
        if not home.store_spec().is_postgres:
            # SQLite's check of its own file. A PostgreSQL server has none for a client to
            # run: a killed client's open transaction is rolled back by the server.
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        events = {
            row[0]: row[1:]
            for row in conn.execute("SELECT seq, op_digest, part FROM events ORDER BY seq")
        }
        ops = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT nonce, digest, status, first_seq, last_seq FROM operations"
            )
        }
    assert sorted(events) == list(range(1, len(events) + 1)), f"seed {seed}: gap in seqs"
    for first, last, nonce in acked:
        assert nonce in ops, f"seed {seed}: acknowledged {nonce} is missing"
        digest, status, op_first, op_last = ops[nonce]
        assert (status, op_first, op_last) == ("applied", first, last), f"seed {seed}"
    # No operation is half-applied: each op's events are all there, parts 0..n-1.
    by_digest: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    for seq, (digest, part) in events.items():
        by_digest[digest].append((seq, part))
    for _nonce, (digest, status, first, last) in ops.items():
        if status != "applied":
            continue
        assert by_digest[digest] == [(s, s - first) for s in range(first, last + 1)], (
            f"seed {seed}: operation {digest[:12]} is half-applied"
        )
    verify = run_toka("verify", "--signatures", home=home.root)
    assert verify.returncode == 0, f"seed {seed}: {verify.stderr}"
    replay = run_toka("replay", "--check", home=home.root)
    assert replay.returncode == 0, f"seed {seed}: {replay.stderr}"


MULTI_WRITER = textwrap.dedent(
    """
    import sys
    from toka.core.runtime.client import Client
    from toka.core.runtime.home import Home
    from toka.core.runtime import Runtime

    rt = Runtime(Home(sys.argv[1]))
    client = Client(rt)
    agent, _ = client.spawn_agent(f"writer-{sys.argv[2]}")
    for i in range(int(sys.argv[3])):
        client.observe(agent, {"writer": sys.argv[2], "i": i})
    """
)


def test_writer_processes_crossing_checkpoints_together_sign_each_once(tmp_path: Path):
    home = make_home(tmp_path / "home", checkpoint_interval=5)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MULTI_WRITER, str(home.root), str(n), "30"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with Runtime(home) as rt:
        head = rt.state.seq
        cps = rt.log.checkpoints()
        assert head == 2 + 3 * (2 + 30)
        assert [cp.seq // 5 for cp in cps] == list(range(1, head // 5 + 1))
    report = toka_json("verify", "--signatures", home=home.root)
    assert report["checkpoints"] == len(cps)
    assert toka_json("replay", "--check", home=home.root)["checkpoints"] == len(cps)
