"""The command palette's console commands: every action under a plain name.

A command is offered only when its action is allowed on the screen the palette was
opened from (the same ``check_action`` that shows or dims the key bindings).
"""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

# (name in the palette, action on the console screen, help line)
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("Spawn agent", "spawn_agent", "a new agent with its own key pair and base grant"),
    ("Schedule task", "schedule_task", "give the selected agent a task"),
    ("Pause agent", "pause_agent", "pause the selected agent"),
    ("Resume agent", "resume_agent", "resume the selected agent"),
    ("Terminate agent", "terminate_agent", "terminate the selected agent (asks first)"),
    ("Emit observation", "emit_observation", "record an observation about the selected agent"),
    ("Grant capability", "grant_capability", "delegate capabilities, with a TTL and budgets"),
    ("Revoke capability", "revoke_capability", "revoke the selected grant and its descendants"),
    ("Invoke tool", "invoke_tool", "run the selected tool with arguments from its schema"),
    ("Verify log", "verify_log", "walk the hash chain of the whole log"),
    ("Time travel", "time_travel", "browse the world as it was at a sequence number"),
    ("Back to live", "leave_time_travel", "leave time travel"),
    ("Load demo scenario", "load_demo", "spawn a few agents, tasks and grants to explore"),
    ("Filter events", "filter_events", "kind:… agent:… principal:… text"),
    ("Clear event filter", "clear_filter", "show every event again"),
    ("Pause following", "pause_follow", "freeze the Events pane; new events are held back"),
    ("Resume following", "resume_follow", "show the held-back events and follow again"),
    ("Focus Agents", "focus_pane('agents')", "jump to the Agents pane (1)"),
    ("Focus Events", "focus_pane('events')", "jump to the Events pane (2)"),
    ("Focus Grants", "focus_pane('grants')", "jump to the Grants pane (3)"),
    ("Focus Tools", "focus_pane('tools')", "jump to the Tools pane (4)"),
)


class ConsoleCommands(Provider):
    """Console actions the current principal may perform here and now."""

    def _available(self) -> list[tuple[str, str, str]]:
        screen = self.screen
        out = []
        for name, action, help_text in COMMANDS:
            bare, _, _ = action.partition("(")
            if screen.check_action(bare, ()) is True:
                out.append((name, action, help_text))
        return out

    async def discover(self) -> Hits:
        for name, action, help_text in self._available():
            yield DiscoveryHit(name, partial(self.screen.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, action, help_text in self._available():
            score = matcher.match(name)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(name),
                    partial(self.screen.run_action, action),
                    text=name,
                    help=help_text,
                )
