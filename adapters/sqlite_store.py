"""The tracker's durable state in SQLite: the schema, and ``SqliteStore`` (a ``Store``).

``tracker.py`` opens one ``SqliteStore`` on ``--db`` and hands it to the core; tests and the bench
open their own.  The database runs in WAL mode with ``synchronous=NORMAL``: a committed
transaction survives a killed process (SIGKILL), which is what SPEC §2.2 asks ("a SUCCESS only
after the change is committed").  Every method that changes something runs in one transaction,
committed before it returns.  Handles are stored twice: ``key`` (lower case, the identity) and
``handle`` (as first registered, what users see).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator

from protocol.store import Message, Tweet
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
    delivered INTEGER NOT NULL DEFAULT 0     -- 1 once the recipient confirmed it
);
CREATE INDEX IF NOT EXISTS messages_waiting ON messages (recipient, delivered, id);
"""

TWEET_COLUMNS = "t.id, a.handle, t.text, t.created, t.retweet_of"
MESSAGE_COLUMNS = "m.id, s.handle, r.handle, m.text, m.created, m.delivered"
MESSAGE_JOINS = ("messages m JOIN accounts s ON s.key = m.sender "
                 "JOIN accounts r ON r.key = m.recipient")


class SqliteStore:
    """The tracker's durable state in one SQLite database (a ``protocol.store.Store``).

    Every method that changes something runs in one transaction that is committed before it
    returns.  The tracker calls it from one thread at a time, so one connection serves all.
    """

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")   # durable against a killed process
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

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

    def add_tweet(self, author: str, text: str, when: float, retweet_of: int | None = None,
                  seen_by: Iterable[str] = ()) -> int:
        with self._change() as db:
            cursor = db.execute("INSERT INTO tweets (author, text, created, retweet_of) "
                                "VALUES (?, ?, ?, ?)", (handle_key(author), text, when, retweet_of))
            tweet_id = int(cursor.lastrowid or 0)
            db.executemany("INSERT INTO hashtags (tag, tweet_id) VALUES (?, ?)",
                           [(tag, tweet_id) for tag in hashtags(text)])
            db.executemany("UPDATE accounts SET last_seen_tweet = ? WHERE key = ?",
                           [(tweet_id, handle_key(handle)) for handle in seen_by])
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

    def blocked_by(self, blocker: str) -> list[str]:
        return self._column("SELECT a.handle FROM blocks b JOIN accounts a ON a.key = b.blocked"
                            " WHERE b.blocker = ? ORDER BY a.key", handle_key(blocker))

    def add_message(self, sender: str, recipient: str, text: str, when: float) -> int:
        with self._change() as db:
            cursor = db.execute("INSERT INTO messages (sender, recipient, text, created)"
                                " VALUES (?, ?, ?, ?)",
                                (handle_key(sender), handle_key(recipient), text, when))
        return int(cursor.lastrowid or 0)

    def message(self, message_id: int) -> Message | None:
        row = self._one(f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_JOINS} WHERE m.id = ?",
                        message_id)
        return Message(*row[:5], delivered=bool(row[5])) if row else None

    def set_delivered(self, message_id: int, delivered: bool = True) -> None:
        with self._change() as db:
            db.execute("UPDATE messages SET delivered = ? WHERE id = ?",
                       (int(delivered), message_id))

    def undelivered(self, recipient: str) -> list[Message]:
        rows = self.db.execute(f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_JOINS} "
                               "WHERE m.recipient = ? AND m.delivered = 0 ORDER BY m.id",
                               (handle_key(recipient),)).fetchall()
        return [Message(*row[:5], delivered=False) for row in rows]
