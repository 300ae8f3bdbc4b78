"""The runtime: the writer of one home's log, and the principals that act through it."""

from toka.core.runtime._runtime import Outcome, Runtime, fold

__all__ = ["Outcome", "Runtime", "fold"]
