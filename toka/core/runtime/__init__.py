"""The runtime: the writer of one home's log, and the principals that act through it.

``Runtime`` (``_runtime``) admits signed operations (``admission``), decides them with
the kernel and appends them to the log, group-committed (``pipeline``), with every
refusal audited (``refusals``); ``Outcome`` (``outcome``) is what an accepted one did.
``home`` holds the files, ``tokens`` the capability tokens, ``client`` signs for one
principal.
"""

from toka.core.runtime._runtime import Runtime
from toka.core.runtime.outcome import Outcome

__all__ = ["Outcome", "Runtime"]
