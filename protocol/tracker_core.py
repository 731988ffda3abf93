"""What the tracker answers: command semantics, free of sockets.

``TrackerCore.execute(session, request)`` takes one decoded request from one connection's
``Session`` and returns the ``Reply``.  Durable state (accounts, follows, tweets, hashtags) lives
behind the small :class:`Store` interface — SQLite in ``tracker.py``, dictionaries in
:class:`MemoryStore` for tests.  Who is online, at which address, and which tweets are running is
kept here, in memory only.

One lock guards it all: commands are short, and a single lock makes the "exactly one wins" rules
(two registrations of one handle, two tweets of one author) plain.  Two things happen outside it:
password hashing (``register`` and ``login`` take tens of milliseconds to hash, and must not stall
everyone else), and the wait of ``exit`` for running tweets (on the lock's condition).
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from protocol import limits
from protocol.accounts import LoginThrottle, PasswordHasher, check_password
from protocol.flood import TokenBucket
from protocol.ring import Peer
from protocol.validate import (
    check_count,
    check_handle,
    check_ipv4,
    check_ports,
    check_public_key,
    check_tag,
    check_text,
    handle_key,
    hashtags,
)
from protocol.wire import Push, Reply, Request, failure, success

# The argument that names who acts: it must be the session's own handle (NOT_YOUR_HANDLE).
ACTOR_ARGUMENT = {"follow": "follower", "drop": "follower", "tweet": "handle",
                  "end-tweet": "handle", "exit": "handle", "exit-complete": "handle"}
# Commands a session may send before it has a handle.
ANONYMOUS_COMMANDS = {"auth", "register", "login", "query-handles", "online"}
# Housekeeping that user.py sends by itself: never refused by flood control.
UNTHROTTLED_COMMANDS = {"heartbeat", "end-tweet", "exit-complete", "logout"}


@dataclass(frozen=True)
class Tweet:
    id: int
    author: str             # as registered
    text: str
    created: float          # seconds since the epoch
    retweet_of: int | None = None

    def as_list(self) -> list[Any]:
        return [self.id, self.author, self.created, self.text, self.retweet_of]


@dataclass(frozen=True)
class Message:
    id: int
    sender: str
    recipient: str
    text: str
    created: float


class Store(Protocol):
    """Durable state.  Handles are passed in any case; stores compare them case-insensitively,
    and return them as first registered.  Every change is durable when the method returns."""

    def find(self, handle: str) -> str | None: ...
    def create(self, handle: str, password_hash: str, when: float) -> bool:
        """Add an account; False if the handle exists already."""
    def password_hash(self, handle: str) -> str | None: ...
    def delete(self, handle: str) -> None:
        """Remove the account, its follows in both directions and its tweets."""
    def handles(self) -> list[str]: ...
    def follow(self, follower: str, followee: str) -> bool: ...
    def unfollow(self, follower: str, followee: str) -> bool: ...
    def followers(self, handle: str) -> list[str]: ...
    def following(self, handle: str) -> list[str]: ...
    def add_tweet(self, author: str, text: str, when: float,
                  retweet_of: int | None = None) -> int:
        """Store a tweet and its hashtags; return its id (ids are never reused)."""
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
    def add_message(self, sender: str, recipient: str, text: str, when: float,
                    delivered: bool) -> int: ...
    def set_delivered(self, message_id: int, sender: str, delivered: bool) -> bool:
        """Mark a message of ``sender``; False if it has no such message."""
    def take_undelivered(self, recipient: str) -> list[Message]:
        """The messages waiting for ``recipient``, oldest first, now marked delivered."""


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
        self._messages: dict[int, tuple[Message, bool]] = {}

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
        self._messages = {i: (m, d) for i, (m, d) in self._messages.items()
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

    def add_tweet(self, author: str, text: str, when: float,
                  retweet_of: int | None = None) -> int:
        tweet_id, self._next_id = self._next_id, self._next_id + 1
        self._tweets[tweet_id] = Tweet(tweet_id, self.find(author) or author, text, when,
                                       retweet_of)
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

    def add_message(self, sender: str, recipient: str, text: str, when: float,
                    delivered: bool) -> int:
        message_id = max(self._messages, default=0) + 1
        self._messages[message_id] = (Message(message_id, self.find(sender) or sender,
                                              self.find(recipient) or recipient, text, when),
                                      delivered)
        return message_id

    def set_delivered(self, message_id: int, sender: str, delivered: bool) -> bool:
        found = self._messages.get(message_id)
        if not found or handle_key(found[0].sender) != handle_key(sender):
            return False
        self._messages[message_id] = (found[0], delivered)
        return True

    def take_undelivered(self, recipient: str) -> list[Message]:
        waiting = [m for m, delivered in self._messages.values()
                   if not delivered and handle_key(m.recipient) == handle_key(recipient)]
        for message in waiting:
            self._messages[message.id] = (message, True)
        return sorted(waiting, key=lambda m: m.id)


@dataclass(eq=False)
class Session:
    """One connection's view: which handle it acts for, if any."""

    name: str                       # how traces name the connection, e.g. "127.0.0.1:40512"
    handle: str | None = None
    exiting: bool = False           # `exit` answered, `exit-complete` not yet received
    admitted: bool = False          # gave the server password (or none is needed)
    closing: bool = False           # the tracker closes the connection after this reply
    deliver: Callable[[Push], None] | None = None   # set by the I/O shell; the core never calls it
    started: float = field(default_factory=time.monotonic)      # when the connection opened
    last_active: float = field(default_factory=time.monotonic)  # when it last sent a frame
    bucket: TokenBucket | None = None                           # flood control, set by the core
    after_reply: list[Push] = field(default_factory=list)  # pushes to send right after the reply


@dataclass
class RunningTweet:
    tid: int
    author: str
    involved: set[str]              # handle keys of the author and the followers it was given
    started: float
    handed_out: dict[str, Peer] = field(default_factory=dict)  # follower key -> tuple given


@dataclass
class _Online:
    session: Session
    peer: Peer
    lost: bool = False              # the connection closed without logout or exit


@dataclass
class TrackerCore:
    store: Store = field(default_factory=MemoryStore)
    clock: Callable[[], float] = time.monotonic
    log: Callable[[str], None] = lambda line: None
    tweet_timeout: float = limits.TWEET_TIMEOUT
    exit_wait: float = limits.EXIT_WAIT_TIMEOUT
    session_max: int = limits.SESSION_MAX
    hasher: PasswordHasher = field(default_factory=PasswordHasher)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    server_password: str | None = None
    register_timeout: float = limits.REGISTER_TIMEOUT
    idle_timeout: float = limits.IDLE_TIMEOUT
    flood_burst: int = limits.FLOOD_BURST
    flood_rate: float = limits.FLOOD_RATE

    def __post_init__(self) -> None:
        self._lock = threading.Condition(threading.Lock())   # never taken twice: no RLock needed
        self._online: dict[str, _Online] = {}
        self._running: dict[str, RunningTweet] = {}
        self._pushes: list[tuple[Session, Push]] = []

    # ---- entry points ------------------------------------------------------------------------
    def execute(self, session: Session, request: Request) -> Reply:
        handler = getattr(self, "_cmd_" + request.cmd.replace("-", "_"))
        with self._lock:
            session.last_active = self.clock()
            if session.bucket is None:
                session.bucket = TokenBucket(self.flood_burst, self.flood_rate, self.clock)
            if request.cmd not in UNTHROTTLED_COMMANDS and not session.bucket.take():
                return failure("THROTTLED", f"at most {self.flood_burst} commands at once and "
                                            f"{self.flood_rate:g} a second; slow down")
            if not session.admitted and self.server_password is not None:
                return self._admit(session, request)
            if request.cmd not in ANONYMOUS_COMMANDS and session.handle is None:
                return failure("NOT_LOGGED_IN", f"register or log in first: {request.cmd} "
                                                "needs a handle")
            actor = request.args.get(ACTOR_ARGUMENT.get(request.cmd, ""))
            if actor is not None and session.handle is not None \
                    and handle_key(actor) != handle_key(session.handle):
                return failure("NOT_YOUR_HANDLE",
                               f"this session acts for {session.handle}, not {actor}")
            if session.exiting and request.cmd not in ("exit-complete", "heartbeat"):
                return failure("EXITING",
                               f"{session.handle} is exiting: only exit-complete is left")
            if request.cmd in ("register", "login"):
                if session.handle is not None:
                    return failure("ALREADY_LOGGED_IN", f"this session is already "
                                                        f"{session.handle}")
            else:
                self._expire_tweets()
                return handler(session, **request.args)
        return handler(session, **request.args)     # takes the lock around its hashing itself

    def disconnect(self, session: Session) -> None:
        """The connection is gone without a logout: end the handle's tweet, if any.

        The handle stays listed as online, at its last address, marked lost: a ring that finds
        it silent skips it and the tracker then takes it offline (SPEC §3.3).  A connection
        closed in the middle of ``exit`` takes its handle offline at once.
        """
        with self._lock:
            if session.handle is None:
                return
            key = handle_key(session.handle)
            entry = self._online.get(key)
            if entry and entry.session is session:
                if session.exiting:
                    del self._online[key]
                else:
                    entry.lost = True
                    self.log(f"{session.handle} lost its connection; listed until a ring "
                             "skips it or it logs in again")
            self._announce(session.handle, online=False)
            self._go_offline(session, still_listed=True)

    def expired(self, session: Session) -> str | None:
        """Why the tracker should close this connection now (SPEC §6), or None."""
        now = self.clock()
        with self._lock:
            if session.handle is None and not session.exiting \
                    and now - session.started > self.register_timeout:
                return "REGISTER_TIMEOUT"
            if session.handle is not None and now - session.last_active > self.idle_timeout:
                return "IDLE_TIMEOUT"
        return None

    def time_out(self, session: Session, reason: str) -> None:
        """Close a session the tracker gave up on: a silent handle goes offline (not lost)."""
        with self._lock:
            if session.handle is not None:
                self.log(f"{session.handle} sent nothing for {self.idle_timeout:g}s: offline")
                self._announce(session.handle, online=False)
                self._go_offline(session)
            session.closing = True

    def take_pushes(self) -> list[tuple[Session, Push]]:
        """The notices produced since the last call, for the I/O shell to send."""
        if not self._pushes:        # the usual case, seen without taking the lock
            return []
        with self._lock:
            pushes, self._pushes = self._pushes, []
            return pushes

    def welcome(self) -> Push:
        """The first frame of every connection: says whether a server password is needed."""
        return Push("welcome", {"server": "tweeter",
                                "password_required": self.server_password is not None})

    def online_handles(self) -> list[str]:
        with self._lock:
            return by_name(entry.peer.handle for entry in self._online.values())

    # ---- helpers (called with the lock held) -----------------------------------------------
    def _end_tweet(self, author_key: str, why: str) -> None:
        del self._running[author_key]
        self.log(why)
        self._lock.notify_all()

    def _expire_tweets(self) -> None:
        now = self.clock()
        for key, running in list(self._running.items()):
            if now - running.started > self.tweet_timeout:
                self._end_tweet(key, f"tweet #{running.tid} of {running.author} ended: "
                                     f"no end-tweet within {self.tweet_timeout:g}s")

    def _admit(self, session: Session, request: Request) -> Reply:
        """Before anything else, a session must give the server password (SPEC §4)."""
        session.closing = True      # unless the password is right, the connection is closed
        if request.cmd != "auth":
            return failure("SERVER_PASSWORD_REQUIRED", "this tracker wants its password first")
        given = request.args.get("password", "")
        if not hmac.compare_digest(str(given).encode("utf-8"),
                                   str(self.server_password).encode("utf-8")):
            return failure("WRONG_SERVER_PASSWORD", "wrong server password")
        session.admitted, session.closing = True, False
        return success("welcome")

    def _live_sessions(self) -> int:
        """Handles online in a connected session (lost ones do not count toward the cap)."""
        return sum(1 for entry in self._online.values() if not entry.lost)

    def _push(self, recipient: str, kind: str, /, **data: Any) -> None:
        """Queue a notice for ``recipient`` if it is online in a live session."""
        entry = self._online.get(handle_key(recipient))
        if entry and not entry.lost and entry.session.handle is not None:
            self._pushes.append((entry.session, Push(kind, data)))

    def _announce(self, handle: str, online: bool) -> None:
        """Tell the online followers of ``handle`` that it came online (and at which address:
        a ring keeps its author's tuple) or went offline."""
        entry = self._online.get(handle_key(handle))
        where = {"peer": entry.peer.as_list()} if online and entry else {}
        for follower in self.store.followers(handle):
            self._push(follower, "presence", handle=handle, online=online, **where)

    @staticmethod
    def _me(session: Session) -> str:
        """The session's handle; `execute` has already refused sessions without one."""
        assert session.handle is not None
        return session.handle

    def _known(self, handle: object) -> str | Reply:
        """The handle's registered spelling, or the FAILURE to answer."""
        problem = check_handle(handle)
        if problem:
            return failure(*problem)
        name = self.store.find(handle)  # type: ignore[arg-type]
        return name if name else failure("UNKNOWN_HANDLE", f"{handle} is not registered")

    def _go_online(self, session: Session, peer: Peer) -> None:
        session.handle = peer.handle
        self._online[handle_key(peer.handle)] = _Online(session, peer)

    def _go_offline(self, session: Session, still_listed: bool = False) -> None:
        """The session stops acting for its handle; its running tweet, if any, ends."""
        assert session.handle is not None
        key = handle_key(session.handle)
        if key in self._running:
            why = "its author's connection closed" if still_listed else "its author logged out"
            self._end_tweet(key, f"tweet #{self._running[key].tid} of {session.handle} ended: "
                                 + why)
        entry = self._online.get(key)
        if not still_listed and entry and entry.session is session:
            del self._online[key]
        self.store.set_last_seen(session.handle, self.store.latest_tweet_id())
        session.handle = None
        session.started = self.clock()     # a connection that stays may log in again in time

    def _start_tweet(self, me: str, text: str, retweet_of: int | None = None) -> Reply:
        if handle_key(me) in self._running:
            return failure("TWEET_IN_PROGRESS",
                           f"tweet #{self._running[handle_key(me)].tid} of {me} is still running")
        followers = [entry.peer for name in self.store.followers(me)
                     if (entry := self._online.get(handle_key(name)))
                     and not entry.session.exiting]
        tid = self.store.add_tweet(me, text, time.time(), retweet_of)
        self._running[handle_key(me)] = RunningTweet(
            tid, me, {handle_key(me), *(peer.key for peer in followers)}, self.clock(),
            {peer.key: peer for peer in followers})
        return success(f"tweet #{tid} of {me} goes to {len(followers)} followers",
                       tid=tid, text=text, count=len(followers),
                       followers=[peer.as_list() for peer in followers])

    @staticmethod
    def _tweets(what: str, tweets: list[Tweet]) -> Reply:
        return success(f"{len(tweets)} {what}", count=len(tweets),
                       tweets=[tweet.as_list() for tweet in tweets])

    # ---- accounts (these two take the lock themselves: hashing happens outside it) -----------
    def _cmd_register(self, session: Session, handle: str, ip: str, ports: list[int],
                      password: str, key: str) -> Reply:
        problem = (check_handle(handle) or check_ipv4(ip) or check_ports(ports)
                   or check_public_key(key) or check_password(password))
        if problem:
            return failure(*problem)
        with self._lock:        # a cheap early answer, before spending time on the hash
            existing = self.store.find(handle)
            if existing:
                return failure("DUPLICATE_HANDLE", f"{existing} is already registered")
        digest = self.hasher.hash(password)
        with self._lock:
            if session.handle is not None:
                return failure("ALREADY_LOGGED_IN", f"this session is already {session.handle}")
            if self._live_sessions() >= self.session_max:
                return failure("SERVER_FULL", f"the tracker has {self.session_max} users online")
            if not self.store.create(handle, digest, time.time()):
                return failure("DUPLICATE_HANDLE",
                               f"{self.store.find(handle)} is already registered")
            self.store.set_last_seen(handle, self.store.latest_tweet_id())
            self._go_online(session, Peer(handle, ip, *ports, key))
        return success(f"{handle} registered at {ip} ports {ports[0]} {ports[1]} {ports[2]}",
                       handle=handle)

    def _cmd_login(self, session: Session, handle: str, ip: str, ports: list[int],
                   password: str, key: str) -> Reply:
        problem = (check_handle(handle) or check_ipv4(ip) or check_ports(ports)
                   or check_public_key(key))
        if problem:
            return failure(*problem)
        with self._lock:
            name = self.store.find(handle)
            if not name:
                return failure("UNKNOWN_HANDLE", f"{handle} is not registered")
            if self.throttle.blocked(handle_key(name)):
                return failure("THROTTLED", f"too many failed logins for {name}; wait a minute")
            # Counted as failed until proven right: parallel guesses cannot outrun the count.
            self.throttle.failed(handle_key(name))
            stored = self.store.password_hash(name) or ""
        good = isinstance(password, str) and self.hasher.verify(password, stored)
        with self._lock:
            if not good:
                return failure("WRONG_PASSWORD", f"wrong password for {name}")
            if session.handle is not None:
                return failure("ALREADY_LOGGED_IN", f"this session is already {session.handle}")
            entry = self._online.get(handle_key(name))
            if entry and not entry.lost:
                return failure("ALREADY_ONLINE", f"{name} is online in another session")
            if self.store.find(name) is None:       # deleted while the hash was checked
                return failure("UNKNOWN_HANDLE", f"{handle} is not registered")
            if entry is None and self._live_sessions() >= self.session_max:
                return failure("SERVER_FULL", f"the tracker has {self.session_max} users online")
            self.throttle.succeeded(handle_key(name))
            new = self.store.feed_count_after(name, self.store.last_seen(name))
            self._go_online(session, Peer(name, ip, *ports, key))
            self._announce(name, online=True)
            for message in self.store.take_undelivered(name):   # kept while it was offline
                session.after_reply.append(Push("message", {
                    "id": message.id, "sender": message.sender, "text": message.text,
                    "created": message.created, "kept": True}))
        return success(f"{name} logged in at {ip} ports {ports[0]} {ports[1]} {ports[2]}; "
                       f"{new} new tweets since the last session", handle=name, new=new)

    def _cmd_logout(self, session: Session) -> Reply:
        me = self._me(session)
        self._announce(me, online=False)
        self._go_offline(session)
        return success(f"{me} logged out; everything is kept")

    # ---- the course's commands ---------------------------------------------------------------
    def _cmd_query_handles(self, session: Session) -> Reply:
        handles = self.store.handles()
        return success(f"{len(handles)} handles", count=len(handles), handles=handles)

    def _cmd_follow(self, session: Session, follower: str, followee: str) -> Reply:
        target = self._known(followee)
        if isinstance(target, Reply):
            return target
        me = self._me(session)
        if handle_key(target) == handle_key(me):
            return failure("SELF_FOLLOW", f"{me} cannot follow itself")
        if self.store.is_blocked(target, me):
            return failure("BLOCKED", f"{target} has blocked {me}")
        if not self.store.follow(me, target):
            return failure("ALREADY_FOLLOWING", f"{me} already follows {target}")
        self._push(target, "followed", by=me)
        return success(f"{me} now follows {target}")

    def _cmd_drop(self, session: Session, follower: str, followee: str) -> Reply:
        target = self._known(followee)
        if isinstance(target, Reply):
            return target
        me = self._me(session)
        if not self.store.unfollow(me, target):
            return failure("NOT_FOLLOWING", f"{me} does not follow {target}")
        return success(f"{me} no longer follows {target}")

    def _cmd_tweet(self, session: Session, handle: str, text: str) -> Reply:
        problem = check_text(text)
        if problem:
            return failure(*problem)
        return self._start_tweet(self._me(session), text)

    def _cmd_end_tweet(self, session: Session, handle: str, tid: int, reached: int,
                       skipped: list[object]) -> Reply:
        me = self._me(session)
        running = self._running.get(handle_key(me))
        if running is None or running.tid != tid:
            return failure("NO_TWEET_IN_PROGRESS", f"{me} has no tweet #{tid} in progress")
        gone = [running.handed_out[handle_key(name)].handle for name in skipped
                if isinstance(name, str) and handle_key(name) in running.handed_out]
        for name in gone:
            self._take_offline_skipped(name, running.handed_out[handle_key(name)])
        note = f", skipped {' '.join(gone)}" if gone else ""
        self._end_tweet(handle_key(me), f"tweet #{tid} of {me} ended: reached {reached}{note}")
        return success(f"tweet #{tid} of {me} ended: {reached} followers reached{note}",
                       reached=reached, skipped=gone)

    def _take_offline_skipped(self, name: str, handed_out: Peer) -> None:
        """A follower did not answer its neighbour: the tracker takes it offline (SPEC §3.3).

        Only the address the ring was given counts (the handle may have logged in again
        elsewhere since), and a session in the middle of `exit` is left to finish it.
        """
        entry = self._online.get(handle_key(name))
        if entry is None or entry.peer != handed_out or entry.session.exiting:
            return
        if entry.lost:                      # already announced when its connection closed
            del self._online[handle_key(name)]
            return
        self.log(f"{name} did not answer its ring neighbour: offline")
        self._announce(name, online=False)
        self._pushes.append((entry.session, Push("offline", {
            "reason": "your ring ports did not answer; log in again"})))
        self._go_offline(entry.session)

    def _cmd_exit(self, session: Session, handle: str) -> Reply:
        me = self._me(session)
        key = handle_key(me)
        session.exiting = True      # from now on no new tweet involves the handle
        deadline = self.clock() + self.exit_wait
        while any(key in running.involved for running in self._running.values()):
            remaining = deadline - self.clock()
            if remaining <= 0:
                session.exiting = False
                return failure("BUSY", f"a tweet involving {me} is still running; try again")
            self._lock.wait(min(remaining, 0.5))
            self._expire_tweets()
        followers = [entry.peer.as_list() for name in self.store.followers(me)
                     if (entry := self._online.get(handle_key(name))) and not entry.lost]
        # Its online followers, so that a process that never tweeted can still tear down
        # the ring state an earlier process of the same handle left with them.
        return success(f"{me} may exit: tear the ring down, then send exit-complete",
                       followers=followers)

    def _cmd_exit_complete(self, session: Session, handle: str) -> Reply:
        me = self._me(session)
        if not session.exiting:
            return failure("EXIT_NOT_STARTED", f"send exit {me} first")
        self._announce(me, online=False)
        self.store.delete(me)
        self._online.pop(handle_key(me), None)
        session.handle, session.exiting = None, False
        return success(f"{me} exited: handle, account and follower list deleted")

    # ---- the social commands -----------------------------------------------------------------
    def _cmd_online(self, session: Session) -> Reply:
        following = ({handle_key(h) for h in self.store.following(session.handle)}
                     if session.handle else set())
        names = by_name(e.peer.handle for e in self._online.values() if not e.lost)
        return success(f"{len(names)} online", count=len(names),
                       online=[[name, handle_key(name) in following] for name in names])

    def _lists(self, session: Session, handle: str | None,
               read: Callable[[str], list[str]], what: str) -> Reply:
        name = self._known(handle) if handle is not None else session.handle
        if isinstance(name, Reply):
            return name
        assert name is not None
        handles = read(name)
        return success(f"{name} has {len(handles)} {what}", handle=name, count=len(handles),
                       handles=handles)

    def _cmd_followers(self, session: Session, handle: str | None = None) -> Reply:
        return self._lists(session, handle, self.store.followers, "followers")

    def _cmd_following(self, session: Session, handle: str | None = None) -> Reply:
        return self._lists(session, handle, self.store.following, "followed")

    def _cmd_feed(self, session: Session, count: int = limits.FEED_DEFAULT) -> Reply:
        problem = check_count(count)
        if problem:
            return failure(*problem)
        return self._tweets("tweets in the feed", self.store.feed(self._me(session), count))

    def _cmd_retweet(self, session: Session, tid: int) -> Reply:
        original = self.store.tweet(tid)
        if original is None:
            return failure("UNKNOWN_TWEET", f"there is no tweet #{tid}")
        if original.retweet_of is not None:     # retweet the original, not "RT @x: RT @y: …"
            original = self.store.tweet(original.retweet_of) or original
        text = f"RT {original.author}: {original.text}"
        # A retweet whose original was deleted reads as an original (retweet_of is null):
        # quoting it again could outgrow what a ring datagram carries.
        if len(text) > limits.RING_TEXT_MAX:
            return failure("TOO_LONG", f"the retweet would have {len(text)} characters; "
                                       f"a ring carries at most {limits.RING_TEXT_MAX}")
        return self._start_tweet(self._me(session), text, retweet_of=original.id)

    def _cmd_search(self, session: Session, tag: str) -> Reply:
        problem = check_tag(tag)
        if problem:
            return failure(*problem)
        return self._tweets(f"tweets with {tag}", self.store.search(tag[1:], limits.FEED_MAX))

    def _cmd_trending(self, session: Session) -> Reply:
        top = self.store.trending(limits.TRENDING_COUNT)
        return success(f"{len(top)} trending hashtags", count=len(top),
                       tags=[[f"#{tag}", uses] for tag, uses in top])

    # ---- live features ---------------------------------------------------------------------------
    def _cmd_auth(self, session: Session, password: str) -> Reply:
        return success("no server password is needed")     # admitted already (see execute)

    def _cmd_say(self, session: Session, text: str, **ignored: Any) -> Reply:
        """Chat-room broadcast.  The sender is the session's handle, whatever else was sent."""
        problem = check_text(text, "say")
        if problem:
            return failure(*problem)
        me = self._me(session)
        listeners = [entry.peer.handle for entry in self._online.values()
                     if not entry.lost and handle_key(entry.peer.handle) != handle_key(me)]
        for listener in listeners:
            self._push(listener, "say", sender=me, text=text)
        return success(f"said to {len(listeners)} users online", count=len(listeners))

    def _cmd_message(self, session: Session, to: str, text: str) -> Reply:
        """A direct message: sent peer to peer when ``to`` is online, else kept for its login."""
        problem = check_text(text, "message")
        if problem:
            return failure(*problem)
        target = self._known(to)
        if isinstance(target, Reply):
            return target
        me = self._me(session)
        if self.store.is_blocked(target, me):
            return failure("BLOCKED", f"{target} has blocked {me}")
        entry = self._online.get(handle_key(target))
        online = entry is not None and not entry.lost
        message_id = self.store.add_message(me, target, text, time.time(), delivered=online)
        if online and entry is not None:
            return success(f"message #{message_id} to {target}: send it peer to peer",
                           message_id=message_id, to=target, peer=entry.peer.as_list())
        return success(f"message #{message_id} kept for {target}, who is offline",
                       message_id=message_id, to=target)

    def _cmd_message_undelivered(self, session: Session, message_id: int) -> Reply:
        """The peer-to-peer send failed: keep the message for the recipient's next login."""
        me = self._me(session)
        if not self.store.set_delivered(message_id, me, delivered=False):
            return failure("UNKNOWN_MESSAGE", f"{me} sent no message #{message_id}")
        return success(f"message #{message_id} kept for the recipient's next login")

    def _cmd_block(self, session: Session, handle: str) -> Reply:
        target = self._known(handle)
        if isinstance(target, Reply):
            return target
        me = self._me(session)
        if handle_key(target) == handle_key(me):
            return failure("SELF_BLOCK", f"{me} cannot block itself")
        if not self.store.block(me, target):
            return failure("ALREADY_BLOCKED", f"{me} has already blocked {target}")
        return success(f"{me} blocked {target}: it no longer follows or messages {me}")

    def _cmd_unblock(self, session: Session, handle: str) -> Reply:
        target = self._known(handle)
        if isinstance(target, Reply):
            return target
        me = self._me(session)
        if not self.store.unblock(me, target):
            return failure("NOT_BLOCKED", f"{me} has not blocked {target}")
        return success(f"{me} unblocked {target}")

    def _cmd_heartbeat(self, session: Session) -> Reply:
        return success("still here")        # last_active was updated in execute
