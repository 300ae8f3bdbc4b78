"""The operator console (``toka tui``), built on Textual.

Only ``toka tui`` imports this package, so headless commands never load Textual. It
reads the world through Runtime state and log queries and acts only through Client.
"""
