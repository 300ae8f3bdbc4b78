"""What the metrics count, folded from the log: the same numbers on any host, after any restart.

Each event is looked at once, in log order. An operation is counted at the first event
it appended (part 0): ``operation.rejected`` is a refusal (its ``op`` and ``code``),
``operation.pending`` an operation held for approval, anything else an accepted one,
whose kind the operations table gives (``Store.operation_at``). Tool calls are counted
at their ending event. Labels come from closed sets only; anything else is ``other``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

from toka.core.errors import IntegrityFailure
from toka.core.log.fold import fold_one
from toka.core.log.store import GENESIS_PREV, Store
from toka.core.model.events import TOOL_FAILURE_KINDS, EventRecord
from toka.core.model.ops import OPERATION_TYPES
from toka.core.model.state import OPEN_TASK_STATUSES, WorldState

AGENT_STATUSES = ("running", "paused", "terminated")
OTHER = "other"
# Error codes are identifiers set by the code (errors.TokaError.code), never by input:
# their shape is checked all the same, so a label can never carry arbitrary text.
_CODE = re.compile(r"[a-z][a-z0-9_]{0,39}\Z")


class OperationKey(NamedTuple):
    op: str
    outcome: str  # accepted, pending, refused, approved, denied
    code: str  # the refusal's error code; "" otherwise


class ToolCallKey(NamedTuple):
    tool: str
    outcome: str  # succeeded, unknown, or the failure's error kind


def op_label(kind: str) -> str:
    return kind if kind in OPERATION_TYPES else OTHER


def code_label(code: str) -> str:
    return code if _CODE.match(code) else OTHER


def failure_label(kind: str) -> str:
    return kind if kind in TOOL_FAILURE_KINDS else OTHER


class LogTally:
    """Counters and the world state, folded from a log's records in order.

    ``log`` answers which operation starts at a sequence number. ``prime`` reads the
    operations table once, so folding a long log from genesis costs no query per
    operation; operations recorded afterwards are looked up one by one."""

    def __init__(self, log: Store):
        self.log = log
        self.state = WorldState()
        self.head_hash = GENESIS_PREV
        self.operations: Counter[OperationKey] = Counter()
        self.tool_calls: Counter[ToolCallKey] = Counter()
        self.refusals_unlogged = 0  # refusals the log's rate limit kept out of it
        self._kinds_at: dict[int, str] = {}

    @property
    def seq(self) -> int:
        """The last sequence number folded."""
        return self.state.seq

    def prime(self) -> None:
        """Read the kinds of every applied operation now in the log, in one pass."""
        self._kinds_at = {
            row.first_seq: row.kind
            for row in self.log.operations()
            if row.status == "applied" and row.first_seq is not None
        }

    def fold(self, records: Iterable[EventRecord]) -> None:
        """Count ``records`` (the next ones in the log) and fold them into the state."""
        for r in records:
            if r.prev_hash != self.head_hash:
                raise IntegrityFailure(
                    f"event {r.seq}: prev_hash does not link to the chain", r.seq
                )
            # Counted before folded: if counting fails (the log went away), ``seq`` is
            # still the last record fully taken in, and reading again from it is exact.
            self._count(r)
            fold_one(self.state, r)
            self.head_hash = r.hash
            self._kinds_at.pop(r.seq, None)

    def _count(self, r: EventRecord) -> None:
        kind = r.kind
        if kind == "operation.rejected":
            e = r.data()
            self.operations[OperationKey(op_label(e.op), "refused", code_label(e.code))] += 1
            self.refusals_unlogged += e.suppressed
            return
        # The one read (it may fail) comes before any count changes.
        op_kind = self._operation_kind(r.seq) if r.part == 0 else None
        if kind.startswith("tool."):
            self._count_tool(r)
        elif kind in ("operation.approved", "operation.denied"):
            e = r.data()
            outcome = "approved" if kind == "operation.approved" else "denied"
            self.operations[OperationKey(op_label(e.op_kind), outcome, "")] += 1
        if op_kind is not None:
            outcome = "pending" if kind == "operation.pending" else "accepted"
            self.operations[OperationKey(op_label(op_kind), outcome, "")] += 1

    def _operation_kind(self, first_seq: int) -> str | None:
        """The kind of the applied operation whose events start at ``first_seq``; None
        for what ``init`` wrote (the genesis, the operator's grant), which no operation did."""
        kind = self._kinds_at.get(first_seq)
        if kind is None:
            row = self.log.operation_at(first_seq)
            kind = row.kind if row is not None else None
        return kind

    def _count_tool(self, r: EventRecord) -> None:
        if r.kind not in ("tool.succeeded", "tool.failed", "tool.unknown"):
            return
        e = r.data()
        if r.kind == "tool.failed":
            outcome = failure_label(e.error_kind)
        else:
            outcome = r.kind.removeprefix("tool.")
        self.tool_calls[ToolCallKey(e.tool, outcome)] += 1

    # -- gauges, from the folded state ----------------------------------------------

    def agents_by_status(self) -> dict[str, int]:
        counts = dict.fromkeys(AGENT_STATUSES, 0)
        for agent in self.state.agents.values():
            status = agent.status if agent.status in counts else OTHER
            counts[status] = counts.get(status, 0) + 1
        return counts

    def open_tasks_by_status(self) -> dict[str, int]:
        counts = dict.fromkeys(OPEN_TASK_STATUSES, 0)
        for task in self.state.tasks.values():
            if task.status in counts:
                counts[task.status] += 1
        return counts

    def pending_approvals(self) -> int:
        return sum(1 for a in self.state.approvals.values() if a.status == "pending")
