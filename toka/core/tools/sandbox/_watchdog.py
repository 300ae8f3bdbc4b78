"""The epoch watchdog: what turns a tool's wall-clock timeout into an interrupt."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any


class Watchdog:
    """Ticks ``engine.increment_epoch()`` every ``period`` seconds while calls are running.

    Idle (no active calls) it sleeps on a condition variable; it exits once the
    owning sandbox has been garbage collected.
    """

    def __init__(self, engine: Any, period: float) -> None:
        self.engine = engine
        self.period = period
        self.active = 0
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None

    def enter(self) -> None:
        with self.cond:
            self.active += 1
            if self.thread is None:
                self.thread = threading.Thread(
                    target=Watchdog._loop,
                    args=(weakref.ref(self), self.cond, self.period),
                    name="toka-wasm-watchdog",
                    daemon=True,
                )
                self.thread.start()
            elif self.active == 1:
                self.cond.notify()

    def exit(self) -> None:
        with self.cond:
            self.active -= 1

    @staticmethod
    def _loop(ref: weakref.ref[Watchdog], cond: threading.Condition, period: float) -> None:
        while True:
            with cond:
                while True:
                    dog = ref()
                    if dog is None:
                        return
                    if dog.active > 0:
                        break
                    del dog
                    cond.wait(1.0)
            engine = dog.engine
            del dog
            time.sleep(period)
            engine.increment_epoch()
            del engine
