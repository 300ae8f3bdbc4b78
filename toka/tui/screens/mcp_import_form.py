"""ImportMcpToolsForm: what a registered MCP server offers now, against what was imported,
and which of its tools to import, with which side-effect class.

Listing a server's offers reaches it (or starts it), so the form asks for them through
``fetch`` in a worker and says meanwhile that it is connecting; a server that cannot be
reached is reported in the form. Everything a server says (names, descriptions,
annotations) is shown literally.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Checkbox, Label, Select, SelectionList, Static
from textual.widgets.selection_list import Selection

from toka.core.errors import TokaError
from toka.core.model.state import McpServer
from toka.tui.effect_view import CLASS_MEANING
from toka.tui.literal import literal
from toka.tui.screens.forms import FormError, PendingForm, field_row
from toka.tui.tool_view import PIN_SHOWN, server_target
from toka.tui.view import pretty_json

if TYPE_CHECKING:  # loading the tool runner waits until a server is reached
    from toka.core.tools.mcp.importing import Offer

log = logging.getLogger(__name__)

# What an imported tool may do to the world: never "none" (the server is not trusted to
# say its tool computes only).
IMPORT_CLASSES = ("read_only", "idempotent", "external", "privileged")
STATUS_STYLES = {"new": "green", "imported": "dim", "changed": "bold yellow", "unnamable": "red"}
STATUS_MEANING = {
    "new": "never imported",
    "imported": "imported with this very definition",
    "changed": "imported, but the server's definition changed: its calls fail until you "
    "import it again, as a new version",
    "unnamable": "its name cannot be a Toka tool name: it cannot be imported",
}

OffersFetch = Callable[[str], "list[Offer]"]  # a server's offers, fetched in a worker


class ImportRequest(NamedTuple):
    server: str
    tools: list[str]  # the server's names for them
    side_effect: str
    accept_changed: bool


def offer_line(offer: Offer, width: int) -> Text:
    """``send_note  changed  3f2a9c1b4d5e  Append a note…``: one line, shown literally."""
    description = str(offer.definition.get("description") or "").strip()
    first = description.splitlines()[0] if description else ""
    return Text.assemble(
        literal(f"{offer.remote:<{width}}  ", "bold"),
        literal(f"{offer.status:<9}  ", STATUS_STYLES.get(offer.status, "")),
        literal(f"{offer.pin[:PIN_SHOWN]}  ", "dim"),
        literal(first),
    )


def offer_about(offer: Offer) -> Text:
    """One offer in full: its Toka name, how it stands, its pin, description and hints."""
    definition = offer.definition
    toka = f"{offer.name}@{offer.version}" if offer.version else (offer.name or "-")
    text = Text.assemble(
        literal(toka, "bold"),
        "  ",
        literal(f"{offer.status}: {STATUS_MEANING.get(offer.status, '')}"),
        "\n",
        literal(f"pin {offer.pin}", "dim"),
        "\n",
    )
    text.append(literal(str(definition.get("description") or "(no description)"), multiline=True))
    annotations = definition.get("annotations")
    if annotations:
        text.append("\nhints (not trusted): ", "dim")
        text.append(literal(pretty_json(annotations), multiline=True))
    return text


class ImportMcpToolsForm(PendingForm[ImportRequest]):
    """Submitting hands the request to ``on_request`` (the action that opened the form
    imports in a worker) and keeps the form open: ``done`` closes it, ``refused``
    shows why the import did not happen."""

    TITLE = "Import MCP tools"
    AUTO_FOCUS = "#offers"
    SUBMIT = "Import"
    WORKING = "importing…"

    def __init__(
        self,
        servers: list[McpServer],
        selected: str | None,
        side_effect: str,
        fetch: OffersFetch,
        on_request: Callable[[ImportRequest], None],
    ):
        super().__init__(on_request)
        self.servers = servers
        names = [s.name for s in servers]
        self.selected = selected if selected in names else names[0]
        self.side_effect = side_effect  # the class preselected
        self.fetch = fetch
        self.offers: dict[str, Offer] = {}
        self.requested: str | None = None  # the server whose offers are asked for
        self.loaded_from: str | None = None  # the server the offers shown are from

    def fields(self) -> ComposeResult:
        with Horizontal(classes="field"):
            yield Label("Server", classes="field-label")
            with Vertical(classes="field-input"):
                yield Select(
                    [(literal(f"{s.name} ({s.transport})"), s.name) for s in self.servers],
                    id="server",
                    allow_blank=False,
                    value=self.selected,
                    compact=True,
                )
                # its command line or URL: what is run, or reached, to list its tools
                yield Static(self._target(self.selected), id="server-about", classes="field-hint")
        yield Static(id="offers-status", classes="field-hint")
        yield SelectionList[str](id="offers")
        yield Static(id="offer-about", classes="offer-about")
        with Horizontal(classes="field"):
            yield Label("Side effect", classes="field-label")
            with Vertical(classes="field-input"):
                yield Select(
                    [(Text(c), c) for c in IMPORT_CLASSES],
                    id="side-effect",
                    allow_blank=False,
                    value=self.side_effect,
                    compact=True,
                )
                yield Static(
                    CLASS_MEANING[self.side_effect], id="side-effect-about", classes="field-hint"
                )
        yield from field_row(
            "Changed",
            Checkbox("accept changed definitions (as new versions)", id="accept"),
        )

    def on_mount(self) -> None:
        self._load(self.selected)

    def _target(self, name: str) -> Text:
        server = next(s for s in self.servers if s.name == name)
        return literal(server_target(server))

    # -- the offers -----------------------------------------------------------------------

    def _load(self, server: str) -> None:
        self.offers, self.requested, self.loaded_from = {}, server, None
        self.query_one("#offers", SelectionList).clear_options()
        self.query_one("#offer-about", Static).update("")
        self.query_one("#offers-status", Static).update(
            literal(f"connecting to {server}…", "italic")
        )
        self._fetch(server)

    @work(thread=True, exclusive=True, group="mcp-offers")
    def _fetch(self, server: str) -> None:
        try:
            offers = self.fetch(server)
        except TokaError as exc:
            self.app.call_from_thread(self._failed, server, exc.message)
            return
        except Exception as exc:
            # A bug, not a refusal: keep the console up and say what broke.
            log.exception("listing the tools of %s failed", server)
            self.app.call_from_thread(self._failed, server, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._show, server, offers)

    def _failed(self, server: str, message: str) -> None:
        if self.is_attached and server == self.requested:
            status = literal(f"✗ cannot list the tools of {server}: {message}", "bold red")
            self.query_one("#offers-status", Static).update(status)

    def _show(self, server: str, offers: list[Offer]) -> None:
        if not self.is_attached or server != self.requested:
            return  # closed meanwhile, or another server was picked
        self.offers = {o.remote: o for o in offers}
        self.loaded_from = server
        counts = {s: sum(o.status == s for o in offers) for s in STATUS_MEANING}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no tools"
        toggle = " · space toggles one" if offers else ""
        self.query_one("#offers-status", Static).update(
            literal(f"{server} offers {len(offers)} tools: {summary}{toggle}", "dim")
        )
        width = max((len(o.remote) for o in offers), default=0)
        listing = self.query_one("#offers", SelectionList)
        listing.add_options(
            Selection(
                offer_line(o, width),
                o.remote,
                initial_state=o.status == "new",
                disabled=o.status == "unnamable",
            )
            for o in offers
        )
        listing.highlighted = next(
            (i for i, o in enumerate(offers) if o.status != "unnamable"), None
        )

    @on(SelectionList.SelectionHighlighted, "#offers")
    def _highlighted(self, event: SelectionList.SelectionHighlighted) -> None:
        offer = self.offers.get(str(event.selection.value))
        if offer is not None:
            self.query_one("#offer-about", Static).update(offer_about(offer))

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "server" and event.value is not Select.NULL:
            if str(event.value) != self.requested:
                self.query_one("#server-about", Static).update(self._target(str(event.value)))
                self._load(str(event.value))
        elif event.select.id == "side-effect" and event.value is not Select.NULL:
            about = self.query_one("#side-effect-about", Static)
            about.update(CLASS_MEANING[str(event.value)])

    # -- submitting -----------------------------------------------------------------------

    def collect(self) -> ImportRequest:
        server = self.choice("server", "pick a server")
        if self.loaded_from != server:
            raise FormError("offers", f"the tools of {server} are not listed yet")
        names = list(self.query_one("#offers", SelectionList).selected)
        if not names:
            raise FormError("offers", "pick at least one tool to import (space toggles it)")
        changed = [n for n in names if self.offers[n].status == "changed"]
        if changed and not self.query_one("#accept", Checkbox).value:
            raise FormError(
                "accept",
                f"the definition of {', '.join(changed)} changed since it was imported: "
                "review it, then accept changed definitions to import it as a new version",
            )
        side_effect = self.choice("side-effect", "pick a side-effect class")
        return ImportRequest(server, names, side_effect, self.query_one("#accept", Checkbox).value)
