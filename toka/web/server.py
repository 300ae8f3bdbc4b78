"""The console's web server: an aiohttp app around textual-serve's ``AppService``.

Routes: ``/`` (the page), ``/ws`` (one ``toka tui`` child per connection, at most
``max_sessions`` at once) and ``/static`` (textual-serve's xterm.js bundle). The gate
(:mod:`toka.web.gate`) is the app's middleware. textual-serve is pinned to a minor
version (``>=1.1.3,<1.2``): ``ChildSession`` overrides two of ``AppService``'s methods.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import textual_serve
from aiohttp import WSMsgType, web
from aiohttp.abc import AbstractAccessLogger
from textual_serve.app_service import AppService
from textual_serve.download_manager import DownloadManager

from toka.core.model.text import visible
from toka.web import page
from toka.web.gate import WEBSOCKET_PATH, Gate

log = logging.getLogger("toka.web")
STATIC = Path(textual_serve.__file__).parent / "static"
MAX_MESSAGE_BYTES = 64 * 1024
MAX_CELLS = 1000  # a terminal dimension larger than this is a mistake or an attack
STOP_TIMEOUT_S = 10.0


class SessionChange(NamedTuple):
    """A browser session started or ended; ``active`` counts sessions after the change."""

    started: bool
    active: int
    peer: str


SessionListener = Callable[[SessionChange], None]


class ChildSession(AppService):
    """One console child: started with the environment Toka chose (not the server's
    whole environment), and its websocket closed when the child ends, however it ends."""

    def __init__(self, command: str, environment: Mapping[str, str], **kwargs) -> None:
        super().__init__(command, **kwargs)
        self.environment = dict(environment)

    def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
        env = super()._build_environment(width, height)
        textual = {k: v for k, v in env.items() if k.startswith(("TEXTUAL", "TERM_PROGRAM"))}
        return {**self.environment, **textual, "COLUMNS": str(width), "ROWS": str(height)}

    async def run(self) -> None:
        await super().run()
        await self.remote_close()

    def kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()


def cells(value: object, default: int) -> int:
    """A terminal dimension from the browser: an int in 1..MAX_CELLS, else ``default``."""
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default
    return number if 1 <= number <= MAX_CELLS else default


class WebConsole:
    """The console served to browsers: what each session runs, with which environment,
    behind which gate, how many at once."""

    def __init__(
        self,
        *,
        command: str,
        environment: Mapping[str, str],
        gate: Gate,
        principal: str,
        max_sessions: int,
        title: str = "Toka console",
    ) -> None:
        self.command = command
        self.environment = dict(environment)
        self.gate = gate
        self.principal = principal
        self.max_sessions = max_sessions
        self.title = title
        self.active = 0
        # Called on every session start and end (a metrics exporter hooks in here).
        self.listeners: list[SessionListener] = []
        self._sockets: set[web.WebSocketResponse] = set()
        self._downloads = DownloadManager()

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.gate.middleware])
        app.on_response_prepare.append(self.gate.add_headers)
        app.on_shutdown.append(self._close_sessions)
        app.add_routes(
            [
                web.get("/", self.page),
                web.get(WEBSOCKET_PATH, self.websocket),
                web.static("/static", STATIC),
            ]
        )
        return app

    async def page(self, request: web.Request) -> web.Response:
        scheme = "wss" if self.gate.public.secure else "ws"
        origin = self.gate.public.origin
        return web.Response(
            content_type="text/html",
            text=page.render(
                title=self.title,
                principal=self.principal,
                websocket_url=f"{scheme}{origin[origin.index(':') :]}{WEBSOCKET_PATH}",
                font_size=cells(request.query.get("fontsize"), 16),
            ),
        )

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if self.active >= self.max_sessions:
            return web.Response(
                status=503,
                text=f"too many console sessions: {self.max_sessions} are open "
                "(--max-sessions); close one and reload",
            )
        # Counted before the first await, so two racing connections cannot both pass.
        self.active += 1
        peer = request.remote or "?"
        ws = web.WebSocketResponse(heartbeat=15, max_msg_size=MAX_MESSAGE_BYTES)
        session: ChildSession | None = None
        try:
            await ws.prepare(request)
            self._sockets.add(ws)
            session = ChildSession(
                self.command,
                self.environment,
                write_bytes=ws.send_bytes,
                write_str=ws.send_str,
                close=ws.close,
                download_manager=self._downloads,
            )
            await session.start(
                cells(request.query.get("width"), 80), cells(request.query.get("height"), 24)
            )
            self._changed(SessionChange(True, self.active, peer))
            await self._relay(ws, session)
        finally:
            self._sockets.discard(ws)
            if session is not None:
                await self._stop(session)
            self.active -= 1
            if session is not None:
                self._changed(SessionChange(False, self.active, peer))
        return ws

    async def _relay(self, ws: web.WebSocketResponse, session: ChildSession) -> None:
        """Browser messages to the child: keys, size, focus; anything else is ignored."""
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                envelope = json.loads(message.data)
            except ValueError:
                continue
            if not isinstance(envelope, list) or not envelope:
                continue
            kind, data = envelope[0], envelope[1] if len(envelope) > 1 else None
            if kind == "stdin" and isinstance(data, str):
                await session.send_bytes(data.encode("utf-8", "replace"))
            elif kind == "resize" and isinstance(data, dict):
                await session.set_terminal_size(
                    cells(data.get("width"), 80), cells(data.get("height"), 24)
                )
            elif kind == "ping":
                await ws.send_json(["pong", data])
            elif kind == "blur":
                await session.blur()
            elif kind == "focus":
                await session.focus()

    async def _stop(self, session: ChildSession) -> None:
        """Ask the child to quit; kill it if it has not within ``STOP_TIMEOUT_S``."""
        try:
            await asyncio.wait_for(session.stop(), STOP_TIMEOUT_S)
        except (TimeoutError, ConnectionError):
            session.kill()

    async def _close_sessions(self, app: web.Application) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server stopping")

    def _changed(self, change: SessionChange) -> None:
        log.info(
            "session %s for %s (%d of %d open)",
            "started" if change.started else "ended",
            change.peer,
            change.active,
            self.max_sessions,
        )
        for listener in self.listeners:
            listener(change)


class AccessLogger(AbstractAccessLogger):
    """One line per request without the query string: the token never reaches a log."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d", request.remote, request.method, request.path, response.status
        )


class InertFormatter(logging.Formatter):
    """Log lines carry what browsers sent (paths, peers): shown, never obeyed."""

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record))


def configure_logging(stream) -> None:
    """The server's log (requests, sessions, textual-serve's errors) to ``stream``."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(InertFormatter("toka web: %(message)s"))
    for name in ("toka.web", "textual-serve", "aiohttp"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def serve(console: WebConsole, sock: socket.socket) -> None:
    """Run until SIGINT or SIGTERM; sessions are closed (their children quit) on the way out."""
    web.run_app(
        console.make_app(),
        sock=sock,
        access_log_class=AccessLogger,
        access_log=logging.getLogger("toka.web.access"),
        print=None,
        shutdown_timeout=5,
    )
