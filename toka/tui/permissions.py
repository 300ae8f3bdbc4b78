"""What the console's principal may do, so it can hide or dim what its tokens cannot.

The kernel still decides: this only mirrors ``kernel.required_caps`` and ``caps.covers``
over a snapshot of the principal's active grants, taken where the state is safe to read.
"""

from __future__ import annotations

from typing import NamedTuple

from toka.core import kernel
from toka.core.errors import TokaError
from toka.core.model import caps as capmod
from toka.core.model import ops
from toka.core.model.state import WorldState


class _Held(NamedTuple):
    jti: str
    caps: tuple[str, ...]


class Permissions:
    """A snapshot of one principal's active grants and the lookups ``required_caps`` needs."""

    def __init__(self, principal: str, held: list[_Held], lookup: WorldState):
        self.principal = principal
        self._held = held
        self._lookup = lookup

    @classmethod
    def of(cls, state: WorldState, principal: str, now_s: int) -> Permissions:
        """Copy what is needed out of ``state`` (call it where nothing else mutates ``state``)."""
        held = [_Held(g.jti, tuple(g.caps)) for g in state.active_grants(principal, now_s)]
        # What required_caps reads: a call's tool (tool.resolve), a mount (a file call).
        lookup = WorldState(
            agents=dict(state.agents),
            tools={name: dict(versions) for name, versions in state.tools.items()},
            grants=dict(state.grants),
            mounts=dict(state.mount_table()),
            open_calls=dict(state.call_table()),
        )
        return cls(principal, held, lookup)

    @classmethod
    def none(cls, principal: str) -> Permissions:
        return cls(principal, [], WorldState())

    def allows(self, op: ops.Operation) -> bool:
        """Would one of the held grants cover every capability ``op`` requires?"""
        try:
            required = kernel.required_caps(self._lookup, op)
        except TokaError:
            return False
        if isinstance(op, ops.RevokeCapability) and self._delegated_by_me(op.jti):
            return bool(self._held)
        return any(all(capmod.covers(list(h.caps), r) for r in required) for h in self._held)

    def allows_action(self, action: str) -> bool:
        """Does any held capability name ``action`` (on some resource)?"""
        return any(capmod.action_matches(pattern, action) for h in self._held for pattern in h.caps)

    def _delegated_by_me(self, jti: str) -> bool:
        mine = {h.jti for h in self._held}
        return any(g.jti in mine for g in self._lookup.grant_chain(jti)[1:])
