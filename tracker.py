"""The Tweeter tracker: an always-on TCP server that keeps handles, follower lists and tweets.

How data flows::

    user.py ──TCP──> SessionHandler (one thread per connection, socketserver)
                        │ readline(FRAME_MAX + 1)    bounded: a longer frame is TOO_LARGE
                        │ protocol.wire.decode_request
                        │ ┌ core lock ─────────────────────────────────────────────────────┐
                        │ │ TrackerCore.execute(session, request, now)  ← every decision    │
                        │ │ TrackerCore.take_outbox()  → [(session, reply or push), …]      │
                        │ └─────────────────────────────────────────────────────────────────┘
                        │ (register/login: the password hash runs between two such calls)
                        │ group commit: if the core changed the store, one COMMIT (outside
                        │   the core lock) for every change made so far, unless another
                        │   thread's COMMIT already covered it
                        │ deliver: each reply or push encoded (to_wire) and written to the
    user.py <──TCP──────┘ connection of its session (a trace line per frame, unless -q)

    reaper thread, about once a second: TrackerCore.tick(now) and expire(session, now) for every
    connection, under the same lock; what they decide leaves the same way.

The tracker never touches the UDP ring: it hands an author its online followers, and the author
runs the ring itself (see ``user.py``).  Everything the tracker decides is in
``protocol/tracker_core.py``, which owns no I/O and never blocks; this file moves bytes, keeps
time, holds the lock and prints traces.

Durable state lives in SQLite (``adapters.sqlite_store.SqliteStore``, ``--db``, WAL mode); the
core reads the graph from memory (``protocol.store.ReadModel``).  Nothing the core decided after
a change is sent before that change is committed — so a tracker killed with SIGKILL keeps
everything it confirmed — but changes that wait at the same moment share one ``COMMIT``.  A
database that fails stops the tracker (its memory would no longer match the disk).  Who is
online is memory only.

Run: ``python3 tracker.py [port] [--host ADDR] [--db PATH] [-q]`` (port 0 picks a free port; the
chosen one is printed).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import re
import socket
import socketserver
import sqlite3
import struct
import sys
import threading
import time

from adapters.output import OutputQueue
from adapters.sqlite_store import SqliteStore
from protocol import limits
from protocol.accounts import LoginThrottle
from protocol.messages import Answer, Failure, Notice
from protocol.text import escape_for_terminal
from protocol.trace import TraceWriter
from protocol.tracker_core import Outgoing, Session, TrackerCore
from protocol.wire import ProtocolError, Request, decode_request, encode_object

_PASSWORD_FIELD = re.compile(rb'("password"\s*:\s*)"(?:[^"\\]|\\.)*"')


def redact(frame: bytes) -> bytes:
    """The frame as the trace may show it: passwords replaced by stars."""
    return _PASSWORD_FIELD.sub(rb'\1"***"', frame)


class Trace:
    """The trace: a labelled console line per frame (unless quiet) and, with ``--trace-file``,
    a JSON record per frame.  Safe from many threads."""

    def __init__(self, quiet: bool, records: TraceWriter | None = None) -> None:
        self.quiet = quiet
        self.records = records or TraceWriter(None, "tracker")
        # A console that stops reading must not stop the tracker: lines wait in a bounded
        # queue for one writer thread, and are dropped (and counted) when it is full.
        self.output = OutputQueue(self._write, name="trace")

    @staticmethod
    def _write(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def line(self, text: str, always: bool = False) -> None:
        if self.quiet and not always:
            return
        self.output.put(text)

    def frame(self, arrow: str, session: Session, data: bytes, kind: str) -> None:
        if self.quiet and self.records.stream is None:
            return                              # nobody reads it: no work on the hot path
        shown = redact(data).decode("utf-8", "backslashreplace").rstrip("\n")
        who = session.handle or session.name
        if arrow == "<-":
            self.records.recv(who, kind, shown)
        else:
            self.records.send(who, kind, shown)
        if not self.quiet:
            label = f"{session.handle} " if session.handle else ""
            self.line(f"[tracker] {arrow} {label}{session.name} {escape_for_terminal(shown)}")


class SessionHandler(socketserver.StreamRequestHandler):
    """One user's connection: read a frame, let the core answer it, until the user goes away."""

    server: TrackerServer

    def setup(self) -> None:
        super().setup()
        host, port = self.client_address[:2]
        self.session = Session(f"{host}:{port}", host, time.monotonic())
        self.send_lock = threading.Lock()
        # A recipient that stops reading must not hold a sender's thread for long: a send
        # timeout in the kernel (a socket timeout would cut idle reads short as well).
        seconds = int(limits.SEND_TIMEOUT)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                                   struct.pack("ll", seconds, 0))

    def handle(self) -> None:
        # A user that goes away mid-frame (reset, broken pipe) has simply closed its session.
        with contextlib.suppress(ConnectionError):
            self.serve()

    def serve(self) -> None:
        if not self.server.admit(self):
            self.send(Failure(code="SERVER_FULL", message=f"the tracker serves "
                              f"{self.server.max_sessions} sessions at most; try again later"))
            return
        self.send(self.server.core.welcome())
        while not self.session.closing:
            frame = self.rfile.readline(limits.FRAME_MAX + 1)
            if not frame:
                return                                  # the user closed the connection
            if len(frame) > limits.FRAME_MAX:
                self.server.trace.frame("<-", self.session, frame[:80] + b"...", "TOO_LARGE")
                self.send(Failure(code="TOO_LARGE",
                                  message=f"a frame has at most {limits.FRAME_MAX} bytes"))
                return                                  # the rest of the line is not read
            if frame.strip():
                self.answer(frame)

    def answer(self, frame: bytes) -> None:
        trace = self.server.trace
        try:
            request = decode_request(frame)
        except ProtocolError as error:
            trace.frame("<-", self.session, frame, error.code)
            self.send(Failure(re=error.request_id, code=error.code, message=error.message))
            return
        trace.frame("<-", self.session, frame, request.cmd)
        had_handle = self.session.handle is not None
        self.server.run(self.session, request)
        if not had_handle and self.session.handle:     # this connection's lifeline has a name now
            trace.records.record("send", self.session.name, self.session.handle, "alias")

    def send(self, message: Answer | Notice) -> None:
        """Encode a reply or push of the core and write it to this connection."""
        if isinstance(message, Notice):
            kind = f"push:{message.kind}"
        else:
            kind = message.status if message.ok else f"{message.status} {message.code}"
        self.write(encode_object(message.to_wire()), kind)

    def write(self, data: bytes, kind: str) -> None:
        self.server.trace.frame("->", self.session, data, kind)
        with self.send_lock:
            try:
                self.wfile.write(data)
            except OSError:
                # Part of the frame may be on the wire: nothing more can follow it on this
                # connection, so end it (its handler thread then sees the end).
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                raise

    def close_now(self, reply: Failure) -> None:
        """Called by the reaper thread: say why, then end this connection (SPEC §6)."""
        with contextlib.suppress(OSError):
            self.send(reply)
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)   # wakes the handler's blocked read

    def finish(self) -> None:
        self.server.release(self)
        self.server.disconnect(self.session)
        self.server.trace.line(f"[tracker] -- {self.session.name} closed")
        with contextlib.suppress(OSError):      # the peer is gone; nothing to flush to
            super().finish()


class TrackerServer(socketserver.ThreadingTCPServer):
    """Threads, the core's lock, and the way each reply and push reaches its connection."""

    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = limits.LISTEN_BACKLOG
    # At most this many password hashes run at once: each takes 16 MiB, and more of them than
    # there are cores only costs memory (and invites a memory flood).
    hash_slots = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))

    def __init__(self, address: tuple[str, int], core: TrackerCore, trace: Trace,
                 max_sessions: int = limits.SESSION_MAX,
                 backlog: int = limits.LISTEN_BACKLOG) -> None:
        self.core, self.trace, self.max_sessions = core, trace, max_sessions
        self.core_lock = threading.Lock()       # every call into the core holds it
        self.commit_lock = threading.Lock()     # one COMMIT at a time; waiters share the next
        self.request_queue_size = backlog
        self.handlers: set[SessionHandler] = set()
        self.connections: dict[Session, SessionHandler] = {}    # where a session's frames go
        self._handlers_lock = threading.Lock()
        self._stopping = threading.Event()
        super().__init__(address, SessionHandler)
        threading.Thread(target=self._reap, name="reaper", daemon=True).start()

    def admit(self, handler: SessionHandler) -> bool:
        """Count a new connection in; False when the tracker is full."""
        with self._handlers_lock:
            if len(self.handlers) >= self.max_sessions:
                return False
            self.handlers.add(handler)
            self.connections[handler.session] = handler
            return True

    def release(self, handler: SessionHandler) -> None:
        with self._handlers_lock:
            self.handlers.discard(handler)
            self.connections.pop(handler.session, None)

    def run(self, session: Session, request: Request) -> None:
        """Let the core answer one request, then send what it decided."""
        with self.core_lock:
            work = self.core.execute(session, request, time.monotonic())
            out, needed = self.core.take_outbox(), self.core.store.changes
        if work is not None:            # register/login: the hash, outside the lock
            with self.hash_slots:
                result = work.run()
            with self.core_lock:
                self.core.resume(session, work, result, time.monotonic())
                out += self.core.take_outbox()
                needed = self.core.store.changes
        self.deliver(out, needed)

    def disconnect(self, session: Session) -> None:
        with self.core_lock:
            self.core.disconnect(session, time.monotonic())
            out, needed = self.core.take_outbox(), self.core.store.changes
        self.deliver(out, needed)

    def make_durable(self, needed: int) -> None:
        """Group commit: return once the first ``needed`` changes are committed.

        A thread that finds them not yet committed waits its turn for the commit lock; by
        then another thread's COMMIT may have covered them.  Otherwise it commits everything
        made so far, the changes of the threads queued behind it too, which then find nothing
        left to do.  The COMMIT runs outside the core's lock: requests go on meanwhile, and
        the changes they make join the next one.
        """
        store = self.core.store
        if store.committed >= needed:
            return
        with self.commit_lock:
            if store.committed < needed:
                store.commit()

    def _reap(self) -> None:
        """Time passes for the core: stale tweets end, waiting exits hear BUSY, connections
        that never logged in and sessions that fell silent are closed."""
        period = min(self.core.register_timeout, self.core.idle_timeout) / 4
        while not self._stopping.wait(min(max(period, 0.05), 1.0)):
            try:
                self._reap_once()
            except sqlite3.Error as error:
                self.database_failed(error)

    def _reap_once(self) -> None:
        with self._handlers_lock:
            handlers = list(self.handlers)
        with self.core_lock:
            now = time.monotonic()
            self.core.tick(now)
            expired = [(handler, reply) for handler in handlers
                       if (reply := self.core.expire(handler.session, now)) is not None]
            out, needed = self.core.take_outbox(), self.core.store.changes
        self.deliver(out, needed)
        for handler, reply in expired:
            self.trace.line(f"[tracker] -- {handler.session.name} {reply.code}", always=True)
            handler.close_now(reply)

    def database_failed(self, error: sqlite3.Error) -> None:
        """The database refused a change or a commit: what the core holds in memory no longer
        matches the disk, and nothing unconfirmed may be confirmed now.  Stop at once; a
        restart reads the database again, and every confirmed change is in it."""
        self.trace.line(f"[tracker] !! the database failed: {error}; stopping", always=True)
        self.trace.output.flush()
        os._exit(1)

    def server_close(self) -> None:
        self._stopping.set()
        super().server_close()

    def deliver(self, out: list[Outgoing], needed: int) -> None:
        """Once the first ``needed`` changes are durable, send each reply and push to its
        session's connection; one that cannot take it loses only that frame (its connection
        is then shut)."""
        self.make_durable(needed)
        for session, message in out:
            handler = self.connections.get(session)
            if handler is None:
                continue                        # that connection has closed meanwhile
            try:
                handler.send(message)
            except OSError as error:
                self.trace.line(f"[tracker] !! frame to {session.name} dropped: {error!r}",
                                always=True)

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket],
                     client_address: object) -> None:
        # One connection's failure is reported in a line and closes only that connection.
        error = sys.exc_info()[1]
        if isinstance(error, sqlite3.Error):
            self.database_failed(error)
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
    parser.add_argument("--db", default="tracker.db",
                        help="SQLite database (default tracker.db; :memory: for a throw-away one)")
    parser.add_argument("--tweet-timeout", type=float, default=limits.TWEET_TIMEOUT,
                        help="seconds before a tweet without end-tweet is ended")
    parser.add_argument("--trace-file", metavar="PATH",
                        help="append a JSON record of every frame in and out (SPEC §7)")
    parser.add_argument("--password", metavar="SECRET",
                        help="admit only sessions that give this server password first")
    parser.add_argument("--register-timeout", type=float, default=limits.REGISTER_TIMEOUT,
                        help="seconds a connection may stay without registering or logging in")
    parser.add_argument("--idle-timeout", type=float, default=limits.IDLE_TIMEOUT,
                        help="seconds a logged-in session may be silent before it goes offline")
    parser.add_argument("--max-sessions", type=int, default=limits.SESSION_MAX,
                        help="connections served at once; more get SERVER_FULL")
    parser.add_argument("--flood-burst", type=int, default=limits.FLOOD_BURST,
                        help="commands a session may send at once before THROTTLED")
    parser.add_argument("--flood-rate", type=float, default=limits.FLOOD_RATE,
                        help="commands a second a session may send after its burst")
    parser.add_argument("--backlog", type=int, default=limits.LISTEN_BACKLOG,
                        help="listen backlog")
    parser.add_argument("--login-window", type=float, default=limits.LOGIN_WINDOW,
                        help=f"seconds in which {limits.LOGIN_FAILURES} failed logins of a handle"
                             " make further logins THROTTLED")
    return parser.parse_args(argv)


def return_big_blocks_to_the_system() -> None:
    """Make glibc give scrypt's 16 MiB buffers back when they are freed.

    glibc raises its mmap threshold after the first big free, and from then on keeps freed
    big blocks in per-thread arenas: with a thousand session threads that grew the tracker
    to hundreds of MiB.  A fixed threshold keeps blocks above it in mmap, returned at once.
    Elsewhere than glibc this does nothing.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 1 << 20)           # M_MMAP_THRESHOLD (malloc.h), 1 MiB


def fail_to_start(what: str) -> int:
    print(f"tracker.py: {what}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return_big_blocks_to_the_system()
    with contextlib.ExitStack() as stack:
        trace_stream = None
        if args.trace_file:
            try:
                trace_stream = stack.enter_context(open(args.trace_file, "a", encoding="utf-8"))
            except OSError as error:
                return fail_to_start(f"cannot write the trace file {args.trace_file}: "
                                     f"{error.strerror}")
        trace = Trace(args.quiet, TraceWriter(trace_stream, "tracker"))
        try:
            store = SqliteStore(args.db, exclusive=True)
            core = TrackerCore(wall_clock=time.time, store=store,       # reads the graph
                               tweet_timeout=args.tweet_timeout,
                               log=lambda text: trace.line(f"[tracker] {text}", always=True),
                               throttle=LoginThrottle(window=args.login_window),
                               server_password=args.password, session_max=args.max_sessions,
                               register_timeout=args.register_timeout,
                               idle_timeout=args.idle_timeout, flood_burst=args.flood_burst,
                               flood_rate=args.flood_rate)
        except sqlite3.Error as error:
            return fail_to_start(f"cannot open the database {args.db}: {error}")
        try:
            server = stack.enter_context(TrackerServer((args.host, args.port), core, trace,
                                                       args.max_sessions, args.backlog))
        except OSError as error:
            return fail_to_start(f"cannot listen on {args.host}:{args.port}: {error.strerror}")
        host, port = server.server_address[:2]
        trace.line(f"[tracker] listening on {host}:{port}", always=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            trace.line("[tracker] stopped", always=True)
        finally:
            trace.output.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
