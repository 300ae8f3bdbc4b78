"""Text that came from the log, made fit to show: exactly as written, never markup, never
terminal control.

Agents pick their own names, descriptions, payloads and results, so any of it may look
like markup (``evil[/]``, ``[@click=app.quit]x[/]``) or hold terminal control sequences
(``\\x1b]0;title\\x07``). Textual and Rich parse a plain ``str`` as markup almost
everywhere (Static, Label, DataTable cells, Select options, Checkbox labels, border
titles, toasts), and they strip only a few control codes, letting ESC through to the
terminal. So every such string reaches a widget through this module: as a Rich ``Text``
(never parsed) with each control character written as a visible escape (``\\x1b``).
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

from toka.core.model.text import escape_named as _escape
from toka.core.model.text import shown_escaped

ESCAPE_STYLE = "reverse"


def visible(value: str, *, multiline: bool = False) -> str:
    """``value`` with every control character written as an escape (``\\x1b``, ``\\n``);
    ``multiline`` keeps newlines and tabs. For the places that need a ``str`` (a toast
    sent with ``markup=False``); elsewhere use ``literal``."""
    return shown_escaped(multiline=multiline).sub(lambda m: _escape(m.group()), value)


def literal(value: str, style: str | Style = "", *, multiline: bool = False) -> Text:
    """``value`` as a Text shown exactly as written: no markup is parsed, and control
    characters appear as escapes in reverse video, so ``\\x1b`` in the data cannot be
    mistaken for the four characters ``\\x1b``. One line unless ``multiline``."""
    text = Text(style=style)
    pattern = shown_escaped(multiline=multiline)
    position = 0
    for match in pattern.finditer(value):
        text.append(value[position : match.start()])
        text.append(_escape(match.group()), ESCAPE_STYLE)
        position = match.end()
    text.append(value[position:])
    return text
