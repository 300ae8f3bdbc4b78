"""AddMcpServerForm: register an MCP server, run from a command line (stdio) or reached
at a URL (streamable HTTP), with the secrets it gets by name.

The form checks what the console can know (the name, that the command line parses,
that each secret is set on this host); the kernel checks the rest. Either way the
problem is shown in the form, which stays open until the server is registered.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import NamedTuple

from textual.app import ComposeResult
from textual.widgets import Checkbox, Input

from toka.core.errors import InvalidInput
from toka.core.model import mcp, ops, places
from toka.tui.screens.forms import FormError, PendingForm, field_row

URL_SCHEMES = ("http://", "https://")
SECRETS_LISTED = 8  # the secrets of this host named in the hint


class McpServerRequest(NamedTuple):
    name: str
    command: list[str] | None  # a stdio server's command line, split
    url: str | None  # an HTTP server's endpoint
    env: dict[str, str]
    secrets: dict[str, str]  # environment variable (a command) or header (a URL) -> secret
    legacy: bool

    def operation(self) -> ops.RegisterMcpServer:
        http = self.url is not None
        return ops.RegisterMcpServer(
            name=self.name,
            transport="http" if http else "stdio",
            command=self.command,
            url=self.url,
            env=self.env,
            env_secrets={} if http else self.secrets,
            header_secrets=self.secrets if http else {},
            legacy=self.legacy,
        )


class AddMcpServerForm(PendingForm[McpServerRequest]):
    """Submitting hands the request to ``on_request`` (the action that opened the form
    signs and submits it) and keeps the form open: ``done`` closes it,
    ``refused`` shows why the kernel said no."""

    TITLE = "Add MCP server"
    AUTO_FOCUS = "#name"
    SUBMIT = "Add"
    WORKING = "registering…"

    def __init__(
        self,
        servers: list[str],
        secrets: list[str],
        on_request: Callable[[McpServerRequest], None],
    ):
        super().__init__(on_request)
        self.servers = set(servers)
        self.secrets = secrets

    def fields(self) -> ComposeResult:
        # Short hints: the whole form fits an 80x24 terminal, its error line included.
        yield from field_row(
            "Name",
            Input(id="name", placeholder="e.g. github", compact=True),
            "a-z, then a-z 0-9 _ -; its tools become NAME.TOOL",
        )
        yield from field_row(
            "Command or URL",
            Input(
                id="target", placeholder="npx -y some-mcp-server   or   https://…/mcp", compact=True
            ),
            "a command (split as a shell would), or an http(s) URL",
        )
        yield from field_row(
            "Environment",
            Input(id="env", placeholder="VAR=VALUE …", compact=True),
            "for a command; it is logged, so nothing secret",
        )
        known = ", ".join(self.secrets[:SECRETS_LISTED]) or "none (toka secret set NAME)"
        if len(self.secrets) > SECRETS_LISTED:
            known += f" and {len(self.secrets) - SECRETS_LISTED} more"
        yield from field_row(
            "Secrets",
            Input(id="secrets", placeholder="VAR=SECRET …", compact=True),
            f"env of a command, or headers to a URL; only names are logged. Set: {known}",
        )
        yield from field_row(
            "Legacy", Checkbox("a 2025-era server (the MCP SDK 1.x handshake)", id="legacy")
        )

    def collect(self) -> McpServerRequest:
        name = self.text("name", required="give the server a name, e.g. github")
        try:
            mcp.check_server_name(name)
        except InvalidInput as exc:
            raise FormError("name", exc.message) from None
        if name in self.servers:
            raise FormError("name", f"MCP server {name} is registered already: pick another name")
        target = self.text("target", required="give the command that runs it, or its URL")
        env = self._pairs("env", "environment")
        secrets = self._pairs("secrets", "secrets")
        unknown = [s for s in secrets.values() if s not in self.secrets]
        if unknown:
            raise FormError(
                "secrets",
                f"secret {unknown[0]} is not set on this host: toka secret set {unknown[0]}",
            )
        legacy = self.query_one("#legacy", Checkbox).value
        if target.lower().startswith(URL_SCHEMES):
            if env:
                raise FormError("env", "a URL gets no environment: give credentials as secrets")
            try:
                places.parse_url(target)
            except InvalidInput as exc:
                raise FormError("target", exc.message) from None
            return McpServerRequest(name, None, target, env, secrets, legacy)
        if "://" in target.split(" ", 1)[0]:
            raise FormError("target", "a server's URL starts with http:// or https://")
        try:
            command = shlex.split(target)
        except ValueError as exc:
            raise FormError("target", f"the command line does not parse: {exc}") from None
        return McpServerRequest(name, command, None, env, secrets, legacy)

    def _pairs(self, field: str, what: str) -> dict[str, str]:
        """``A=1 B='two words'`` (split as a shell would) as ``{"A": "1", "B": "two words"}``."""
        try:
            words = shlex.split(self.text(field))
        except ValueError as exc:
            raise FormError(field, f"{what}: {exc}") from None
        pairs: dict[str, str] = {}
        for word in words:
            key, sep, value = word.partition("=")
            if not sep or not key or not value:
                raise FormError(field, f"{what}: {word!r} is not NAME=VALUE")
            if key in pairs:
                raise FormError(field, f"{what}: {key} is given twice")
            pairs[key] = value
        return pairs
