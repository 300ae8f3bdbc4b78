"""Rebuilds fold the store's rows a page at a time (``fold_log``, ``kernel.evolve_rows``):
the same state as folding record by record, and the same errors, naming the same seq.

Each test runs on both backends."""

from __future__ import annotations

import msgspec
import pytest
from log_support import make_home, populate, scalar, tamper

from toka.core import approvals, kernel
from toka.core.errors import IntegrityFailure
from toka.core.log import fold as folding
from toka.core.log.fold import fold, fold_log
from toka.core.log.sqlite import SqliteStore
from toka.core.log.store import GENESIS_PREV
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.keys import thumbprint
from toka.core.model.state import Budgets, WorldState
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home

pytestmark = pytest.mark.stores


def vary(home: Home) -> None:
    """Besides ``populate``'s history: paused, resumed and terminated agents, failed tasks,
    a chain of grants, budget charges, approvals approved and denied, a refusal."""
    with Runtime(home) as rt:
        operator = Client(rt)
        agent, _ = operator.spawn_agent("varied", "manual")
        as_agent = Client(rt, agent)
        operator.pause(agent)
        operator.resume(agent)
        budgeted = (
            operator.grant(
                agent, [f"observation.emit:agent/{agent}"], 600, budgets=Budgets(max_ops=5)
            )
            .first(ev.CapabilityGranted)
            .jti
        )
        base = next(g for g in rt.state.grants.values() if g.subject == agent and g.jti != budgeted)
        as_base = Client(
            rt, agent, token=rt.authority.mint(base, thumbprint(rt.state.principals[agent]))
        )
        for i in range(3):
            assert as_base.observe(agent, {"charged": i}).first(ev.BudgetCharged)
        task = operator.schedule(agent, "to fail").first(ev.TaskScheduled).task
        as_agent.fail(task, "on purpose")
        gated, _ = operator.spawn_agent("gated", "manual")
        operator.grant(gated, [f"task.schedule:agent/{agent}"], 3600, approve=True)
        held = [Client(rt, gated).schedule(agent, f"held {i}").pending for i in range(2)]
        approvals.approve(operator, held[0])
        approvals.deny(operator, held[1], "not now")
        with pytest.raises(Exception):  # noqa: B017 (any refusal: it is logged)
            as_agent.submit(ops.TerminateAgent(gated))
        operator.terminate(gated, "done")


@pytest.fixture
def home(tmp_path) -> Home:
    h = make_home(tmp_path / "home", checkpoint_interval=10)
    populate(h, tasks=10)
    vary(h)
    return h


def open_log(home: Home):
    return home.open_store(readonly=True)


def assert_same_state(a: WorldState, b: WorldState) -> None:
    assert a.state_hash() == b.state_hash()
    # Same dict order too, so the kernel decides identically after a rebuild.
    assert msgspec.msgpack.encode(a) == msgspec.msgpack.encode(b)


def test_the_varied_log_holds_every_kind_the_rebuild_must_fold(home):
    log = open_log(home)
    try:
        kinds = {r.kind for r in log.records()}
    finally:
        log.close()
    assert {
        "agent.paused",
        "agent.resumed",
        "agent.terminated",
        "budget.charged",
        "capability.granted",
        "capability.revoked",
        "operation.pending",
        "operation.approved",
        "operation.denied",
        "operation.rejected",
        "task.completed",
        "task.failed",
    } <= kinds


def test_fold_log_reaches_the_state_record_by_record_folding_does(home):
    log = open_log(home)
    try:
        plain, plain_head = fold(log.records())
        paged, paged_head = fold_log(log)
        assert_same_state(paged, plain)
        assert paged_head == plain_head == log.head()[1]
    finally:
        log.close()


@pytest.mark.parametrize("page", [1, 3, 7])
def test_any_page_boundary_folds_to_the_same_state(home, monkeypatch, page):
    """Pages cut anywhere: between an operation's events, right before a grant is added."""
    log = open_log(home)
    try:
        plain, _ = fold(log.records())
        rows = [row for rows in log.row_pages() for row in rows]
        state, head = WorldState(), GENESIS_PREV
        for i in range(0, len(rows), page):
            head = folding.fold_rows(rows[i : i + page], state, head)
        assert_same_state(state, plain)
    finally:
        log.close()


def test_fold_log_goes_on_from_a_state_part_way(home):
    log = open_log(home)
    try:
        plain, _ = fold(log.records())
        middle = log.head()[0] // 2
        state, head = fold(log.records(until=middle))
        state, head = fold_log(log, state, head)
        assert_same_state(state, plain)
        assert (
            fold_log(log, until=middle)[0].state_hash()
            == fold(log.records(until=middle))[0].state_hash()
        )
    finally:
        log.close()


def test_runtime_rebuilds_agree_with_the_live_state(home):
    with Runtime(home) as rt:
        assert_same_state(rt.replay(), rt.state)
        assert rt.replay_check()["ok"]
        for seq in (1, 17, rt.state.seq):
            assert_same_state(rt.state_at(seq), fold(rt.log.records(until=seq))[0])


def kind_seqs(home: Home, kind: str) -> list[int]:
    log = open_log(home)
    try:
        return [r.seq for r in log.records() if r.kind == kind]
    finally:
        log.close()


def fold_errors(home: Home) -> tuple[IntegrityFailure, IntegrityFailure, int]:
    """The failures of both ways of folding the log, and how far the paged one got."""
    log = open_log(home)
    try:
        with pytest.raises(IntegrityFailure) as plain:
            fold(log.records())
        state = WorldState()
        with pytest.raises(IntegrityFailure) as paged:
            fold_log(log, state)
        return plain.value, paged.value, state.seq
    finally:
        log.close()


def test_a_payload_that_cannot_be_folded_names_its_seq(home):
    seq = kind_seqs(home, "task.failed")[0]
    tamper(home, "UPDATE events SET payload = ? WHERE seq = ?", (b'{"task": 7}', seq))
    plain, paged, reached = fold_errors(home)
    assert paged.seq == plain.seq == seq
    assert str(paged) == str(plain)
    assert f"event {seq}: cannot be folded" in str(paged)
    assert reached == seq - 1  # every row before it was folded


def test_an_observation_whose_data_is_not_json_cannot_be_folded(home):
    seq = kind_seqs(home, "observation.emitted")[-1]
    payload = bytes(scalar(home, "SELECT payload FROM events WHERE seq = ?", (seq,)))
    tamper(home, "UPDATE events SET payload = ? WHERE seq = ?", (payload[:-2], seq))
    plain, paged, _ = fold_errors(home)
    assert paged.seq == plain.seq == seq
    assert "cannot be folded" in str(paged)


def test_a_row_that_does_not_link_names_its_seq(home):
    seq = kind_seqs(home, "operation.approved")[0]
    tamper(home, "UPDATE events SET prev_hash = ? WHERE seq = ?", ("f" * 64, seq))
    plain, paged, reached = fold_errors(home)
    assert paged.seq == plain.seq == seq
    assert str(paged) == str(plain) == f"event {seq}: prev_hash does not link to the chain"
    assert reached == seq - 1


def test_a_missing_row_names_the_row_after_the_gap(home):
    """A deleted row, the next one's prev_hash forged to match: the seq does not follow."""
    seq = kind_seqs(home, "budget.charged")[1]
    before = scalar(home, "SELECT hash FROM events WHERE seq = ?", (seq - 1,))
    tamper(home, "DELETE FROM events WHERE seq = ?", (seq,))
    tamper(home, "UPDATE events SET prev_hash = ? WHERE seq = ?", (before, seq + 1))
    plain, paged, _ = fold_errors(home)
    assert paged.seq == plain.seq == seq + 1
    assert str(paged) == str(plain)


def test_the_runtime_rebuild_reports_a_tampered_row(home):
    seq = kind_seqs(home, "task.completed")[2]
    tamper(home, "UPDATE events SET payload = ? WHERE seq = ?", (b"[]", seq))
    tamper(home, "DELETE FROM snapshots")
    with pytest.raises(IntegrityFailure) as failure:
        Runtime(home)
    assert failure.value.seq == seq


@pytest.mark.sqlite_only
def test_sqlite_row_pages_are_the_records_in_pages(home):
    log = open_log(home)
    try:
        assert isinstance(log, SqliteStore)
        pages = list(log.row_pages(after=3, until=40))
        assert [ev.EventRecord(*row) for rows in pages for row in rows] == list(
            log.records(after=3, until=40)
        )
    finally:
        log.close()


@pytest.mark.sqlite_only
def test_operations_counted_before_a_grant_is_added_stay_where_evolve_counts_them(home):
    """A row charged to a grant that a later row of the same page adds: ``evolve`` counts
    nothing (the grant does not exist yet), so neither may the added-up counts."""
    log = open_log(home)
    try:
        rows = [row for rows in log.row_pages() for row in rows]
    finally:
        log.close()
    seq, head = rows[-1][0], rows[-1][9]
    agent = next(r for r in rows if r[2] == "observation.emitted")
    late = ev.CapabilityGranted(
        "gr-late", agent[3], ["observation.emit:agent/*"], "operator", None, 0, 2**40
    )
    observed = ev.encode_payload(ev.ObservationEmitted(agent[3], {"early": True}))
    rows += [
        (seq + 1, 1, "observation.emitted", agent[3], "gr-late", "d1", 0, observed, head, "h1"),
        (
            seq + 2,
            2,
            "capability.granted",
            "operator",
            None,
            "d2",
            0,
            ev.encode_payload(late),
            "h1",
            "h2",
        ),
    ]
    plain = WorldState()
    for row in rows:
        kernel.evolve(plain, ev.EventRecord(*row))
    paged = WorldState()
    assert kernel.evolve_rows(paged, rows, GENESIS_PREV) == "h2"
    assert paged.grants["gr-late"].usage.ops == plain.grants["gr-late"].usage.ops == 0
    assert_same_state(paged, plain)
