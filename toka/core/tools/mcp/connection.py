"""Connections to MCP servers: one long-lived client per server, shared by every caller.

The SDK is async (anyio); Toka's runner, CLI and console are threaded. Each connection
runs its ``Client`` in a task on its own event loop thread (an anyio blocking portal),
and callers on any thread send requests through the portal: concurrent calls to one
server travel over one connection, and a server that hangs holds up only the calls
sent to it (each is bounded by its own timeout). A connection starts on first use;
the pool stops it when it has been idle for a while, and replaces it when the server
went away. A stdio server's stderr goes to ``HOME/logs/mcp-<name>.log``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from toka.core.errors import TokaError, Unavailable
from toka.core.model.state import McpServer
from toka.core.runtime.home import SecretStore, private_dir
from toka.core.tools.mcp import sdk

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0
# How long a listing may take (a call's own time limit is its tool's).
LIST_TIMEOUT_S = 30.0
IDLE_S = 300.0
# What closing may take: the SDK gives a stdio server 2 s to leave after its stdin
# closes, then signals it.
CLOSE_TIMEOUT_S = 10.0
# Past a request's own timeout, how long to wait for the SDK to say so.
_SLACK_S = 5.0


class Lost(Exception):
    """The connection went away with a request in flight: nobody knows what the
    server did with it. ``timed_out`` when it did not answer in time."""

    def __init__(self, message: str, timed_out: bool = False):
        super().__init__(message)
        self.message = message
        self.timed_out = timed_out


class ProtocolError(Exception):
    """The server answered a request with a JSON-RPC error (``MCPError``)."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message


class Listing(NamedTuple):
    """What a server offers now: each tool's definition in wire form, by name."""

    protocol: str
    tools: dict[str, dict[str, Any]]


def log_path(logs: Path, server: str) -> Path:
    return logs / f"mcp-{server}.log"


def leaf_message(exc: BaseException) -> str:
    """The message of the first real error in ``exc``: the SDK's errors come wrapped in
    anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."


class Connection:
    """One open ``Client`` to one server (see the module)."""

    def __init__(self, server: McpServer, secrets: SecretStore, logs: Path):
        self.server = server
        self._secrets = secrets
        self._logs = logs
        self._portal_cm: Any = None
        self._portal: Any = None
        self._client: Any = None
        self._protocol = ""
        self._stop: Any = None
        self._holder: concurrent.futures.Future[Any] | None = None
        self._lock = threading.Lock()
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.broken = False

    # -- lifecycle ------------------------------------------------------------------

    def open(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Start the server (stdio) or reach it (http), and negotiate; Unavailable if
        that fails or takes longer than ``timeout_s``."""
        sdk.require()
        from anyio.from_thread import start_blocking_portal

        self._portal_cm = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        ready: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._holder = self._portal.start_task_soon(self._hold, ready)
        try:
            self._client, self._stop = ready.result(timeout=timeout_s)
            # Kept now: once the connection is lost the SDK's client has no session left
            # to ask, and a lost call's record still names the protocol it spoke.
            self._protocol = str(getattr(self._client, "protocol_version", "") or "")
        except concurrent.futures.TimeoutError:
            self._abort()
            raise Unavailable(
                f"MCP server {self.server.name} did not answer within {timeout_s:g} s "
                f"(its stderr: {log_path(self._logs, self.server.name)})"
            ) from None
        except TokaError:
            self._abort()
            raise
        except BaseException as exc:
            self._abort()
            raise Unavailable(
                f"MCP server {self.server.name} could not be reached: {leaf_message(exc)}"
                + self._stderr_hint()
            ) from None

    def _stderr_hint(self) -> str:
        if self.server.transport != "stdio":
            return ""
        return f" (its stderr: {log_path(self._logs, self.server.name)})"

    async def _hold(self, ready: concurrent.futures.Future[Any]) -> None:
        """The task that owns the client: enters it, hands it out, and exits it when
        asked (anyio wants a context entered and left by one task)."""
        import anyio

        stop = anyio.Event()
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await stack.enter_async_context(await self._client_for(stack))
                ready.set_result((client, stop))
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                self.broken = True
                log.warning(
                    "MCP server %s: connection ended: %s", self.server.name, leaf_message(exc)
                )
            if not isinstance(exc, Exception):
                raise

    async def _client_for(self, stack: contextlib.AsyncExitStack) -> Any:
        from mcp import Client

        mode = "legacy" if self.server.legacy else "auto"
        server = self.server
        if server.transport == "stdio":
            from mcp import StdioServerParameters
            from mcp.client.stdio import stdio_client

            assert server.command
            env = dict(server.env)
            for variable, secret in server.env_secrets.items():
                env[variable] = self._secret(secret)
            params = StdioServerParameters(
                command=server.command[0], args=server.command[1:], env=env
            )
            path = log_path(self._logs, server.name)
            private_dir(self._logs)
            # Owner-only: a server may print what it was given.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            errlog = stack.enter_context(os.fdopen(fd, "a", encoding="utf-8"))
            return Client(stdio_client(params, errlog=errlog), mode=mode, cache=None)
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        headers = {name: self._secret(secret) for name, secret in server.header_secrets.items()}
        http = await stack.enter_async_context(create_mcp_http_client(headers=headers))
        assert server.url is not None
        return Client(streamable_http_client(server.url, http_client=http), mode=mode, cache=None)

    def _secret(self, name: str) -> str:
        try:
            return self._secrets.get(name).decode()
        except TokaError as exc:
            raise Unavailable(f"MCP server {self.server.name}: {exc.message}") from None

    def _abort(self) -> None:
        if self._holder is not None:
            self._holder.cancel()
        self._exit_portal()

    def _exit_portal(self) -> None:
        if self._portal_cm is not None:
            with contextlib.suppress(Exception):
                self._portal_cm.__exit__(None, None, None)
            self._portal_cm = self._portal = None

    def close(self) -> None:
        """Leave the client (a stdio server is stopped) and end its event loop."""
        self.broken = True
        with self._lock:
            portal, stop, holder = self._portal, self._stop, self._holder
            self._stop = None
        if portal is None:
            return
        if stop is not None:
            with contextlib.suppress(Exception):
                portal.call(stop.set)
        if holder is not None:
            try:
                holder.result(timeout=CLOSE_TIMEOUT_S)
            except concurrent.futures.TimeoutError:
                holder.cancel()
            except BaseException as exc:
                log.debug("MCP server %s closed: %s", self.server.name, leaf_message(exc))
        self._exit_portal()

    # -- requests -------------------------------------------------------------------

    def _request(self, make: Callable[[], Any], timeout_s: float, what: str) -> Any:
        """Run the SDK coroutine ``make()`` on this connection; at most ``timeout_s``."""
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        if self.broken or self._portal is None:
            raise Lost(f"the connection to MCP server {self.server.name} is closed")
        with self._lock:
            self.in_flight += 1
            self.last_used = time.monotonic()
        try:
            future = self._portal.start_task_soon(make)
            try:
                return future.result(timeout=timeout_s + _SLACK_S)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise Lost(f"{what}: no answer within {timeout_s:g} s", timed_out=True) from None
            except MCPError as exc:
                if exc.error.code == REQUEST_TIMEOUT:
                    raise Lost(
                        f"{what}: no answer within {timeout_s:g} s", timed_out=True
                    ) from None
                if exc.error.code == CONNECTION_CLOSED:
                    self.broken = True
                    raise Lost(
                        f"{what}: MCP server {self.server.name} closed the connection"
                        + self._stderr_hint()
                    ) from None
                raise ProtocolError(exc.error.code, exc.error.message) from None
            except (concurrent.futures.CancelledError, RuntimeError, OSError) as exc:
                self.broken = True
                raise Lost(f"{what}: the connection failed: {leaf_message(exc)}") from None
            except BaseExceptionGroup as exc:
                self.broken = True
                raise Lost(f"{what}: the connection failed: {leaf_message(exc)}") from None
        finally:
            with self._lock:
                self.in_flight -= 1
                self.last_used = time.monotonic()

    def list_tools(self, timeout_s: float = LIST_TIMEOUT_S) -> Listing:
        """Every tool the server offers now (all pages), uncached."""
        client = self._client
        tools: dict[str, dict[str, Any]] = {}
        cursor = None
        for _ in range(1000):
            page = self._request(
                lambda c=cursor: client.list_tools(cursor=c, cache_mode="bypass"),
                timeout_s,
                f"listing the tools of {self.server.name}",
            )
            for tool in page.tools:
                tools[tool.name] = tool.model_dump(by_alias=True, exclude_none=True, mode="json")
            cursor = page.next_cursor
            if not cursor:
                break
        return Listing(str(client.protocol_version), tools)

    def call_tool(
        self, name: str, args: dict[str, Any], timeout_s: float, meta: dict[str, Any]
    ) -> dict[str, Any]:
        """Call ``name``; the result in wire form. Lost when the server went away or did
        not answer within ``timeout_s``; ProtocolError when it refused the request."""
        client = self._client
        result = self._request(
            lambda: client.call_tool(name, args, read_timeout_seconds=timeout_s, meta=meta),
            timeout_s,
            f"calling {name} on {self.server.name}",
        )
        return result.model_dump(by_alias=True, exclude_none=True, mode="json")

    @property
    def protocol(self) -> str:
        """The protocol version negotiated when the connection opened."""
        return self._protocol


class Pool:
    """The open connections of one runtime, by server name; idle ones are stopped."""

    def __init__(self, secrets: SecretStore, logs: Path, idle_s: float = IDLE_S):
        self._secrets = secrets
        self._logs = logs
        self.idle_s = idle_s
        self._open: dict[str, Connection] = {}
        self._lock = threading.Lock()
        self._starting: dict[str, threading.Lock] = {}
        self._reaper: threading.Thread | None = None
        self._closed = threading.Event()

    def connection(self, server: McpServer) -> Connection:
        """The open connection to ``server`` (started now if there is none, or if the
        one there was is broken or was registered differently)."""
        with self._lock:
            start_lock = self._starting.setdefault(server.name, threading.Lock())
        with start_lock:
            with self._lock:
                current = self._open.get(server.name)
            if current is not None and not current.broken and current.server == server:
                return current
            if current is not None:
                self._retire(server.name, current)
            fresh = Connection(server, self._secrets, self._logs)
            fresh.open()
            with self._lock:
                self._open[server.name] = fresh
                self._start_reaper()
            return fresh

    def listing(self, server: McpServer) -> tuple[Connection, Listing]:
        """An open connection to ``server`` and what it offers now. A connection that
        was lost while idle (the server exited) is replaced once: listing is safe to
        repeat."""
        connection = self.connection(server)
        try:
            return connection, connection.list_tools()
        except Lost as exc:
            if exc.timed_out:
                raise
        self._retire(server.name, connection)
        connection = self.connection(server)
        return connection, connection.list_tools()

    def _retire(self, name: str, connection: Connection) -> None:
        with self._lock:
            if self._open.get(name) is connection:
                del self._open[name]
        threading.Thread(target=connection.close, name=f"mcp-close-{name}", daemon=True).start()

    def restart_if_idle(self, name: str) -> None:
        """After a call timed out: start afresh next time, unless other calls still
        wait on this connection (a hung server then answers none of them in time)."""
        with self._lock:
            current = self._open.get(name)
        if current is not None and current.in_flight == 0:
            self._retire(name, current)

    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap, name="mcp-idle", daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        while not self._closed.wait(min(self.idle_s / 4, 30.0)):
            now = time.monotonic()
            with self._lock:
                idle = [
                    (name, c)
                    for name, c in self._open.items()
                    if c.in_flight == 0 and now - c.last_used >= self.idle_s
                ]
            for name, connection in idle:
                log.info("MCP server %s idle: stopping it", name)
                self._retire(name, connection)

    def open_servers(self) -> list[str]:
        with self._lock:
            return sorted(self._open)

    def close(self) -> None:
        """Close every connection, side by side (a hung server takes a few seconds to
        stop), and wait for them to end."""
        self._closed.set()
        with self._lock:
            connections = list(self._open.values())
            self._open.clear()
        closing = [
            threading.Thread(target=c.close, name=f"mcp-close-{c.server.name}", daemon=True)
            for c in connections
        ]
        for thread in closing:
            thread.start()
        for thread in closing:
            thread.join(CLOSE_TIMEOUT_S + 5)
