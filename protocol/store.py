"""The tracker's durable state as an interface: what it keeps, and a reference in dictionaries.

:class:`Store` is the port through which ``protocol.tracker_core`` reaches its durable state —
accounts, follows, blocks, tweets with their hashtags, direct messages.  ``tracker.py`` plugs in
``adapters.sqlite_store.SqliteStore``; unit tests plug in :class:`MemoryStore`, which is also the
reference for the semantics (``tests/test_store.py`` runs the same contract against both).

Data flows one way: the core calls a store method with handles as users typed them; the store
compares them case-insensitively, returns them as first registered, and has made a change durable
when the method returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
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


class Store(Protocol):
    """Durable state.  Handles are passed in any case; stores compare them case-insensitively,
    and return them as first registered.  Every change is durable when the method returns."""

    def find(self, handle: str) -> str | None: ...
    def create(self, handle: str, password_hash: str, when: float) -> bool:
        """Add an account; False if the handle exists already."""
    def password_hash(self, handle: str) -> str | None: ...
    def delete(self, handle: str) -> None:
        """Remove the account, its follows in both directions, its tweets and messages."""
    def handles(self) -> list[str]: ...
    def follow(self, follower: str, followee: str) -> bool: ...
    def unfollow(self, follower: str, followee: str) -> bool: ...
    def followers(self, handle: str) -> list[str]: ...
    def following(self, handle: str) -> list[str]: ...
    def add_tweet(self, author: str, text: str, when: float, retweet_of: int | None = None,
                  seen_by: Iterable[str] = ()) -> int:
        """Store a tweet and its hashtags; return its id (ids are never reused).  The handles
        in ``seen_by`` get it at once: their ``last_seen`` becomes its id, in the same
        transaction."""
    def tweet(self, tweet_id: int) -> Tweet | None: ...
    def feed(self, handle: str, count: int) -> list[Tweet]:
        """The newest tweets by ``handle`` and the handles it follows, newest first."""
    def feed_count_after(self, handle: str, tweet_id: int) -> int: ...
    def last_seen(self, handle: str) -> int: ...
    def set_last_seen(self, handle: str, tweet_id: int) -> None: ...
    def latest_tweet_id(self) -> int: ...
    def search(self, tag: str, count: int) -> list[Tweet]: ...
    def trending(self, count: int) -> list[tuple[str, int]]: ...
    def block(self, blocker: str, blocked: str) -> bool:
        """Record the block and end ``blocked``'s following of ``blocker``; False if known."""
    def unblock(self, blocker: str, blocked: str) -> bool: ...
    def is_blocked(self, blocker: str, blocked: str) -> bool: ...
    def blocked_by(self, blocker: str) -> list[str]:
        """The handles ``blocker`` has blocked, in the product's order."""
    def add_message(self, sender: str, recipient: str, text: str, when: float) -> int:
        """Store a direct message, not yet delivered; return its id."""
    def message(self, message_id: int) -> Message | None: ...
    def set_delivered(self, message_id: int, delivered: bool = True) -> None: ...
    def undelivered(self, recipient: str) -> list[Message]:
        """The messages ``recipient`` has not confirmed yet, oldest first."""


def by_name(handles: Iterable[str]) -> list[str]:
    """Handles in the product's order: alphabetical, case-insensitively."""
    return sorted(handles, key=handle_key)


class MemoryStore:
    """A :class:`Store` in dictionaries: the reference for the semantics, used by unit tests."""

    def __init__(self) -> None:
        self._accounts: dict[str, dict[str, Any]] = {}
        self._followers: dict[str, set[str]] = {}
        self._tweets: dict[int, Tweet] = {}
        self._next_id = 1
        self._blocks: set[tuple[str, str]] = set()
        self._messages: dict[int, Message] = {}
        self._next_message_id = 1

    def find(self, handle: str) -> str | None:
        account = self._accounts.get(handle_key(handle))
        return account["handle"] if account else None

    def create(self, handle: str, password_hash: str, when: float) -> bool:
        if handle_key(handle) in self._accounts:
            return False
        self._accounts[handle_key(handle)] = {"handle": handle, "hash": password_hash,
                                              "seen": 0}
        self._followers[handle_key(handle)] = set()
        return True

    def password_hash(self, handle: str) -> str | None:
        account = self._accounts.get(handle_key(handle))
        return account["hash"] if account else None

    def delete(self, handle: str) -> None:
        key = handle_key(handle)
        self._accounts.pop(key, None)
        self._followers.pop(key, None)
        for followers in self._followers.values():
            followers.discard(key)
        self._tweets = {i: t for i, t in self._tweets.items() if handle_key(t.author) != key}
        for tweet_id, tweet in self._tweets.items():   # as SQLite's ON DELETE SET NULL does
            if tweet.retweet_of is not None and tweet.retweet_of not in self._tweets:
                self._tweets[tweet_id] = replace(tweet, retweet_of=None)
        self._blocks = {pair for pair in self._blocks if key not in pair}
        self._messages = {i: m for i, m in self._messages.items()
                          if key not in (handle_key(m.sender), handle_key(m.recipient))}

    def handles(self) -> list[str]:
        return by_name(account["handle"] for account in self._accounts.values())

    def follow(self, follower: str, followee: str) -> bool:
        followers = self._followers[handle_key(followee)]
        if handle_key(follower) in followers:
            return False
        followers.add(handle_key(follower))
        return True

    def unfollow(self, follower: str, followee: str) -> bool:
        followers = self._followers[handle_key(followee)]
        if handle_key(follower) not in followers:
            return False
        followers.discard(handle_key(follower))
        return True

    def followers(self, handle: str) -> list[str]:
        keys = self._followers.get(handle_key(handle), set())
        return by_name(self._accounts[key]["handle"] for key in keys)

    def following(self, handle: str) -> list[str]:
        key = handle_key(handle)
        return by_name(self._accounts[k]["handle"] for k, fs in self._followers.items()
                       if key in fs)

    def add_tweet(self, author: str, text: str, when: float, retweet_of: int | None = None,
                  seen_by: Iterable[str] = ()) -> int:
        tweet_id, self._next_id = self._next_id, self._next_id + 1
        self._tweets[tweet_id] = Tweet(tweet_id, self.find(author) or author, text, when,
                                       retweet_of)
        for handle in seen_by:
            if handle_key(handle) in self._accounts:
                self._accounts[handle_key(handle)]["seen"] = tweet_id
        return tweet_id

    def tweet(self, tweet_id: int) -> Tweet | None:
        return self._tweets.get(tweet_id)

    def _feed_authors(self, handle: str) -> set[str]:
        return {handle_key(handle), *(handle_key(h) for h in self.following(handle))}

    def feed(self, handle: str, count: int) -> list[Tweet]:
        authors = self._feed_authors(handle)
        mine = [t for t in self._tweets.values() if handle_key(t.author) in authors]
        return sorted(mine, key=lambda t: -t.id)[:count]

    def feed_count_after(self, handle: str, tweet_id: int) -> int:
        authors = self._feed_authors(handle)
        return sum(1 for t in self._tweets.values()
                   if t.id > tweet_id and handle_key(t.author) in authors)

    def last_seen(self, handle: str) -> int:
        return int(self._accounts[handle_key(handle)]["seen"])

    def set_last_seen(self, handle: str, tweet_id: int) -> None:
        self._accounts[handle_key(handle)]["seen"] = tweet_id

    def latest_tweet_id(self) -> int:
        return self._next_id - 1

    def search(self, tag: str, count: int) -> list[Tweet]:
        found = [t for t in self._tweets.values() if tag.lower() in hashtags(t.text)]
        return sorted(found, key=lambda t: -t.id)[:count]

    def trending(self, count: int) -> list[tuple[str, int]]:
        uses: dict[str, int] = {}
        for tweet in self._tweets.values():
            for tag in hashtags(tweet.text):
                uses[tag] = uses.get(tag, 0) + 1
        return sorted(uses.items(), key=lambda item: (-item[1], item[0]))[:count]

    def block(self, blocker: str, blocked: str) -> bool:
        pair = (handle_key(blocker), handle_key(blocked))
        if pair in self._blocks:
            return False
        self._blocks.add(pair)
        self._followers[pair[0]].discard(pair[1])
        return True

    def unblock(self, blocker: str, blocked: str) -> bool:
        pair = (handle_key(blocker), handle_key(blocked))
        if pair not in self._blocks:
            return False
        self._blocks.discard(pair)
        return True

    def is_blocked(self, blocker: str, blocked: str) -> bool:
        return (handle_key(blocker), handle_key(blocked)) in self._blocks

    def blocked_by(self, blocker: str) -> list[str]:
        key = handle_key(blocker)
        return by_name(self._accounts[b]["handle"] for a, b in self._blocks if a == key)

    def add_message(self, sender: str, recipient: str, text: str, when: float) -> int:
        message_id, self._next_message_id = self._next_message_id, self._next_message_id + 1
        self._messages[message_id] = Message(message_id, self.find(sender) or sender,
                                             self.find(recipient) or recipient, text, when)
        return message_id

    def message(self, message_id: int) -> Message | None:
        return self._messages.get(message_id)

    def set_delivered(self, message_id: int, delivered: bool = True) -> None:
        if message_id in self._messages:
            self._messages[message_id] = replace(self._messages[message_id],
                                                 delivered=delivered)

    def undelivered(self, recipient: str) -> list[Message]:
        key = handle_key(recipient)
        return sorted((m for m in self._messages.values()
                       if not m.delivered and handle_key(m.recipient) == key),
                      key=lambda m: m.id)
