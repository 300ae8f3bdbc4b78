"""Toka: an agent runtime with signed operations, capability tokens and a tamper-evident log."""

__version__ = "0.1.0"
