"""The headless ``toka`` command line. It never imports Textual (``toka tui`` does, lazily)."""
