"""McpActions: the console's MCP actions, registering a server and importing its tools.

Like the other actions, each opens a form and submits through the console's Client in
a worker (``OperatorActions.submit``); reaching a server (to list what it offers, or to
import) happens only in workers too. What the kernel or the server refuses is shown
in the form, which stays open until the action is done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work

from toka.core.model.mcp import split_tool_name
from toka.core.model.state import McpServer
from toka.tui.feed import World
from toka.tui.screens.mcp_import_form import ImportMcpToolsForm, ImportRequest
from toka.tui.screens.mcp_server_form import AddMcpServerForm, McpServerRequest

if TYPE_CHECKING:  # loading the tool runner waits until a server is reached
    from toka.core.tools.mcp.importing import Imported, Offer


class McpActions:
    """The MCP half of ConsoleScreen's actions: a mixin that uses ``submit`` (from
    OperatorActions), the screen's ``console`` (the app's ConsoleHost services),
    ``world`` and ``selected_tool()``."""

    world: World | None

    def action_add_mcp_server(self) -> None:
        self._prepare_add_server()

    @work(thread=True, group="mcp-form")
    def _prepare_add_server(self) -> None:
        """The servers, and this host's secret names (a directory listing: not in a handler)."""
        assert self.world is not None
        servers = [s.name for s in self.world.mcp_servers()]
        secrets = sorted(self.console.client.runtime.home.secrets.names())
        self.app.call_from_thread(self._open_add_server, servers, secrets)

    def _open_add_server(self, servers: list[str], secrets: list[str]) -> None:
        form: AddMcpServerForm

        def register(req: McpServerRequest) -> None:
            self.submit(
                "Add MCP server",
                lambda c: c.submit(req.operation()),
                lambda o: (
                    f"registered MCP server {req.name} at seq {o.last_seq}; "
                    "next: ctrl+p, Import MCP tools"
                ),
                on_done=lambda _: form.done() if form.is_attached else None,
                on_refused=lambda exc: form.refused(exc.message) if form.is_attached else None,
            )

        form = AddMcpServerForm(servers, secrets, register)
        self.app.push_screen(form)

    def action_import_mcp_tools(self) -> None:
        """Open the import form on the selected row's server (or the first one)."""
        row = self.selected_tool()
        selected = None
        if row is not None and row.is_server:
            selected = row.name
        elif row is not None and (split := split_tool_name(row.name)) is not None:
            selected = split[0]
        self._prepare_import(selected)

    @work(thread=True, group="mcp-form")
    def _prepare_import(self, selected: str | None) -> None:
        from toka.core.tools.mcp.importing import DEFAULT_SIDE_EFFECT

        assert self.world is not None
        servers = self.world.mcp_servers()
        if servers:
            self.app.call_from_thread(self._open_import, servers, selected, DEFAULT_SIDE_EFFECT)

    def _open_import(self, servers: list[McpServer], selected: str | None, cls: str) -> None:
        form: ImportMcpToolsForm
        host = self.console

        def fetch(server: str) -> list[Offer]:
            """What ``server`` offers now, against the state the console submits on."""
            with host.submit_lock:
                host.client.runtime.catch_up()
                return host.mcp_offers(host.client.runtime, server)

        def request(req: ImportRequest) -> None:
            from toka.core.tools.mcp.importing import import_tools

            self.submit(
                "Import MCP tools",
                lambda c: import_tools(
                    c,
                    req.server,
                    req.tools,
                    side_effect=req.side_effect,
                    accept_changed=req.accept_changed,
                ),
                lambda done: imported_text(req.server, done),
                on_done=lambda _: form.done() if form.is_attached else None,
                on_refused=lambda exc: form.refused(exc.message) if form.is_attached else None,
            )

        form = ImportMcpToolsForm(servers, selected, cls, fetch, request)
        self.app.push_screen(form)


def imported_text(server: str, done: list[Imported]) -> str:
    """``from notes: notes.send_note@1.1.0 (new version), notes.wordcount@1.0.0 (unchanged)``"""
    return f"from {server}: " + ", ".join(f"{d.name}@{d.version} ({d.status})" for d in done)
