"""I/O adapters shared by the programs: sockets, threads, terminal and storage around protocol/.

``protocol/`` decides; the modules here move bytes, keep time and print.  The programs at the top
level (``tracker.py``, ``user.py``, ``ttweetsrv.py``, ``ttweetcl.py``) put them together.
"""
