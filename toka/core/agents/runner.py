"""The agent runner: drives the agents whose behaviour it knows, each as itself.

It takes the open tasks of running agents, lets the agent's behaviour decide through
the durable steps of a :class:`~toka.core.agents.steps.TaskRun`, and leaves a task
it cannot move (waiting for an approval or for children, refused) until the log
changes. Several runners share a home: task leases keep them apart.
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
from typing import Any

from toka.core.agents import behaviours as registry
from toka.core.agents.steps import (
    Finished,
    LeaseKeeper,
    NotTaken,
    OutOfBudget,
    Stopped,
    TaskRun,
    Waiting,
)
from toka.core.errors import InvalidInput, StoreUnavailable, TokaError
from toka.core.kernel.context import MAX_NAME_BYTES, check_name
from toka.core.model import ops
from toka.core.model.state import OPEN_TASK_STATUSES, Task
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 60
POLL_S = 0.2
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


def default_runner_id() -> str:
    host = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().lower())[:40] or "host"
    return f"runner-{host}-{os.getpid()}-{secrets.token_hex(2)}"


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
        if not 1 <= lease_s <= 3600:
            raise InvalidInput("the lease must be between 1 s and 3600 s")
        if pace_s < 0:
            raise InvalidInput("the pace must not be negative")
        if runner_id is not None:
            check_name("runner id", runner_id, MAX_NAME_BYTES)
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
        self._keys: dict[str, bool] = {}  # agent id -> whether this host holds its key
        # Tasks waiting for a time (a tool call's deadline), not for the log to change.
        self._timers: dict[str, int] = {}
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
        self._timers = {t: at for t, at in self._timers.items() if at > now}
        candidates, next_expiry = self._candidates()
        advanced = 0
        for task_id in candidates:
            if self._stop.is_set():
                break
            if self._advance(task_id):
                advanced += 1
        self.tasks_advanced += advanced
        if not advanced and candidates:
            # A task this pass could not take may be leased by another runner now: its
            # lease's end (not the one seen before the pass) is when to look again.
            _, next_expiry = self._candidates()
        next_expiry = min([next_expiry, *self._timers.values()])
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
            and self.holds_key(agent.id)
            and not self._leased_by_other(task, now)
        )

    def holds_key(self, agent_id: str) -> bool:
        """Whether this host has the agent's key: agents spawned on another host sharing
        the log are that host's runners' to drive (keys never travel)."""
        held = self._keys.get(agent_id)
        if held is None:
            held = self._keys[agent_id] = self.runtime.home.keystore.has(agent_id)
        return held

    def skipped(self) -> dict[str, str]:
        """Running agents this runner would drive but cannot sign for, with why."""
        return {
            a.id: f"{a.name}'s key is not on this host: it was spawned by another host of the log"
            for a in self.runtime.state.agents.values()
            if a.status == "running"
            and a.behaviour in self.behaviours
            and (self.agent is None or a.id == self.agent)
            and not self.holds_key(a.id)
        }

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
            # The lease is renewed for as long as the pass runs, and no longer: the
            # keeper stops before the task is released or failed for its budget.
            with LeaseKeeper(run):
                try:
                    behaviour.run(run)
                    run.fail(f"behaviour {agent.behaviour} neither completed nor failed the task")
                except TokaError as exc:
                    run.fail(exc.reason)
                except Exception as exc:
                    log.exception("behaviour %s crashed on %s", agent.behaviour, task_id)
                    run.fail(f"behaviour {agent.behaviour} crashed: {type(exc).__name__}: {exc}")
        except Finished:
            pass
        except Waiting as exc:
            if exc.until_ms is not None:
                self._timers[task_id] = exc.until_ms
            self._release(task_id)  # waiting needs no lease; another runner may finish it
        except Stopped:
            pass
        except OutOfBudget as exc:
            self._fail_spent(run, exc.reason)
        except NotTaken as exc:
            task = self.runtime.state.tasks[task_id]
            if task.status in OPEN_TASK_STATUSES and not self._leased_by_other(
                task, self.runtime.now_ms()
            ):
                self._block(task_id, str(exc))
        except TokaError as exc:
            self._block(task_id, exc.message)
        return run.advanced

    def _fail_spent(self, run: TaskRun, reason: str) -> None:
        """Fail a task whose agent's budget is spent (no lease needed, none to be had)."""
        try:
            run.client.submit(ops.FailTask(run.id, reason))
            run.advanced = True
        except TokaError as exc:
            self._block(run.id, exc.message)

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
                try:
                    advanced = self.step()
                except StoreUnavailable as exc:
                    # A shared log's server is away (restarting, a network cut): wait and
                    # look again; what was committed is read back on the next pass.
                    if self.last_error != exc.message:
                        log.warning("runner %s: %s", self.runner_id, exc.message)
                    self.last_error = exc.message
                    self._set_status("idle")
                    self._stop.wait(max(poll_s, 1.0))
                    continue
                total += advanced
                self._set_status("working" if advanced else "idle")
                if advanced:
                    continue
                if until_idle and not self.others_working() and not self._timers:
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
