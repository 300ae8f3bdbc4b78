"""The runtime: the writer of one home's log, and the principals that act through it.

``Runtime`` (``_runtime``) admits signed operations (``admission``), decides them with
the kernel and appends them to the log, group-committed (``pipeline``), with every
refusal audited (``refusals``); ``Outcome`` (``outcome``) is what an accepted one did.
``home`` holds the files, ``tokens`` the capability tokens, ``client`` signs for one
principal; ``view`` reads a home's state for commands that only list.

``Runtime`` and ``Outcome`` are imported on first use: importing ``toka.core.runtime.home``
or ``.view`` (this package first) must not import the writer's machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from toka.core.runtime._runtime import Runtime
    from toka.core.runtime.outcome import Outcome

__all__ = ["Outcome", "Runtime"]


def __getattr__(name: str):
    if name == "Runtime":
        from toka.core.runtime._runtime import Runtime

        return Runtime
    if name == "Outcome":
        from toka.core.runtime.outcome import Outcome

        return Outcome
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
