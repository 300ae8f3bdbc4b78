"""The operator console in a browser (``toka web``): textual-serve behind Toka's gate.

A face beside ``toka.tui``: only ``toka web`` imports it, so headless commands never load
aiohttp. Each browser session is a ``toka tui`` child process; this package decides who
may open one (token, cookie, Origin, Host, a session cap) and what the child inherits.
"""
