"""I/O adapters shared by the programs: sockets, threads, terminal and storage around protocol/.

``protocol/`` decides; the modules here move bytes, keep time and print.  The programs at the top
level (``tracker.py``, ``user.py``, ``ttweetsrv.py``, ``ttweetcl.py``) put them together:

    cli.py, trace_file.py        every program: argument types, --trace-file
    output.py                    queues in front of terminals, files and sockets (never block)
    sqlite_store.py              tracker.py: the durable log behind protocol.store
    console.py, tracker_link.py,
    peer_node.py                 user.py: the terminal, the tracker session, the UDP ring peer
    ttweet_client.py             ttweetcl.py: the client itself
"""
