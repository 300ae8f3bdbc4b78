"""The kernel's two tables name a rule for every operation and a fold for every event."""

from __future__ import annotations

from toka.core import kernel
from toka.core.kernel import tools as tool_rules
from toka.core.model import caps, ops
from toka.core.model import events as ev
from toka.core.tools import effect_tools, native, sandbox


def test_every_operation_type_has_a_decider():
    assert set(kernel.DECIDERS) == set(ops.OPERATION_TYPES.values())


def test_every_event_kind_has_an_evolver_or_is_listed_as_changing_nothing():
    kinds = set(ev.EVENT_TYPES)
    assert set(kernel.EVOLVERS) | kernel.UNFOLDED == kinds
    assert not set(kernel.EVOLVERS) & kernel.UNFOLDED


def test_every_capability_action_of_an_operation_is_a_known_action():
    known = set(caps.ACTIONS)
    # op.deny is authorized by op.approve, task.release by task.start, fs.unmount by
    # fs.mount, net.revoke by net.allow, mcp.remove by mcp.register (see
    # auth.required_caps); tool.record and
    # tool.abandon are host statements, signed with the kernel's key under no grant.
    assert set(ops.OPERATION_TYPES) - known == {
        "op.deny",
        "task.release",
        "fs.unmount",
        "net.revoke",
        "mcp.remove",
        "tool.record",
        "tool.abandon",
    }


def test_the_kernel_accepts_registrations_for_exactly_the_native_tools_that_exist():
    assert set(tool_rules.NATIVE_TOOLS) == set(native.NATIVE_TOOLS) | set(effect_tools.EFFECT_TOOLS)


def test_every_sandbox_failure_is_a_failure_kind_the_log_records():
    assert sandbox.FAILURE_KINDS <= ev.TOOL_FAILURE_KINDS
