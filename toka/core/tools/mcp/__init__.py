"""MCP servers as Toka tools: connections, definitions and pins, calls, imports.

An MCP server is registered by the operator (``mcp.register``); its tools are imported
as tools of kind ``mcp`` named ``<server>.<tool>``, each pinned to the definition the
operator saw. A call is an ordinary ``tool.invoke`` with an effect: the kernel checks
the grant, the budgets and the arguments against the pinned schema, and commits the
intent; then the host compares the server's definition with the pin, sends the call
over one long-lived connection per server (``connection``), and states the outcome
with an ``mcp.called`` record whose arguments and result are blobs (``perform``).

The ``mcp`` SDK is an optional extra (``toka[mcp]``): it is imported only here, when a
server is first reached (``sdk``).
"""
