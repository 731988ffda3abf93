"""ttweetcl.py — the ttweet client: upload one message to a ttweet server, or download it.

    python3 ttweetcl.py -u <server-ip> <server-port> "message" [--log PATH]
    python3 ttweetcl.py -d <server-ip> <server-port> [--log PATH]

How data flows through it:

1. The arguments are checked before anything touches the network: the IPv4 address, the port
   and, for an upload, the message's length (at most 150 characters).
2. ``protocol.ttweet.encode_request`` turns the request into bytes: the header line
   ``UPLOAD <n>`` followed by the message's ``n`` UTF-8 bytes, or just ``DOWNLOAD 0``.
3. One TCP connection: ``connect``, ``sendall`` the request, then ``recv`` into
   ``protocol.ttweet.FrameAssembler`` until the reply frame is whole.
4. ``protocol.ttweet.decode_reply`` turns the reply into ``OkReply`` or ``ErrorReply``.  The
   outcome is printed — text that came from the network with its control characters escaped,
   so a newline in a message shows as ``\\n`` — and appended to the session log.

Exit status: 0 done, 1 refused or failed, 2 bad arguments.  Start-up is kept lean: this program
is benchmarked against ``python3 -c pass``, so this file is only its entry point and the client
itself is ``adapters/ttweet_client.py`` (Python caches the bytecode of what a program imports,
not of the program file it compiles at every start).
"""

import sys

from adapters.ttweet_client import everyday_form, main, parse_with_argparse

__all__ = ["everyday_form", "main", "parse_with_argparse"]

if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:   # Ctrl-C while waiting for the server
        print("ttweetcl.py: interrupted", file=sys.stderr)
        sys.exit(130)
