"""The tracker's durable state in SQLite: the schema, and ``SqliteStore`` (a ``Store``).

``tracker.py`` opens one ``SqliteStore`` on ``--db`` and hands it to the core, whose read model
decides every change; tests and the bench open their own.  The database runs in WAL mode with
``synchronous=NORMAL``: a committed transaction survives a killed process (SIGKILL), which is
what SPEC §2.2 asks ("a SUCCESS only after the change is committed").  Handles are stored twice:
``key`` (lower case, the identity) and ``handle`` (as first registered, what users see).

How data flows — a write-behind log with group commit::

    core lock held:   follow(…) ──append──> pending   (a change costs a deque append)
    commit(), no core lock:  store lock ─ BEGIN; apply every pending change; COMMIT
    a read (feed, …):        store lock ─ apply what is pending; SELECT (sees it all)

A change waits in ``pending`` until a ``commit()`` (or a read) applies it; ``commit()`` applies
all that waits and commits them at once.  The tracker commits before it sends anything decided
after a change, so each ``SUCCESS`` still follows its ``COMMIT``, while the requests that come
in during a ``COMMIT`` only append: they share the next one (group commit).  The store's own
lock keeps the connection to one thread at a time and applies each change whole, so a
``COMMIT`` never lands in the middle of one.  A store made with ``autocommit=True`` commits
after every change (the bench's loader).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterable

from protocol.store import Message, Snapshot, Tweet
from protocol.validate import handle_key, hashtags

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    key             TEXT PRIMARY KEY,           -- the handle, lower-cased: its identity
    handle          TEXT NOT NULL,              -- as first registered
    password_hash   TEXT NOT NULL,              -- scrypt$n$r$p$salt$hash, never the password
    created         REAL NOT NULL,
    last_seen_tweet INTEGER NOT NULL DEFAULT 0  -- newest tweet id the account is known to have
);
CREATE TABLE IF NOT EXISTS follows (
    followee TEXT NOT NULL REFERENCES accounts(key) ON DELETE CASCADE,
    follower TEXT NOT NULL REFERENCES accounts(key) ON DELETE CASCADE,
    PRIMARY KEY (followee, follower)
) WITHOUT ROWID;
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
    delivered INTEGER NOT NULL DEFAULT 0     -- 1 once the recipient confirmed it
);
CREATE INDEX IF NOT EXISTS messages_waiting ON messages (recipient, delivered, id);
"""

TWEET_COLUMNS = "t.id, a.handle, t.text, t.created, t.retweet_of"
MESSAGE_COLUMNS = "m.id, s.handle, r.handle, m.text, m.created, m.delivered"
MESSAGE_JOINS = ("messages m JOIN accounts s ON s.key = m.sender "
                 "JOIN accounts r ON r.key = m.recipient")


class SqliteStore:
    """The tracker's durable log in one SQLite database (a ``protocol.store.Store``).

    A change that SQLite refuses rolls back every change not yet committed and raises
    ``sqlite3.Error``: the caller's memory of them can no longer be trusted (``tracker.py``
    then stops).
    """

    def __init__(self, path: str, autocommit: bool = False, exclusive: bool = False) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")   # durable against a killed process
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.executescript(SCHEMA)
        # Every read of the graph is the read model's, in memory: an index of follows by
        # follower (which older databases have) only doubled the pages each follow and drop
        # write.  Its one other use, the cascade of a deleted account, scans the table instead.
        self.db.execute("DROP INDEX IF EXISTS follows_by_follower")
        if exclusive:
            # The tracker's read model assumes nobody else changes the database: hold it
            # alone, which also spares every transaction its file locking (a third of a
            # COMMIT's cost).  Other processes can open it once the tracker has stopped.
            self.db.execute("PRAGMA locking_mode = EXCLUSIVE")
        self.autocommit = autocommit
        self.changes = 0                # changes recorded so far
        self.committed = 0              # of those, how many are durable
        self._applied = 0               # of those, how many are in the open transaction
        self._pending: deque[tuple[Callable[..., None], tuple]] = deque()
        self._lock = threading.Lock()   # one user of the connection at a time
        self._latest_tweet_id = self._sequence("tweets")
        self._latest_message_id = self._sequence("messages")

    def close(self) -> None:
        self.commit()
        self.db.close()

    # ---- the log ---------------------------------------------------------------------------
    def _record(self, apply: Callable[..., None], *args: object) -> None:
        self._pending.append((apply, args))
        self.changes += 1
        if self.autocommit:
            self.commit()

    def _apply_pending(self) -> None:
        """Apply the waiting changes inside the open transaction (the store lock is held)."""
        try:
            while self._pending:
                apply, args = self._pending.popleft()
                if not self.db.in_transaction:
                    self.db.execute("BEGIN IMMEDIATE")
                apply(*args)
                self._applied += 1
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def commit(self) -> None:
        """Apply every change recorded so far and make them durable: one COMMIT for all."""
        with self._lock:
            if len(self._pending) == 1 and self._pending[0][0] == self._sql \
                    and not self.db.in_transaction:
                # One statement alone (a follow, a drop: what a single session waits for) is a
                # transaction of its own in SQLite, as durable as one between BEGIN and COMMIT,
                # and two calls into SQLite cheaper.
                apply, args = self._pending.popleft()
                apply(*args)
                self._applied += 1
            else:
                self._apply_pending()
                if self.db.in_transaction:
                    self.db.execute("COMMIT")
            self.committed = self._applied

    def _rows(self, sql: str, *args: object) -> list[tuple]:
        """A read, which sees every change recorded before it."""
        with self._lock:
            self._apply_pending()
            return self.db.execute(sql, args).fetchall()

    def _sequence(self, table: str) -> int:
        rows = self._rows("SELECT seq FROM sqlite_sequence WHERE name = ?", table)
        return int(rows[0][0]) if rows else 0

    def load(self) -> Snapshot:
        accounts = self._rows("SELECT handle, password_hash, last_seen_tweet FROM accounts")
        follows = self._rows(
            "SELECT r.handle, e.handle FROM follows f JOIN accounts r ON r.key = f.follower "
            "JOIN accounts e ON e.key = f.followee")
        blocks = self._rows(
            "SELECT a.handle, b.handle FROM blocks k JOIN accounts a ON a.key = k.blocker "
            "JOIN accounts b ON b.key = k.blocked")
        tag_uses = self._rows("SELECT tag, count(*) FROM hashtags GROUP BY tag")
        kept = self._rows(
            "SELECT s.handle, r.handle, count(*) FROM messages m JOIN accounts s "
            "ON s.key = m.sender JOIN accounts r ON r.key = m.recipient WHERE m.delivered = 0 "
            "GROUP BY m.sender, m.recipient")
        return Snapshot(accounts, follows, blocks, tag_uses, self._latest_tweet_id,
                        self._latest_message_id, kept)

    # ---- changes: recorded now, applied by the next commit or read ----------------------------
    def _sql(self, sql: str, *args: object) -> None:
        self.db.execute(sql, args)

    def create(self, handle: str, password_hash: str, when: float) -> None:
        self._record(self._sql, "INSERT INTO accounts (key, handle, password_hash, created, "
                     "last_seen_tweet) VALUES (?, ?, ?, ?, 0)",
                     handle_key(handle), handle, password_hash, when)

    def delete(self, handle: str) -> None:
        # follows, blocks, tweets, hashtags and messages go by ON DELETE CASCADE
        self._record(self._sql, "DELETE FROM accounts WHERE key = ?", handle_key(handle))

    def follow(self, follower: str, followee: str) -> None:
        self._record(self._sql, "INSERT OR IGNORE INTO follows (followee, follower) "
                     "VALUES (?, ?)", handle_key(followee), handle_key(follower))

    def unfollow(self, follower: str, followee: str) -> None:
        self._record(self._sql, "DELETE FROM follows WHERE followee = ? AND follower = ?",
                     handle_key(followee), handle_key(follower))

    def _block(self, blocker: str, blocked: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO blocks (blocker, blocked) VALUES (?, ?)",
                        (blocker, blocked))
        self.db.execute("DELETE FROM follows WHERE followee = ? AND follower = ?",
                        (blocker, blocked))

    def block(self, blocker: str, blocked: str) -> None:
        self._record(self._block, handle_key(blocker), handle_key(blocked))

    def unblock(self, blocker: str, blocked: str) -> None:
        self._record(self._sql, "DELETE FROM blocks WHERE blocker = ? AND blocked = ?",
                     handle_key(blocker), handle_key(blocked))

    def set_last_seen(self, handle: str, tweet_id: int) -> None:
        self._record(self._sql, "UPDATE accounts SET last_seen_tweet = ? WHERE key = ?",
                     tweet_id, handle_key(handle))

    def _add_tweet(self, tweet_id: int, author: str, text: str, when: float,
                   retweet_of: int | None, seen_by: list[str]) -> None:
        self.db.execute("INSERT INTO tweets (id, author, text, created, retweet_of) "
                        "VALUES (?, ?, ?, ?, ?)", (tweet_id, author, text, when, retweet_of))
        self.db.executemany("INSERT INTO hashtags (tag, tweet_id) VALUES (?, ?)",
                            [(tag, tweet_id) for tag in hashtags(text)])
        self.db.executemany("UPDATE accounts SET last_seen_tweet = ? WHERE key = ?",
                            [(tweet_id, key) for key in seen_by])

    def add_tweet(self, author: str, text: str, when: float, retweet_of: int | None = None,
                  seen_by: Iterable[str] = (), tweet_id: int | None = None) -> int:
        tweet_id = self._latest_tweet_id + 1 if tweet_id is None else tweet_id
        self._latest_tweet_id = max(self._latest_tweet_id, tweet_id)
        self._record(self._add_tweet, tweet_id, handle_key(author), text, when, retweet_of,
                     [handle_key(handle) for handle in seen_by])
        return tweet_id

    def add_message(self, sender: str, recipient: str, text: str, when: float,
                    message_id: int | None = None) -> int:
        message_id = self._latest_message_id + 1 if message_id is None else message_id
        self._latest_message_id = max(self._latest_message_id, message_id)
        self._record(self._sql, "INSERT INTO messages (id, sender, recipient, text, created) "
                     "VALUES (?, ?, ?, ?, ?)",
                     message_id, handle_key(sender), handle_key(recipient), text, when)
        return message_id

    def set_delivered(self, message_id: int, delivered: bool = True) -> None:
        self._record(self._sql, "UPDATE messages SET delivered = ? WHERE id = ?",
                     int(delivered), message_id)

    # ---- reads of what the read model does not keep: tweets and messages -------------------
    # The authors of a feed come from the read model, as a JSON list of keys.
    _FEED_AUTHORS = "(SELECT value FROM json_each(?))"

    def _tweets(self, sql: str, *args: object) -> list[Tweet]:
        return [Tweet(*row) for row in self._rows(sql, *args)]

    def tweet(self, tweet_id: int) -> Tweet | None:
        found = self._tweets(f"SELECT {TWEET_COLUMNS} FROM tweets t JOIN accounts a "
                             "ON a.key = t.author WHERE t.id = ?", tweet_id)
        return found[0] if found else None

    def feed(self, authors: Iterable[str], count: int, before: int | None = None) -> list[Tweet]:
        return self._tweets(f"SELECT {TWEET_COLUMNS} FROM tweets t JOIN accounts a "
                            f"ON a.key = t.author WHERE t.author IN {self._FEED_AUTHORS} "
                            "AND t.id < ? ORDER BY t.id DESC LIMIT ?", _keys(authors),
                            _id_bound(before), count)

    def feed_count_after(self, authors: Iterable[str], tweet_id: int) -> int:
        rows = self._rows(f"SELECT count(*) FROM tweets WHERE author IN {self._FEED_AUTHORS} "
                          "AND id > ?", _keys(authors), tweet_id)
        return int(rows[0][0])

    def search(self, tag: str, count: int, before: int | None = None) -> list[Tweet]:
        return self._tweets(f"SELECT {TWEET_COLUMNS} FROM hashtags h JOIN tweets t "
                            "ON t.id = h.tweet_id JOIN accounts a ON a.key = t.author "
                            "WHERE h.tag = ? AND h.tweet_id < ? ORDER BY h.tweet_id DESC "
                            "LIMIT ?", tag.lower(), _id_bound(before), count)

    def tag_uses(self, author: str) -> list[tuple[str, int]]:
        return [(str(tag), int(uses)) for tag, uses in self._rows(
            "SELECT h.tag, count(*) FROM tweets t JOIN hashtags h ON h.tweet_id = t.id "
            "WHERE t.author = ? GROUP BY h.tag", handle_key(author))]

    def _messages(self, where: str, *args: object, limit: int = -1) -> list[Message]:
        return [Message(*row[:5], delivered=bool(row[5])) for row in self._rows(
            f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_JOINS} WHERE {where} ORDER BY m.id "
            "LIMIT ?", *args, limit)]

    def message(self, message_id: int) -> Message | None:
        found = self._messages("m.id = ?", message_id)
        return found[0] if found else None

    def undelivered(self, recipient: str, after: int = 0, upto: int | None = None,
                    count: int | None = None) -> list[Message]:
        # A range of the messages_waiting index: (recipient, delivered, id).
        return self._messages("m.recipient = ? AND m.delivered = 0 AND m.id > ? AND m.id <= ?",
                              handle_key(recipient), after, _id_bound(upto),
                              limit=-1 if count is None else count)


def _keys(handles: Iterable[str]) -> str:
    """Handles as a JSON list of their keys, for ``json_each``."""
    return json.dumps([handle_key(handle) for handle in handles])


def _id_bound(bound: int | None) -> int:
    """An id bound for SQL: none given is above every id (SQLite's integers are 64-bit)."""
    return 2**63 - 1 if bound is None else bound
