"""Every action of the console screen, one ConsoleAction row each.

A row says everything about one action: its key and binding id, its footer label, its
line in the key help, its entry in the command palette, whether it submits an
operation and what the token must allow. The screen's BINDINGS, the key help and the
palette are all derived from ``ACTIONS``, so describing an action once is enough.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

from textual.binding import Binding

from toka.core.model import ops
from toka.tui.effect_view import CallRow
from toka.tui.permissions import Permissions
from toka.tui.tool_view import ToolRow
from toka.tui.view import PANES, TITLES, AgentRow, GrantRow


class Selection(Protocol):
    """What a permission rule reads from the console screen."""

    permissions: Permissions
    open_calls: tuple[CallRow, ...]  # open calls with an effect, as the last batch saw them
    mcp_servers: tuple[str, ...]  # the registered MCP servers, as the last batch saw them

    def selected_agent(self) -> AgentRow | None: ...
    def selected_grant(self) -> GrantRow | None: ...
    def selected_tool(self) -> ToolRow | None: ...


# What Textual's check_action means: True allowed, None shown dimmed (the token does
# not allow it, or it does not apply to the selected row), False hidden.
Rule = Callable[[Selection], bool | None]


class ConsoleAction(NamedTuple):
    """One console action and every place it appears."""

    action: str  # the Textual action, with its arguments: "focus_pane('agents')"
    key: str | None = None  # None: only in the palette
    binding_id: str | None = None  # lets a user rebind the key
    label: str = ""  # the Binding's description, shown in the footer
    show: bool = False  # in the footer
    group: str | None = None  # its key-help group; None: left out of the key help
    help: str = ""  # its key-help line (rows of one action share the first row's)
    palette: str | None = None  # its name in the command palette; None: not offered there
    palette_help: str = ""
    writes: bool = False  # submits an operation, so never offered in time travel
    rule: Rule | None = None  # what the token must allow; None: nothing

    @property
    def name(self) -> str:
        """The action without its arguments, as ``check_action`` gets it."""
        return self.action.partition("(")[0]


class KeyHelp(NamedTuple):
    group: str
    keys: str
    description: str
    enabled: bool


# -- permission rules ---------------------------------------------------------------------


def _allowed(yes: bool) -> bool | None:
    return True if yes else None


def _spawn(s: Selection) -> bool | None:
    return _allowed(s.permissions.allows(ops.SpawnAgent("probe", "", "manual")))


def _on_agent(make: Callable[[str], ops.Operation], statuses: tuple[str, ...]) -> Rule:
    """Needs a selected agent in one of ``statuses`` and the right to ``make(agent id)``."""

    def rule(s: Selection) -> bool | None:
        agent = s.selected_agent()
        if agent is None:
            return False
        if agent.status not in statuses:
            return None
        return _allowed(s.permissions.allows(make(agent.id)))

    return rule


def _grant(s: Selection) -> bool | None:
    return _allowed(s.permissions.allows_action("cap.grant"))


def _revoke(s: Selection) -> bool | None:
    grant = s.selected_grant()
    if grant is None:
        return False
    if grant.status == "revoked":
        return None
    return _allowed(s.permissions.allows(ops.RevokeCapability(grant.jti)))


def _invoke(s: Selection) -> bool | None:
    tool = s.selected_tool()
    if tool is None:
        return False
    if tool.is_server:
        return None
    return _allowed(s.permissions.allows(ops.InvokeTool(tool.name, None, tool.version)))


def _resolve(s: Selection) -> bool | None:
    """Offered while a call waits for the operator; allowed if the token may resolve one."""
    waiting = [c for c in s.open_calls if c.needs_operator]
    if not waiting:
        return False
    return _allowed(any(s.permissions.allows(ops.ResolveCall(c.call, "failed")) for c in waiting))


def _add_mcp_server(s: Selection) -> bool | None:
    return _allowed(s.permissions.allows_action("mcp.register"))


def _import_mcp_tools(s: Selection) -> bool | None:
    """Offered once a server is registered; allowed if the token may register a tool
    named after one of them (``tool.register:tool/SERVER.*``)."""
    if not s.mcp_servers:
        return False
    return _allowed(any(s.permissions.allows(_probe_import(server)) for server in s.mcp_servers))


def _probe_import(server: str) -> ops.RegisterTool:
    return ops.RegisterTool(f"{server}.probe", "1.0.0", "", "mcp", None, [], {})


def _demo(s: Selection) -> bool | None:
    return _allowed(s.permissions.allows_action("agent.spawn"))


LIVE = ("running", "paused")

# The order is the footer's and the key help's; among bindings of one key (escape, p)
# the first one allowed runs.
ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction(
        action="spawn_agent",
        key="s",
        binding_id="spawn-agent",
        label="Spawn",
        show=True,
        group="Act",
        help="spawn an agent",
        palette="Spawn agent",
        palette_help="a new agent with its own key pair and base grant",
        writes=True,
        rule=_spawn,
    ),
    ConsoleAction(
        action="schedule_task",
        key="t",
        binding_id="schedule-task",
        label="Task",
        show=True,
        group="Act",
        help="schedule a task for the selected agent",
        palette="Schedule task",
        palette_help="give the selected agent a task",
        writes=True,
        rule=_on_agent(lambda a: ops.ScheduleTask(a, "probe"), LIVE),
    ),
    ConsoleAction(
        action="emit_observation",
        key="o",
        binding_id="emit-observation",
        label="Observe",
        group="Act",
        help="emit an observation about the selected agent",
        palette="Emit observation",
        palette_help="record an observation about the selected agent",
        writes=True,
        rule=_on_agent(lambda a: ops.EmitObservation(a, None), LIVE),
    ),
    ConsoleAction(
        action="pause_agent",
        key="z",
        binding_id="pause-agent",
        label="Pause agent",
        group="Act",
        help="pause the selected agent",
        palette="Pause agent",
        palette_help="pause the selected agent",
        writes=True,
        rule=_on_agent(ops.PauseAgent, ("running",)),
    ),
    ConsoleAction(
        action="resume_agent",
        key="u",
        binding_id="resume-agent",
        label="Resume agent",
        group="Act",
        help="resume the selected agent",
        palette="Resume agent",
        palette_help="resume the selected agent",
        writes=True,
        rule=_on_agent(ops.ResumeAgent, ("paused",)),
    ),
    ConsoleAction(
        action="terminate_agent",
        key="K",
        binding_id="terminate-agent",
        label="Terminate agent",
        group="Act",
        help="terminate the selected agent (asks first)",
        palette="Terminate agent",
        palette_help="terminate the selected agent (asks first)",
        writes=True,
        rule=_on_agent(ops.TerminateAgent, LIVE),
    ),
    ConsoleAction(
        action="grant_capability",
        key="g",
        binding_id="grant-capability",
        label="Grant",
        show=True,
        group="Act",
        help="grant capabilities to an agent or principal",
        palette="Grant capability",
        palette_help="delegate capabilities, with a TTL and budgets",
        writes=True,
        rule=_grant,
    ),
    ConsoleAction(
        action="revoke_capability",
        key="x",
        binding_id="revoke-capability",
        label="Revoke",
        group="Act",
        help="revoke the selected grant and what derives from it (asks first)",
        palette="Revoke capability",
        palette_help="revoke the selected grant and its descendants",
        writes=True,
        rule=_revoke,
    ),
    ConsoleAction(
        action="invoke_tool",
        key="i",
        binding_id="invoke-tool",
        label="Invoke",
        show=True,
        group="Act",
        help="invoke the selected tool",
        palette="Invoke tool",
        palette_help="run the selected tool with arguments from its schema",
        writes=True,
        rule=_invoke,
    ),
    ConsoleAction(
        action="resolve_call",
        palette="Resolve call",
        palette_help="say whether a call whose outcome is unknown (or interrupted) happened",
        writes=True,
        rule=_resolve,
    ),
    ConsoleAction(
        action="add_mcp_server",
        palette="Add MCP server",
        palette_help="register an MCP server: a command to run, or a URL",
        writes=True,
        rule=_add_mcp_server,
    ),
    ConsoleAction(
        action="import_mcp_tools",
        palette="Import MCP tools",
        palette_help="see what an MCP server offers, and import its tools as Toka tools",
        writes=True,
        rule=_import_mcp_tools,
    ),
    ConsoleAction(
        action="show_detail",
        key="d",
        binding_id="show-detail",
        label="Detail",
        group="Inspect",
        help="show the selected row in full",
    ),
    ConsoleAction(
        action="show_open_calls",
        key="c",
        binding_id="show-open-calls",
        label="Calls",
        group="Inspect",
        help="list open tool calls with an effect: started, interrupted, unknown",
        palette="Show open calls",
        palette_help="tool calls with an effect that have not ended, and which need you",
    ),
    ConsoleAction(
        action="verify_log",
        key="v",
        binding_id="verify-log",
        label="Verify",
        group="Inspect",
        help="verify the hash chain of the whole log",
        palette="Verify log",
        palette_help="walk the hash chain of the whole log",
    ),
    ConsoleAction(
        action="time_travel",
        key="h",
        binding_id="time-travel",
        label="Time travel",
        show=True,
        group="Inspect",
        help="browse the world as it was at a sequence number",
        palette="Time travel",
        palette_help="browse the world as it was at a sequence number",
    ),
    ConsoleAction(
        action="close_filter", key="escape", binding_id="close-filter", label="Close filter"
    ),
    ConsoleAction(
        action="leave_time_travel",
        key="escape",
        binding_id="leave-time-travel",
        label="Back to live",
        show=True,
        group="Inspect",
        help="leave time travel, back to the live world",
        palette="Back to live",
        palette_help="leave time travel",
    ),
    ConsoleAction(
        action="load_demo",
        palette="Load demo scenario",
        palette_help="spawn a few agents, tasks and grants to explore",
        writes=True,
        rule=_demo,
    ),
    ConsoleAction(
        action="collect_garbage",
        palette="Collect garbage",
        palette_help="list blobs, compiled modules and staged copies nothing needs, then remove them",
        writes=True,
    ),
    ConsoleAction(
        action="filter_events",
        key="slash",
        binding_id="filter-events",
        label="Filter",
        show=True,
        group="Events",
        help="filter events: kind:… agent:… principal:… text",
        palette="Filter events",
        palette_help="kind:… agent:… principal:… text",
    ),
    ConsoleAction(
        action="clear_filter",
        key="escape",
        binding_id="clear-filter",
        label="Clear filter",
        group="Events",
        help="clear the event filter",
        palette="Clear event filter",
        palette_help="show every event again",
    ),
    ConsoleAction(
        action="pause_follow",
        key="p",
        binding_id="pause-follow",
        label="Pause",
        show=True,
        group="Events",
        help="pause following: new events are held back",
        palette="Pause following",
        palette_help="freeze the Events pane; new events are held back",
    ),
    ConsoleAction(
        action="resume_follow",
        key="p",
        binding_id="resume-follow",
        label="Follow",
        show=True,
        group="Events",
        help="resume following: show what was held back",
        palette="Resume following",
        palette_help="show the held-back events and follow again",
    ),
    *(
        ConsoleAction(
            action=f"focus_pane('{pane}')",
            key=str(number),
            binding_id=f"focus-{pane}",
            label=TITLES[pane],
            group="Move",
            help="focus " + ", ".join(TITLES[p] for p in PANES),
            palette=f"Focus {TITLES[pane]}",
            palette_help=f"jump to the {TITLES[pane]} pane ({number})",
        )
        for number, pane in enumerate(PANES, 1)
    ),
    ConsoleAction(
        action="next_pane",
        key="tab",
        binding_id="next-pane",
        label="Next pane",
        group="Move",
        help="next pane",
    ),
    ConsoleAction(
        action="previous_pane",
        key="shift+tab",
        binding_id="previous-pane",
        label="Previous pane",
        group="Move",
        help="previous pane",
    ),
)

# Keys that are not the screen's own bindings (the tables', the app's), for the key help.
OTHER_KEYS = (
    KeyHelp("Move", "↑ ↓ j k", "move the cursor in the focused pane", True),
    KeyHelp("Move", "enter", "open the selected row in full", True),
    KeyHelp("App", "ctrl+p", "command palette: every action by name", True),
    KeyHelp("App", "?", "these keys", True),
    KeyHelp("App", "q", "quit", True),
)

_BOUND = [
    (a, Binding(a.key, a.action, a.label, show=a.show, id=a.binding_id))
    for a in ACTIONS
    if a.key is not None
]
BINDINGS = [binding for _, binding in _BOUND]
BOUND_ACTIONS = tuple(dict.fromkeys(a.name for a, _ in _BOUND))
WRITES = frozenset(a.name for a in ACTIONS if a.writes)
RULES = {a.name: a.rule for a in ACTIONS if a.rule is not None}
PALETTE = tuple(a for a in ACTIONS if a.palette is not None)


def key_help(
    check: Callable[[str], bool | None], key_display: Callable[[Binding], str]
) -> list[KeyHelp]:
    """The bound keys ``check`` does not hide, by group (dimmed where it says None), then
    ``OTHER_KEYS``."""
    keys: dict[str, list[str]] = {}
    enabled: dict[str, bool] = {}
    first: dict[str, ConsoleAction] = {}
    for action, binding in _BOUND:
        state = check(action.name)
        if state is False or action.group is None:
            continue
        keys.setdefault(action.name, []).append(key_display(binding))
        enabled[action.name] = bool(state)
        first.setdefault(action.name, action)
    groups: dict[str, list[KeyHelp]] = {}
    for name, action in first.items():
        assert action.group is not None
        shown = " ".join(dict.fromkeys(keys[name]))
        groups.setdefault(action.group, []).append(
            KeyHelp(action.group, shown, action.help, enabled[name])
        )
    return [entry for entries in groups.values() for entry in entries] + list(OTHER_KEYS)
