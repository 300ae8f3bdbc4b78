"""Operations in flight (``submit_async``), the schema migration and time-ordered nonces."""

from __future__ import annotations

import threading

import apsw
import pytest
from log_support import make_home, run_toka, scalar, tamper, toka_json

from toka.core.errors import NotCovered, ReplayedNonce, TokaError
from toka.core.log import sqlite as store_module
from toka.core.log.sqlite import SqliteStore as EventLog
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client

pytestmark = pytest.mark.stores


@pytest.fixture
def home(tmp_path):
    return make_home(tmp_path / "home", checkpoint_interval=50)


def test_operations_in_flight_are_applied_in_order_each_with_its_outcome(home):
    with Runtime(home) as rt:
        operator = Client(rt)
        agent, _ = operator.spawn_agent("streamer")
        me = Client(rt, agent)
        futures = [me.submit_async(ops.EmitObservation(agent, {"i": i})) for i in range(300)]
        outcomes = [f.result(30) for f in futures]
        assert [o.first(ev.ObservationEmitted).data["i"] for o in outcomes] == list(range(300))
        seqs = [o.first_seq for o in outcomes]
        assert seqs == sorted(seqs) and len(set(seqs)) == 300
        assert len({o.nonce for o in outcomes}) == 300
    assert toka_json("verify", "--signatures", home=home.root)["operations"] == 301


def test_a_refusal_in_flight_comes_through_its_future_and_is_logged(home):
    with Runtime(home) as rt:
        operator = Client(rt)
        agent, _ = operator.spawn_agent("streamer")
        other, _ = operator.spawn_agent("other")
        me = Client(rt, agent)
        good = me.submit_async(ops.EmitObservation(agent, {"ok": 1}))
        bad = me.submit_async(ops.EmitObservation(other, {"not": "mine"}))
        also_good = me.submit_async(ops.EmitObservation(agent, {"ok": 2}))
        assert good.result(10).first(ev.ObservationEmitted).data == {"ok": 1}
        with pytest.raises(NotCovered):
            bad.result(10)
        assert also_good.result(10).first(ev.ObservationEmitted).data == {"ok": 2}
        rejected = rt.log.query(kinds=["operation.rejected"])
        assert [r.principal for r in rejected] == [agent]


def test_resubmitting_in_flight_returns_the_original_outcome(home):
    with Runtime(home) as rt:
        operator = Client(rt)
        agent, _ = operator.spawn_agent("streamer")
        signed = Client(rt, agent).sign(ops.EmitObservation(agent, {"once": True}))
        first, again = rt.submit_async(signed), rt.submit_async(signed)
        assert not first.result(10).replayed
        assert again.result(10).replayed
        assert again.result().first_seq == first.result().first_seq
        assert len(rt.log.query(kinds=["observation.emitted"])) == 1
        other = reuse_nonce(signed, Client(rt, agent))
        with pytest.raises(ReplayedNonce):
            rt.submit_async(other).result(10)


def reuse_nonce(signed: ops.SignedOperation, client: Client) -> ops.SignedOperation:
    """Another operation signed with the nonce ``signed`` already used."""
    return client.sign(ops.EmitObservation(signed.op.agent, {"twice": True}), nonce=signed.nonce)


def test_a_queued_operation_cannot_be_cancelled(home):
    with Runtime(home) as rt:
        operator = Client(rt)
        agent, _ = operator.spawn_agent("streamer")
        # Another thread holds the state lock, so the operation stays queued.
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with rt._lock:
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(10)
        future = operator.submit_async(ops.EmitObservation(agent, {"x": 1}))
        assert not future.done()
        assert future.cancel() is False
        release.set()
        holder.join(10)
        assert future.result(10).first(ev.ObservationEmitted).data == {"x": 1}


def test_close_commits_what_is_in_flight_and_refuses_what_comes_after(home):
    rt = Runtime(home)
    operator = Client(rt)
    agent, _ = operator.spawn_agent("streamer")
    futures = [operator.submit_async(ops.EmitObservation(agent, {"i": i})) for i in range(50)]
    rt.close()
    assert all(f.done() for f in futures)
    assert [f.result().first(ev.ObservationEmitted).data["i"] for f in futures] == list(range(50))
    with pytest.raises(TokaError, match="closed"):
        rt.submit_async(operator.sign(ops.EmitObservation(agent, {"late": True})))
    with Runtime(home) as again:
        assert len(again.log.query(kinds=["observation.emitted"], limit=100)) == 50


def test_sync_and_in_flight_submitters_share_the_log(home):
    with Runtime(home) as rt:
        operator = Client(rt)
        agents = [operator.spawn_agent(f"mixed-{i}")[0] for i in range(4)]
        errors: list[BaseException] = []

        def streamer(agent: str) -> None:
            me = Client(rt, agent)
            try:
                futures = [me.submit_async(ops.EmitObservation(agent, {"i": i})) for i in range(60)]
                for f in futures:
                    f.result(30)
            except BaseException as exc:  # reported below
                errors.append(exc)

        def waiter(agent: str) -> None:
            me = Client(rt, agent)
            try:
                for i in range(60):
                    me.observe(agent, {"i": i})
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=streamer if n % 2 else waiter, args=(a,))
            for n, a in enumerate(agents)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert len(rt.log.query(kinds=["observation.emitted"], limit=1000)) == 240
    assert toka_json("replay", "--check", home=home.root)["ok"] is True


# -- schema ------------------------------------------------------------------------------


@pytest.mark.sqlite_only  # SQLite's own schema history (PostgreSQL has pg_schema_version)
def test_a_version_1_log_is_migrated_and_still_verifies(home):
    with Runtime(home) as rt:
        operator = Client(rt)
        agent, _ = operator.spawn_agent("old")
        operator.observe(agent, {"before": "migration"})
    conn = apsw.Connection(str(home.db_path))
    conn.execute("CREATE INDEX events_op ON events(op_digest)")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.close()
    log = EventLog(home.db_path)
    try:
        assert log.meta("schema_version") == str(store_module.SCHEMA_VERSION)
        names = [r[0] for r in log.conn.execute("SELECT name FROM sqlite_master")]
        assert "events_op" not in names
    finally:
        log.close()
    assert toka_json("verify", "--signatures", home=home.root)["ok"] is True


def test_a_tampered_refusal_record_is_named_by_its_rejection_event(home):
    with Runtime(home) as rt:
        operator = Client(rt)
        agent, _ = operator.spawn_agent("refused")
        other, _ = operator.spawn_agent("victim")
        with pytest.raises(NotCovered):
            Client(rt, agent).observe(other, {"not": "mine"})
        rejection = rt.log.query(kinds=["operation.rejected"])[0]
        nonce = scalar(home, "SELECT nonce FROM operations WHERE status = 'rejected'")
    tamper(home, "UPDATE operations SET kind = 'agent.spawn' WHERE nonce = ?", (nonce,))
    result = run_toka("verify", home=home.root)
    assert result.returncode == 5
    assert f"event {rejection.seq}" in result.stderr, result.stderr


# -- nonces ------------------------------------------------------------------------------


def test_nonces_lead_with_the_signing_time_so_later_ones_sort_later():
    a = ops.new_nonce(1_700_000_000_000)
    b = ops.new_nonce(1_700_000_000_001)
    assert len(a) == len(b) == 32 and int(a, 16) >= 0
    assert a < b
    assert a[:12] == f"{1_700_000_000_000:012x}"
    assert ops.new_nonce(5) != ops.new_nonce(5)  # 80 random bits after the time


def test_reads_from_another_thread_leave_the_writers_pending_rows_alone(home):
    log = home.open_store()
    try:
        seq, head, ts = log.head()
        with log.write():
            log.append(
                head, seq + 1, ts, "observation.emitted", "operator", None, "d" * 64, 0, b"{}"
            )
            seen: list[int] = []
            reader = threading.Thread(target=lambda: seen.append(log.count()))
            reader.start()
            reader.join(10)
            assert seen == [seq]  # not flushed by the other thread, not lost either
            assert log.count() == seq + 1  # the writer's own read sees its row
        assert log.count() == seq + 1
    finally:
        log.close()
