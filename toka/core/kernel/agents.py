"""Principals and agents: genesis, spawn, pause, resume, terminate, observations."""

from __future__ import annotations

import msgspec

from toka.core.errors import InvalidInput, InvalidOperation
from toka.core.kernel.auth import authorize, required_caps
from toka.core.kernel.context import (
    BASE_ACTIONS,
    KERNEL,
    MAX_DESCRIPTION_BYTES,
    MAX_NAME_BYTES,
    MAX_OBSERVATION_BYTES,
    MAX_TTL_S,
    Ctx,
    Evolver,
    check_json,
    check_name,
    check_text,
    find_agent,
)
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.keys import agent_id_for, unb64
from toka.core.model.state import OPEN_TASK_STATUSES, Agent, Grant, WorldState


def base_grant(
    state: WorldState, agent_id: str, parent: Grant | None, ctx: Ctx, jti: str
) -> ev.CapabilityGranted:
    exp = parent.exp if parent is not None else ctx.ts // 1000 + MAX_TTL_S
    return ev.CapabilityGranted(
        jti=jti,
        subject=agent_id,
        caps=[f"{action}:agent/{agent_id}" for action in BASE_ACTIONS],
        issuer=KERNEL,
        parent=parent.jti if parent is not None else None,
        iat=ctx.ts // 1000,
        exp=exp,
    )


def spawn(state: WorldState, op: ops.SpawnAgent, ctx: Ctx) -> list[msgspec.Struct]:
    check_name("agent name", op.name, MAX_NAME_BYTES)
    check_name("behaviour", op.behaviour, 64)
    grant = authorize(state, ctx, required_caps(state, op))
    try:
        raw_key = unb64(op.public_key)
    except InvalidInput:
        raw_key = b""
    if len(raw_key) != 32:
        raise InvalidOperation("public_key must be a base64url Ed25519 public key (32 bytes)")
    agent_id = agent_id_for(op.public_key)
    if agent_id in state.agents:
        raise InvalidOperation(f"agent {agent_id} already exists (public key reused)")
    if op.parent is not None:
        find_agent(state, op.parent)
    return [
        ev.AgentSpawned(agent_id, op.name, op.behaviour, op.public_key, op.parent),
        base_grant(state, agent_id, grant, ctx, f"gr-{ctx.seq + 1}"),
    ]


def _lifecycle(state: WorldState, op: ops.Operation, agent_id: str, ctx: Ctx) -> Agent:
    authorize(state, ctx, required_caps(state, op))
    return find_agent(state, agent_id)


def pause(state: WorldState, op: ops.PauseAgent, ctx: Ctx) -> list[msgspec.Struct]:
    agent = _lifecycle(state, op, op.agent, ctx)
    if agent.status != "running":
        raise InvalidOperation(f"agent {agent.id} is {agent.status}; only a running agent pauses")
    return [ev.AgentPaused(agent.id)]


def resume(state: WorldState, op: ops.ResumeAgent, ctx: Ctx) -> list[msgspec.Struct]:
    agent = _lifecycle(state, op, op.agent, ctx)
    if agent.status != "paused":
        raise InvalidOperation(f"agent {agent.id} is {agent.status}; only a paused agent resumes")
    return [ev.AgentResumed(agent.id)]


def terminate(state: WorldState, op: ops.TerminateAgent, ctx: Ctx) -> list[msgspec.Struct]:
    agent = _lifecycle(state, op, op.agent, ctx)
    check_text("reason", op.reason, MAX_DESCRIPTION_BYTES, empty_ok=True)
    if agent.status == "terminated":
        raise InvalidOperation(f"agent {agent.id} is already terminated")
    out: list[msgspec.Struct] = [ev.AgentTerminated(agent.id, op.reason)]
    out += [
        ev.TaskCancelled(t.id, f"agent {agent.id} terminated")
        for t in state.tasks.values()
        if t.agent == agent.id and t.status in OPEN_TASK_STATUSES
    ]
    for g in state.grants.values():
        if g.subject == agent.id and not g.revoked:
            cascade = [j for j in state.descendants(g.jti) if not state.grants[j].revoked]
            out.append(
                ev.CapabilityRevoked(g.jti, [g.jti, *cascade], f"agent {agent.id} terminated")
            )
    return out


def observe(state: WorldState, op: ops.EmitObservation, ctx: Ctx) -> list[msgspec.Struct]:
    authorize(state, ctx, required_caps(state, op))
    agent = find_agent(state, op.agent)
    check_json("observation", op.data, MAX_OBSERVATION_BYTES)
    if agent.status == "terminated":
        raise InvalidOperation(f"agent {agent.id} is terminated")
    return [ev.ObservationEmitted(agent.id, op.data)]


# -- evolvers ----------------------------------------------------------------------


def _on_genesis(state: WorldState, e: ev.Genesis, r: ev.EventRecord) -> None:
    state.home_id = e.home_id
    state.principals[e.operator] = e.operator_key


def _on_spawned(state: WorldState, e: ev.AgentSpawned, r: ev.EventRecord) -> None:
    state.agents[e.agent] = Agent(
        id=e.agent,
        name=e.name,
        behaviour=e.behaviour,
        status="running",
        public_key=e.public_key,
        spawned_by=r.principal,
        parent=e.parent,
        created_ms=r.ts,
    )
    state.principals[e.agent] = e.public_key


def _on_paused(state: WorldState, e: ev.AgentPaused, r: ev.EventRecord) -> None:
    state.agents[e.agent].status = "paused"


def _on_resumed(state: WorldState, e: ev.AgentResumed, r: ev.EventRecord) -> None:
    state.agents[e.agent].status = "running"


def _on_terminated(state: WorldState, e: ev.AgentTerminated, r: ev.EventRecord) -> None:
    state.agents[e.agent].status = "terminated"


def _on_observed(state: WorldState, e: ev.ObservationCounted, r: ev.EventRecord | None) -> None:
    # Reads no record: a rebuild (kernel.evolve_rows) hands it none.
    state.agents[e.agent].observations += 1


EVOLVERS: dict[str, Evolver] = {
    "log.genesis": _on_genesis,
    "agent.spawned": _on_spawned,
    "agent.paused": _on_paused,
    "agent.resumed": _on_resumed,
    "agent.terminated": _on_terminated,
    "observation.emitted": _on_observed,
}
