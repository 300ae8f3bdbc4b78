"""A home's world state and log, read-only: what a listing command needs, not a Runtime.

``toka agent list`` needs the state exactly as a ``Runtime`` would load it: the newest
snapshot that checks out against its signed checkpoint, then the tail of the log folded
onto it (which checks that each event links to the chain). Building a ``Runtime`` does
that too, but imports and sets up what only writing needs (admission, tokens, the
commit pipeline, every rule of the kernel): more time than the listing itself.
``StateView`` does the reading only, with the same checks and the same errors, and
imports the kernel (its evolvers) only when there is a tail to fold.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from toka.core.log import snapshots
from toka.core.log.store import Store
from toka.core.runtime.home import Config, Home


class StateView:
    """The state of ``home`` at its head when opened, and its log for queries."""

    def __init__(
        self, home: Home, *, durability: str | None = None, clock: Callable[[], float] = time.time
    ):
        # As Runtime opens a home: the same checks, in the same order, the same log.
        home.require()
        self.home = home
        self.config: Config = home.config()
        self.clock = clock
        self.log: Store = home.open_store(durability or self.config.durability)
        try:
            self.state, self.head_hash = snapshots.load_state(
                self.log, self.home.kernel_public_key()
            )
            home.secret()  # a Runtime refuses a home whose kernel secret is missing or short
        except BaseException:
            self.log.close()
            raise

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def close(self) -> None:
        self.log.close()

    def __enter__(self) -> StateView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
