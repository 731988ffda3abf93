"""Tweeter's I/O-free core.

Nothing in this package opens a socket, reads a terminal or touches a file: it turns bytes into
validated messages and back, decides what the tracker answers, and plans the logical ring.  The
programs at the top level (``tracker.py``, ``user.py``, ``ttweetsrv.py``, ``ttweetcl.py``) are thin
I/O shells around it, helped by ``adapters/``.  See ``protocol/PROTOCOL.md`` for the written
protocol.

    bytes in ──codec (wire, messages, datagrams, ttweet)──> typed values
             ──state machine (tracker_core, peer; fed the time as ``now``)──> decisions
    decisions ──codec──> bytes out, for the program to send

``tests/test_layering.py`` keeps it so: no module here imports sockets, threads, files, the
command line or a clock, or anything above it.
"""
