"""The headless core of Toka, in layers that import only downward.

From the bottom (each layer may import the ones below it, never one above):

- ``errors``: one exception class per refusal, and the CLI's exit codes.
- ``model``: the vocabulary. Capabilities, keys and signatures, the world state,
  operations and events. Data and its checks: no files, no clock. Beside it,
  ``durations`` and ``typed_toml`` parse what people type and write.
- ``kernel``: the pure rules. ``kernel/__init__.py`` holds the two tables: the
  decider of every operation type and the evolver of every event kind, one module per
  domain (``agents``, ``tasks``, ``grants``, ``tools``, ``approvals``).
- ``log``: the APSW event log. Storage and the hash chain, checkpoint records,
  snapshots, folding, following, auditing. It decides nothing.
- ``runtime``: the writer of one home and the principals that act through it.
  Admission, group commit, refusals, outcomes, the home, tokens, the client.
- ``tools``: running tools. Manifests, the native built-ins, the WASM sandbox and
  the tool runner.
- ``approvals``: acting on the approval queue (its rules are in the kernel).
- ``agents``: durable task steps, the runner, behaviours.
- ``demo``, ``bench``, ``describe`` and ``gateway``: what the faces use on top.
  ``describe`` holds the one-line texts shared by the CLI and the console;
  ``gateway`` serves a principal's tools to MCP hosts (``toka mcp serve``).

Nothing under ``toka.core`` imports Textual, the console (``toka.tui``) or the CLI
(``toka.cli``). The rule is kept by import contracts in ``pyproject.toml``, checked
by ``tests/test_layout.py`` together with "no import cycle anywhere in ``toka``".
"""
