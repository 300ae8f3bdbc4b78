"""The headless core: identities, tokens, operations, kernel, event log and runtime.

Nothing under ``toka.core`` imports Textual.
"""
