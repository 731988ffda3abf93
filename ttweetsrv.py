"""ttweetsrv.py — the ttweet server: room for exactly one message, shared by every client.

    python3 ttweetsrv.py <port> [--log PATH] [--timeout SECONDS] [--max-per-address N]
                                [--log-max BYTES]

How data flows through it:

1. ``main`` opens the session log (``Sample.txt`` unless ``--log`` says otherwise), writes a
   session header, binds a TCP socket on every IPv4 interface at ``<port>`` and listens.
2. Each accepted connection is counted against its address (``verify_request``): past
   ``--max-per-address`` connections served at once, it is closed at once, with a log line
   (summarised, one a second per address).  Otherwise ``socketserver`` starts a thread that runs
   ``TtweetHandler.handle`` — so one slow client never holds up the others.
3. ``handle`` reads with ``recv`` and feeds the bytes to ``protocol.ttweet.FrameAssembler``
   until one whole request frame is there.  A frame that cannot be one (garbage, too large,
   bytes after its end), a client that closes half-way and a client that stays silent past the
   timeout all end in an ``ERROR`` reply and a log line; the server carries on.
4. ``protocol.ttweet.decode_request`` turns the frame into an upload or a download request.
5. Holding the slot's lock, ``protocol.ttweet.serve`` gives the slot's new content and the reply,
   so a download never sees half of an upload.
6. The reply goes back with ``sendall``; the connection then closes — one request per connection.

Every status line is appended to the session log (see ``protocol/session_log.py``) and printed
through a bounded queue (``adapters.output``): a terminal that stops reading never holds up a
request.  The log is bounded: past ``--log-max`` bytes it moves to ``<log>.1`` (replacing an
older one) and a new log begins.  Ctrl-C (or SIGTERM) stops the server cleanly; the stored
message is not kept.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import socketserver
import sys
import threading
import time

from adapters import cli
from adapters.output import FloodLines, OutputQueue, TraceFile, pipe_writer
from adapters.trace_file import TraceFileError, TraceWriter, open_trace_file
from protocol.limits import (
    LISTEN_BACKLOG,
    TTWEET_CONNECTIONS_PER_ADDRESS,
    TTWEET_DRAIN_MAX,
    TTWEET_DRAIN_TIMEOUT,
    TTWEET_EMPTY,
    TTWEET_IO_TIMEOUT,
    TTWEET_LOG_MAX,
    TTWEET_REQUEST_MAX,
)
from protocol.session_log import CONNECTION, ERROR, GENERAL, SERVER, report_line, session_header
from protocol.ttweet import (
    INCOMPLETE,
    INTERNAL,
    TIMEOUT,
    ErrorReply,
    FrameAssembler,
    Reply,
    TtweetProtocolError,
    UploadRequest,
    decode_request,
    encode_reply,
    serve,
)

RECV_SIZE = 4096


class SessionLog:
    """The server's status lines: appended to the session log file, and printed.

    The file is bounded: a line that would take it past ``max_bytes`` first moves it to
    ``<path>.1`` (replacing an older one) and starts a new file, whose first line says so.
    Printing goes through an ``OutputQueue``; the file and the terminal see the same order.
    Lines of a ``kind`` that may come in floods (refusals of one address) are summarised.
    """

    def __init__(self, path: str, max_bytes: int = TTWEET_LOG_MAX) -> None:
        self.path, self.max_bytes = path, max_bytes
        self._fd = self._open()
        self._lock = threading.Lock()   # keeps the printed order the same as the logged order
        self._console = OutputQueue(self._print, name="console",
                                    write_now=pipe_writer(sys.stdout, end=""))
        # Refusals of one address may come in floods; they are reported as connections.
        self._floods = FloodLines(lambda line: self.report(CONNECTION, line))
        self._stuck = False             # the log could not be moved: lines are dropped

    def _open(self) -> int:
        # O_APPEND: every os.write lands whole at the end of the file, even when client
        # processes append to the same file at the same moment.
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @staticmethod
    def _print(line: str) -> None:
        sys.stdout.write(line)
        sys.stdout.flush()

    def _write(self, line: str, echo: bool) -> None:
        data = line.encode("utf-8", "backslashreplace")
        with self._lock:
            try:
                if os.fstat(self._fd).st_size + len(data) > self.max_bytes:
                    self._rotate()
                if not self._stuck:
                    os.write(self._fd, data)
            except OSError as error:   # a full disk must not stop the server
                print(f"ttweetsrv.py: cannot write the log: {error.strerror}", file=sys.stderr)
            if echo:
                self._console.put(line)

    def _rotate(self) -> None:
        """Move the full log to ``<path>.1`` and begin a new one (the lock is held)."""
        older = f"{self.path}.1"
        try:
            os.replace(self.path, older)
            fd = self._open()
        except OSError as error:
            if not self._stuck:
                print(f"ttweetsrv.py: the log is full and cannot be moved to {older}: "
                      f"{error.strerror}; further lines are not logged", file=sys.stderr)
            self._stuck = True
            return
        os.close(self._fd)
        self._fd, self._stuck = fd, False
        os.write(self._fd, report_line(SERVER, GENERAL, f"earlier lines are in {older} (a log "
                                       f"holds at most {self.max_bytes} bytes)",
                                       time.time()).encode())

    def header(self, text: str) -> None:
        """Open a new session section."""
        self._write(session_header(text, time.time(), after_earlier=os.fstat(self._fd).st_size > 0),
                    True)

    def report(self, category: str, text: str, echo: bool = True) -> None:
        self._write(report_line(SERVER, category, text, time.time()), echo)

    def repeated(self, kind: str, text: str) -> None:
        """A CONNECTION report that may come in floods: at most one of a ``kind`` a second,
        then a count."""
        self._floods.line(kind, text)

    def tick(self) -> None:
        """Report the counts of floods that are over (called now and then)."""
        self._floods.tick()

    def flush(self, timeout: float = 2.0) -> None:
        """Before the server exits: let the printed lines out (bounded wait)."""
        self._console.flush(timeout)


class TtweetServer(socketserver.ThreadingTCPServer):
    """A threaded TCP server that holds the one message slot and its lock."""

    daemon_threads = True           # a hung client never keeps the process alive at Ctrl-C
    block_on_close = False
    allow_reuse_address = True      # restart at once on the same port after a stop
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, port: int, log: SessionLog, io_timeout: float,
                 records: TraceWriter | None = None,
                 per_address: int = TTWEET_CONNECTIONS_PER_ADDRESS) -> None:
        self.log = log
        self.io_timeout = io_timeout
        self.records = records or TraceWriter(None, "ttweetsrv")
        self.slot = TTWEET_EMPTY
        self.slot_lock = threading.Lock()
        self.per_address = per_address
        self._served: dict[str, int] = {}      # address -> connections being served
        self._served_lock = threading.Lock()
        super().__init__(("", port), TtweetHandler)

    # ---- a bounded share per address, decided before a thread is started -----------------------
    def verify_request(self, request: object, client_address: tuple[str, int]) -> bool:  # type: ignore[override]
        host = client_address[0]
        with self._served_lock:
            served = self._served.get(host, 0)
            if served < self.per_address:
                self._served[host] = served + 1
                return True
        self.log.repeated(f"busy {host}", f"{peer_name(client_address)} refused: {host} has "
                          f"{served} connections being served, the most one address may have")
        return False                # socketserver closes it: the client sees no reply

    def process_request(self, request: object, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            super().process_request(request, client_address)  # type: ignore[arg-type]
        except BaseException:       # no thread started: the connection was never served
            self._release(client_address[0])
            raise

    def process_request_thread(self, request: object, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)  # type: ignore[arg-type]
        finally:
            self._release(client_address[0])

    def _release(self, host: str) -> None:
        with self._served_lock:
            served = self._served.pop(host, 1) - 1
            if served > 0:
                self._served[host] = served

    def service_actions(self) -> None:
        """Called by ``serve_forever`` between requests (at least twice a second)."""
        self.log.tick()

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        # socketserver would print a traceback here; report the failure as one line instead.
        error = sys.exc_info()[1]
        self.log.report(ERROR, f"{peer_name(client_address)} failed unexpectedly: "
                               f"{type(error).__name__}: {error}")


def peer_name(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def quoted(message: str) -> str:
    return f'"{message}"'


class TtweetHandler(socketserver.BaseRequestHandler):
    """Serves one connection: one request, one reply."""

    server: TtweetServer
    request: socket.socket

    def handle(self) -> None:
        try:
            self.serve_connection()
        except Exception as error:   # a bug must cost one connection, never the server
            reason = f"{type(error).__name__}: {error}"
            self.server.log.report(
                ERROR, f"{peer_name(self.client_address)} failed unexpectedly: {reason}")
            self.refuse(ErrorReply(INTERNAL, "the server failed to handle the request"))

    def serve_connection(self) -> None:
        log = self.server.log
        peer = peer_name(self.client_address)
        log.report(CONNECTION, f"{peer} connected")
        client = f"ttweetcl {peer}"     # the lifeline the client's own trace uses
        try:
            frame = self.receive_frame()
            request = decode_request(frame)
            self.server.records.recv(client, frame.split(b" ", 1)[0].decode("ascii", "replace"),
                                     frame[:80].decode("utf-8", "replace"))
        except TtweetProtocolError as error:
            self.server.records.recv(client, error.code, error.reason)
            category = CONNECTION if error.code == INCOMPLETE else ERROR
            log.report(category, f"{peer} refused: {error.code}: {error.reason}")
            self.refuse(ErrorReply(error.code, error.reason))
            return
        except TimeoutError:
            reason = f"no whole request within {self.server.io_timeout:g} s"
            log.report(ERROR, f"{peer} refused: {TIMEOUT}: {reason}")
            self.refuse(ErrorReply(TIMEOUT, reason))
            return
        except OSError as error:
            log.report(CONNECTION, f"{peer} connection failed: {error.strerror or error}")
            return

        with self.server.slot_lock:
            self.server.slot, reply = serve(self.server.slot, request)
            # Logged under the lock, so the log shows uploads in the order the slot saw them,
            # and before the reply, so the log shows the server's side before the client's.
            if isinstance(request, UploadRequest) and not request.message:
                log.report(GENERAL, f"{peer} upload: empty message, the slot is reset to "
                                    f"{quoted(self.server.slot)}")
            elif isinstance(request, UploadRequest):
                log.report(GENERAL, f"{peer} upload: stored {quoted(self.server.slot)} "
                                    f"({len(request.message)} characters)")
            else:
                log.report(GENERAL, f"{peer} download: sent {quoted(reply.message)}")
        try:
            self.send(reply)
        except OSError as error:
            log.report(CONNECTION, f"{peer} left before the reply: {error.strerror or error}")

    def receive_frame(self) -> bytes:
        """The bytes of one whole request, read before the deadline.

        Raises ``TtweetProtocolError`` (bad bytes, or the client closed half-way),
        ``TimeoutError`` (the client was too slow) or ``OSError`` (the connection broke).
        """
        assembler = FrameAssembler(TTWEET_REQUEST_MAX)
        # One deadline for the whole request, so trickling a byte at a time does not extend it.
        deadline = time.monotonic() + self.server.io_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.request.settimeout(remaining)
            chunk = self.request.recv(RECV_SIZE)
            if not chunk:
                return assembler.close()
            frame = assembler.feed(chunk)
            if frame is not None:
                return frame

    def send(self, reply: Reply) -> None:
        data = encode_reply(reply)
        kind = f"ERROR {reply.code}" if isinstance(reply, ErrorReply) else "OK"
        self.server.records.send(f"ttweetcl {peer_name(self.client_address)}", kind,
                                 data[:80].decode("utf-8", "replace"))
        self.request.settimeout(self.server.io_timeout)
        self.request.sendall(data)

    def refuse(self, reply: ErrorReply) -> None:
        """Send an error reply, then read and discard what the client is still sending.

        Closing a socket with unread bytes makes the kernel answer with a reset, which can
        destroy the reply before the client reads it; draining (bounded in bytes and time)
        lets the reply arrive.
        """
        try:
            self.send(reply)
            self.request.shutdown(socket.SHUT_WR)
            self.request.settimeout(TTWEET_DRAIN_TIMEOUT)
            drained = 0
            while drained < TTWEET_DRAIN_MAX:
                chunk = self.request.recv(RECV_SIZE)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass   # the client is gone or silent: nothing more to tell it


# --- command line ------------------------------------------------------------------------------
def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ttweetsrv.py",
        description="The ttweet server: holds one message (initially \"Empty Message\") that "
                    "ttweetcl.py uploads and downloads, one request per connection.",
        epilog="examples:\n"
               "  python3 ttweetsrv.py 13000\n"
               "  python3 ttweetsrv.py 13000 --log session.txt\n"
               "Ctrl-C stops the server.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", type=cli.port(), help="TCP port to listen on (1-65535)")
    parser.add_argument("--trace-file", metavar="PATH",
                        help="append a JSON record of every request and reply (SPEC §7)")
    parser.add_argument("--log", default="Sample.txt", metavar="PATH",
                        help="session log to append to (default: Sample.txt)")
    parser.add_argument("--timeout", type=cli.seconds, default=TTWEET_IO_TIMEOUT,
                        metavar="SECONDS",
                        help="how long a client may take to send its request "
                             f"(default: {TTWEET_IO_TIMEOUT:g})")
    parser.add_argument("--max-per-address", type=cli.count,
                        default=TTWEET_CONNECTIONS_PER_ADDRESS, metavar="N",
                        help="connections one address may have served at once; more are "
                             f"closed at once (default: {TTWEET_CONNECTIONS_PER_ADDRESS})")
    parser.add_argument("--log-max", type=cli.count, default=TTWEET_LOG_MAX,
                        metavar="BYTES",
                        help="size of the log before it moves to PATH.1 and a new one "
                             f"begins (default: {TTWEET_LOG_MAX})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        log = SessionLog(args.log, args.log_max)
    except OSError as error:
        print(f"ttweetsrv.py: error: cannot open log file {args.log!r}: {error.strerror}",
              file=sys.stderr)
        return 2
    log.header(f"ttweet server on port {args.port}")
    trace_file = None
    try:
        if args.trace_file:     # open for the life of the process
            trace_file = TraceFile(open_trace_file(args.trace_file), "ttweetsrv")
    except TraceFileError as error:
        log.flush()
        return error.report("ttweetsrv.py")
    try:
        server = TtweetServer(args.port, log, args.timeout,
                              TraceWriter(trace_file, "ttweetsrv"), args.max_per_address)
    except OSError as error:
        reason = f"cannot listen on port {args.port}: {error.strerror or error}"
        log.report(ERROR, reason, echo=False)
        log.flush()
        print(f"ttweetsrv.py: error: {reason}", file=sys.stderr)
        return 1
    # SIGTERM ends the server the way Ctrl-C does: through KeyboardInterrupt, below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with server:
        try:
            log.report(GENERAL, f"listening on port {args.port}, the slot holds "
                                f"{quoted(TTWEET_EMPTY)}")
            server.serve_forever()
        except KeyboardInterrupt:
            log.report(GENERAL, "stopped; the stored message is discarded")
        finally:
            log.flush()
            if trace_file is not None:
                trace_file.drain()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:   # Ctrl-C before the server was serving: nothing to clean up
        sys.exit(130)
