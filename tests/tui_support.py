"""Driving the console in tests with Textual's Pilot: run a scenario, settle, press keys."""

from __future__ import annotations

import asyncio

from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Input

from toka.tui.screens.console import ConsoleScreen


def drive(app: App, scenario, *, size=(120, 40), notifications: bool = False) -> None:
    """Run ``scenario(pilot)`` on ``app`` once the log is loaded (no async test plugin)."""

    async def main() -> None:
        async with app.run_test(size=size, notifications=notifications) as pilot:
            await settle(pilot)  # the first load: rows and permissions
            await scenario(pilot)

    asyncio.run(main())


async def settle(pilot: Pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def press(pilot: Pilot, *keys: str) -> None:
    """Press keys; ``type:TEXT`` types, ``fill:#id=TEXT`` sets a field as typing would
    (much faster for long values)."""
    for key in keys:
        if key.startswith("type:"):
            await pilot.press(*key[len("type:") :])
        elif key.startswith("fill:"):
            selector, _, value = key[len("fill:") :].partition("=")
            pilot.app.screen.query_one(selector, Input).value = value
        else:
            await pilot.press(key)
        await settle(pilot)


def console(pilot: Pilot) -> ConsoleScreen:
    return pilot.app.live  # type: ignore[attr-defined]


def screen_text(app: App) -> str:
    """What the terminal would show now: every cell of the top screen, toasts included."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())
