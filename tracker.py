"""The Tweeter tracker: an always-on TCP server that keeps handles, follower lists and tweets.

How data flows::

    user.py ──TCP──> TrackerServer.verify_request   Admission: the cap on connections, and each
                        │                           address's share (held, opened a second);
                        │                           refused: one FAILURE line, no thread started
                     SessionHandler (one thread per connection, socketserver)
                        │ readline(FRAME_MAX + 1)    bounded: a longer frame is TOO_LARGE
                        │ protocol.wire.decode_request
                        │ protocol.tracker_core.TrackerCore.execute  ← all command semantics
                        │ protocol.wire.encode_reply
                     its SendQueue  ← pushes for this user, put by other users' threads
                        │ what the socket takes now leaves at once; the rest waits (bounded:
                        │ past SENDQ_MAX the user is closed with SENDQ_EXCEEDED) for the one
                        │ Sender thread, which sends whenever the socket is writable
    user.py <──TCP──────┘ (and a trace line per frame in and out, unless -q: through bounded
                          queues, so neither the console nor the trace file can stop service)

No thread ever waits for a user to read (``adapters/output.py``).  A reaper thread closes
connections that never log in and sessions that fall silent.

The tracker never touches the UDP ring: it hands an author its online followers, and the author
runs the ring itself (see ``user.py``).  Everything the tracker decides is in
``protocol/tracker_core.py``; this file only moves bytes and prints traces.

Durable state lives in SQLite (``SqliteStore``, ``--db``, WAL mode): a change is committed before
its ``SUCCESS`` is sent, so a tracker killed with SIGKILL keeps everything it confirmed.  Who is
online is memory only.

Run: ``python3 tracker.py [port] [--host ADDR] [--db PATH] [-q]`` (port 0 picks a free port; the
chosen one is printed; ``-h`` lists the limits, each a flag).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import math
import signal
import socket
import socketserver
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from adapters.output import OutputQueue, Sender, SendQueue, Summariser, TraceFile
from protocol import limits
from protocol.accounts import LoginThrottle
from protocol.flood import TokenBucket
from protocol.text import escape_for_terminal
from protocol.trace import TraceWriter, shown_frame
from protocol.tracker_core import Message, Session, TrackerCore, Tweet
from protocol.validate import handle_key, hashtags
from protocol.wire import (
    ProtocolError,
    Push,
    Reply,
    decode_request,
    encode_push,
    encode_reply,
    failure,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    key             TEXT PRIMARY KEY,           -- the handle, lower-cased: its identity
    handle          TEXT NOT NULL,              -- as first registered
    password_hash   TEXT NOT NULL,              -- scrypt$n$r$p$salt$hash, never the password
    created         REAL NOT NULL,
    last_seen_tweet INTEGER NOT NULL DEFAULT 0  -- newest tweet id when the last session ended
);
CREATE TABLE IF NOT EXISTS follows (
    followee TEXT NOT NULL REFERENCES accounts(key) ON DELETE CASCADE,
    follower TEXT NOT NULL REFERENCES accounts(key) ON DELETE CASCADE,
    PRIMARY KEY (followee, follower)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS follows_by_follower ON follows (follower, followee);
CREATE TABLE IF NOT EXISTS tweets (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so "new since" stays true
    author     TEXT NOT NULL REFERENCES accounts(key) ON DELETE CASCADE,
    text       TEXT NOT NULL,
    created    REAL NOT NULL,
    retweet_of INTEGER REFERENCES tweets(id) ON DELETE SET NULL
);
CREATE INDEX IF NOT EXISTS tweets_by_author ON tweets (author, id);
CREATE TABLE IF NOT EXISTS hashtags (
    tag      TEXT NOT NULL,                     -- lower-case, without the '#'
    tweet_id INTEGER NOT NULL REFERENCES tweets(id) ON DELETE CASCADE,
    PRIMARY KEY (tag, tweet_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hashtags_by_tweet ON hashtags (tweet_id);
CREATE TABLE IF NOT EXISTS blocks (
    blocker TEXT NOT NULL REFERENCES accounts(key) ON DELETE CASCADE,
    blocked TEXT NOT NULL REFERENCES accounts(key) ON DELETE CASCADE,
    PRIMARY KEY (blocker, blocked)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    sender    TEXT NOT NULL REFERENCES accounts(key) ON DELETE CASCADE,
    recipient TEXT NOT NULL REFERENCES accounts(key) ON DELETE CASCADE,
    text      TEXT NOT NULL,
    created   REAL NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0     -- 0: waiting for the recipient's next login
);
CREATE INDEX IF NOT EXISTS messages_waiting ON messages (recipient, delivered, id);
"""

TWEET_COLUMNS = "t.id, a.handle, t.text, t.created, t.retweet_of"


class SqliteStore:
    """The tracker's durable state in one SQLite database (a ``Store``, see tracker_core).

    Every method that changes something runs in one transaction that is committed before it
    returns.  The core calls it with its lock held, so one connection serves all threads.
    """

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")   # durable against a killed process
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.executescript(SCHEMA)

    @contextlib.contextmanager
    def _change(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _one(self, sql: str, *args: object) -> tuple | None:
        return self.db.execute(sql, args).fetchone()

    def _column(self, sql: str, *args: object) -> list:
        return [row[0] for row in self.db.execute(sql, args)]

    def _tweets(self, sql: str, *args: object) -> list[Tweet]:
        return [Tweet(*row) for row in self.db.execute(sql, args)]

    def find(self, handle: str) -> str | None:
        row = self._one("SELECT handle FROM accounts WHERE key = ?", handle_key(handle))
        return row[0] if row else None

    def create(self, handle: str, password_hash: str, when: float) -> bool:
        try:
            with self._change() as db:
                db.execute("INSERT INTO accounts (key, handle, password_hash, created) "
                           "VALUES (?, ?, ?, ?)", (handle_key(handle), handle, password_hash, when))
        except sqlite3.IntegrityError:
            return False
        return True

    def password_hash(self, handle: str) -> str | None:
        row = self._one("SELECT password_hash FROM accounts WHERE key = ?", handle_key(handle))
        return row[0] if row else None

    def delete(self, handle: str) -> None:
        with self._change() as db:      # follows, tweets and hashtags go by ON DELETE CASCADE
            db.execute("DELETE FROM accounts WHERE key = ?", (handle_key(handle),))

    def handles(self) -> list[str]:
        return self._column("SELECT handle FROM accounts ORDER BY key")

    def follow(self, follower: str, followee: str) -> bool:
        with self._change() as db:
            cursor = db.execute("INSERT OR IGNORE INTO follows (followee, follower) VALUES (?, ?)",
                                (handle_key(followee), handle_key(follower)))
        return cursor.rowcount == 1

    def unfollow(self, follower: str, followee: str) -> bool:
        with self._change() as db:
            cursor = db.execute("DELETE FROM follows WHERE followee = ? AND follower = ?",
                                (handle_key(followee), handle_key(follower)))
        return cursor.rowcount == 1

    def followers(self, handle: str) -> list[str]:
        return self._column("SELECT a.handle FROM follows f JOIN accounts a ON a.key = f.follower"
                            " WHERE f.followee = ? ORDER BY a.key", handle_key(handle))

    def following(self, handle: str) -> list[str]:
        return self._column("SELECT a.handle FROM follows f JOIN accounts a ON a.key = f.followee"
                            " WHERE f.follower = ? ORDER BY a.key", handle_key(handle))

    def add_tweet(self, author: str, text: str, when: float,
                  retweet_of: int | None = None) -> int:
        with self._change() as db:
            cursor = db.execute("INSERT INTO tweets (author, text, created, retweet_of) "
                                "VALUES (?, ?, ?, ?)", (handle_key(author), text, when, retweet_of))
            tweet_id = int(cursor.lastrowid or 0)
            db.executemany("INSERT INTO hashtags (tag, tweet_id) VALUES (?, ?)",
                           [(tag, tweet_id) for tag in hashtags(text)])
        return tweet_id

    def tweet(self, tweet_id: int) -> Tweet | None:
        found = self._tweets(f"SELECT {TWEET_COLUMNS} FROM tweets t JOIN accounts a "
                             "ON a.key = t.author WHERE t.id = ?", tweet_id)
        return found[0] if found else None

    _FEED_AUTHORS = "(SELECT followee FROM follows WHERE follower = ? UNION SELECT ?)"

    def feed(self, handle: str, count: int) -> list[Tweet]:
        key = handle_key(handle)
        return self._tweets(f"SELECT {TWEET_COLUMNS} FROM tweets t JOIN accounts a "
                            f"ON a.key = t.author WHERE t.author IN {self._FEED_AUTHORS} "
                            "ORDER BY t.id DESC LIMIT ?", key, key, count)

    def feed_count_after(self, handle: str, tweet_id: int) -> int:
        key = handle_key(handle)
        row = self._one(f"SELECT count(*) FROM tweets WHERE author IN {self._FEED_AUTHORS} "
                        "AND id > ?", key, key, tweet_id)
        return int(row[0]) if row else 0

    def last_seen(self, handle: str) -> int:
        row = self._one("SELECT last_seen_tweet FROM accounts WHERE key = ?", handle_key(handle))
        return int(row[0]) if row else 0

    def set_last_seen(self, handle: str, tweet_id: int) -> None:
        with self._change() as db:
            db.execute("UPDATE accounts SET last_seen_tweet = ? WHERE key = ?",
                       (tweet_id, handle_key(handle)))

    def latest_tweet_id(self) -> int:
        row = self._one("SELECT seq FROM sqlite_sequence WHERE name = 'tweets'")
        return int(row[0]) if row else 0

    def search(self, tag: str, count: int) -> list[Tweet]:
        return self._tweets(f"SELECT {TWEET_COLUMNS} FROM hashtags h JOIN tweets t "
                            "ON t.id = h.tweet_id JOIN accounts a ON a.key = t.author "
                            "WHERE h.tag = ? ORDER BY t.id DESC LIMIT ?", tag.lower(), count)

    def trending(self, count: int) -> list[tuple[str, int]]:
        return [(tag, uses) for tag, uses in self.db.execute(
            "SELECT tag, count(*) AS uses FROM hashtags GROUP BY tag "
            "ORDER BY uses DESC, tag LIMIT ?", (count,))]


    def block(self, blocker: str, blocked: str) -> bool:
        with self._change() as db:
            cursor = db.execute("INSERT OR IGNORE INTO blocks (blocker, blocked) VALUES (?, ?)",
                                (handle_key(blocker), handle_key(blocked)))
            db.execute("DELETE FROM follows WHERE followee = ? AND follower = ?",
                       (handle_key(blocker), handle_key(blocked)))
        return cursor.rowcount == 1

    def unblock(self, blocker: str, blocked: str) -> bool:
        with self._change() as db:
            cursor = db.execute("DELETE FROM blocks WHERE blocker = ? AND blocked = ?",
                                (handle_key(blocker), handle_key(blocked)))
        return cursor.rowcount == 1

    def is_blocked(self, blocker: str, blocked: str) -> bool:
        return self._one("SELECT 1 FROM blocks WHERE blocker = ? AND blocked = ?",
                         handle_key(blocker), handle_key(blocked)) is not None

    def add_message(self, sender: str, recipient: str, text: str, when: float,
                    delivered: bool) -> int:
        with self._change() as db:
            cursor = db.execute("INSERT INTO messages (sender, recipient, text, created, delivered)"
                                " VALUES (?, ?, ?, ?, ?)", (handle_key(sender),
                                                           handle_key(recipient), text, when,
                                                           int(delivered)))
        return int(cursor.lastrowid or 0)

    def set_delivered(self, message_id: int, sender: str, delivered: bool) -> bool:
        with self._change() as db:
            cursor = db.execute("UPDATE messages SET delivered = ? WHERE id = ? AND sender = ?",
                                (int(delivered), message_id, handle_key(sender)))
        return cursor.rowcount == 1

    def take_undelivered(self, recipient: str) -> list[Message]:
        with self._change() as db:
            rows = db.execute(
                "SELECT m.id, s.handle, r.handle, m.text, m.created FROM messages m "
                "JOIN accounts s ON s.key = m.sender JOIN accounts r ON r.key = m.recipient "
                "WHERE m.recipient = ? AND m.delivered = 0 ORDER BY m.id",
                (handle_key(recipient),)).fetchall()
            db.executemany("UPDATE messages SET delivered = 1 WHERE id = ?",
                           [(row[0],) for row in rows])
        return [Message(*row) for row in rows]


class Trace:
    """The trace: a labelled console line per frame (unless quiet) and, with ``--trace-file``,
    a JSON record per frame.  Safe from many threads; nothing here waits for the console or the
    disk (both sit behind bounded queues, ``adapters.output``)."""

    def __init__(self, quiet: bool, records: TraceWriter | None = None) -> None:
        self.quiet = quiet
        self.records = records or TraceWriter(None, "tracker")
        # A console that stops reading must not stop the tracker: lines wait in a bounded
        # queue for one writer thread, and are dropped (and counted) when it is full.
        self.output = OutputQueue(self._write, name="trace")
        self._summaries = Summariser()
        self._summaries_lock = threading.Lock()

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
        a second, then a count (``Summariser``).  Shown even with -q, as timeouts are."""
        with self._summaries_lock:
            lines = self._summaries.line(kind, text, time.monotonic())
        for line in lines:
            self.output.put(line)

    def tick(self) -> None:
        """Say the counts of floods that are over (called now and then by the reaper)."""
        with self._summaries_lock:
            lines = self._summaries.pending(time.monotonic())
        for line in lines:
            self.output.put(line)

    def frame(self, arrow: str, session: Session, data: bytes, kind: str) -> None:
        if self.quiet and self.records.stream is None:
            return                              # nobody reads it: no work on the hot path
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
        self.session = Session(f"{host}:{port}", deliver=self.send_push)
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
        self.send_push(self.server.core.welcome())
        while not (self.session.closing or self.ending):
            frame = self.rfile.readline(limits.FRAME_MAX + 1)
            if not frame or self.ending:
                return                                  # closed by the user, or by us
            if len(frame) > limits.FRAME_MAX:
                self.server.trace.frame("<-", self.session, frame[:80] + b"...", "TOO_LARGE")
                self.send(failure("TOO_LARGE", f"a frame has at most {limits.FRAME_MAX} bytes"))
                return                                  # the rest of the line is not read
            if not frame.strip():
                continue
            self.busy = True
            try:
                reply = self.answer(frame)
            except Exception as error:      # a bug costs this request, not the connection
                reply = self.internal_error(frame, error)
            self.send(reply)
            while self.session.after_reply:     # e.g. messages kept for a login: after its reply
                self.send_push(self.session.after_reply.pop(0))
            self.server.deliver_pushes()
            self.busy = False

    def answer(self, frame: bytes) -> Reply:
        trace = self.server.trace
        try:
            request = decode_request(frame)
        except ProtocolError as error:
            trace.frame("<-", self.session, frame, error.code)
            return Reply(error.request_id, "FAILURE", error.message, error.code)
        trace.frame("<-", self.session, frame, request.cmd)
        had_handle = self.session.handle is not None
        reply = self.server.core.execute(self.session, request)
        if not had_handle and self.session.handle:     # this connection's lifeline has a name now
            trace.records.record("send", self.session.name, self.session.handle, "alias")
        return Reply(request.id, reply.status, reply.message, reply.code, reply.data)

    def internal_error(self, frame: bytes, error: Exception) -> Reply:
        """The answer to a request the tracker failed on: a line for the operator, a FAILURE
        for the user, and the connection goes on."""
        self.server.trace.line(f"[tracker] !! {self.session.name}: a request failed: {error!r}",
                               always=True)
        try:
            request_id: int | None = decode_request(frame).id
        except ProtocolError:
            request_id = None
        return Reply(request_id, "FAILURE", "the tracker failed on this request; "
                                            "please report it", "INTERNAL_ERROR")

    def send(self, reply: Reply) -> None:
        kind = reply.status if reply.ok else f"{reply.status} {reply.code}"
        self.write(encode_reply(reply), kind)

    def send_push(self, push: Push) -> None:
        self.write(encode_push(push), f"push:{push.kind}")

    def write(self, data: bytes, kind: str) -> None:
        """Queue a frame for this user (sent at once if the socket takes it); never waits."""
        self.server.trace.frame("->", self.session, data, kind)
        self.sendq.put(data)        # refused when closing or over the limit (sendq_exceeded)

    def sendq_exceeded(self, waiting: int) -> None:
        """Called once, by the thread whose frame did not fit: this user does not read."""
        limit = self.server.limits.sendq_max
        self.server.trace.repeated(
            f"SENDQ_EXCEEDED {self.host}",
            f"[tracker] -- {self.session.name} SENDQ_EXCEEDED: {waiting} bytes were waiting "
            f"(at most {limit}); closed")
        self.end(failure("SENDQ_EXCEEDED", f"more than {limit} bytes were waiting for this "
                                           "connection to read them: it is closed"))

    def close_now(self, reason: str) -> None:
        """Called by the reaper thread: say why, then end this connection (SPEC §6)."""
        message = {"REGISTER_TIMEOUT": "register or log in within "
                                       f"{self.server.core.register_timeout:g}s",
                   "IDLE_TIMEOUT": "nothing received for "
                                   f"{self.server.core.idle_timeout:g}s: you are offline"}[reason]
        self.server.core.time_out(self.session, reason)
        self.end(failure(reason, message))

    def end(self, reply: Reply) -> None:
        """Close this connection from another thread: its last frame says why; the handler's
        read is woken, and ``finish`` gives that frame a few seconds to leave."""
        self.ending = True
        data = encode_reply(reply)
        self.server.trace.frame("->", self.session, data, f"FAILURE {reply.code}")
        self.sendq.put_last(data)
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RD)    # wakes the handler's blocked read

    def finish(self) -> None:
        self.server.forget(self)
        self.server.core.disconnect(self.session)
        self.server.deliver_pushes()
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

    def admit(self, host: str) -> Reply | None:
        """Count a connection from ``host`` in (None), or the FAILURE that refuses it."""
        allowed = self.limits
        with self._lock:
            if self._held >= allowed.max_sessions:
                return failure("SERVER_FULL", f"the tracker serves {allowed.max_sessions} "
                                              "connections at most; try again later")
            address = self._addresses.get(host)
            if address is None:
                address = self._addresses[host] = _Address(0, TokenBucket(
                    allowed.connect_burst, allowed.connect_rate, self.clock))
            if address.held >= allowed.per_address:
                held = f"{address.held} connection{'' if address.held == 1 else 's'}"
                return failure("TOO_MANY_CONNECTIONS", f"{host} holds {held}, the most one "
                                                       "address may; close one first")
            if not address.bucket.take():
                return failure("CONNECTING_TOO_FAST",
                               f"{host} opened more than {allowed.connect_burst} connections, "
                               f"then more than {allowed.connect_rate:g} a second; wait a moment")
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


class TrackerServer(socketserver.ThreadingTCPServer):
    """The listening socket: admits connections (``Admission``), runs one ``SessionHandler``
    thread per connection, one ``Sender`` thread for what they could not send at once, and one
    reaper thread for the timeouts."""

    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = limits.LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], core: TrackerCore, trace: Trace,
                 connection_limits: ConnectionLimits | None = None) -> None:
        self.core, self.trace = core, trace
        self.limits = connection_limits or ConnectionLimits()
        self.request_queue_size = self.limits.backlog
        self.admission = Admission(self.limits)
        self.sender = Sender()
        self.handlers: set[SessionHandler] = set()
        self._handlers_lock = threading.Lock()
        self._stopping = threading.Event()
        super().__init__(address, SessionHandler)
        threading.Thread(target=self._reap, name="reaper", daemon=True).start()

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
                request.send(encode_reply(refusal), socket.MSG_DONTWAIT)
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

    def forget(self, handler: SessionHandler) -> None:
        with self._handlers_lock:
            self.handlers.discard(handler)

    def _reap(self) -> None:
        """Close connections that never logged in, and sessions that fell silent; say the
        counts of summarised floods; forget addresses that went quiet."""
        period = min(self.core.register_timeout, self.core.idle_timeout) / 4
        while not self._stopping.wait(min(max(period, 0.05), 1.0)):
            with self._handlers_lock:
                handlers = list(self.handlers)
            for handler in handlers:
                if handler.busy:                # answering it: not idle, however long it takes
                    continue
                reason = self.core.expired(handler.session)
                if reason and not handler.session.closing and not handler.ending:
                    self.trace.repeated(f"{reason} {handler.host}",
                                        f"[tracker] -- {handler.session.name} {reason}")
                    handler.close_now(reason)
            self.deliver_pushes()
            self.trace.tick()
            self.admission.prune()

    def server_close(self) -> None:
        self._stopping.set()
        super().server_close()
        self.sender.stop()

    def deliver_pushes(self) -> None:
        """Queue the notices the core produced, each for its recipient's connection."""
        for session, push in self.core.take_pushes():
            if session.deliver is None:
                continue
            try:
                session.deliver(push)
            except OSError as error:
                self.trace.line(f"[tracker] !! push to {session.name} dropped: {error!r}",
                                always=True)

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


def positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is not a positive number")
    return number


def positive_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return number


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
    parser.add_argument("--max-sessions", type=positive_int, default=limits.SESSION_MAX,
                        help="connections served at once, from everyone; more get SERVER_FULL")
    parser.add_argument("--max-per-address", type=positive_int,
                        default=limits.CONNECTIONS_PER_ADDRESS, metavar="N",
                        help="connections one address may hold at once; more get "
                             "TOO_MANY_CONNECTIONS")
    parser.add_argument("--connect-burst", type=positive_int, default=limits.CONNECT_BURST,
                        metavar="N", help="connections one address may open at once ...")
    parser.add_argument("--connect-rate", type=positive_float, default=limits.CONNECT_RATE,
                        metavar="R", help="... and then per second; more get CONNECTING_TOO_FAST")
    parser.add_argument("--sendq-max", type=positive_int, default=limits.SENDQ_MAX,
                        metavar="BYTES", help="bytes that may wait for a connection that does "
                                              "not read; past that it gets SENDQ_EXCEEDED and "
                                              "is closed")
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
        trace_file = None
        if args.trace_file:
            try:
                stream = stack.enter_context(open(args.trace_file, "a", encoding="utf-8"))
            except OSError as error:
                return fail_to_start(f"cannot write the trace file {args.trace_file}: "
                                     f"{error.strerror}")
            trace_file = TraceFile(stream, "tracker")   # records never wait for the disk
        trace = Trace(args.quiet, TraceWriter(trace_file, "tracker"))
        try:
            store = SqliteStore(args.db)
        except sqlite3.Error as error:
            return fail_to_start(f"cannot open the database {args.db}: {error}")
        core = TrackerCore(store=store, tweet_timeout=args.tweet_timeout,
                           log=lambda text: trace.line(f"[tracker] {text}", always=True),
                           throttle=LoginThrottle(window=args.login_window),
                           server_password=args.password,
                           register_timeout=args.register_timeout,
                           idle_timeout=args.idle_timeout, flood_burst=args.flood_burst,
                           flood_rate=args.flood_rate)
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
