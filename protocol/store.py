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
indexed, bounded queries.  Whatever the core may ask under its lock costs a look-up, a
bisection or a bounded query, whatever the size of the store: handles and follower lists are
kept sorted (``SortedKeys``) and read a page at a time, hashtags are kept in ranking order as
they are used (``TagCounts``), and the messages waiting for each account are counted as they
come and go (the quotas of ``message``).

:class:`Store` is the durable log.  A change is durable once ``commit()`` has returned:
``changes`` counts the changes recorded so far and ``committed`` those made durable, so the
tracker knows whether what it is about to send still waits for a commit (group commit: changes
waiting at the same moment share one ``COMMIT``).  A store's reads see every change recorded
before them, committed or not.  Handles are passed in any case and compared case-insensitively;
tweets and messages come back with their handles as first registered.  :class:`MemoryStore` is
the reference store in dictionaries; ``tests/test_store.py`` runs one contract against both.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol

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
    tag_uses: list[tuple[str, int]] = field(default_factory=list)       # tag, uses
    latest_tweet_id: int = 0        # ids are never reused: the next is one more
    latest_message_id: int = 0
    kept: list[tuple[str, str, int]] = field(default_factory=list)  # sender, recipient, waiting


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
    def feed(self, authors: Iterable[str], count: int, before: int | None = None) -> list[Tweet]:
        """The newest ``count`` tweets by any of ``authors`` (handles; with ids below
        ``before`` when given), newest first."""
    def feed_count_after(self, authors: Iterable[str], tweet_id: int) -> int: ...
    def search(self, tag: str, count: int, before: int | None = None) -> list[Tweet]:
        """The newest ``count`` tweets carrying ``#tag`` (lower case, no '#'; ids below
        ``before`` when given), newest first."""
    def tag_uses(self, author: str) -> list[tuple[str, int]]:
        """The hashtags of ``author``'s tweets, with how often each was used."""
    def message(self, message_id: int) -> Message | None: ...
    def undelivered(self, recipient: str, after: int = 0, upto: int | None = None,
                    count: int | None = None) -> list[Message]:
        """The messages ``recipient`` has not confirmed yet, oldest first: those with ids
        over ``after`` (and at most ``upto``), at most ``count`` of them."""


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

        uses = Counter(tag for t in self._tweets.values() for tag in hashtags(t.text))
        kept = Counter((handle_key(m.sender), handle_key(m.recipient))
                       for m in self._messages.values() if not m.delivered)
        return Snapshot([(a["handle"], a["hash"], a["seen"]) for a in self._accounts.values()],
                        [(name(a), name(b)) for a, b in self._follows],
                        [(name(a), name(b)) for a, b in self._blocks],
                        list(uses.items()),
                        self._latest_tweet_id, self._latest_message_id,
                        [(name(a), name(b), n) for (a, b), n in kept.items()])

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

    def feed(self, authors: Iterable[str], count: int, before: int | None = None) -> list[Tweet]:
        authors = {handle_key(author) for author in authors}
        mine = [t for t in self._tweets.values() if handle_key(t.author) in authors
                and (before is None or t.id < before)]
        return sorted(mine, key=lambda t: -t.id)[:count]

    def feed_count_after(self, authors: Iterable[str], tweet_id: int) -> int:
        authors = {handle_key(author) for author in authors}
        return sum(1 for t in self._tweets.values()
                   if t.id > tweet_id and handle_key(t.author) in authors)

    def search(self, tag: str, count: int, before: int | None = None) -> list[Tweet]:
        found = [t for t in self._tweets.values() if tag.lower() in hashtags(t.text)
                 and (before is None or t.id < before)]
        return sorted(found, key=lambda t: -t.id)[:count]

    def tag_uses(self, author: str) -> list[tuple[str, int]]:
        key = handle_key(author)
        return list(Counter(tag for t in self._tweets.values() if handle_key(t.author) == key
                            for tag in hashtags(t.text)).items())

    def message(self, message_id: int) -> Message | None:
        return self._messages.get(message_id)

    def undelivered(self, recipient: str, after: int = 0, upto: int | None = None,
                    count: int | None = None) -> list[Message]:
        key = handle_key(recipient)
        found = sorted((m for m in self._messages.values()
                        if not m.delivered and handle_key(m.recipient) == key
                        and m.id > after and (upto is None or m.id <= upto)),
                       key=lambda m: m.id)
        return found if count is None else found[:count]


class SortedKeys:
    """Handle keys in the product's order, with pages: a sorted list, searched by bisection.

    A key is the lower-case handle, so sorting keys is sorting handles alphabetically,
    case-insensitively.  Membership and pages cost a bisection; adding and removing move the
    tail of the list (a block copy), never a sort.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys = sorted(set(keys))

    def add(self, key: str) -> bool:
        """False if ``key`` is there already."""
        at = bisect.bisect_left(self._keys, key)
        if at < len(self._keys) and self._keys[at] == key:
            return False
        self._keys.insert(at, key)
        return True

    def discard(self, key: str) -> bool:
        """False if ``key`` was not there."""
        at = bisect.bisect_left(self._keys, key)
        if at < len(self._keys) and self._keys[at] == key:
            del self._keys[at]
            return True
        return False

    def __contains__(self, key: object) -> bool:
        at = bisect.bisect_left(self._keys, key)  # type: ignore[call-overload]
        return at < len(self._keys) and self._keys[at] == key

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def page(self, after: str | None, limit: int) -> tuple[list[str], bool]:
        """Up to ``limit`` keys that come after the handle ``after`` (from the first when
        None), and whether more follow them."""
        start = 0 if after is None else bisect.bisect_right(self._keys, handle_key(after))
        return self._keys[start:start + limit], start + limit < len(self._keys)


class TagCounts:
    """How often each hashtag was used, kept in ranking order as the counts change.

    Tags are grouped by their number of uses (``_by_uses``: uses -> the tags, alphabetical) and
    the distinct numbers are kept sorted (``_levels``), so ``top`` reads the few tags it needs
    from the top levels and never looks at the others; a use moves one tag up a level.  There
    are few levels: n distinct counts need at least 1 + 2 + … + n uses in all.
    """

    def __init__(self, uses: Counter[str] | None = None) -> None:
        self._uses: dict[str, int] = {tag: n for tag, n in (uses or {}).items() if n > 0}
        self._by_uses: dict[int, list[str]] = {}
        for tag, n in self._uses.items():
            self._by_uses.setdefault(n, []).append(tag)
        for tags in self._by_uses.values():
            tags.sort()
        self._levels = sorted(self._by_uses)

    def change(self, tag: str, delta: int) -> None:
        """``tag`` was used ``delta`` more times (fewer when negative; never below none)."""
        old = self._uses.get(tag, 0)
        new = max(0, old + delta)
        if new == old:
            return
        if old:
            tags = self._by_uses[old]
            del tags[bisect.bisect_left(tags, tag)]
            if not tags:
                del self._by_uses[old]
                del self._levels[bisect.bisect_left(self._levels, old)]
        if new:
            self._uses[tag] = new
            tags = self._by_uses.get(new)
            if tags is None:
                tags = self._by_uses[new] = []
                bisect.insort(self._levels, new)
            bisect.insort(tags, tag)
        else:
            del self._uses[tag]

    def top(self, count: int) -> list[tuple[str, int]]:
        """The ``count`` most used tags, most used first, then alphabetical."""
        found: list[tuple[str, int]] = []
        for uses in reversed(self._levels):
            for tag in self._by_uses[uses][:count - len(found)]:
                found.append((tag, uses))
            if len(found) >= count:
                break
        return found

    def __len__(self) -> int:
        return len(self._uses)


class Page(NamedTuple):
    """One page of a list of handles: the names, how many the whole list holds, and whether
    more follow this page."""

    names: list[str]
    total: int
    more: bool


@dataclass(slots=True)          # a hundred thousand of them: no __dict__ each
class _Account:
    handle: str                     # as first registered
    password_hash: str
    last_seen: int                  # newest tweet id the account is known to have
    followers: SortedKeys = field(default_factory=SortedKeys)   # handle keys
    following: SortedKeys = field(default_factory=SortedKeys)
    blocked: set[str] = field(default_factory=set)      # keys of the handles it blocked
    blockers: set[str] = field(default_factory=set)     # keys of the handles that blocked it
    # Direct messages not yet confirmed: kept for it (by sender key), and its own (by recipient)
    kept_for: Counter[str] = field(default_factory=Counter)
    kept_from: Counter[str] = field(default_factory=Counter)
    kept_for_total: int = 0
    kept_from_total: int = 0


class ReadModel:
    """The tracker's state as the core sees it: the graph in memory, the rest in ``store``.

    Each change is decided here (the return values say whether it applied, and which id it
    got) and recorded in the store, which trusts nothing else changes it meanwhile.  Every
    read and change the core makes costs a dictionary look-up, a bisection or a bounded,
    indexed query: none walks every account, tag or message (those are ``load``'s, once).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        snapshot = store.load()
        self._accounts: dict[str, _Account] = {}
        for handle, password_hash, seen in snapshot.accounts:
            self._accounts[handle_key(handle)] = _Account(handle, password_hash, seen)
        followers: dict[str, list[str]] = {}
        following: dict[str, list[str]] = {}
        for follower, followee in snapshot.follows:
            followers.setdefault(handle_key(followee), []).append(handle_key(follower))
            following.setdefault(handle_key(follower), []).append(handle_key(followee))
        for key, keys in followers.items():         # sorted once, not inserted one by one
            self._accounts[key].followers = SortedKeys(keys)
        for key, keys in following.items():
            self._accounts[key].following = SortedKeys(keys)
        for blocker, blocked in snapshot.blocks:
            self._accounts[handle_key(blocker)].blocked.add(handle_key(blocked))
            self._accounts[handle_key(blocked)].blockers.add(handle_key(blocker))
        self._tags = TagCounts(Counter(dict(snapshot.tag_uses)))
        for sender, recipient, count in snapshot.kept:
            self._count_kept(handle_key(sender), handle_key(recipient), count)
        self._latest_tweet_id = snapshot.latest_tweet_id
        self._latest_message_id = snapshot.latest_message_id
        self._handles = SortedKeys(self._accounts)

    # ---- accounts ----------------------------------------------------------------------------
    def _names(self, keys: Iterable[str]) -> list[str]:
        """The handles of ``keys``, in the order given (a SortedKeys is in the product's)."""
        return [self._accounts[key].handle for key in keys]

    def find(self, handle: str) -> str | None:
        """The handle as first registered, or None."""
        account = self._accounts.get(handle_key(handle))
        return account.handle if account else None

    def create(self, handle: str, password_hash: str, when: float) -> bool:
        """Add an account; False if the handle exists already."""
        if handle_key(handle) in self._accounts:
            return False
        self._accounts[handle_key(handle)] = _Account(handle, password_hash, 0)
        self._handles.add(handle_key(handle))
        self.store.create(handle, password_hash, when)
        return True

    def password_hash(self, handle: str) -> str | None:
        account = self._accounts.get(handle_key(handle))
        return account.password_hash if account else None

    def delete(self, handle: str) -> None:
        """The account and everything of it: follows and blocks both ways, its hashtag uses
        (read from the store: its own tweets), the messages kept for it and its own (the work
        is the account's own size)."""
        account = self._accounts.pop(handle_key(handle), None)
        if account is None:
            return
        key = handle_key(handle)
        for other in account.followers:
            self._accounts[other].following.discard(key)
        for other in account.following:
            self._accounts[other].followers.discard(key)
        for other in account.blockers:
            self._accounts[other].blocked.discard(key)
        for other in account.blocked:
            self._accounts[other].blockers.discard(key)
        for sender, count in account.kept_for.items():
            if sender != key:
                self._accounts[sender].kept_from.pop(key, None)
                self._accounts[sender].kept_from_total -= count
        for recipient, count in account.kept_from.items():
            if recipient != key:
                self._accounts[recipient].kept_for.pop(key, None)
                self._accounts[recipient].kept_for_total -= count
        for tag, uses in self.store.tag_uses(handle):  # an indexed read of its own tweets
            self._tags.change(tag, -uses)
        self._handles.discard(key)
        self.store.delete(handle)

    def handles(self) -> list[str]:
        """Every handle, in the product's order (every account: for tests and tools; the
        tracker answers with ``handles_page``)."""
        return self._names(self._handles)

    def handles_page(self, after: str | None, limit: int) -> Page:
        """Up to ``limit`` handles after ``after``, in the product's order."""
        keys, more = self._handles.page(after, limit)
        return Page(self._names(keys), len(self._handles), more)

    def last_seen(self, handle: str) -> int:
        return self._accounts[handle_key(handle)].last_seen

    def set_last_seen(self, handle: str, tweet_id: int) -> None:
        self._accounts[handle_key(handle)].last_seen = tweet_id
        self.store.set_last_seen(handle, tweet_id)

    # ---- follows and blocks ------------------------------------------------------------------
    def follow(self, follower: str, followee: str) -> bool:
        """False if ``follower`` follows ``followee`` already."""
        who, whom = handle_key(follower), handle_key(followee)
        if not self._accounts[whom].followers.add(who):
            return False
        self._accounts[who].following.add(whom)
        self.store.follow(follower, followee)
        return True

    def unfollow(self, follower: str, followee: str) -> bool:
        """False if ``follower`` does not follow ``followee``."""
        who, whom = handle_key(follower), handle_key(followee)
        if not self._accounts[whom].followers.discard(who):
            return False
        self._accounts[who].following.discard(whom)
        self.store.unfollow(follower, followee)
        return True

    def is_following(self, follower: str, followee: str) -> bool:
        account = self._accounts.get(handle_key(followee))
        return account is not None and handle_key(follower) in account.followers

    def followers(self, handle: str) -> list[str]:
        """All of them, in the product's order (a tweet hands out each online one)."""
        account = self._accounts.get(handle_key(handle))
        return self._names(account.followers) if account else []

    def following(self, handle: str) -> list[str]:
        account = self._accounts.get(handle_key(handle))
        return self._names(account.following) if account else []

    def followers_page(self, handle: str, after: str | None, limit: int) -> Page:
        account = self._accounts.get(handle_key(handle))
        return self._page(account.followers if account else SortedKeys(), after, limit)

    def following_page(self, handle: str, after: str | None, limit: int) -> Page:
        account = self._accounts.get(handle_key(handle))
        return self._page(account.following if account else SortedKeys(), after, limit)

    def _page(self, keys: SortedKeys, after: str | None, limit: int) -> Page:
        page, more = keys.page(after, limit)
        return Page(self._names(page), len(keys), more)

    def block(self, blocker: str, blocked: str) -> bool:
        """Record the block and end ``blocked``'s following of ``blocker``; False if known."""
        who, whom = handle_key(blocker), handle_key(blocked)
        if whom in self._accounts[who].blocked:
            return False
        self._accounts[who].blocked.add(whom)
        self._accounts[whom].blockers.add(who)
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
        self._accounts[whom].blockers.discard(who)
        self.store.unblock(blocker, blocked)
        return True

    def is_blocked(self, blocker: str, blocked: str) -> bool:
        account = self._accounts.get(handle_key(blocker))
        return account is not None and handle_key(blocked) in account.blocked

    def blocked_by(self, blocker: str) -> list[str]:
        """The handles ``blocker`` has blocked, in the product's order."""
        account = self._accounts.get(handle_key(blocker))
        return self._names(sorted(account.blocked)) if account else []

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
        for tag in hashtags(text):
            self._tags.change(tag, 1)
        self.store.add_tweet(author, text, when, retweet_of, seen_by, tweet_id)
        return tweet_id

    def latest_tweet_id(self) -> int:
        return self._latest_tweet_id

    def trending(self, count: int) -> list[tuple[str, int]]:
        """The ``count`` most used hashtags (most used first, then alphabetical)."""
        return self._tags.top(count)

    def tweet(self, tweet_id: int) -> Tweet | None:
        return self.store.tweet(tweet_id)

    def feed(self, handle: str, count: int, before: int | None = None) -> list[Tweet]:
        """The newest ``count`` tweets by ``handle`` and the handles it follows (with ids
        below ``before`` when given), newest first."""
        return self.store.feed(self._feed_authors(handle), count, before)

    def feed_count_after(self, handle: str, tweet_id: int) -> int:
        return self.store.feed_count_after(self._feed_authors(handle), tweet_id)

    def _feed_authors(self, handle: str) -> list[str]:
        """``handle`` and the handles it follows, as keys (the store reads the tweets)."""
        key = handle_key(handle)
        account = self._accounts.get(key)
        return [key, *account.following] if account else [key]

    def search(self, tag: str, count: int, before: int | None = None) -> list[Tweet]:
        return self.store.search(tag, count, before)

    # ---- direct messages ---------------------------------------------------------------------
    def _count_kept(self, sender: str, recipient: str, count: int) -> None:
        """``count`` more (or fewer) messages of ``sender`` kept for ``recipient`` (keys)."""
        to, by = self._accounts[recipient], self._accounts[sender]
        to.kept_for[sender] += count
        to.kept_for_total += count
        by.kept_from[recipient] += count
        by.kept_from_total += count
        if not to.kept_for[sender]:
            del to.kept_for[sender]
            del by.kept_from[recipient]

    def kept_for(self, handle: str) -> int:
        """Messages kept for ``handle``: sent to it and not yet confirmed."""
        account = self._accounts.get(handle_key(handle))
        return account.kept_for_total if account else 0

    def kept_from(self, handle: str) -> int:
        """Messages ``handle`` sent that their recipients have not confirmed yet."""
        account = self._accounts.get(handle_key(handle))
        return account.kept_from_total if account else 0

    def add_message(self, sender: str, recipient: str, text: str, when: float) -> int:
        """Store a direct message, not yet delivered; return its id."""
        self._latest_message_id += 1
        self._count_kept(handle_key(sender), handle_key(recipient), 1)
        return self.store.add_message(sender, recipient, text, when, self._latest_message_id)

    def latest_message_id(self) -> int:
        return self._latest_message_id

    def message(self, message_id: int) -> Message | None:
        return self.store.message(message_id)

    def set_delivered(self, message_id: int, delivered: bool = True) -> None:
        message = self.store.message(message_id)
        if message is None or message.delivered == delivered:
            return
        self._count_kept(handle_key(message.sender), handle_key(message.recipient),
                         -1 if delivered else 1)
        self.store.set_delivered(message_id, delivered)

    def undelivered(self, recipient: str, after: int = 0, upto: int | None = None,
                    count: int | None = None) -> list[Message]:
        """The messages kept for ``recipient`` with ids after ``after`` (up to ``upto``),
        oldest first, at most ``count`` of them."""
        return self.store.undelivered(recipient, after, upto, count)
