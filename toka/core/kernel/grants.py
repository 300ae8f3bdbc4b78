"""Grants: delegation that only narrows, and revocation that cascades."""

from __future__ import annotations

import msgspec

from toka.core.errors import InvalidOperation, NotCovered, NotFound
from toka.core.kernel.auth import authorize, presenting_grant, required_caps
from toka.core.kernel.context import (
    MAX_DESCRIPTION_BYTES,
    MAX_TTL_S,
    OPERATOR,
    Ctx,
    Evolver,
    check_text,
)
from toka.core.kernel.places import check_grant_fits_mounts
from toka.core.model import caps, ops
from toka.core.model import events as ev
from toka.core.model.state import Grant, WorldState


def grant(state: WorldState, op: ops.GrantCapability, ctx: Ctx) -> list[msgspec.Struct]:
    if op.subject not in state.principals:
        raise NotFound(f"unknown principal {op.subject!r}")
    parent = authorize(state, ctx, required_caps(state, op))
    wanted = caps.validate(op.caps)
    check_grant_fits_mounts(state, wanted)
    if not 1 <= op.ttl_s <= MAX_TTL_S:
        raise InvalidOperation(f"ttl must be between 1 s and {MAX_TTL_S} s")
    agent = state.agents.get(op.subject)
    if agent is not None and agent.status == "terminated":
        raise InvalidOperation(f"agent {agent.id} is terminated")
    missing = caps.uncovered(parent.caps, wanted)
    if missing:
        raise NotCovered(
            f"delegation only narrows: token {parent.jti} does not cover {', '.join(missing)}"
        )
    now_s = ctx.ts // 1000
    exp = now_s + op.ttl_s
    if exp > parent.exp:
        raise NotCovered(
            f"delegation only narrows: the grant would outlive token {parent.jti} "
            f"(max ttl {parent.exp - now_s} s)"
        )
    for field, mine in msgspec.structs.asdict(op.budgets).items():
        if mine is not None and mine < 0:
            raise InvalidOperation(f"budget {field} must not be negative")
        for link in state.grant_chain(parent.jti):
            left = link.budgets.remaining(link.usage).get(field)
            if left is not None and (mine is None or mine > left):
                raise NotCovered(
                    f"delegation only narrows: {field} must be set and at most "
                    f"{left} (what remains of grant {link.jti})"
                )
    approve = op.approve or any(link.approve for link in state.grant_chain(parent.jti))
    unattended = op.unattended is True
    if unattended and ctx.principal != OPERATOR and parent.unattended is not True:
        raise NotCovered(
            f"delegation only narrows: token {parent.jti} is not unattended (its external "
            "calls wait for approval), so it cannot issue a grant that is"
        )
    return [
        ev.CapabilityGranted(
            jti=f"gr-{ctx.seq}",
            subject=op.subject,
            caps=wanted,
            issuer=ctx.principal,
            parent=parent.jti,
            iat=now_s,
            exp=exp,
            budgets=op.budgets,
            approve=approve,
            unattended=True if unattended else msgspec.UNSET,
        )
    ]


def revoke(state: WorldState, op: ops.RevokeCapability, ctx: Ctx) -> list[msgspec.Struct]:
    target = state.grants.get(op.jti)
    if target is None:
        raise NotFound(f"unknown grant {op.jti!r}")
    mine = presenting_grant(state, ctx)
    delegated_by_me = mine.jti in {g.jti for g in state.grant_chain(target.jti)[1:]}
    if not delegated_by_me:
        authorize(state, ctx, required_caps(state, op))
    else:
        authorize(state, ctx, [])
    check_text("reason", op.reason, MAX_DESCRIPTION_BYTES, empty_ok=True)
    if target.revoked:
        raise InvalidOperation(f"grant {target.jti} is already revoked")
    cascade = [j for j in state.descendants(target.jti) if not state.grants[j].revoked]
    return [ev.CapabilityRevoked(target.jti, [target.jti, *cascade], op.reason)]


# -- evolvers ----------------------------------------------------------------------


def _on_granted(state: WorldState, e: ev.CapabilityGranted, r: ev.EventRecord) -> None:
    state.grants[e.jti] = Grant(**msgspec.structs.asdict(e))


def _on_revoked(state: WorldState, e: ev.CapabilityRevoked, r: ev.EventRecord) -> None:
    for jti in e.revoked:
        grant = state.grants[jti]
        grant.revoked = True
        grant.revoked_at = r.ts


EVOLVERS: dict[str, Evolver] = {
    "capability.granted": _on_granted,
    "capability.revoked": _on_revoked,
}
