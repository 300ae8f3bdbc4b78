"""``toka bench tui``: how fast the console answers a key, idle and under a stream of events.

The console runs headless (Textual's Pilot) on a scratch home and follows the log as
``toka tui`` does. Each sample presses a key that moves the focus to another pane and
times it until the screen has painted the change. The load comes from another process
(``toka demo --load RATE``), as it would from another terminal.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import events

from toka.core.bench.stats import percentile
from toka.core.errors import TokaError
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home
from toka.tui.app import TokaConsole, make_app
from toka.tui.widgets import EventStream

SIZE = (120, 40)
# Keys that each move the focus (and the highlighted border, the tab strip and the
# detail area) to a known pane: the change a person sees when they press it.
KEYS = (("2", "events"), ("1", "agents"), ("3", "grants"), ("4", "tools"))
LOAD_START_TIMEOUT_S = 30.0


def _summary(samples: list[float]) -> dict[str, Any]:
    return {
        "presses": len(samples),
        "p50_ms": round(percentile(samples, 0.50), 2),
        "p95_ms": round(percentile(samples, 0.95), 2),
        "max_ms": round(max(samples), 2),
    }


class _PaintProbe:
    """Notes the first frame painted once ``expect()`` holds. It wraps the screen's
    compositor refresh, the one place a frame is rendered (Textual has no public
    "painted" signal)."""

    def __init__(self, app: TokaConsole):
        self.expect: Callable[[], bool] | None = None
        self.painted_at = 0.0
        screen = app.live
        original = screen._compositor_refresh

        def refresh() -> None:
            original()
            if self.expect is not None and self.expect():
                self.painted_at = time.perf_counter()
                self.expect = None

        screen._compositor_refresh = refresh  # type: ignore[method-assign]


async def _press_and_time(app: TokaConsole, probe: _PaintProbe, key: str, pane: str) -> float:
    """Milliseconds from the key arriving (as a terminal sends it) to the first frame
    painted with the focus on ``pane``."""
    probe.painted_at = 0.0
    probe.expect = lambda: app.live.current == pane
    start = time.perf_counter()
    app._driver.send_message(events.Key(key, key))  # type: ignore[union-attr]
    while not probe.painted_at:
        await asyncio.sleep(0.0005)
    return (probe.painted_at - start) * 1000.0


async def _sample(
    app: TokaConsole, presses: int, during: Callable[[], bool]
) -> tuple[list[float], int]:
    """The latency samples, and how many rows the Events pane held at the end."""
    samples: list[float] = []
    async with app.run_test(size=SIZE):
        probe = _PaintProbe(app)
        while not app.live.loaded:
            await asyncio.sleep(0.01)
        index = 0
        while len(samples) < presses and during():
            key, pane = KEYS[index % len(KEYS)]
            index += 1
            samples.append(await _press_and_time(app, probe, key, pane))
            await asyncio.sleep(0.05)  # a person's pace, not a key-repeat flood
        rows = len(app.live.query_one(EventStream).rows)
    return samples, rows


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def bench_tui(
    presses: int = 40,
    load_rate: float = 1500.0,
    load_seconds: float = 10.0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Key-to-paint latency (p50, p95, max) of the console, idle and under load."""
    say = progress or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="toka-bench-tui-") as scratch:
        home = Home(Path(scratch) / "home")
        home.init()
        runtime = Runtime(home, durability="normal")
        try:
            operator = Client(runtime)
            for name in ("scout", "archivist", "courier"):
                operator.spawn_agent(name)
            say(f"idle: {presses} key presses at {SIZE[0]}x{SIZE[1]}")
            idle, idle_rows = asyncio.run(_sample(make_app(runtime), presses, lambda: True))

            say(f"load: {load_rate:g} events/s for {load_seconds:g} s from another process")
            before = runtime.log.head()[0]
            load = _start_load(home, load_rate, load_seconds)
            try:
                _wait_for_growth(runtime, before, load)
                started = time.monotonic()
                app = make_app(runtime)
                loaded, load_rows = asyncio.run(_sample(app, presses, lambda: load.poll() is None))
                during_s = time.monotonic() - started
            finally:
                load.wait()
            after = runtime.log.head()[0]
        finally:
            runtime.close()
    if not loaded:
        raise TokaError("the load ended before any key was measured; raise --seconds")
    return {
        "terminal": f"{SIZE[0]}x{SIZE[1]}",
        "idle": {**_summary(idle), "events_pane_rows": idle_rows},
        "load": {
            **_summary(loaded),
            "target_events_per_s": load_rate,
            "events_written": after - before,
            "events_per_s": round((after - before) / max(during_s, 1e-9), 1),
            "events_pane_rows": load_rows,
        },
        "max_rss_mb": _rss_mb(),
    }


def _start_load(home: Home, rate: float, seconds: float) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKA_")}
    command = [sys.executable, "-m", "toka", "--home", str(home.root), "--durability", "normal"]
    command += ["demo", "--load", f"{rate:g}", "--seconds", f"{seconds:g}", "--json"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_growth(runtime: Runtime, before: int, load: subprocess.Popen) -> None:
    deadline = time.monotonic() + LOAD_START_TIMEOUT_S
    while runtime.log.head()[0] <= before:
        if load.poll() is not None:
            err = load.stderr.read().decode() if load.stderr else ""
            raise TokaError(f"the load process exited early: {err.strip()}")
        if time.monotonic() > deadline:
            raise TokaError("the load process wrote nothing")
        time.sleep(0.05)
