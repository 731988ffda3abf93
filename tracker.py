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

Durable state lives in SQLite (``SqliteStore``, ``--db``, WAL mode): a change is committed before
its ``SUCCESS`` is sent, so a tracker killed with SIGKILL keeps everything it confirmed.  Who is
online is memory only.

Run: ``python3 tracker.py [port] [--host ADDR] [--db PATH] [-q]`` (port 0 picks a free port; the
chosen one is printed).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import re
import socket
import socketserver
import sqlite3
import struct
import sys
import threading
from collections.abc import Iterator

from adapters.output import OutputQueue
from protocol import limits
from protocol.accounts import LoginThrottle
from protocol.text import escape_for_terminal
from protocol.trace import TraceWriter
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
    """One user's connection: read a frame, answer it, until the user goes away."""

    server: TrackerServer

    def setup(self) -> None:
        super().setup()
        host, port = self.client_address[:2]
        self.session = Session(f"{host}:{port}", deliver=self.send_push)
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
            self.send(failure("SERVER_FULL", f"the tracker serves {self.server.max_sessions} "
                                             "sessions at most; try again later"))
            return
        self.send_push(self.server.core.welcome())
        while not self.session.closing:
            frame = self.rfile.readline(limits.FRAME_MAX + 1)
            if not frame:
                return                                  # the user closed the connection
            if len(frame) > limits.FRAME_MAX:
                self.server.trace.frame("<-", self.session, frame[:80] + b"...", "TOO_LARGE")
                self.send(failure("TOO_LARGE", f"a frame has at most {limits.FRAME_MAX} bytes"))
                return                                  # the rest of the line is not read
            if not frame.strip():
                continue
            self.send(self.answer(frame))
            while self.session.after_reply:     # e.g. messages kept for a login: after its reply
                self.send_push(self.session.after_reply.pop(0))
            self.server.deliver_pushes()

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

    def send(self, reply: Reply) -> None:
        kind = reply.status if reply.ok else f"{reply.status} {reply.code}"
        self.write(encode_reply(reply), kind)

    def send_push(self, push: Push) -> None:
        self.write(encode_push(push), f"push:{push.kind}")

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

    def close_now(self, reason: str) -> None:
        """Called by the reaper thread: say why, then end this connection (SPEC §6)."""
        message = {"REGISTER_TIMEOUT": "register or log in within "
                                       f"{self.server.core.register_timeout:g}s",
                   "IDLE_TIMEOUT": "nothing received for "
                                   f"{self.server.core.idle_timeout:g}s: you are offline"}[reason]
        self.server.core.time_out(self.session, reason)
        with contextlib.suppress(OSError):
            self.send(failure(reason, message))
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)   # wakes the handler's blocked read

    def finish(self) -> None:
        self.server.release(self)
        self.server.core.disconnect(self.session)
        self.server.deliver_pushes()
        self.server.trace.line(f"[tracker] -- {self.session.name} closed")
        with contextlib.suppress(OSError):      # the peer is gone; nothing to flush to
            super().finish()


class TrackerServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = limits.LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], core: TrackerCore, trace: Trace,
                 max_sessions: int = limits.SESSION_MAX,
                 backlog: int = limits.LISTEN_BACKLOG) -> None:
        self.core, self.trace, self.max_sessions = core, trace, max_sessions
        self.request_queue_size = backlog
        self.handlers: set[SessionHandler] = set()
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
            return True

    def release(self, handler: SessionHandler) -> None:
        with self._handlers_lock:
            self.handlers.discard(handler)

    def _reap(self) -> None:
        """Close connections that never logged in, and sessions that fell silent."""
        period = min(self.core.register_timeout, self.core.idle_timeout) / 4
        while not self._stopping.wait(min(max(period, 0.05), 1.0)):
            with self._handlers_lock:
                handlers = list(self.handlers)
            for handler in handlers:
                reason = self.core.expired(handler.session)
                if reason and not handler.session.closing:
                    self.trace.line(f"[tracker] -- {handler.session.name} {reason}", always=True)
                    handler.close_now(reason)
            self.deliver_pushes()

    def server_close(self) -> None:
        self._stopping.set()
        super().server_close()

    def deliver_pushes(self) -> None:
        """Send the notices the core queued; a recipient that cannot take one is skipped."""
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
            store = SqliteStore(args.db)
        except sqlite3.Error as error:
            return fail_to_start(f"cannot open the database {args.db}: {error}")
        core = TrackerCore(store=store, tweet_timeout=args.tweet_timeout,
                           log=lambda text: trace.line(f"[tracker] {text}", always=True),
                           throttle=LoginThrottle(window=args.login_window),
                           server_password=args.password, session_max=args.max_sessions,
                           register_timeout=args.register_timeout,
                           idle_timeout=args.idle_timeout, flood_burst=args.flood_burst,
                           flood_rate=args.flood_rate)
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
