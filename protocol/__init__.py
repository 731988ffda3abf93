"""Tweeter's I/O-free core.

Nothing in this package opens a socket, reads a terminal or touches a file: it turns bytes into
validated messages and back, decides what the tracker answers, and plans the logical ring.  The
programs at the top level (``tracker.py``, ``user.py``, ``ttweetsrv.py``, ``ttweetcl.py``) are thin
I/O shells around it.  See ``protocol/PROTOCOL.md`` for the written protocol.
"""
