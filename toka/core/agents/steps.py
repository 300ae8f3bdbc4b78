"""Durable task steps: what a behaviour does, each step executed once and replayed after.

A runner (``toka.core.agents.runner``) takes the open tasks of running agents, lets
the agent's behaviour decide, and submits what it decides as Operations signed with
the agent's own key and token, through the steps of a :class:`TaskRun`.

Crash safety is durable execution over the log:

- A behaviour acts on a task only through the numbered *steps* of a :class:`TaskRun`
  (``submit``, ``invoke``, ``spawn``, ``remember``, ``complete``, ``fail``). Step ``i``
  of task ``T`` is signed with a nonce derived from ``(T, i)``, so the operations table
  holds at most one applied operation per step.
- Every pass runs the behaviour from the top. A step whose nonce is already recorded
  is not executed again: the behaviour gets the recorded outcome, read back from the
  log (a live step's result is read back the same way, so a replay sees exactly what
  the first run saw). A runner that dies mid-task leaves its finished steps in the log;
  the next runner replays them and carries on from the first unrecorded step.
- Before its first new step in a pass, the runner takes a lease on the task
  (``task.start`` with its runner id): the kernel refuses to start a task another
  runner holds until that lease expires, so several runners never advance one task at
  the same time. A runner that outlives its lease still cannot repeat a step: the
  second submission of a step nonce gets the first one's outcome.
- A step refused because the agent could not act at all (paused or terminated while
  the step was in flight) is not a decision: the runner stops there and a later pass
  retries the step under the next attempt nonce. Any other refusal is the step's
  result, and the behaviour decides what to do with it.

A behaviour that must wait (for child agents, for an approval) raises ``Waiting`` via
``TaskRun.wait``; the task keeps its state in the log and is looked at again when the
log changes. Nothing blocks the runner.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

import msgspec

from toka.core import approvals, tools
from toka.core.errors import (
    AgentNotRunning,
    ApprovalDenied,
    BudgetExhausted,
    ReplayedNonce,
    TokaError,
    error_from_code,
)
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.state import SAFE_TO_REPEAT, Agent, Task, WorldState
from toka.core.runtime import Outcome, Runtime
from toka.core.runtime.client import Client
from toka.core.tools import calls

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 2000
# Refusals that say the agent could not act at all: not a decision, retried later.
RETRY_CODES = frozenset({AgentNotRunning.code})


class StepHost(Protocol):
    """What a task's steps need from the runner that drives them."""

    runtime: Runtime
    runner_id: str
    lease_s: int

    @property
    def stopping(self) -> bool: ...

    def pace(self) -> None: ...


class Control(BaseException):
    """Ends a behaviour's pass. Not an Exception, so a behaviour's ``except Exception``
    cannot swallow it and carry on deciding as if a step had happened."""


class Waiting(Control):
    """The task cannot move until something else happens (children finish, an approval),
    or until ``until_ms`` (a tool call's deadline), when the runner looks again."""

    def __init__(self, why: str, until_ms: int | None = None):
        super().__init__(why)
        self.until_ms = until_ms


class Finished(Control):
    """The task was completed or failed (by this pass or, as recorded, by an earlier one)."""


class Stopped(Control):
    """The agent cannot act now (paused or terminated mid-step); leave the task as it is."""


class NotTaken(Control):
    """The runner could not take the task's lease."""


class OutOfBudget(Control):
    """The agent's operations budget is spent: it cannot even take the lease. The
    runner fails the task with this reason (``budget: ...``), which the kernel allows."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Nondeterministic(TokaError):
    """A behaviour proposed a different kind of step than the one recorded for that index."""

    code = "nondeterministic"


class LeaseKeeper:
    """Renews a pass's task lease while the pass runs, so that a step longer than the
    lease (a slow tool, a model's reply) does not let another runner take the task and
    run the step again. Renews only a lease this runner holds; stops when the pass ends,
    before the runner releases or leaves the task."""

    def __init__(self, run: TaskRun):
        self.run = run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, name=f"toka-lease-{run.id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _keep(self) -> None:
        host, lease_ms = self.run.runner, self.run.runner.lease_s * 1000
        # Looked at six times a lease, renewed once a third of it is gone: a renewal
        # late by up to half the lease still lands in time.
        while not self._stop.wait(lease_ms / 6000):
            task = self.run.runtime.state.tasks.get(self.run.id)
            if task is None or task.status != "started" or task.runner != host.runner_id:
                continue  # not taken yet (or no longer ours): nothing to renew
            if (
                task.lease_until is None
                or task.lease_until - host.runtime.now_ms() > lease_ms * 2 / 3
            ):
                continue
            op = ops.StartTask(self.run.id, host.runner_id, host.lease_s)
            try:
                self.run.runtime.submit(self.run.client.sign(op))
            except TokaError as exc:
                log.info("could not renew the lease on %s: %s", self.run.id, exc.message)


def step_nonce(task_id: str, step: int, attempt: int = 0) -> str:
    """The nonce of step ``step`` of a task: the same in every runner, unique per step."""
    return hashlib.sha256(f"toka-step:{task_id}:{step}:{attempt}".encode()).hexdigest()[:32]


class TaskRun:
    """One pass of a behaviour over one task: its steps, replayed or executed once each."""

    def __init__(self, host: StepHost, task: Task, agent: Agent):
        self.runner = host
        self.runtime = host.runtime
        self.task = task
        self.agent = agent
        self.client = Client(host.runtime, agent.id)
        self.advanced = False
        self._next = 0

    # -- what behaviours read -----------------------------------------------------------

    @property
    def id(self) -> str:
        return self.task.id

    @property
    def description(self) -> str:
        return self.task.description

    @property
    def payload(self) -> Any:
        return self.task.payload

    @property
    def state(self) -> WorldState:
        return self.runtime.state

    # -- steps ------------------------------------------------------------------------

    def submit(self, op: ops.Operation, prepared: Any = None) -> Outcome:
        """One step: submit ``op`` as the agent, or return the step's recorded outcome.

        A refusal is raised as the kernel's specific error (the same one on replay)."""

        def execute(nonce: str) -> None:
            self.runtime.submit(self.client.sign(op, nonce=nonce), prepared)

        return self._step(ops.op_type(op), execute, op)

    def invoke(
        self, tool: str, args: Any = None, *, version: str | None = None
    ) -> tools.Invocation:
        """One step: invoke a tool as the agent, for this task (through the tool runner).

        A call with an effect left open past its deadline (whoever started it stopped
        after the intent) is run again here if its class is safe to repeat; otherwise
        its outcome is stated unknown and the task waits for the operator's ``toka
        effects resolve``."""
        op = ops.InvokeTool(tool, args, version, self.task.id)

        def execute(nonce: str) -> None:
            tools.invoke(self.runtime, self.client.sign(op, nonce=nonce))

        result = tools.Invocation.from_outcome(self._step("tool.invoke", execute, op), op)
        if result.call is None:
            return result
        return self._call_result(result.call)

    def _call_result(self, call_id: str) -> tools.Invocation:
        result = calls.result(self.runtime, call_id)
        if result.ended:
            return result
        call = self.runtime.state.call_table()[call_id]
        how = f"resolve it with `toka effects resolve {call_id} --as succeeded|failed`"
        if call.status == "unknown":
            raise Waiting(f"the outcome of call {call_id} ({call.tool}) is unknown; {how}")
        if self.runtime.now_ms() < call.deadline_ms:
            # Whoever started it (a runner, an approver) may still be performing it.
            raise Waiting(f"call {call_id} may still be running", until_ms=call.deadline_ms)
        self._take_lease()
        self.advanced = True
        if call.side_effect in SAFE_TO_REPEAT:
            again = tools.perform(self.runtime, call_id)
            if not again.ended:
                raise Waiting(f"call {call_id} ran again but its outcome is not recorded")
            return again
        calls.abandon(self.runtime, call, "its runner stopped before recording the outcome")
        raise Waiting(f"the outcome of call {call_id} ({call.tool}) is unknown; {how}")

    def spawn(self, name: str, behaviour: str) -> str:
        """One step: spawn a child agent of this agent; returns the child's id.

        The child's key pair is made (and stored in the keystore) only when the step runs."""

        def execute(nonce: str) -> None:
            _, key = self.runtime.home.keystore.save_agent_key()
            op = ops.SpawnAgent(name, key.public_key, behaviour, self.agent.id)
            self.runtime.submit(self.client.sign(op, nonce=nonce))

        return self._step("agent.spawn", execute).first(ev.AgentSpawned).agent

    def remember(self, compute: Callable[[], Any]) -> Any:
        """One step: record ``compute()`` as an observation by the agent, and return it.

        For facts from outside the log (a model's reply): a replay returns the recorded
        value and never calls ``compute`` again."""

        def execute(nonce: str) -> None:
            data = compute()
            op = ops.EmitObservation(self.agent.id, data)
            self.runtime.submit(self.client.sign(op, nonce=nonce))

        return self._step("observation.emit", execute).first(ev.ObservationEmitted).data

    def complete(self, result: Any = None) -> NoReturn:
        op = ops.CompleteTask(self.task.id, result)
        self._step("task.complete", self._finisher(op), op)
        raise Finished

    def fail(self, reason: str) -> NoReturn:
        reason = reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS] + "…"
        op = ops.FailTask(self.task.id, reason)
        self._step("task.fail", self._finisher(op), op)
        raise Finished

    def wait(self, why: str) -> NoReturn:
        """Stop this pass; the task is looked at again when the log changes."""
        raise Waiting(why)

    def _finisher(self, op: ops.Operation) -> Callable[[str], None]:
        def execute(nonce: str) -> None:
            self.runtime.submit(self.client.sign(op, nonce=nonce))

        return execute

    # -- the durable step -----------------------------------------------------------------

    def _step(
        self, kind: str, execute: Callable[[str], None], op: ops.Operation | None = None
    ) -> Outcome:
        """Step ``self._next``: its recorded outcome, or ``execute(nonce)`` once. ``op``
        is what the step submits when it is known beforehand (not for a spawn, whose
        key is made when it runs, nor for ``remember``): a recorded step must be it."""
        index = self._next
        self._next += 1
        while True:
            nonce, recorded = self._recorded(index, kind, op)
            if recorded is not None:
                return self._settle(recorded)
            self.runner.pace()
            if self.runner.stopping:
                raise Stopped("the runner is stopping")
            self._take_lease()
            try:
                execute(nonce)
            except ReplayedNonce:
                continue  # another runner executed this step first: use its outcome
            except AgentNotRunning as exc:
                raise Stopped(exc.message) from exc
            except TokaError:
                if self.runtime.log.operation(self.agent.id, nonce) is None:
                    raise  # refused before it was recorded (an expired token): nothing happened
            self.advanced = True

    def _recorded(
        self, index: int, kind: str, op: ops.Operation | None
    ) -> tuple[str, Outcome | None]:
        """The nonce to use for step ``index`` and its recorded outcome, if any.

        Only the agent's own operations are looked at (nonces are unique per principal:
        another principal's operation under the same nonce is not this step), and the
        recorded one must be the step's: same kind, same operation when ``op`` is known.
        Raises the recorded refusal, unless it was only that the agent could not act."""
        attempt = 0
        while True:
            nonce = step_nonce(self.task.id, index, attempt)
            row = self.runtime.log.operation(self.agent.id, nonce)
            if row is None:
                return nonce, None
            recorded = ops.SignedOperation.from_json(row.signed).op if row.signed else None
            if row.kind != kind or (op is not None and recorded != op):
                was = row.kind if row.kind != kind else f"{row.kind} with other content"
                raise Nondeterministic(
                    f"step {index} of task {self.task.id} was {was} and is now {kind}: "
                    "the behaviour must decide the same way when replayed"
                )
            if row.status == "applied":
                assert row.first_seq is not None and row.last_seq is not None
                records = list(
                    self.runtime.log.records(after=row.first_seq - 1, until=row.last_seq)
                )
                return nonce, Outcome.of(row.kind, nonce, row.digest, records, replayed=True)
            if row.error_code not in RETRY_CODES:
                raise error_from_code(row.error_code or "", row.error or "refused")
            attempt += 1

    def _settle(self, outcome: Outcome) -> Outcome:
        """An outcome held for approval becomes the approved events, a denial, or a wait."""
        approval_id = outcome.pending
        if approval_id is None:
            return outcome
        approval = self.runtime.state.approvals.get(approval_id)
        if approval is None or approval.status == "pending":
            raise Waiting(f"approval {approval_id}")
        if approval.status == "denied":
            raise ApprovalDenied(
                f"{approval.op_kind} was denied by {approval.decided_by} (approval {approval.id})"
                + (f": {approval.reason}" if approval.reason else "")
            )
        records = approvals.released_records(self.runtime, approval)
        if not records:
            return msgspec.structs.replace(outcome, events=[])
        return Outcome.of(outcome.op, outcome.nonce, outcome.digest, records, replayed=True)

    def _take_lease(self) -> None:
        task = self.runtime.state.tasks[self.task.id]
        runner = self.runner
        if task.status in ("completed", "failed", "cancelled"):
            raise Finished
        now = self.runtime.now_ms()
        if (
            task.status == "started"
            and task.runner == runner.runner_id
            and task.lease_until is not None
            and task.lease_until - now > runner.lease_s * 500
        ):
            return
        op = ops.StartTask(self.task.id, runner.runner_id, runner.lease_s)
        try:
            self.runtime.submit(self.client.sign(op))
        except AgentNotRunning as exc:
            raise Stopped(exc.message) from exc
        except BudgetExhausted as exc:
            raise OutOfBudget(exc.reason) from exc
        except TokaError as exc:
            raise NotTaken(exc.message) from exc
