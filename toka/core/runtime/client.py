"""Client: builds and signs Operations for one principal and submits them.

The CLI, the console and the agent runner all act through this class.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

import msgspec

from toka.core import kernel
from toka.core.errors import AwaitingApproval, TokaError
from toka.core.model import ops
from toka.core.model.keys import KeyPair
from toka.core.model.state import Budgets
from toka.core.runtime._runtime import Runtime
from toka.core.runtime.outcome import Outcome


class Client:
    """Acts as ``principal``: signs with its key, presents its token."""

    def __init__(
        self,
        runtime: Runtime,
        principal: str = kernel.OPERATOR,
        *,
        key: KeyPair | None = None,
        token: str | None = None,
    ):
        self.runtime = runtime
        self.principal = principal
        self._key = key
        self.token = token
        # Commands that print one result set this: a queued operation then raises
        # AwaitingApproval instead of returning an outcome with no effects yet.
        self.raise_pending = False

    @classmethod
    def from_env(
        cls,
        runtime: Runtime,
        principal: str,
        *,
        token: str | None = None,
        key_file: str | None = None,
    ) -> Client:
        key = KeyPair.from_pem(Path(key_file).expanduser().read_bytes()) if key_file else None
        return cls(runtime, principal, key=key, token=token)

    @property
    def key(self) -> KeyPair:
        if self._key is None:
            self._key = self.runtime.home.keystore.load(self.principal)
        return self._key

    def sign(self, op: ops.Operation, *, nonce: str | None = None) -> ops.SignedOperation:
        token = self.token
        if token is None:
            try:
                required = kernel.required_caps(self.runtime.state, op)
            except TokaError:
                # An unknown target or operation: the kernel refuses it with that reason.
                required = []
            token = self.runtime.token_for(self.principal, required)
        return ops.sign(op, self.principal, token, self.key, self.runtime.now_ms(), nonce)

    def submit(self, op: ops.Operation, prepared: Any = None) -> Outcome:
        outcome = self.runtime.submit(self.sign(op), prepared)
        if self.raise_pending and outcome.pending is not None:
            raise AwaitingApproval(outcome.pending)
        return outcome

    def submit_async(self, op: ops.Operation, prepared: Any = None) -> Future[Outcome]:
        """Sign and queue ``op``; the future resolves with the outcome (or the error)
        once the operation is committed and, with ``full`` durability, synced.
        Operations queued by one client are applied in the order they were queued; one
        held for approval resolves with an outcome whose ``pending`` names the approval."""
        return self.runtime.submit_async(self.sign(op), prepared)

    # -- verbs ---------------------------------------------------------------------------

    def spawn_agent(
        self,
        name: str,
        behaviour: str = "manual",
        *,
        parent: str | None = None,
        key: KeyPair | None = None,
    ) -> tuple[str, Outcome]:
        """Spawn an agent; its key pair goes into the keystore before the operation is sent."""
        agent_id, key = self.runtime.home.keystore.save_agent_key(key)
        outcome = self.submit(ops.SpawnAgent(name, key.public_key, behaviour, parent))
        return agent_id, outcome

    def pause(self, agent: str) -> Outcome:
        return self.submit(ops.PauseAgent(agent))

    def resume(self, agent: str) -> Outcome:
        return self.submit(ops.ResumeAgent(agent))

    def terminate(self, agent: str, reason: str = "") -> Outcome:
        return self.submit(ops.TerminateAgent(agent, reason))

    def schedule(self, agent: str, description: str, payload: Any = None) -> Outcome:
        return self.submit(ops.ScheduleTask(agent, description, payload))

    def complete(self, task: str, result: Any = None) -> Outcome:
        return self.submit(ops.CompleteTask(task, result))

    def fail(self, task: str, reason: str) -> Outcome:
        return self.submit(ops.FailTask(task, reason))

    def observe(self, agent: str, data: Any) -> Outcome:
        return self.submit(ops.EmitObservation(agent, data))

    def grant(
        self,
        subject: str,
        caps: list[str],
        ttl_s: int,
        *,
        budgets: Budgets | None = None,
        approve: bool = False,
        unattended: bool = False,
    ) -> Outcome:
        """Grant ``caps`` to ``subject``; ``unattended``: its external tool calls do not
        wait for an approval (an agent's do by default)."""
        op = ops.GrantCapability(
            subject,
            caps,
            ttl_s,
            budgets or Budgets(),
            approve,
            unattended=True if unattended else msgspec.UNSET,
        )
        return self.submit(op)

    def revoke(self, jti: str, reason: str = "") -> Outcome:
        return self.submit(ops.RevokeCapability(jti, reason))
