"""The log on PostgreSQL, shared by several hosts (homes in separate processes here):
one chain under concurrent writers, followers that survive lost connections, a writer
that dies or hangs holding the lock, a connection lost during COMMIT, forged rows,
copies between backends, and joining."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pg_support
import psycopg
import pytest
from log_support import make_home, populate
from toka_cli import run_toka

from toka.core.errors import StoreUnavailable, TokaError
from toka.core.log.follow import LogFollower
from toka.core.log.store import StoreSpec
from toka.core.model import ops
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home

pytestmark = pytest.mark.pg_only


@pytest.fixture
def schema(pg_server):
    name = pg_server.new_schema()
    yield name
    pg_server.drop_schema(name)


@pytest.fixture
def url(pg_server) -> str:
    return pg_support.url(pg_server)


def toka_ok(*args: str, home: Path, env: dict | None = None) -> dict:
    result = run_toka(*args, "--json", home=home, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def two_hosts(tmp_path: Path, url: str, schema: str) -> tuple[Path, Path]:
    """Home A creates the log; home B joins it with A's exported kernel."""
    a, b, bundle = tmp_path / "host-a", tmp_path / "host-b", tmp_path / "kernel.json"
    toka_ok("init", "--store", url, "--schema", schema, home=a)
    toka_ok("home", "export-kernel", str(bundle), home=a)
    assert (bundle.stat().st_mode & 0o777) == 0o600
    joined = toka_ok("init", "--store", url, "--schema", schema, "--join", str(bundle), home=b)
    assert joined["joined"] and joined["home_id"] == toka_ok("info", home=a)["home_id"]
    return a, b


WRITER = textwrap.dedent(
    """
    import sys
    from toka.core.runtime import Runtime
    from toka.core.runtime.client import Client
    from toka.core.runtime.home import Home

    with Runtime(Home(sys.argv[1])) as rt:
        client = Client(rt)
        agent, _ = client.spawn_agent(sys.argv[2])
        for i in range(int(sys.argv[3])):
            client.observe(agent, {"host": sys.argv[2], "i": i})
        print(agent)
    """
)


def test_two_hosts_committing_at_once_make_one_chain_that_both_verify(tmp_path, url, schema):
    a, b = two_hosts(tmp_path, url, schema)
    per_host = 60
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(home), name, str(per_host)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for home, name in ((a, "alpha"), (b, "beta"), (a, "gamma"), (b, "delta"))
    ]
    agents = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        agents.append(out.strip())
    with Runtime(Home(a)) as rt:
        records = list(rt.log.records())
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        for prev, cur in itertools.pairwise(records):
            assert cur.prev_hash == prev.hash
        observed = [r for r in records if r.kind == "observation.emitted"]
        assert len(observed) == 4 * per_host
        # The hosts' commits interleave: neither host's batch went in as one block.
        names = ("alpha", "beta", "gamma", "delta")
        by = [next(n for n in names if f'"host":"{n}"'.encode() in r.payload) for r in observed]
        assert sum(1 for x, y in itertools.pairwise(by) if x != y) > 4
        assert set(agents) <= set(rt.state.agents)
    for home in (a, b):
        assert toka_ok("verify", home=home)["ok"]
        assert toka_ok("replay", "--check", home=home)["ok"]


def test_a_runner_drives_only_the_agents_whose_keys_its_host_holds(tmp_path, url, schema):
    a, b = two_hosts(tmp_path, url, schema)
    mine = toka_ok("agent", "spawn", "mine", "--behaviour", "echo", home=b)["id"]
    theirs = toka_ok("agent", "spawn", "theirs", "--behaviour", "echo", home=a)["id"]
    toka_ok("task", "schedule", mine, "for b", home=b)
    toka_ok("task", "schedule", theirs, "for a", home=b)
    result = run_toka("run", "--until-idle", home=b)
    assert result.returncode == 0, result.stderr
    assert f"skipping {theirs} (theirs's key is not on this host" in result.stderr
    ran = toka_ok("run", "--until-idle", home=b)
    assert theirs in ran["skipped"] and mine not in ran["skipped"]
    tasks = {t["agent"]: t["status"] for t in toka_ok("task", "list", home=a)["tasks"]}
    assert tasks == {mine: "completed", theirs: "scheduled"}
    refused = run_toka("run", "--agent", theirs, home=b)
    assert refused.returncode == 4 and "not on this host" in refused.stderr
    toka_ok("run", "--until-idle", home=a)
    tasks = {t["agent"]: t["status"] for t in toka_ok("task", "list", home=b)["tasks"]}
    assert tasks == {mine: "completed", theirs: "completed"}


def test_a_tool_registered_on_one_host_runs_on_another(tmp_path, url, schema):
    a, b = two_hosts(tmp_path, url, schema)
    modules = list((a / "blobs").glob("*.wasm"))
    assert modules and not list((b / "blobs").glob("*.wasm"))
    out = toka_ok("tool", "invoke", "upper", "--args", '{"text": "shared"}', home=b)
    assert out["output"] == {"text": "SHARED"}
    # Fetched from the log's database, checked and cached in the home.
    assert {p.name for p in (b / "blobs").glob("*.wasm")} & {p.name for p in modules}


def test_a_module_altered_in_the_database_is_refused(tmp_path, url, schema, pg_server):
    _, b = two_hosts(tmp_path, url, schema)
    pg_server.execute(f"UPDATE {schema}.blobs SET data = data || '\\x00'::bytea")
    result = run_toka("tool", "invoke", "upper", "--args", '{"text": "x"}', home=b)
    assert result.returncode == 5, result.stderr
    assert "does not match its sha256" in result.stderr


def test_tail_follow_on_one_host_shows_what_another_commits(tmp_path, url, schema):
    a, b = two_hosts(tmp_path, url, schema)
    before = toka_ok("agent", "spawn", "before-the-tail", home=a)["id"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKA_")}
    env["TOKA_HOME"] = str(b)
    tail = subprocess.Popen(
        [sys.executable, "-m", "toka", "events", "tail", "-f", "--kind", "agent.*", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        # The tail's own listing comes first: once it is printed, what follows can only
        # reach B's tail by following A's commit.
        assert json.loads(tail.stdout.readline())["payload"]["agent"] == before
        spawned = toka_ok("agent", "spawn", "seen-from-b", home=a)["id"]
        assert json.loads(tail.stdout.readline())["payload"]["agent"] == spawned
    finally:
        tail.terminate()
        tail.wait(10)


def test_a_follower_survives_its_connection_being_killed(tmp_path, url, schema, pg_server):
    home = Home(tmp_path / "home")
    home.init(store=StoreSpec(url, schema))
    with Runtime(home) as rt, LogFollower(home, after_seq=rt.state.seq) as follower:
        operator = Client(rt)
        agent, _ = operator.spawn_agent("watched")
        seen = [r.seq for r in follower.wait(5)]
        stop = threading.Event()

        def write() -> None:
            for i in range(150):
                operator.observe(agent, {"i": i})
            stop.set()

        writer = threading.Thread(target=write)
        writer.start()
        kills = 0
        while not stop.is_set() or follower.head() > (seen[-1] if seen else 0):
            conn = follower.log._rconn  # the follower's own connection
            if conn is not None and not conn.closed and kills < 10:
                pg_server.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
                kills += 1
            seen += [r.seq for r in follower.wait(0.3)]
        writer.join()
        seen += [r.seq for r in follower.wait(1)]
        assert kills >= 5
        assert seen == list(range(seen[0], rt.state.seq + 1)), "each event once, in order"


HOLDER = textwrap.dedent(
    """
    import sys, time
    from toka.core.runtime.home import Home
    store = Home(sys.argv[1]).open_store()
    with store.write():
        print("locked", flush=True)
        time.sleep(600)
    """
)


def _hold_lock(home: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_a_writer_killed_while_holding_the_lock_frees_it(tmp_path, url, schema):
    home = tmp_path / "home"
    toka_ok("init", "--store", url, "--schema", schema, home=home)
    holder = _hold_lock(home)
    try:
        check = toka_ok("store", "check", home=home)
        assert [h["pid"] for h in check["writer_lock"]], check
        assert check["writer_lock"][0]["application"].endswith(f"/{holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    spawned = toka_ok("agent", "spawn", "after-the-kill", home=home)
    assert spawned["id"]
    assert toka_ok("store", "check", home=home)["writer_lock"] == []
    assert toka_ok("verify", home=home)["ok"]


def test_a_hung_writer_is_ended_by_the_idle_timeout(tmp_path, url, schema):
    home = tmp_path / "home"
    toka_ok("init", "--store", url, "--schema", schema, home=home)
    config = home / "config.toml"
    config.write_text(
        config.read_text().replace("store_idle_timeout_s = 60", "store_idle_timeout_s = 1")
    )
    holder = _hold_lock(home)  # alive, but doing nothing inside its transaction
    try:
        spawned = toka_ok("agent", "spawn", "after-the-hang", home=home)
        assert spawned["id"]
    finally:
        holder.kill()
        holder.wait()
    assert toka_ok("verify", home=home)["ok"]


def test_a_writer_waiting_too_long_for_the_lock_is_refused_and_nothing_changes(
    tmp_path, url, schema
):
    home = tmp_path / "home"
    toka_ok("init", "--store", url, "--schema", schema, home=home)
    config = home / "config.toml"
    config.write_text(
        config.read_text().replace("store_lock_timeout_s = 30", "store_lock_timeout_s = 1")
    )
    head = toka_ok("info", home=home)["head_seq"]
    holder = _hold_lock(home)
    try:
        result = run_toka("agent", "spawn", "blocked", home=home)
        assert result.returncode != 0
        assert "held the log's lock for over 1 s" in result.stderr
    finally:
        holder.kill()
        holder.wait()
    assert toka_ok("info", home=home)["head_seq"] == head


def _writer_pid(server: pg_support.Server, wait_event: str, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = server.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'toka/%%'"
            " AND wait_event = %s",
            (wait_event,),
        )
        if rows:
            return rows[0][0]
        time.sleep(0.02)
    raise AssertionError(f"no Toka backend waited on {wait_event}")


def _set_standby(server: pg_support.Server, names: str) -> None:
    """Set synchronous_standby_names and wait until new sessions see it."""
    server.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
    server.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while server.execute("SHOW synchronous_standby_names")[0][0] != names:
        assert time.monotonic() < deadline, "the server did not reload its configuration"
        time.sleep(0.02)


@pytest.mark.timeout(120)
def test_a_connection_lost_during_commit_is_settled_by_nonce(tmp_path, pg_server):
    """A server whose commits wait for a standby that never comes: the commit is made
    locally, then the connection is killed before the client hears of it. The runtime
    finds the operation by its nonce and answers with its recorded outcome; a
    resubmission gives the same outcome, ``replayed``, and nothing is applied twice."""
    with pg_support.throwaway_server() as server:
        spec = StoreSpec(pg_support.url(server), "toka")
        home = Home(tmp_path / "home")
        home.init(store=spec)
        with Runtime(home) as rt:
            operator = Client(rt)
            agent, _ = operator.spawn_agent("committed-once")
            head = rt.state.seq
            _set_standby(server, "nobody")
            signed = operator.sign(ops.EmitObservation(agent, {"once": True}))
            result: list = []
            submit = threading.Thread(target=lambda: result.append(_outcome(rt, signed)))
            submit.start()
            pid = _writer_pid(server, "SyncRep")  # committed here, not yet acknowledged
            server.execute("SELECT pg_terminate_backend(%s)", (pid,))
            submit.join(30)
            _set_standby(server, "")
            first = result[0]
            assert not isinstance(first, Exception), first
            assert first.replayed and first.first_seq == head + 1
            again = rt.submit(signed)
            assert again.replayed and again.first_seq == first.first_seq
            assert rt.state.seq == head + 1
            assert rt.verify()["ok"]
        with Runtime(home) as fresh:
            assert fresh.state.seq == head + 1
            assert fresh.submit(signed).replayed


def _outcome(rt: Runtime, signed):
    try:
        return rt.submit(signed)
    except TokaError as exc:
        return exc


def test_a_connection_lost_before_commit_applies_nothing_and_a_resubmission_applies_once(
    tmp_path, url, schema, pg_server
):
    home = tmp_path / "home"
    toka_ok("init", "--store", url, "--schema", schema, home=home)
    with Runtime(Home(home)) as rt:
        operator = Client(rt)
        agent, _ = operator.spawn_agent("retried")
        head = rt.state.seq
        holder = _hold_lock(home)
        try:
            signed = operator.sign(ops.EmitObservation(agent, {"n": 1}))
            result: list = []
            submit = threading.Thread(target=lambda: result.append(_outcome(rt, signed)))
            submit.start()
            pid = _writer_pid(pg_server, "advisory")
            pg_server.execute("SELECT pg_terminate_backend(%s)", (pid,))
            submit.join(30)
        finally:
            holder.kill()
            holder.wait()
        assert isinstance(result[0], StoreUnavailable | TokaError)
        assert rt.state.seq == head
        outcome = rt.submit(signed)
        assert not outcome.replayed and outcome.first_seq == head + 1
        assert rt.submit(signed).replayed
        assert rt.verify()["ok"]


def test_forged_rows_are_refused_by_the_constraints(tmp_path, url, schema, pg_server):
    """Even a client that skips the writer lock cannot fork, gap or rewrite the log."""
    home = Home(tmp_path / "home")
    home.init(store=StoreSpec(url, schema))
    seq, head_hash, _ = home.open_store(readonly=True).head()
    insert = (
        f"INSERT INTO {schema}.events(seq, ts, kind, principal, grant_jti, op_digest, part,"
        " payload, prev_hash, hash) VALUES (%s, 1, 'agent.spawned', 'operator', NULL, 'x', 0,"
        " '\\x7b7d', %s, %s)"
    )
    attempts = {
        "a gap": (seq + 2, head_hash, "a" * 64),
        "a fork of the last row": (seq, head_hash, "b" * 64),
        "a wrong predecessor": (seq + 1, "c" * 64, "d" * 64),
        "a second genesis": (seq + 1, "0" * 64, "e" * 64),
    }
    for what, args in attempts.items():
        with pytest.raises(psycopg.errors.IntegrityError):
            pg_server.execute(insert, args)
        assert home.open_store(readonly=True).head()[0] == seq, what
    for statement in (
        f"UPDATE {schema}.events SET payload = '\\x00' WHERE seq = 1",
        f"DELETE FROM {schema}.events WHERE seq = {seq}",
        f"TRUNCATE {schema}.events CASCADE",
        f"DELETE FROM {schema}.operations",
        f"UPDATE {schema}.checkpoints SET sig = ''",
    ):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            pg_server.execute(statement)
    assert Runtime(home).verify()["ok"]


def test_a_server_that_could_lose_acknowledged_data_is_refused(tmp_path, pg_server):
    pg_server.execute("DROP DATABASE IF EXISTS careless")
    pg_server.execute("CREATE DATABASE careless")
    pg_server.execute("ALTER DATABASE careless SET synchronous_commit = off")
    careless = pg_support.url(pg_server).replace(
        "postgresql:///postgres?", "postgresql:///careless?"
    )
    with pytest.raises(StoreUnavailable, match="synchronous_commit=off"):
        Home(tmp_path / "a").init(store=StoreSpec(careless, "toka"))
    with pg_support.throwaway_server("fsync=off") as server:
        result = run_toka("init", "--store", pg_support.url(server), home=tmp_path / "b")
        assert result.returncode != 0
        assert "fsync=off" in result.stderr
        assert server.execute("SELECT to_regclass('toka.events')") == [(None,)]


def test_copy_from_sqlite_then_verify_against_a_checkpoint_exported_before(tmp_path, url, schema):
    home = make_home(tmp_path / "home", checkpoint_interval=10)
    toka_ok("init", home=home.root)  # the built-in tools: a WASM module among the blobs
    populate(home, tasks=8)
    toka_ok("tool", "invoke", "upper", "--args", '{"text": "copied"}', home=home.root)
    exported = tmp_path / "checkpoint.json"
    toka_ok("checkpoint", "export", str(exported), home=home.root)
    copied = toka_ok("store", "copy", str(home.db_path), url, "--to-schema", schema, home=home.root)
    assert copied["copied"]["events"] == home.open_store(readonly=True).head()[0]
    assert copied["copied"]["checkpoints"] >= 2 and copied["copied"]["blobs"] >= 1
    assert copied["verify"]["ok"]
    env = {"TOKA_STORE_SCHEMA": schema}
    on_pg = toka_ok("--store", url, "verify", "--against", str(exported), home=home.root, env=env)
    assert (
        on_pg["ok"]
        and on_pg["against_seq"] == json.loads(exported.read_text())["checkpoint"]["seq"]
    )
    # And back: PostgreSQL to a new SQLite file, which verifies too.
    back = tmp_path / "back" / "toka.db"
    back.parent.mkdir()
    again = toka_ok("store", "copy", url, str(back), "--from-schema", schema, home=home.root)
    assert again["verify"]["ok"]
    assert {p.name for p in (back.parent / "blobs").iterdir()} >= {
        p.name for p in home.blobs.iterdir() if not p.name.startswith(".")
    }
    refused = run_toka(
        "store", "copy", str(home.db_path), url, "--to-schema", schema, home=home.root
    )
    assert refused.returncode == 4 and "already holds a log" in refused.stderr


def test_joining_refuses_what_would_mix_two_homes(tmp_path, url, schema, pg_server):
    a = tmp_path / "a"
    toka_ok("init", "--store", url, "--schema", schema, home=a)
    bundle = tmp_path / "kernel.json"
    toka_ok("home", "export-kernel", str(bundle), home=a)
    again = run_toka("home", "export-kernel", str(bundle), home=a)
    assert again.returncode == 4 and "never written over" in again.stderr
    # A second home cannot init into a log that is already another home's.
    other = run_toka("init", "--store", url, "--schema", schema, home=tmp_path / "other")
    assert other.returncode != 0 and "--join" in other.stderr
    # A bundle others can read is refused.
    bundle.chmod(0o644)
    loose = run_toka(
        "init", "--store", url, "--schema", schema, "--join", str(bundle), home=tmp_path / "b"
    )
    assert loose.returncode == 4 and "chmod 600" in loose.stderr
    bundle.chmod(0o600)
    # A bundle of another home is refused.
    second = pg_server.new_schema()
    try:
        c = tmp_path / "c"
        toka_ok("init", "--store", url, "--schema", second, home=c)
        foreign = run_toka(
            "init", "--store", url, "--schema", second, "--join", str(bundle), home=tmp_path / "d"
        )
        assert foreign.returncode != 0 and "belongs to home" in foreign.stderr
    finally:
        pg_server.drop_schema(second)
    # No password goes into a config.
    with_password = url.replace("user=postgres", "user=postgres&password=hunter2")
    result = run_toka("init", "--store", with_password, "--schema", schema, home=tmp_path / "e")
    assert result.returncode == 4 and "password" in result.stderr
    assert not (tmp_path / "e" / "config.toml").exists()
