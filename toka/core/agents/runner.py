"""The agent runner: drives the agents whose behaviour it knows, each as itself.

A runner takes the open tasks of running agents, lets the agent's behaviour decide,
and submits what it decides as Operations signed with the agent's own key and token.

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
import math
import os
import re
import secrets
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import msgspec

from toka.core.errors import (
    AgentNotRunning,
    ApprovalDenied,
    InvalidInput,
    ReplayedNonce,
    TokaError,
    error_from_code,
)
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.keys import KeyPair, agent_id_for
from toka.core.model.state import OPEN_TASK_STATUSES, Agent, Task
from toka.core.runtime import Outcome, Runtime
from toka.core.runtime.client import Client

if TYPE_CHECKING:
    from toka.core.tools import Invocation

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 60
POLL_S = 0.2
MAX_REASON_CHARS = 2000
# Refusals that say the agent could not act at all: not a decision, retried later.
RETRY_CODES = frozenset({AgentNotRunning.code})
# Log events after which a task the runner gave up on may have become possible again.
_UNBLOCKING = frozenset(
    {
        "capability.granted",
        "capability.revoked",
        "agent.resumed",
        "operation.approved",
        "operation.denied",
    }
)


class _Control(BaseException):
    """Ends a behaviour's pass. Not an Exception, so a behaviour's ``except Exception``
    cannot swallow it and carry on deciding as if a step had happened."""


class Waiting(_Control):
    """The task cannot move until something else happens (children finish, an approval)."""


class _Finished(_Control):
    """The task was completed or failed (by this pass or, as recorded, by an earlier one)."""


class _Stopped(_Control):
    """The agent cannot act now (paused or terminated mid-step); leave the task as it is."""


class _NotTaken(_Control):
    """The runner could not take the task's lease."""


class Nondeterministic(TokaError):
    """A behaviour proposed a different kind of step than the one recorded for that index."""

    code = "nondeterministic"


def step_nonce(task_id: str, step: int, attempt: int = 0) -> str:
    """The nonce of step ``step`` of a task: the same in every runner, unique per step."""
    return hashlib.sha256(f"toka-step:{task_id}:{step}:{attempt}".encode()).hexdigest()[:32]


def default_runner_id() -> str:
    host = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().lower())[:40] or "host"
    return f"runner-{host}-{os.getpid()}-{secrets.token_hex(2)}"


class TaskRun:
    """One pass of a behaviour over one task: its steps, replayed or executed once each."""

    def __init__(self, runner: Runner, task: Task, agent: Agent):
        self.runner = runner
        self.runtime = runner.runtime
        self.task = task
        self.agent = agent
        self.client = Client(runner.runtime, agent.id)
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
    def state(self):
        return self.runtime.state

    # -- steps ------------------------------------------------------------------------

    def submit(self, op: ops.Operation, prepared: Any = None) -> Outcome:
        """One step: submit ``op`` as the agent, or return the step's recorded outcome.

        A refusal is raised as the kernel's specific error (the same one on replay)."""

        def execute(nonce: str) -> None:
            self.runtime.submit(self.client.sign(op, nonce=nonce), prepared)

        return self._step(ops.op_type(op), execute)

    def invoke(self, tool: str, args: Any = None, *, version: str | None = None) -> Invocation:
        """One step: invoke a tool as the agent, for this task (through the tool runner)."""
        from toka.core import tools

        op = ops.InvokeTool(tool, args, version, self.task.id)

        def execute(nonce: str) -> None:
            tools.invoke(self.runtime, self.client.sign(op, nonce=nonce))

        return tools.Invocation.from_outcome(self._step("tool.invoke", execute), op)

    def spawn(self, name: str, behaviour: str) -> str:
        """One step: spawn a child agent of this agent; returns the child's id.

        The child's key pair is made (and stored in the keystore) only when the step runs."""

        def execute(nonce: str) -> None:
            key = KeyPair.generate()
            child = agent_id_for(key.public_key)
            keystore = self.runtime.home.keystore
            if not keystore.has(child):
                keystore.save(child, key)
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
        self._step("task.complete", self._finisher(ops.CompleteTask(self.task.id, result)))
        raise _Finished

    def fail(self, reason: str) -> NoReturn:
        reason = reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS] + "…"
        self._step("task.fail", self._finisher(ops.FailTask(self.task.id, reason)))
        raise _Finished

    def wait(self, why: str) -> NoReturn:
        """Stop this pass; the task is looked at again when the log changes."""
        raise Waiting(why)

    def _finisher(self, op: ops.Operation) -> Callable[[str], None]:
        def execute(nonce: str) -> None:
            self.runtime.submit(self.client.sign(op, nonce=nonce))

        return execute

    # -- the durable step -----------------------------------------------------------------

    def _step(self, kind: str, execute: Callable[[str], None]) -> Outcome:
        index = self._next
        self._next += 1
        while True:
            nonce, recorded = self._recorded(index, kind)
            if recorded is not None:
                return self._settle(recorded)
            self.runner.pace()
            if self.runner.stopping:
                raise _Stopped("the runner is stopping")
            self._take_lease()
            try:
                execute(nonce)
            except ReplayedNonce:
                continue  # another runner executed this step first: use its outcome
            except AgentNotRunning as exc:
                raise _Stopped(exc.message) from exc
            except TokaError:
                if self.runtime.log.operation(nonce) is None:
                    raise  # refused before it was recorded (an expired token): nothing happened
            self.advanced = True

    def _recorded(self, index: int, kind: str) -> tuple[str, Outcome | None]:
        """The nonce to use for step ``index`` and its recorded outcome, if any.

        Raises the recorded refusal, unless it was only that the agent could not act."""
        attempt = 0
        while True:
            nonce = step_nonce(self.task.id, index, attempt)
            row = self.runtime.log.operation(nonce)
            if row is None:
                return nonce, None
            if row.kind != kind:
                raise Nondeterministic(
                    f"step {index} of task {self.task.id} was {row.kind} and is now {kind}: "
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
        from toka.core import approvals

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
            raise _Finished
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
            raise _Stopped(exc.message) from exc
        except TokaError as exc:
            raise _NotTaken(exc.message) from exc


class Runner:
    """Drives every running agent whose behaviour it knows (or just ``agent``).

    Use one Runner from one thread; ``run`` stops when ``stop_event`` is set. Give it
    its own Runtime when other threads use theirs (the console does): runtimes on one
    home see each other's writes through the log.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        runner_id: str | None = None,
        agent: str | None = None,
        lease_s: int = DEFAULT_LEASE_S,
        pace_s: float = 0.0,
        behaviours: dict[str, Any] | None = None,
        on_status: Callable[[str], None] | None = None,
    ):
        from toka.core.agents import behaviours as registry

        if not 1 <= lease_s <= 3600:
            raise InvalidInput("the lease must be between 1 s and 3600 s")
        if pace_s < 0:
            raise InvalidInput("the pace must not be negative")
        self.runtime = runtime
        self.runner_id = runner_id or default_runner_id()
        self.agent = agent
        self.lease_s = lease_s
        self.pace_s = pace_s
        self.behaviours = behaviours if behaviours is not None else registry.drivers()
        self.status = "off"
        self.on_status = on_status
        self.tasks_advanced = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._blocked: dict[str, str] = {}
        self._unblock = threading.Event()
        self._quiet: tuple[int, float] | None = None
        if agent is not None and agent not in runtime.state.agents:
            raise InvalidInput(f"unknown agent {agent!r}")
        self._unsubscribe = runtime.subscribe(self._on_events)

    def close(self) -> None:
        self._unsubscribe()

    def _on_events(self, records) -> None:
        if any(r.kind in _UNBLOCKING for r in records):
            self._unblock.set()

    # -- one pass -------------------------------------------------------------------------

    def step(self) -> int:
        """Advance every runnable task as far as it goes now; returns how many advanced."""
        self.runtime.catch_up()
        if self._unblock.is_set():
            self._unblock.clear()
            self._blocked.clear()
            self._quiet = None
        seq, now = self.runtime.state.seq, self.runtime.now_ms()
        if self._quiet is not None and self._quiet[0] == seq and now < self._quiet[1]:
            return 0  # nothing happened since the last fruitless pass, and no lease expired
        candidates, next_expiry = self._candidates()
        advanced = 0
        for task_id in candidates:
            if self._stop.is_set():
                break
            if self._advance(task_id):
                advanced += 1
        self.tasks_advanced += advanced
        self._quiet = None if advanced else (self.runtime.state.seq, next_expiry)
        return advanced

    def _runnable(self, task: Task, now: int) -> bool:
        agent = self.runtime.state.agents.get(task.agent)
        return (
            task.status in OPEN_TASK_STATUSES
            and agent is not None
            and agent.status == "running"
            and agent.behaviour in self.behaviours
            and (self.agent is None or agent.id == self.agent)
            and not self._leased_by_other(task, now)
        )

    def _leased_by_other(self, task: Task, now: int) -> bool:
        return (
            task.status == "started"
            and task.runner != self.runner_id
            and task.lease_until is not None
            and task.lease_until > now
        )

    def _candidates(self) -> tuple[list[str], float]:
        """The tasks to look at now, and when the next lease held by another runner expires."""
        state = self.runtime.state
        now = self.runtime.now_ms()
        next_expiry = math.inf
        by_agent: dict[str, list[str]] = {}
        for task in state.tasks.values():  # in the order they were scheduled
            if self._leased_by_other(task, now):
                next_expiry = min(next_expiry, task.lease_until or math.inf)
                continue
            if task.id in self._blocked or not self._runnable(task, now):
                continue
            by_agent.setdefault(task.agent, []).append(task.id)
        # Each agent's tasks first come first served; the agents in an order of this
        # runner's own, so several runners on one home rarely race for the same task.
        order = sorted(
            by_agent, key=lambda a: hashlib.sha256(f"{self.runner_id}/{a}".encode()).digest()
        )
        return [task_id for agent in order for task_id in by_agent[agent]], next_expiry

    def _advance(self, task_id: str) -> bool:
        state = self.runtime.state
        task = state.tasks.get(task_id)
        if task is None or not self._runnable(task, self.runtime.now_ms()):
            return False
        agent = state.agents[task.agent]
        behaviour = self.behaviours[agent.behaviour]
        run = TaskRun(self, task, agent)
        try:
            try:
                behaviour.run(run)
                run.fail(f"behaviour {agent.behaviour} neither completed nor failed the task")
            except TokaError as exc:
                run.fail(f"{exc.code}: {exc.message}")
            except Exception as exc:
                log.exception("behaviour %s crashed on %s", agent.behaviour, task_id)
                run.fail(f"behaviour {agent.behaviour} crashed: {type(exc).__name__}: {exc}")
        except _Finished:
            pass
        except Waiting:
            self._release(task_id)  # waiting needs no lease; another runner may finish it
        except _Stopped:
            pass
        except _NotTaken as exc:
            task = self.runtime.state.tasks[task_id]
            if task.status in OPEN_TASK_STATUSES and not self._leased_by_other(
                task, self.runtime.now_ms()
            ):
                self._block(task_id, str(exc))
        except TokaError as exc:
            self._block(task_id, exc.message)
        return run.advanced

    def _release(self, task_id: str) -> None:
        task = self.runtime.state.tasks.get(task_id)
        if (
            task is None
            or task.status != "started"
            or task.runner != self.runner_id
            or task.lease_until is None
        ):
            return
        try:
            Client(self.runtime, task.agent).submit(ops.ReleaseTask(task_id, self.runner_id))
        except TokaError as exc:
            log.info("could not release %s (its lease will expire): %s", task_id, exc.message)

    def release_all(self) -> None:
        """Give up every lease this runner holds, so other runners need not wait them out."""
        for task_id in [
            t.id for t in self.runtime.state.tasks.values() if t.runner == self.runner_id
        ]:
            self._release(task_id)

    def _block(self, task_id: str, why: str) -> None:
        """Nothing this runner can do for the task until grants, approvals or the agent change."""
        self._blocked[task_id] = why
        self.last_error = f"{task_id}: {why}"
        log.info("task %s is stuck: %s", task_id, why)

    @property
    def stuck(self) -> dict[str, str]:
        """Tasks this runner gave up on for now, with why."""
        return dict(self._blocked)

    # -- the loop -------------------------------------------------------------------------

    def pace(self) -> None:
        """Wait ``pace_s`` before a new step (to watch agents work); stop cuts it short."""
        if self.pace_s:
            self._stop.wait(self.pace_s)

    def others_working(self) -> bool:
        """Does another runner hold a live lease on a task this runner could drive?"""
        now = self.runtime.now_ms()
        for task in self.runtime.state.tasks.values():
            if not self._leased_by_other(task, now):
                continue
            agent = self.runtime.state.agents.get(task.agent)
            if (
                agent is not None
                and agent.status == "running"
                and agent.behaviour in self.behaviours
                and (self.agent is None or agent.id == self.agent)
            ):
                return True
        return False

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(
        self,
        *,
        until_idle: bool = False,
        stop_event: threading.Event | None = None,
        poll_s: float = POLL_S,
    ) -> int:
        """Run passes until stopped (or, with ``until_idle``, until nothing is runnable and
        no other runner holds a lease on work this one could do). Returns tasks advanced."""
        if stop_event is not None:
            self._stop = stop_event
        total = 0
        try:
            while not self._stop.is_set():
                advanced = self.step()
                total += advanced
                self._set_status("working" if advanced else "idle")
                if advanced:
                    continue
                if until_idle and not self.others_working():
                    break
                self._stop.wait(poll_s)
        finally:
            self.release_all()
            self._set_status("off")
        return total

    def _set_status(self, status: str) -> None:
        """``working``, ``idle`` or ``off``; ``on_status`` hears each change."""
        if status == self.status:
            return
        self.status = status
        if self.on_status is not None:
            try:
                self.on_status(status)
            except Exception:
                log.exception("runner status callback failed")
