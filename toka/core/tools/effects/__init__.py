"""Effects: the host's hands in the world, used by the built-in effect tools.

``fs`` reads, lists and writes files under a mount without following links; ``http``
fetches a URL with a pinned, checked address, hop-by-hop redirect checks and a bound
on the whole call. Neither decides who may do what: the kernel checks the capability
it derives from the call before anything here runs, and the tool runner records what
happened (``toka.core.tools.runner``).
"""
