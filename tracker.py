"""The Tweeter tracker: an always-on TCP server that keeps handles, follower lists and tweets.

How data flows::

    user.py ──TCP──> TrackerServer.verify_request   Admission: the cap on connections, and each
                        │                           address's share (held, opened a second);
                        │                           refused: one FAILURE line, no thread started
                     SessionHandler (one thread per connection, socketserver)
                        │ readline(FRAME_MAX + 1)    bounded: a longer frame is TOO_LARGE
                        │ protocol.wire.decode_request
                        │ ┌ core lock ─────────────────────────────────────────────────────┐
                        │ │ TrackerCore.execute(session, request, now)  ← every decision    │
                        │ │ TrackerCore.take_outbox()  → [(session, reply or push), …]      │
                        │ └─────────────────────────────────────────────────────────────────┘
                        │ (register/login: the password hash runs between two such calls)
                        │ GroupCommit: if a change made so far is not committed yet, the
                        │   replies and pushes wait for the next COMMIT (outside the core lock),
                        │   run by this thread or, if one runs already, by whoever runs it;
                        │   changes waiting at the same moment share it
                        │ deliver: each reply or push, encoded (to_wire), goes to
                     its session's SendQueue  ← replies, and pushes put by other users' threads
                        │ what the socket takes now leaves at once; the rest waits (bounded:
                        │ past SENDQ_MAX the user is closed with SENDQ_EXCEEDED) for the one
                        │ Sender thread, which sends whenever the socket is writable
    user.py <──TCP──────┘ (and a trace line per frame in and out, unless -q: through bounded
                          queues, so neither the console nor the trace file can stop service)

No thread ever waits for a user to read (``adapters/output.py``), nor for another thread's
``COMMIT`` (``GroupCommit``).  A reaper thread, about once a second, calls
``TrackerCore.tick(now)`` and ``expire(session, now)`` for every connection under the same lock:
stale tweets end, waiting exits hear ``BUSY``, connections that never log in and sessions that
fall silent are closed; what they decide leaves the same way.

The messages kept for a login go out a page at a time (``TrackerCore.take_paging``): once a
page has left the session's send queue (``SendQueue.when_empty``), a pager thread asks the core
for the next one (``next_page``).  A user that reads gets them all at the speed it reads; one
that does not holds a page, and the core's lock is never held for more than one.

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
chosen one is printed; ``-h`` lists the limits, each a flag).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import queue
import signal
import socket
import socketserver
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from adapters import cli
from adapters.output import FloodLines, OutputQueue, Sender, SendQueue, TraceFile, pipe_writer
from adapters.sqlite_store import SqliteStore
from adapters.trace_file import TraceFileError, TraceWriter, open_trace_file
from protocol import limits
from protocol.accounts import LoginThrottle
from protocol.flood import TokenBucket
from protocol.messages import Answer, Failure, Notice
from protocol.store import Store
from protocol.text import escape_for_terminal
from protocol.trace import shown_frame
from protocol.tracker_core import Outgoing, Session, TrackerCore
from protocol.wire import ProtocolError, Request, decode_request, encode_object


class Trace:
    """The trace: a labelled console line per frame (unless quiet) and, with ``--trace-file``,
    a JSON record per frame.  Safe from many threads; nothing here waits for the console or the
    disk (both sit behind bounded queues, ``adapters.output``)."""

    def __init__(self, quiet: bool, records: TraceWriter | None = None) -> None:
        self.quiet = quiet
        self.records = records or TraceWriter(None, "tracker")
        # Whether frames are shown or recorded at all: if not, the hot path skips ``frame``.
        self.kept = not quiet or self.records.stream is not None
        # A console that stops reading must not stop the tracker: lines wait in a bounded
        # queue for one writer thread, and are dropped (and counted) when it is full.  A pipe
        # that takes a line whole at once gets it from the thread that says it.
        self.output = OutputQueue(self._write, name="trace",
                                  write_now=pipe_writer(sys.stdout))
        self._floods = FloodLines(self.output.put)

    @staticmethod
    def _write(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def line(self, text: str, always: bool = False) -> None:
        if self.quiet and not always:
            return
        self.output.put(text)

    def repeated(self, kind: str, text: str) -> None:
        """A line that may come in floods (refusals of one address): at most one of a ``kind``
        a second, then a count (``FloodLines``).  Shown even with -q, as timeouts are."""
        self._floods.line(kind, text)

    def tick(self) -> None:
        """Say the counts of floods that are over (called now and then by the reaper)."""
        self._floods.tick()

    def frame(self, arrow: str, session: Session, data: bytes, kind: str) -> None:
        if not self.kept:
            return
        if arrow == "<-":                       # from a user: may hold a password
            shown = shown_frame(data)
        else:                                   # the tracker's own frames hold none
            shown = data.decode("utf-8", "backslashreplace").rstrip("\n")
        who = session.handle or session.name
        if arrow == "<-":
            self.records.recv(who, kind, shown)
        else:
            self.records.send(who, kind, shown)
        if not self.quiet:
            label = f"{session.handle} " if session.handle else ""
            self.line(f"[tracker] {arrow} {label}{session.name} {escape_for_terminal(shown)}")

    def flush(self, timeout: float = 2.0) -> None:
        """Before the tracker exits: let the queued lines and records out (bounded wait)."""
        self.output.flush(timeout)
        if isinstance(self.records.stream, TraceFile):
            self.records.stream.drain(timeout)


def frame_kind(message: Answer | Notice) -> str:
    """How the trace labels a frame: ``SUCCESS``, ``FAILURE CODE`` or ``push:kind``."""
    if isinstance(message, Notice):
        return f"push:{message.kind}"
    return message.status if message.ok else f"{message.status} {message.code}"


class SessionHandler(socketserver.StreamRequestHandler):
    """One user's connection: read a frame, answer it, until the user goes away.

    Its thread reads; every frame to the user (replies, and pushes put by other threads) goes
    through its ``SendQueue``, so no thread ever waits for this user to read.
    """

    server: TrackerServer
    # Every frame is one send, whole: Nagle's algorithm would hold a reply back behind an
    # unacknowledged push until the user's delayed ACK (40 ms) came.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        host, port = self.client_address[:2]
        self.host = host
        self.session = Session(f"{host}:{port}", host, time.monotonic())
        self.ending = False         # the connection layer closes it: a timeout, SENDQ_EXCEEDED
        # A request is being answered: the connection is not idle, whatever the clock says
        # (a login may wait seconds for a hash while others are hashed: that is our time).
        self.busy = False
        allowed = self.server.limits
        # A small kernel buffer: bytes a user does not read wait in our queue, where they are
        # counted, not in the kernel (which would grow each buffer to megabytes).
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, allowed.send_buffer)
        self.sendq = SendQueue(self.connection, self.server.sender, allowed.sendq_max,
                               on_exceeded=self.sendq_exceeded)
        self.server.add(self)

    def handle(self) -> None:
        # A user that goes away mid-frame (reset, broken pipe) has simply closed its session.
        with contextlib.suppress(ConnectionError):
            self.serve()

    def serve(self) -> None:
        self.send(self.server.core.welcome())
        while not (self.session.closing or self.ending):
            frame = self.rfile.readline(limits.FRAME_MAX + 1)
            if not frame or self.ending:
                return                                  # closed by the user, or by us
            if len(frame) > limits.FRAME_MAX:
                self.server.trace.frame("<-", self.session, frame[:80] + b"...", "TOO_LARGE")
                self.send(Failure(code="TOO_LARGE",
                                  message=f"a frame has at most {limits.FRAME_MAX} bytes"))
                return                                  # the rest of the line is not read
            if not frame.strip():
                continue
            self.busy = True
            try:
                self.answer(frame)
            except sqlite3.Error:
                raise                       # the database failed: handle_error stops us
            except Exception as error:      # a bug costs this request, not the connection
                self.send(self.internal_error(frame, error))
            self.busy = False

    def answer(self, frame: bytes) -> None:
        trace = self.server.trace
        try:
            request = decode_request(frame)
        except ProtocolError as error:
            trace.frame("<-", self.session, frame, error.code)
            self.send(Failure(re=error.request_id, code=error.code, message=error.message))
            return
        if trace.kept:
            trace.frame("<-", self.session, frame, request.cmd)
        had_handle = self.session.handle is not None
        self.server.run(self.session, request)
        if not had_handle and self.session.handle:     # this connection's lifeline has a name now
            trace.records.record("send", self.session.name, self.session.handle, "alias")

    def internal_error(self, frame: bytes, error: Exception) -> Failure:
        """The answer to a request the tracker failed on: a line for the operator, a FAILURE
        for the user, and the connection goes on."""
        self.server.trace.line(f"[tracker] !! {self.session.name}: a request failed: {error!r}",
                               always=True)
        try:
            request_id: int | None = decode_request(frame).id
        except ProtocolError:
            request_id = None
        return Failure(re=request_id, code="INTERNAL_ERROR",
                       message="the tracker failed on this request; please report it")

    def send(self, message: Answer | Notice) -> None:
        """Encode a reply or push of the core and queue it for this connection (sent at once
        if the socket takes it); never waits."""
        data = encode_object(message.to_wire())
        trace = self.server.trace
        if trace.kept:
            trace.frame("->", self.session, data, frame_kind(message))
        self.sendq.put(data)        # refused when closing or over the limit (sendq_exceeded)

    def sendq_exceeded(self, waiting: int) -> None:
        """Called once, by the thread whose frame did not fit: this user does not read."""
        limit = self.server.limits.sendq_max
        self.server.trace.repeated(
            f"SENDQ_EXCEEDED {self.host}",
            f"[tracker] -- {self.session.name} SENDQ_EXCEEDED: {waiting} bytes were waiting "
            f"(at most {limit}); closed")
        self.end(Failure(code="SENDQ_EXCEEDED", message=f"more than {limit} bytes were waiting "
                         "for this connection to read them: it is closed"))

    def close_now(self, reply: Failure) -> None:
        """Called by the reaper thread: say why (the core worded it), then end this
        connection (SPEC §6)."""
        self.end(reply)

    def end(self, reply: Failure) -> None:
        """Close this connection from another thread: its last frame says why; the handler's
        read is woken, and ``finish`` gives that frame a few seconds to leave."""
        self.ending = True
        data = encode_object(reply.to_wire())
        self.server.trace.frame("->", self.session, data, f"FAILURE {reply.code}")
        self.sendq.put_last(data)
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RD)    # wakes the handler's blocked read

    def finish(self) -> None:
        self.server.commits.flush(self.server.limits.linger)   # the replies it is owed first
        self.server.forget(self)
        self.server.disconnect(self.session)
        self.sendq.close(self.server.limits.linger)     # the last frames leave, or time out
        self.server.trace.line(f"[tracker] -- {self.session.name} closed")
        with contextlib.suppress(OSError):      # the peer is gone; nothing to flush to
            super().finish()


@dataclass(frozen=True)
class ConnectionLimits:
    """The connection layer's limits (SPEC §6), each a flag of ``tracker.py``."""

    max_sessions: int = limits.SESSION_MAX          # connections at once, from everyone
    per_address: int = limits.CONNECTIONS_PER_ADDRESS
    connect_burst: int = limits.CONNECT_BURST       # new connections of one address at once ...
    connect_rate: float = limits.CONNECT_RATE       # ... and then per second
    sendq_max: int = limits.SENDQ_MAX               # bytes waiting for one connection
    send_buffer: int = limits.SEND_BUFFER           # SO_SNDBUF of each connection
    linger: float = limits.SEND_LINGER              # seconds the last frames of a closing one get
    backlog: int = limits.LISTEN_BACKLOG


@dataclass(frozen=True)
class Decided:
    """What the core decided in one call (or two, around a password hash): the replies and
    pushes to send, the store's change count they follow (committed first), and the sessions
    that have more kept messages to come."""

    out: list[Outgoing]
    needed: int
    paging: list[Session]

    def then(self, later: Decided) -> Decided:
        return Decided(self.out + later.out, later.needed, self.paging + later.paging)


@dataclass
class _Address:
    held: int                       # connections open now
    bucket: TokenBucket             # new connections allowed


class Admission:
    """Whether a new connection may be served: the tracker's cap on connections, and each
    address's share of it (SPEC §6).  Decided when the connection is accepted, before any thread
    is started for it; ``release`` when it ends.  Thread-safe; the clock is injected for tests.

    An address is forgotten once it holds no connection and its bucket is full again, so the
    table holds only addresses that were active in the last ``connect_burst / connect_rate``
    seconds.
    """

    def __init__(self, connection_limits: ConnectionLimits,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits, self.clock = connection_limits, clock
        self._addresses: dict[str, _Address] = {}
        self._held = 0
        self._lock = threading.Lock()

    def admit(self, host: str) -> Failure | None:
        """Count a connection from ``host`` in (None), or the FAILURE that refuses it."""
        allowed = self.limits
        with self._lock:
            if self._held >= allowed.max_sessions:
                return Failure(code="SERVER_FULL", message=f"the tracker serves "
                               f"{allowed.max_sessions} connections at most; try again later")
            address = self._addresses.get(host)
            if address is None:
                address = self._addresses[host] = _Address(0, TokenBucket(
                    self.clock(), allowed.connect_burst, allowed.connect_rate))
            if address.held >= allowed.per_address:
                held = f"{address.held} connection{'' if address.held == 1 else 's'}"
                return Failure(code="TOO_MANY_CONNECTIONS", message=f"{host} holds {held}, the "
                               "most one address may; close one first")
            if not address.bucket.take(self.clock()):
                return Failure(code="CONNECTING_TOO_FAST", message=f"{host} opened more than "
                               f"{allowed.connect_burst} connections, then more than "
                               f"{allowed.connect_rate:g} a second; wait a moment")
            address.held += 1
            self._held += 1
            return None

    def release(self, host: str) -> None:
        with self._lock:
            address = self._addresses.get(host)
            if address is not None and address.held > 0:
                address.held -= 1
                self._held -= 1

    def held(self, host: str | None = None) -> int:
        """Connections held now, by ``host`` or by everyone."""
        with self._lock:
            if host is None:
                return self._held
            address = self._addresses.get(host)
            return address.held if address else 0

    def prune(self) -> None:
        """Forget addresses that hold nothing and may open a full burst again."""
        with self._lock:
            for host, address in list(self._addresses.items()):
                bucket = address.bucket
                refilled = bucket.tokens + (self.clock() - bucket.stamp) * bucket.rate
                if address.held == 0 and refilled >= bucket.burst:
                    del self._addresses[host]

    def __len__(self) -> int:
        with self._lock:
            return len(self._addresses)


class GroupCommit:
    """Sends what the core decided once the changes before it are committed; changes that wait at
    the same moment share one ``COMMIT`` (SPEC §2.2: a ``SUCCESS`` only after its change is
    durable).  Thread-safe.

    How an outbox (``Decided``: the replies and pushes of one request) leaves::

        deliver(decided) ─ no COMMIT runs and the first `decided.needed` changes are
          │                committed already ─> sent now
          │ else: it joins the waiting outboxes (in order), then
          ├─ a COMMIT is running: return at once; whoever runs it sends this outbox too
          └─ none is: this thread commits: it takes every waiting outbox, runs one COMMIT
             (which covers all their changes: each was made before its outbox joined) and
             sends them; if more joined meanwhile, it wakes the committer thread, which goes
             on the same way until none waits

    So no thread waits for another's ``COMMIT``: it goes back to reading its connection, and its
    reply leaves from the thread that ran the ``COMMIT`` covering it.  With one session each
    change is committed by its own thread, without a hand-off; under load the committer thread
    takes over, so that no connection's thread is kept committing for the others.  The
    ``COMMIT`` runs outside the core's lock: requests go on meanwhile, and their changes join
    the next one.
    """

    def __init__(self, store: Store, send: Callable[[Decided], None],
                 failed: Callable[[sqlite3.Error], None]) -> None:
        self.store, self._send, self._failed = store, send, failed
        self._lock = threading.Lock()       # for the two below; never held during a COMMIT
        self._waiting: list[Decided] = []
        self._committing = False            # a thread commits, and looks at _waiting after
        self._more = threading.Event()      # hands the committing to the committer thread
        self._sent = threading.Condition(self._lock)    # flush waits on it
        self._joined = self._done = 0       # outboxes that joined _waiting, and were sent
        threading.Thread(target=self._committer, name="committer", daemon=True).start()

    def deliver(self, decided: Decided) -> None:
        """Send ``decided`` once the first ``decided.needed`` changes are durable (now, or by
        the thread whose ``COMMIT`` covers them)."""
        with self._lock:
            # While a COMMIT runs, everything joins the waiting outboxes, even what needs no
            # COMMIT: a reply must not overtake one to the same session still waiting.
            if not self._committing and self.store.committed >= decided.needed:
                ready = True
            else:
                ready = False
                self._waiting.append(decided)
                self._joined += 1
                if self._committing:
                    return
                self._committing = True
        if ready:
            self._send(decided)
            return
        self._commit_waiting()
        with self._lock:
            if not self._waiting:
                self._committing = False
                return
        self._more.set()                    # _committing stays set: the committer has it now

    def _commit_waiting(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        self.store.commit()
        for decided in batch:
            self._send(decided)
        with self._lock:
            self._done += len(batch)
            self._sent.notify_all()

    def flush(self, timeout: float) -> None:
        """Return once every outbox that waits now has been sent (or after ``timeout``
        seconds): a connection about to close must first get the replies it is owed."""
        with self._lock:
            joined = self._joined
            self._sent.wait_for(lambda: self._done >= joined, timeout)

    def _committer(self) -> None:
        while True:
            self._more.wait()
            self._more.clear()
            try:
                while True:
                    self._commit_waiting()
                    with self._lock:
                        if not self._waiting:
                            self._committing = False
                            break
            except sqlite3.Error as error:
                self._failed(error)


class TrackerServer(socketserver.ThreadingTCPServer):
    """The listening socket: admits connections (``Admission``), runs one ``SessionHandler``
    thread per connection, one ``Sender`` thread for what they could not send at once, one
    committer thread (``GroupCommit``) and one reaper thread for the timeouts."""

    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = limits.LISTEN_BACKLOG
    # At most this many password hashes run at once: each takes 16 MiB, and more of them than
    # there are cores only costs memory (and invites a memory flood).
    hash_slots = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))

    def __init__(self, address: tuple[str, int], core: TrackerCore, trace: Trace,
                 connection_limits: ConnectionLimits | None = None) -> None:
        self.core, self.trace = core, trace
        self.core_lock = threading.Lock()       # every call into the core holds it
        self.connections: dict[Session, SessionHandler] = {}    # where a session's frames go
        self.limits = connection_limits or ConnectionLimits()
        self.request_queue_size = self.limits.backlog
        self.admission = Admission(self.limits)
        self.sender = Sender()
        self.handlers: set[SessionHandler] = set()
        self._handlers_lock = threading.Lock()
        self._stopping = threading.Event()
        self.pages: queue.SimpleQueue[Session | None] = queue.SimpleQueue()   # for the pager
        self.commits = GroupCommit(core.store, self.send_out, self.database_failed)
        super().__init__(address, SessionHandler)
        threading.Thread(target=self._reap, name="reaper", daemon=True).start()
        threading.Thread(target=self._page, name="pager", daemon=True).start()

    # ---- admission: on the accepting thread, before a handler thread exists ------------------
    def verify_request(self, request: socket.socket | tuple[bytes, socket.socket],
                       client_address: tuple[str, int]) -> bool:  # type: ignore[override]
        host, port = client_address[:2]
        refusal = self.admission.admit(host)
        if refusal is None:
            return True
        self.trace.repeated(f"{refusal.code} {host}",
                            f"[tracker] -- {host}:{port} refused: {refusal.code}")
        if isinstance(request, socket.socket):
            with contextlib.suppress(OSError):      # a few bytes into an empty buffer: no wait
                request.send(encode_object(refusal.to_wire()), socket.MSG_DONTWAIT)
        return False

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket],
                        client_address: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            super().process_request(request, client_address)
        except BaseException:               # no thread started: the connection never ran
            self.admission.release(client_address[0])
            raise

    def process_request_thread(self, request: socket.socket | tuple[bytes, socket.socket],
                               client_address: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.admission.release(client_address[0])

    # ---- the connections, for the reaper -----------------------------------------------------
    def add(self, handler: SessionHandler) -> None:
        with self._handlers_lock:
            self.handlers.add(handler)
            self.connections[handler.session] = handler

    def forget(self, handler: SessionHandler) -> None:
        with self._handlers_lock:
            self.handlers.discard(handler)
            self.connections.pop(handler.session, None)

    # ---- the core: one lock, the hash outside it, group commit, then delivery ----------------
    def run(self, session: Session, request: Request) -> None:
        """Let the core answer one request, then send what it decided."""
        with self.core_lock:
            work = self.core.execute(session, request, time.monotonic())
            decided = self.decided()
        if work is not None:            # register/login: the hash, outside the lock
            with self.hash_slots:
                result = work.run()
            with self.core_lock:
                self.core.resume(session, work, result, time.monotonic())
                decided = decided.then(self.decided())
        self.commits.deliver(decided)

    def disconnect(self, session: Session) -> None:
        with self.core_lock:
            self.core.disconnect(session, time.monotonic())
            decided = self.decided()
        self.commits.deliver(decided)

    def decided(self) -> Decided:
        """What the core decided since last asked (the core lock is held)."""
        return Decided(self.core.take_outbox(), self.core.store.changes,
                       self.core.take_paging())

    def _page(self) -> None:
        """The pager thread: a session whose last page of kept messages has left gets the
        next one (PROTOCOL.md §1.5)."""
        while (session := self.pages.get()) is not None:
            try:
                with self.core_lock:
                    self.core.next_page(session, time.monotonic())
                    decided = self.decided()
                self.commits.deliver(decided)
            except sqlite3.Error as error:
                self.database_failed(error)
            except Exception as error:          # a bug costs this page, not the pager
                self.trace.line(f"[tracker] !! a page of kept messages failed: {error!r}",
                                always=True)

    def send_out(self, decided: Decided) -> None:
        """Queue each reply and push for its session's connection (never waiting for it to
        read), once the changes it follows are durable (``GroupCommit``); sessions with more
        kept messages get the next page once these have left."""
        for session, message in decided.out:
            handler = self.handler(session)
            if handler is not None:                 # else that connection has closed meanwhile
                handler.send(message)
        for session in decided.paging:
            handler = self.handler(session)
            if handler is not None:
                handler.sendq.when_empty(lambda s=session: self.pages.put(s))

    def handler(self, session: Session) -> SessionHandler | None:
        with self._handlers_lock:
            return self.connections.get(session)

    def database_failed(self, error: sqlite3.Error) -> None:
        """The database refused a change or a commit: what the core holds in memory no longer
        matches the disk, and nothing unconfirmed may be confirmed now.  Stop at once; a
        restart reads the database again, and every confirmed change is in it."""
        self.trace.line(f"[tracker] !! the database failed: {error}; stopping", always=True)
        self.trace.flush()
        os._exit(1)

    def _reap(self) -> None:
        """Close connections that never logged in, and sessions that fell silent; say the
        counts of summarised floods; forget addresses that went quiet."""
        period = min(self.core.register_timeout, self.core.idle_timeout) / 4
        while not self._stopping.wait(min(max(period, 0.05), 1.0)):
            try:
                self._reap_once()
            except sqlite3.Error as error:
                self.database_failed(error)
            self.trace.tick()
            self.admission.prune()

    def _reap_once(self) -> None:
        """Time passes for the core: stale tweets end, waiting exits hear BUSY, connections
        that never logged in and sessions that fell silent are closed."""
        with self._handlers_lock:
            handlers = [h for h in self.handlers   # one being answered is not idle, however
                        if not h.busy and not h.ending and not h.session.closing]   # long
        with self.core_lock:
            now = time.monotonic()
            self.core.tick(now)
            expired = [(handler, reply) for handler in handlers
                       if (reply := self.core.expire(handler.session, now)) is not None]
            decided = self.decided()
        self.commits.deliver(decided)
        for handler, reply in expired:
            self.trace.repeated(f"{reply.code} {handler.host}",
                                f"[tracker] -- {handler.session.name} {reply.code}")
            handler.close_now(reply)

    def server_close(self) -> None:
        self._stopping.set()
        self.pages.put(None)
        super().server_close()
        self.sender.stop()

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket],
                     client_address: object) -> None:
        # One connection's failure is reported in a line and closes only that connection.
        error = sys.exc_info()[1]
        if isinstance(error, sqlite3.Error):
            self.database_failed(error)
        self.trace.line(f"[tracker] !! connection {client_address} failed: {error!r}",
                        always=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tracker.py", description="The Tweeter tracker.",
        epilog="example: python3 tracker.py 13000   (port 0 picks a free port)")
    parser.add_argument("port", nargs="?", type=cli.port(0), default=limits.DEFAULT_TRACKER_PORT)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument("-q", "--quiet", action="store_true", help="no trace lines")
    parser.add_argument("--db", default="tracker.db",
                        help="SQLite database (default tracker.db; :memory: for a throw-away one)")
    parser.add_argument("--tweet-timeout", type=cli.seconds, default=limits.TWEET_TIMEOUT,
                        help="seconds before a tweet without end-tweet is ended")
    parser.add_argument("--trace-file", metavar="PATH",
                        help="append a JSON record of every frame in and out (SPEC §7)")
    parser.add_argument("--password", metavar="SECRET",
                        help="admit only sessions that give this server password first")
    parser.add_argument("--register-timeout", type=cli.seconds, default=limits.REGISTER_TIMEOUT,
                        help="seconds a connection may stay without registering or logging in")
    parser.add_argument("--idle-timeout", type=cli.seconds, default=limits.IDLE_TIMEOUT,
                        help="seconds a logged-in session may be silent before it goes offline")
    parser.add_argument("--max-sessions", type=cli.count, default=limits.SESSION_MAX,
                        help="connections served at once, from everyone; more get SERVER_FULL")
    parser.add_argument("--max-per-address", type=cli.count,
                        default=limits.CONNECTIONS_PER_ADDRESS, metavar="N",
                        help="connections one address may hold at once; more get "
                             "TOO_MANY_CONNECTIONS")
    parser.add_argument("--connect-burst", type=cli.count, default=limits.CONNECT_BURST,
                        metavar="N", help="connections one address may open at once ...")
    parser.add_argument("--connect-rate", type=cli.rate, default=limits.CONNECT_RATE,
                        metavar="R", help="... and then per second; more get CONNECTING_TOO_FAST")
    parser.add_argument("--sendq-max", type=cli.count, default=limits.SENDQ_MAX,
                        metavar="BYTES", help="bytes that may wait for a connection that does "
                                              "not read; past that it gets SENDQ_EXCEEDED and "
                                              "is closed")
    parser.add_argument("--flood-burst", type=cli.count, default=limits.FLOOD_BURST,
                        help="commands a session may send at once before THROTTLED")
    parser.add_argument("--flood-rate", type=cli.rate, default=limits.FLOOD_RATE,
                        help="commands a second a session may send after its burst")
    parser.add_argument("--backlog", type=cli.count, default=limits.LISTEN_BACKLOG,
                        help="listen backlog")
    parser.add_argument("--login-backoff", type=cli.seconds, default=limits.LOGIN_BACKOFF,
                        metavar="S", help="seconds a login of a handle from an address waits "
                                          "after a failed one; doubled at each further failure "
                                          "...")
    parser.add_argument("--login-backoff-max", type=cli.seconds,
                        default=limits.LOGIN_BACKOFF_MAX, metavar="S", help="... up to this")
    parser.add_argument("--failed-logins-per-address", type=cli.count,
                        default=limits.FAILED_LOGINS_PER_ADDRESS, metavar="N",
                        help="failed logins one address may make at once, then N an hour; "
                             "more get THROTTLED")
    parser.add_argument("--registrations-per-address", type=cli.count,
                        default=limits.REGISTRATIONS_PER_ADDRESS, metavar="N",
                        help="registrations one address may make at once, then N an hour; "
                             "more get THROTTLED")
    parser.add_argument("--kept-per-recipient", type=cli.count,
                        default=limits.KEPT_PER_RECIPIENT, metavar="N",
                        help="direct messages kept for one user until read, whoever the "
                             "senders; more get MAILBOX_FULL")
    parser.add_argument("--kept-per-sender", type=cli.count, default=limits.KEPT_PER_SENDER,
                        metavar="N", help="direct messages of one user kept until read; more "
                                          "get TOO_MANY_UNREAD")
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
        trace_file = None
        if args.trace_file:
            try:
                stream = stack.enter_context(open_trace_file(args.trace_file))
            except TraceFileError as error:
                return error.report("tracker.py")
            trace_file = TraceFile(stream, "tracker")   # records never wait for the disk
        trace = Trace(args.quiet, TraceWriter(trace_file, "tracker"))
        try:
            store = SqliteStore(args.db, exclusive=True)
            core = TrackerCore(wall_clock=time.time, store=store,       # reads the graph
                               tweet_timeout=args.tweet_timeout,
                               log=lambda text: trace.line(f"[tracker] {text}", always=True),
                               throttle=LoginThrottle(
                                   backoff=args.login_backoff,
                                   backoff_max=args.login_backoff_max,
                                   per_address=args.failed_logins_per_address),
                               register_limit=args.registrations_per_address,
                               kept_per_recipient=args.kept_per_recipient,
                               kept_per_sender=args.kept_per_sender,
                               server_password=args.password,
                               register_timeout=args.register_timeout,
                               idle_timeout=args.idle_timeout, flood_burst=args.flood_burst,
                               flood_rate=args.flood_rate)
        except sqlite3.Error as error:
            return fail_to_start(f"cannot open the database {args.db}: {error}")
        connection_limits = ConnectionLimits(
            max_sessions=args.max_sessions, per_address=args.max_per_address,
            connect_burst=args.connect_burst, connect_rate=args.connect_rate,
            sendq_max=args.sendq_max, backlog=args.backlog)
        try:
            server = stack.enter_context(TrackerServer((args.host, args.port), core, trace,
                                                       connection_limits))
        except OSError as error:
            return fail_to_start(f"cannot listen on {args.host}:{args.port}: {error.strerror}")
        host, port = server.server_address[:2]
        trace.line(f"[tracker] listening on {host}:{port}", always=True)
        # SIGTERM stops the tracker as Ctrl-C does, so that queued trace lines get out.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            trace.line("[tracker] stopped", always=True)
        finally:
            trace.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
