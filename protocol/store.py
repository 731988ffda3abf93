"""The tracker's state: the durable log it keeps (``Store``), and the read model it answers from.

How data flows::

    TrackerCore ──every read and change──> ReadModel        (protocol: decides, in memory)
                                             │ graph in dictionaries: accounts, follows,
                                             │ blocks, seen marks, hashtag counts, next ids
                                             │ each change it accepts, passed on as it is
                                             ▼
                                           Store           (SQLite in tracker.py, or
                                             │              MemoryStore in unit tests)
                                             └─ commit(): every change so far, one transaction

:class:`ReadModel` is what ``protocol.tracker_core`` talks to.  It is loaded once from
``Store.load()`` and then kept in step: it checks and decides every change in memory (is the
handle free? is @a following @b already? which id does the next tweet get?), changes itself,
and hands the store the same change, which the store only has to record.  Reads of the graph —
``handles``, ``followers``, ``is_blocked``, ``trending`` and the like — never touch the store;
tweets and messages (``feed``, ``search``, ``tweet``, ``undelivered``) are read from it, with
indexed, bounded queries.

:class:`Store` is the durable log.  A change is durable once ``commit()`` has returned:
``changes`` counts the changes recorded so far and ``committed`` those made durable, so the
tracker knows whether what it is about to send still waits for a commit (group commit: changes
waiting at the same moment share one ``COMMIT``).  A store's reads see every change recorded
before them, committed or not.  Handles are passed in any case and compared case-insensitively;
tweets and messages come back with their handles as first registered.  :class:`MemoryStore` is
the reference store in dictionaries; ``tests/test_store.py`` runs one contract against both.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from protocol.validate import handle_key, hashtags


@dataclass(frozen=True)
class Tweet:
    id: int
    author: str             # as registered
    text: str
    created: float          # seconds since the epoch
    retweet_of: int | None = None

    def as_list(self) -> list[Any]:
        """The wire form: ``[id, author, created, text, retweet_of]``."""
        return [self.id, self.author, self.created, self.text, self.retweet_of]


@dataclass(frozen=True)
class Message:
    """A direct message; ``delivered`` once its recipient confirmed it (``message-received``)."""

    id: int
    sender: str
    recipient: str
    text: str
    created: float
    delivered: bool = False


@dataclass
class Snapshot:
    """What the read model keeps in memory, as a store holds it (``Store.load``)."""

    accounts: list[tuple[str, str, int]] = field(default_factory=list)  # handle, hash, seen
    follows: list[tuple[str, str]] = field(default_factory=list)        # follower, followee
    blocks: list[tuple[str, str]] = field(default_factory=list)         # blocker, blocked
    tag_uses: list[tuple[str, str, int]] = field(default_factory=list)  # author, tag, uses
    latest_tweet_id: int = 0        # ids are never reused: the next is one more
    latest_message_id: int = 0


class Store(Protocol):
    """The durable log.  Its changes do not check anything: the read model has decided that
    each one applies (a new handle, a follow that is not there yet, the next id)."""

    changes: int        # changes recorded so far
    committed: int      # of those, how many are durable

    def commit(self) -> None:
        """Make every change recorded so far durable, in one transaction."""
    def load(self) -> Snapshot: ...
    def create(self, handle: str, password_hash: str, when: float) -> None: ...
    def delete(self, handle: str) -> None:
        """The account, its follows both ways, its blocks, tweets and messages."""
    def follow(self, follower: str, followee: str) -> None: ...
    def unfollow(self, follower: str, followee: str) -> None: ...
    def block(self, blocker: str, blocked: str) -> None:
        """Record the block and end ``blocked``'s following of ``blocker``."""
    def unblock(self, blocker: str, blocked: str) -> None: ...
    def set_last_seen(self, handle: str, tweet_id: int) -> None: ...
    def add_tweet(self, author: str, text: str, when: float, retweet_of: int | None = None,
                  seen_by: Iterable[str] = (), tweet_id: int | None = None) -> int:
        """Record a tweet and its hashtags under ``tweet_id`` (the next id when None) and
        return its id; the handles in ``seen_by`` get it at once: their ``last_seen`` becomes
        its id."""
    def add_message(self, sender: str, recipient: str, text: str, when: float,
                    message_id: int | None = None) -> int:
        """Record a direct message, not yet delivered; return its id."""
    def set_delivered(self, message_id: int, delivered: bool = True) -> None: ...
    def tweet(self, tweet_id: int) -> Tweet | None: ...
    def feed(self, handle: str, count: int) -> list[Tweet]:
        """The newest tweets by ``handle`` and the handles it follows, newest first."""
    def feed_count_after(self, handle: str, tweet_id: int) -> int: ...
    def search(self, tag: str, count: int) -> list[Tweet]:
        """The newest tweets carrying ``#tag`` (lower case, no '#'), newest first."""
    def message(self, message_id: int) -> Message | None: ...
    def undelivered(self, recipient: str) -> list[Message]:
        """The messages ``recipient`` has not confirmed yet, oldest first."""


def by_name(handles: Iterable[str]) -> list[str]:
    """Handles in the product's order: alphabetical, case-insensitively."""
    return sorted(handles, key=handle_key)


class MemoryStore:
    """A :class:`Store` in dictionaries: the reference for the semantics, used by unit tests.
    Every change is durable at once (``commit`` has nothing to do)."""

    def __init__(self) -> None:
        self.changes = 0
        self._accounts: dict[str, dict[str, Any]] = {}     # key -> handle, hash, seen
        self._follows: set[tuple[str, str]] = set()         # (follower key, followee key)
        self._blocks: set[tuple[str, str]] = set()
        self._tweets: dict[int, Tweet] = {}
        self._messages: dict[int, Message] = {}
        self._latest_tweet_id = self._latest_message_id = 0

    @property
    def committed(self) -> int:
        return self.changes

    def commit(self) -> None:
        pass

    def load(self) -> Snapshot:
        def name(key: str) -> str:
            return str(self._accounts[key]["handle"])

        uses = Counter((handle_key(t.author), tag) for t in self._tweets.values()
                       for tag in hashtags(t.text))
        return Snapshot([(a["handle"], a["hash"], a["seen"]) for a in self._accounts.values()],
                        [(name(a), name(b)) for a, b in self._follows],
                        [(name(a), name(b)) for a, b in self._blocks],
                        [(name(a), tag, n) for (a, tag), n in uses.items()],
                        self._latest_tweet_id, self._latest_message_id)

    def create(self, handle: str, password_hash: str, when: float) -> None:
        self.changes += 1
        self._accounts[handle_key(handle)] = {"handle": handle, "hash": password_hash,
                                              "seen": 0}

    def delete(self, handle: str) -> None:
        self.changes += 1
        key = handle_key(handle)
        self._accounts.pop(key, None)
        self._follows = {pair for pair in self._follows if key not in pair}
        self._blocks = {pair for pair in self._blocks if key not in pair}
        self._tweets = {i: t for i, t in self._tweets.items() if handle_key(t.author) != key}
        for tweet_id, tweet in self._tweets.items():   # as SQLite's ON DELETE SET NULL does
            if tweet.retweet_of is not None and tweet.retweet_of not in self._tweets:
                self._tweets[tweet_id] = replace(tweet, retweet_of=None)
        self._messages = {i: m for i, m in self._messages.items()
                          if key not in (handle_key(m.sender), handle_key(m.recipient))}

    def follow(self, follower: str, followee: str) -> None:
        self.changes += 1
        self._follows.add((handle_key(follower), handle_key(followee)))

    def unfollow(self, follower: str, followee: str) -> None:
        self.changes += 1
        self._follows.discard((handle_key(follower), handle_key(followee)))

    def block(self, blocker: str, blocked: str) -> None:
        self.changes += 1
        self._blocks.add((handle_key(blocker), handle_key(blocked)))
        self._follows.discard((handle_key(blocked), handle_key(blocker)))

    def unblock(self, blocker: str, blocked: str) -> None:
        self.changes += 1
        self._blocks.discard((handle_key(blocker), handle_key(blocked)))

    def set_last_seen(self, handle: str, tweet_id: int) -> None:
        self.changes += 1
        self._accounts[handle_key(handle)]["seen"] = tweet_id

    def add_tweet(self, author: str, text: str, when: float, retweet_of: int | None = None,
                  seen_by: Iterable[str] = (), tweet_id: int | None = None) -> int:
        self.changes += 1
        tweet_id = self._latest_tweet_id + 1 if tweet_id is None else tweet_id
        self._latest_tweet_id = max(self._latest_tweet_id, tweet_id)
        self._tweets[tweet_id] = Tweet(tweet_id, self._accounts[handle_key(author)]["handle"],
                                       text, when, retweet_of)
        for handle in seen_by:
            if handle_key(handle) in self._accounts:
                self._accounts[handle_key(handle)]["seen"] = tweet_id
        return tweet_id

    def add_message(self, sender: str, recipient: str, text: str, when: float,
                    message_id: int | None = None) -> int:
        self.changes += 1
        message_id = self._latest_message_id + 1 if message_id is None else message_id
        self._latest_message_id = max(self._latest_message_id, message_id)
        self._messages[message_id] = Message(
            message_id, self._accounts[handle_key(sender)]["handle"],
            self._accounts[handle_key(recipient)]["handle"], text, when)
        return message_id

    def set_delivered(self, message_id: int, delivered: bool = True) -> None:
        self.changes += 1
        if message_id in self._messages:
            self._messages[message_id] = replace(self._messages[message_id],
                                                 delivered=delivered)

    def tweet(self, tweet_id: int) -> Tweet | None:
        return self._tweets.get(tweet_id)

    def _feed_authors(self, handle: str) -> set[str]:
        key = handle_key(handle)
        return {key, *(followee for follower, followee in self._follows if follower == key)}

    def feed(self, handle: str, count: int) -> list[Tweet]:
        authors = self._feed_authors(handle)
        mine = [t for t in self._tweets.values() if handle_key(t.author) in authors]
        return sorted(mine, key=lambda t: -t.id)[:count]

    def feed_count_after(self, handle: str, tweet_id: int) -> int:
        authors = self._feed_authors(handle)
        return sum(1 for t in self._tweets.values()
                   if t.id > tweet_id and handle_key(t.author) in authors)

    def search(self, tag: str, count: int) -> list[Tweet]:
        found = [t for t in self._tweets.values() if tag.lower() in hashtags(t.text)]
        return sorted(found, key=lambda t: -t.id)[:count]

    def message(self, message_id: int) -> Message | None:
        return self._messages.get(message_id)

    def undelivered(self, recipient: str) -> list[Message]:
        key = handle_key(recipient)
        return sorted((m for m in self._messages.values()
                       if not m.delivered and handle_key(m.recipient) == key),
                      key=lambda m: m.id)


@dataclass
class _Account:
    handle: str                     # as first registered
    password_hash: str
    last_seen: int                  # newest tweet id the account is known to have
    followers: set[str] = field(default_factory=set)    # handle keys
    following: set[str] = field(default_factory=set)
    blocked: set[str] = field(default_factory=set)      # keys of the handles it blocked
    tags: Counter[str] = field(default_factory=Counter)  # hashtag uses in its tweets


class ReadModel:
    """The tracker's state as the core sees it: the graph in memory, the rest in ``store``.

    Each change is decided here (the return values say whether it applied, and which id it
    got) and recorded in the store, which trusts nothing else changes it meanwhile.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        snapshot = store.load()
        self._accounts: dict[str, _Account] = {}
        for handle, password_hash, seen in snapshot.accounts:
            self._accounts[handle_key(handle)] = _Account(handle, password_hash, seen)
        for follower, followee in snapshot.follows:
            self._accounts[handle_key(followee)].followers.add(handle_key(follower))
            self._accounts[handle_key(follower)].following.add(handle_key(followee))
        for blocker, blocked in snapshot.blocks:
            self._accounts[handle_key(blocker)].blocked.add(handle_key(blocked))
        self._tags: Counter[str] = Counter()
        for author, tag, uses in snapshot.tag_uses:
            self._accounts[handle_key(author)].tags[tag] += uses
            self._tags[tag] += uses
        self._latest_tweet_id = snapshot.latest_tweet_id
        self._latest_message_id = snapshot.latest_message_id
        self._handles: list[str] | None = None      # sorted, made again after a change

    # ---- accounts ----------------------------------------------------------------------------
    def _names(self, keys: Iterable[str]) -> list[str]:
        return by_name(self._accounts[key].handle for key in keys)

    def find(self, handle: str) -> str | None:
        """The handle as first registered, or None."""
        account = self._accounts.get(handle_key(handle))
        return account.handle if account else None

    def create(self, handle: str, password_hash: str, when: float) -> bool:
        """Add an account; False if the handle exists already."""
        if handle_key(handle) in self._accounts:
            return False
        self._accounts[handle_key(handle)] = _Account(handle, password_hash, 0)
        self._handles = None
        self.store.create(handle, password_hash, when)
        return True

    def password_hash(self, handle: str) -> str | None:
        account = self._accounts.get(handle_key(handle))
        return account.password_hash if account else None

    def delete(self, handle: str) -> None:
        account = self._accounts.pop(handle_key(handle), None)
        if account is None:
            return
        key = handle_key(handle)
        for other in account.followers:
            self._accounts[other].following.discard(key)
        for other in account.following:
            self._accounts[other].followers.discard(key)
        for other in self._accounts.values():
            other.blocked.discard(key)
        self._tags -= account.tags
        self._handles = None
        self.store.delete(handle)

    def handles(self) -> list[str]:
        """Every handle, in the product's order (the same list until one is added or gone)."""
        if self._handles is None:
            self._handles = by_name(account.handle for account in self._accounts.values())
        return self._handles

    def last_seen(self, handle: str) -> int:
        return self._accounts[handle_key(handle)].last_seen

    def set_last_seen(self, handle: str, tweet_id: int) -> None:
        self._accounts[handle_key(handle)].last_seen = tweet_id
        self.store.set_last_seen(handle, tweet_id)

    # ---- follows and blocks ------------------------------------------------------------------
    def follow(self, follower: str, followee: str) -> bool:
        """False if ``follower`` follows ``followee`` already."""
        who, whom = handle_key(follower), handle_key(followee)
        if who in self._accounts[whom].followers:
            return False
        self._accounts[whom].followers.add(who)
        self._accounts[who].following.add(whom)
        self.store.follow(follower, followee)
        return True

    def unfollow(self, follower: str, followee: str) -> bool:
        """False if ``follower`` does not follow ``followee``."""
        who, whom = handle_key(follower), handle_key(followee)
        if who not in self._accounts[whom].followers:
            return False
        self._accounts[whom].followers.discard(who)
        self._accounts[who].following.discard(whom)
        self.store.unfollow(follower, followee)
        return True

    def followers(self, handle: str) -> list[str]:
        account = self._accounts.get(handle_key(handle))
        return self._names(account.followers) if account else []

    def following(self, handle: str) -> list[str]:
        account = self._accounts.get(handle_key(handle))
        return self._names(account.following) if account else []

    def block(self, blocker: str, blocked: str) -> bool:
        """Record the block and end ``blocked``'s following of ``blocker``; False if known."""
        who, whom = handle_key(blocker), handle_key(blocked)
        if whom in self._accounts[who].blocked:
            return False
        self._accounts[who].blocked.add(whom)
        self._accounts[who].followers.discard(whom)
        self._accounts[whom].following.discard(who)
        self.store.block(blocker, blocked)
        return True

    def unblock(self, blocker: str, blocked: str) -> bool:
        """False if there was no such block."""
        who, whom = handle_key(blocker), handle_key(blocked)
        if whom not in self._accounts[who].blocked:
            return False
        self._accounts[who].blocked.discard(whom)
        self.store.unblock(blocker, blocked)
        return True

    def is_blocked(self, blocker: str, blocked: str) -> bool:
        account = self._accounts.get(handle_key(blocker))
        return account is not None and handle_key(blocked) in account.blocked

    def blocked_by(self, blocker: str) -> list[str]:
        """The handles ``blocker`` has blocked, in the product's order."""
        account = self._accounts.get(handle_key(blocker))
        return self._names(account.blocked) if account else []

    # ---- tweets ------------------------------------------------------------------------------
    def add_tweet(self, author: str, text: str, when: float, retweet_of: int | None = None,
                  seen_by: Iterable[str] = ()) -> int:
        """Store a tweet and its hashtags; return its id (ids are never reused).  The handles
        in ``seen_by`` get it at once: their ``last_seen`` becomes its id."""
        seen_by = [handle for handle in seen_by if handle_key(handle) in self._accounts]
        self._latest_tweet_id += 1
        tweet_id = self._latest_tweet_id
        for handle in seen_by:
            self._accounts[handle_key(handle)].last_seen = tweet_id
        tags = hashtags(text)
        self._accounts[handle_key(author)].tags.update(tags)
        self._tags.update(tags)
        self.store.add_tweet(author, text, when, retweet_of, seen_by, tweet_id)
        return tweet_id

    def latest_tweet_id(self) -> int:
        return self._latest_tweet_id

    def trending(self, count: int) -> list[tuple[str, int]]:
        """The ``count`` most used hashtags (most used first, then alphabetical)."""
        return heapq.nsmallest(count, ((tag, uses) for tag, uses in self._tags.items() if uses),
                               key=lambda item: (-item[1], item[0]))

    def tweet(self, tweet_id: int) -> Tweet | None:
        return self.store.tweet(tweet_id)

    def feed(self, handle: str, count: int) -> list[Tweet]:
        return self.store.feed(handle, count)

    def feed_count_after(self, handle: str, tweet_id: int) -> int:
        return self.store.feed_count_after(handle, tweet_id)

    def search(self, tag: str, count: int) -> list[Tweet]:
        return self.store.search(tag, count)

    # ---- direct messages ---------------------------------------------------------------------
    def add_message(self, sender: str, recipient: str, text: str, when: float) -> int:
        """Store a direct message, not yet delivered; return its id."""
        self._latest_message_id += 1
        return self.store.add_message(sender, recipient, text, when, self._latest_message_id)

    def message(self, message_id: int) -> Message | None:
        return self.store.message(message_id)

    def set_delivered(self, message_id: int, delivered: bool = True) -> None:
        self.store.set_delivered(message_id, delivered)

    def undelivered(self, recipient: str) -> list[Message]:
        return self.store.undelivered(recipient)
