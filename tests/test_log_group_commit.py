"""Group commit, the batch API and in-process subscriptions."""

from __future__ import annotations

import threading
import time

import msgspec
import pytest
from log_support import make_home, scalar

from toka.core.errors import BadSignature, InvalidOperation, NotCovered, TokaError
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.runtime import Outcome, Runtime, admission
from toka.core.runtime.client import Client

pytestmark = pytest.mark.stores


@pytest.fixture
def rt(tmp_path):
    home = make_home(tmp_path / "home", checkpoint_interval=1000)
    with Runtime(home) as runtime:
        yield runtime


def spy_commits(monkeypatch, rt: Runtime) -> list[int]:
    sizes: list[int] = []
    original = rt._commit

    def commit(batch):
        sizes.append(len(batch))
        return original(batch)

    monkeypatch.setattr(rt, "_commit", commit)
    return sizes


def spy_transactions(monkeypatch, rt: Runtime) -> list[int]:
    """One entry per write transaction the runtime opens on its log (either backend)."""
    opened: list[int] = []
    original = rt.log.write

    def write():
        opened.append(1)
        return original()

    monkeypatch.setattr(rt.log, "write", write)
    return opened


def test_concurrent_submissions_commit_together_and_each_gets_its_own_result(rt, monkeypatch):
    operator = Client(rt)
    agents = [operator.spawn_agent(f"a{i}")[0] for i in range(6)]
    signed = [Client(rt, a).sign(ops.EmitObservation(a, {"from": a})) for a in agents]
    # One agent asks for something it may not do: only its own call fails.
    signed[3] = Client(rt, agents[3]).sign(ops.EmitObservation(agents[0], "not mine"))
    sizes: list[int] = []
    original = rt._commit

    def slow_first_commit(batch):
        # The first commit is slow (a busy disk): everyone else queues meanwhile.
        if not sizes:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with rt._queue_lock:
                    if len(rt._queue) == 6 - len(batch):
                        break
                time.sleep(0.005)
        sizes.append(len(batch))
        return original(batch)

    monkeypatch.setattr(rt, "_commit", slow_first_commit)
    transactions = spy_transactions(monkeypatch, rt)
    results: dict[int, Outcome | TokaError] = {}

    def submit(i: int) -> None:
        try:
            results[i] = rt.submit(signed[i])
        except TokaError as exc:
            results[i] = exc

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # At most two transactions for six submissions: the first leader's, then the rest.
    assert sum(sizes) == 6 and len(sizes) <= 2
    assert len(transactions) == len(sizes)  # one write transaction per commit
    assert isinstance(results[3], NotCovered)
    applied = [results[i] for i in range(6) if i != 3]
    assert all(isinstance(r, Outcome) for r in applied)
    assert len({r.nonce for r in applied}) == 5  # type: ignore[union-attr]
    assert len({r.first_seq for r in applied}) == 5  # type: ignore[union-attr]
    for i in (0, 1, 2, 4, 5):
        assert results[i].events[0].payload.data == {"from": agents[i]}  # type: ignore[union-attr]


def test_signatures_are_checked_in_each_submitters_own_thread(rt, monkeypatch):
    operator = Client(rt)
    agents = [operator.spawn_agent(f"v{i}")[0] for i in range(4)]
    seen: list[str] = []
    original = admission.verify_signature

    def recording(*args):
        seen.append(threading.current_thread().name)
        return original(*args)

    monkeypatch.setattr(admission, "verify_signature", recording)
    threads = [
        threading.Thread(
            target=lambda a=a: rt.submit(Client(rt, a).sign(ops.EmitObservation(a, 1))),
            name=f"submitter-{a}",
        )
        for a in agents
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(seen) == sorted(f"submitter-{a}" for a in agents)


def test_many_threads_submitting_at_once_all_land_once(rt):
    operator = Client(rt)
    agents = [operator.spawn_agent(f"m{i}")[0] for i in range(4)]
    start = rt.state.seq
    errors: list[Exception] = []

    def work(agent: str) -> None:
        me = Client(rt, agent)
        for i in range(25):
            try:
                me.observe(agent, {"i": i})
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert rt.state.seq == start + 100
    assert all(rt.state.agents[a].observations == 25 for a in agents)
    assert rt.verify()["ok"]


def test_submit_many_commits_once_and_reports_each_result(rt, monkeypatch, store_backend):
    operator = Client(rt)
    agent, _ = operator.spawn_agent("batcher")
    other, _ = operator.spawn_agent("bystander")
    me = Client(rt, agent)
    batch = [
        me.sign(ops.EmitObservation(agent, "one")),
        me.sign(ops.EmitObservation(other, "not covered")),
        operator.sign(ops.ScheduleTask(agent, "two")),
        operator.sign(ops.ScheduleTask(agent, "")),
        me.sign(ops.EmitObservation(agent, "three")),
    ]
    sizes = spy_commits(monkeypatch, rt)
    transactions = spy_transactions(monkeypatch, rt)
    results = rt.submit_many(batch)
    assert sizes == [5] and transactions == [1]
    assert [type(r) for r in results] == [
        Outcome,
        NotCovered,
        Outcome,
        InvalidOperation,
        Outcome,
    ]
    seqs = [r.first_seq for r in results if isinstance(r, Outcome)]
    assert seqs == sorted(seqs)
    if store_backend == "postgresql":
        # The server's own record: every row of the batch written by one transaction.
        xids = "SELECT count(DISTINCT xmin::text) FROM events WHERE seq >= ?"
        assert scalar(rt.home, xids, (seqs[0],)) == 1
    rejected = rt.log.query(kinds=["operation.rejected"])
    assert [msgspec.json.decode(r.payload)["code"] for r in rejected] == [
        "not_covered",
        "invalid_operation",
    ]


def test_large_submit_many_checks_signatures_in_parallel_and_isolates_a_bad_one(rt):
    operator = Client(rt)
    agent, _ = operator.spawn_agent("bulk")
    me = Client(rt, agent)
    batch = [me.sign(ops.EmitObservation(agent, {"i": i})) for i in range(150)]
    batch[77] = msgspec.structs.replace(batch[77], sig=batch[78].sig)
    results = rt.submit_many(batch)
    assert isinstance(results[77], BadSignature)
    assert sum(isinstance(r, Outcome) for r in results) == 149
    assert rt.state.agents[agent].observations == 149


def test_subscribers_get_each_new_batch_and_can_unsubscribe(rt):
    operator = Client(rt)
    agent, _ = operator.spawn_agent("watched")
    batches: list[list[int]] = []
    unsubscribe = rt.subscribe(lambda recs: batches.append([r.seq for r in recs]))
    first = operator.observe(agent, 1)
    rt.submit_many([operator.sign(ops.EmitObservation(agent, i)) for i in range(3)])
    assert batches == [[first.first_seq], list(range(first.first_seq + 1, first.first_seq + 4))]
    unsubscribe()
    operator.observe(agent, "unheard")
    assert len(batches) == 2


def test_a_failing_subscriber_does_not_break_commits(rt):
    operator = Client(rt)
    agent, _ = operator.spawn_agent("fragile")
    heard: list[int] = []

    def broken(records) -> None:
        raise RuntimeError("subscriber bug")

    rt.subscribe(broken)
    rt.subscribe(lambda recs: heard.extend(r.seq for r in recs))
    outcome = operator.observe(agent, "still committed")
    assert heard == [outcome.first_seq]
    assert rt.log.head()[0] == outcome.first_seq


def test_subscribers_see_events_written_through_another_connection_on_catch_up(rt):
    other = Runtime(rt.home)
    try:
        agent, _ = Client(other).spawn_agent("far away")
    finally:
        other.close()
    heard: list[str] = []
    rt.subscribe(lambda recs: heard.extend(r.kind for r in recs))
    rt.catch_up()
    assert heard == ["agent.spawned", "capability.granted"]
    assert agent in rt.state.agents


def test_a_subscriber_may_submit_from_inside_a_commit(rt):
    operator = Client(rt)
    agent, _ = operator.spawn_agent("echoing")
    answered: list[int] = []

    def answer(records) -> None:
        for r in records:
            if r.kind == "task.scheduled":
                task = msgspec.json.decode(r.payload)["task"]
                answered.append(Client(rt, agent).complete(task, "done").first_seq)

    rt.subscribe(answer)
    scheduled = operator.schedule(agent, "answer me")
    assert answered == [scheduled.first_seq + 1]
    assert rt.state.tasks[scheduled.first(ev.TaskScheduled).task].status == "completed"
