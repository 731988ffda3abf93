"""The Tweeter tracker: an always-on TCP server that keeps handles, follower lists and tweets.

How data flows::

    user.py ──TCP──> SessionHandler (one thread per connection, socketserver)
                        │ readline(FRAME_MAX + 1)    bounded: a longer frame is TOO_LARGE
                        │ protocol.wire.decode_request
                        │ protocol.tracker_core.TrackerCore.execute  ← all command semantics
                        │ protocol.wire.encode_reply
    user.py <──TCP──────┘ (and a trace line per frame in and out, unless -q)

The tracker never touches the UDP ring: it hands an author its online followers, and the author
runs the ring itself (see ``user.py``).  Everything the tracker decides is in
``protocol/tracker_core.py``; this file only moves bytes and prints traces.

Run: ``python3 tracker.py [port] [--host ADDR] [-q]`` (port 0 picks a free port; the chosen one
is printed).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import socketserver
import sys
import threading

from protocol import limits
from protocol.tracker_core import Session, TrackerCore
from protocol.wire import ProtocolError, Reply, decode_request, encode_reply, failure


class Trace:
    """Prints one labelled line per frame, unless quiet; safe from many threads."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._lock = threading.Lock()

    def line(self, text: str, always: bool = False) -> None:
        if self.quiet and not always:
            return
        with self._lock:
            print(text, flush=True)

    def frame(self, arrow: str, session: Session, data: bytes) -> None:
        if not self.quiet:
            who = f"{session.handle} " if session.handle else ""
            shown = data.decode("utf-8", "backslashreplace").rstrip("\n")
            self.line(f"[tracker] {arrow} {who}{session.name} {shown}")


class SessionHandler(socketserver.StreamRequestHandler):
    """One user's connection: read a frame, answer it, until the user goes away."""

    server: TrackerServer

    def setup(self) -> None:
        super().setup()
        host, port = self.client_address[:2]
        self.session = Session(f"{host}:{port}")

    def handle(self) -> None:
        while True:
            frame = self.rfile.readline(limits.FRAME_MAX + 1)
            if not frame:
                return                                  # the user closed the connection
            if len(frame) > limits.FRAME_MAX:
                self.server.trace.frame("<-", self.session, frame[:80] + b"...")
                self.send(failure("TOO_LARGE", f"a frame has at most {limits.FRAME_MAX} bytes"))
                return                                  # the rest of the line is not read
            if not frame.strip():
                continue
            self.server.trace.frame("<-", self.session, frame)
            self.send(self.answer(frame))

    def answer(self, frame: bytes) -> Reply:
        try:
            request = decode_request(frame)
        except ProtocolError as error:
            return failure(error.code, error.message)
        reply = self.server.core.execute(self.session, request)
        return Reply(request.id, reply.status, reply.message, reply.code, reply.data)

    def send(self, reply: Reply) -> None:
        data = encode_reply(reply)
        self.server.trace.frame("->", self.session, data)
        self.wfile.write(data)

    def finish(self) -> None:
        self.server.core.disconnect(self.session)
        self.server.trace.line(f"[tracker] -- {self.session.name} closed")
        with contextlib.suppress(OSError):      # the peer is gone; nothing to flush to
            super().finish()


class TrackerServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = limits.LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], core: TrackerCore, trace: Trace) -> None:
        self.core, self.trace = core, trace
        super().__init__(address, SessionHandler)

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket],
                     client_address: object) -> None:
        # One connection's failure is reported in a line and closes only that connection.
        error = sys.exc_info()[1]
        self.trace.line(f"[tracker] !! connection {client_address} failed: {error!r}",
                        always=True)


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0-65535)")
    return port


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tracker.py", description="The Tweeter tracker.",
        epilog="example: python3 tracker.py 13000   (port 0 picks a free port)")
    parser.add_argument("port", nargs="?", type=port_number, default=limits.DEFAULT_TRACKER_PORT)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument("-q", "--quiet", action="store_true", help="no trace lines")
    parser.add_argument("--tweet-timeout", type=float, default=limits.TWEET_TIMEOUT,
                        help="seconds before a tweet without end-tweet is ended")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    trace = Trace(args.quiet)
    core = TrackerCore(log=lambda text: trace.line(f"[tracker] {text}", always=True),
                       tweet_timeout=args.tweet_timeout)
    try:
        server = TrackerServer((args.host, args.port), core, trace)
    except OSError as error:
        print(f"tracker.py: cannot listen on {args.host}:{args.port}: {error.strerror}",
              file=sys.stderr)
        return 1
    with server:
        host, port = server.server_address[:2]
        trace.line(f"[tracker] listening on {host}:{port}", always=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            trace.line("[tracker] stopped", always=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
