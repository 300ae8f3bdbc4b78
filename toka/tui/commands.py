"""The command palette's console commands: every action under a plain name.

A command is offered only when its action is allowed on the screen the palette was
opened from (the same ``check_action`` that shows or dims the key bindings). The
names and help lines are the palette columns of ``keymap.ACTIONS``.
"""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from toka.tui.keymap import PALETTE


class ConsoleCommands(Provider):
    """Console actions the current principal may perform here and now."""

    def _available(self) -> list[tuple[str, str, str]]:
        """(name, action, help line) of each command allowed now."""
        screen = self.screen
        return [
            (a.palette, a.action, a.palette_help)
            for a in PALETTE
            if a.palette is not None and screen.check_action(a.name, ()) is True
        ]

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
