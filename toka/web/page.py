"""The console's page: textual-serve's terminal, a line naming who signs, nothing remote.

Our own page rather than textual-serve's template: no inline script (the CSP forbids
it), no web font fetched from a third party, and a warning line naming the principal
whose key signs what the browser does. Everything interpolated is escaped.
"""

from __future__ import annotations

from html import escape

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="/static/css/xterm.css">
<script src="/static/js/textual.js"></script>
<style>
  @font-face {{ font-family: "Roboto Mono"; font-weight: 100 700;
    src: url("/static/fonts/RobotoMono-VariableFont_wght.ttf") format("truetype"); }}
  html, body {{ margin: 0; height: 100%; background: #0c181f; overflow: hidden; }}
  #signing {{ position: absolute; top: 0; left: 0; right: 0; height: 24px; line-height: 24px;
    padding: 0 8px; font: 14px monospace; color: #1b1b1b; background: #f0c674; }}
  #terminal {{ position: absolute; top: 24px; left: 0; right: 0; bottom: 0; }}
  body .textual-terminal {{ opacity: 0; }}
  body.-first-byte .textual-terminal {{ opacity: 1; }}
  #ended {{ display: none; position: absolute; inset: 24px 0 0 0; align-items: center;
    justify-content: center; font: 16px monospace; color: #eee; background: #0c181f; z-index: 10; }}
  body.-closed #ended {{ display: flex; }}
  #ended a {{ color: #f0c674; margin-left: 1em; }}
</style>
</head>
<body>
<div id="signing">{signing}</div>
<div id="ended">Session ended.<a href="/">Start a new session</a></div>
<div id="terminal" class="textual-terminal" data-session-websocket-url="{websocket_url}"
  data-font-size="{font_size}"></div>
</body>
</html>
"""


def signing_line(principal: str) -> str:
    """What the page and the console say about whose key signs this session."""
    return f"Signing as {principal} from a browser session: whoever holds this page acts as {principal}."


def render(*, title: str, principal: str, websocket_url: str, font_size: int) -> str:
    return PAGE.format(
        title=escape(title),
        signing=escape(signing_line(principal)),
        websocket_url=escape(websocket_url),
        font_size=font_size,
    )
