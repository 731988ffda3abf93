"""What the tracker answers: command semantics, free of sockets.

``TrackerCore.execute(session, request)`` takes one decoded request from one connection's
``Session`` and returns the ``Reply``.  Durable state (handles, follows, tweets) lives behind the
small :class:`Store` interface; who is online, at which address, and which tweets are running is
kept here, in memory.  One lock guards it all: commands are short, and a single lock makes the
"exactly one wins" rules (two registrations of one handle, two tweets of one author) plain.

Only ``exit`` blocks: it waits, on the lock's condition, for running tweets that involve the
handle to end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from protocol import limits
from protocol.ring import Peer
from protocol.validate import check_handle, check_ipv4, check_ports, check_text, handle_key
from protocol.wire import Reply, Request, failure, success

# The argument that names who acts: it must be the session's own handle (NOT_YOUR_HANDLE).
ACTOR_ARGUMENT = {"follow": "follower", "drop": "follower", "tweet": "handle",
                  "end-tweet": "handle", "exit": "handle", "exit-complete": "handle"}


class Store(Protocol):
    """Durable state.  Handles are passed in any case; stores compare them case-insensitively."""

    def find(self, handle: str) -> str | None:
        """The handle as first registered, or None."""

    def create(self, handle: str) -> bool:
        """Add a handle; False if it exists already."""

    def delete(self, handle: str) -> None:
        """Remove a handle, its follows in both directions and its tweets."""

    def handles(self) -> list[str]: ...

    def follow(self, follower: str, followee: str) -> bool:
        """False if already following."""

    def unfollow(self, follower: str, followee: str) -> bool:
        """False if not following."""

    def followers(self, handle: str) -> list[str]: ...

    def add_tweet(self, author: str, text: str, when: float) -> int:
        """Store a tweet and return its id."""


def by_name(handles: Iterable[str]) -> list[str]:
    """Handles in the product's order: alphabetical, case-insensitively."""
    return sorted(handles, key=handle_key)


class MemoryStore:
    """A :class:`Store` in dictionaries, for a throw-away tracker."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._followers: dict[str, set[str]] = {}
        self._tweets: list[tuple[int, str, str, float]] = []

    def find(self, handle: str) -> str | None:
        return self._names.get(handle_key(handle))

    def create(self, handle: str) -> bool:
        if handle_key(handle) in self._names:
            return False
        self._names[handle_key(handle)] = handle
        self._followers[handle_key(handle)] = set()
        return True

    def delete(self, handle: str) -> None:
        key = handle_key(handle)
        self._names.pop(key, None)
        self._followers.pop(key, None)
        for followers in self._followers.values():
            followers.discard(key)
        self._tweets = [tweet for tweet in self._tweets if handle_key(tweet[1]) != key]

    def handles(self) -> list[str]:
        return by_name(self._names.values())

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
        return by_name(self._names[key] for key in self._followers.get(handle_key(handle), ()))

    def add_tweet(self, author: str, text: str, when: float) -> int:
        tid = len(self._tweets) + 1 if not self._tweets else self._tweets[-1][0] + 1
        self._tweets.append((tid, author, text, when))
        return tid


@dataclass(eq=False)
class Session:
    """One connection's view: which handle it acts for, if any."""

    name: str                       # how traces name the connection, e.g. "127.0.0.1:40512"
    handle: str | None = None
    exiting: bool = False           # `exit` answered, `exit-complete` not yet received


@dataclass
class RunningTweet:
    tid: int
    author: str
    involved: set[str]              # handle keys of the author and the followers it was given
    started: float


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

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._online: dict[str, _Online] = {}
        self._running: dict[str, RunningTweet] = {}

    # ---- entry points ------------------------------------------------------------------------
    def execute(self, session: Session, request: Request) -> Reply:
        handler = getattr(self, "_cmd_" + request.cmd.replace("-", "_"))
        with self._lock:
            if request.cmd not in ("register", "query-handles") and session.handle is None:
                return failure("NOT_REGISTERED", f"register first: {request.cmd} needs a handle")
            actor = request.args.get(ACTOR_ARGUMENT.get(request.cmd, ""))
            if actor is not None and session.handle is not None \
                    and handle_key(actor) != handle_key(session.handle):
                return failure("NOT_YOUR_HANDLE",
                               f"this session acts for {session.handle}, not {actor}")
            if session.exiting and request.cmd != "exit-complete":
                return failure("EXITING",
                               f"{session.handle} is exiting: only exit-complete is left")
            self._expire_tweets()
            return handler(session, **request.args)

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
            if key in self._running:
                self._end_tweet(key, f"tweet #{self._running[key].tid} of {session.handle} ended:"
                                     " its author's connection closed")
            entry = self._online.get(key)
            if entry and entry.session is session:
                if session.exiting:
                    del self._online[key]
                else:
                    entry.lost = True
                    self.log(f"{session.handle} lost its connection; listed until a ring "
                             "skips it")
            session.handle = None

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

    def _known(self, handle: str) -> str | Reply:
        """The handle's registered spelling, or the FAILURE to answer."""
        problem = check_handle(handle)
        if problem:
            return failure(*problem)
        name = self.store.find(handle)
        return name if name else failure("UNKNOWN_HANDLE", f"{handle} is not registered")

    # ---- commands ------------------------------------------------------------------------------
    def _cmd_register(self, session: Session, handle: str, ip: str, ports: list[int]) -> Reply:
        if session.handle is not None:
            return failure("ALREADY_REGISTERED", f"this session is already {session.handle}")
        problem = check_handle(handle) or check_ipv4(ip) or check_ports(ports)
        if problem:
            return failure(*problem)
        if len(self._online) >= self.session_max:
            return failure("SERVER_FULL", f"the tracker has {self.session_max} users online")
        if not self.store.create(handle):
            return failure("DUPLICATE_HANDLE", f"{self.store.find(handle)} is already registered")
        session.handle = handle
        self._online[handle_key(handle)] = _Online(session, Peer(handle, ip, *ports))
        return success(f"{handle} registered at {ip} ports {ports[0]} {ports[1]} {ports[2]}",
                       handle=handle)

    def _cmd_query_handles(self, session: Session) -> Reply:
        handles = self.store.handles()
        return success(f"{len(handles)} handles", count=len(handles), handles=handles)

    def _cmd_follow(self, session: Session, follower: str, followee: str) -> Reply:
        target = self._known(followee)
        if isinstance(target, Reply):
            return target
        me = session.handle or follower
        if handle_key(target) == handle_key(me):
            return failure("SELF_FOLLOW", f"{me} cannot follow itself")
        if not self.store.follow(me, target):
            return failure("ALREADY_FOLLOWING", f"{me} already follows {target}")
        return success(f"{me} now follows {target}")

    def _cmd_drop(self, session: Session, follower: str, followee: str) -> Reply:
        target = self._known(followee)
        if isinstance(target, Reply):
            return target
        me = session.handle or follower
        if not self.store.unfollow(me, target):
            return failure("NOT_FOLLOWING", f"{me} does not follow {target}")
        return success(f"{me} no longer follows {target}")

    def _cmd_tweet(self, session: Session, handle: str, text: str) -> Reply:
        me = session.handle or handle
        problem = check_text(text)
        if problem:
            return failure(*problem)
        if handle_key(me) in self._running:
            return failure("TWEET_IN_PROGRESS",
                           f"tweet #{self._running[handle_key(me)].tid} of {me} is still running")
        followers = [self._online[handle_key(name)].peer
                     for name in self.store.followers(me)
                     if handle_key(name) in self._online
                     and not self._online[handle_key(name)].session.exiting]
        tid = self.store.add_tweet(me, text, time.time())
        self._running[handle_key(me)] = RunningTweet(
            tid, me, {handle_key(me), *(peer.key for peer in followers)}, self.clock())
        return success(f"tweet #{tid} of {me} goes to {len(followers)} followers",
                       tid=tid, count=len(followers),
                       followers=[peer.as_list() for peer in followers])

    def _cmd_end_tweet(self, session: Session, handle: str, tid: int, reached: int,
                       skipped: list[object]) -> Reply:
        me = session.handle or handle
        running = self._running.get(handle_key(me))
        if running is None or running.tid != tid:
            return failure("NO_TWEET_IN_PROGRESS", f"{me} has no tweet #{tid} in progress")
        gone = [name for name in skipped
                if isinstance(name, str) and handle_key(name) in running.involved]
        for name in gone:   # a follower that did not answer is taken offline (SPEC §3.3)
            entry = self._online.pop(handle_key(name), None)
            if entry:
                entry.session.handle = None
        self._end_tweet(handle_key(me), f"tweet #{tid} of {me} ended: reached {reached}"
                        + (f", skipped {' '.join(gone)}" if gone else ""))
        return success(f"tweet #{tid} of {me} ended: {reached} followers reached"
                       + (f", skipped {' '.join(gone)}" if gone else ""),
                       reached=reached, skipped=gone)

    def _cmd_exit(self, session: Session, handle: str) -> Reply:
        me = session.handle or handle
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
        return success(f"{me} may exit: tear the ring down, then send exit-complete")

    def _cmd_exit_complete(self, session: Session, handle: str) -> Reply:
        me = session.handle or handle
        if not session.exiting:
            return failure("EXIT_NOT_STARTED", f"send exit {me} first")
        self.store.delete(me)
        self._online.pop(handle_key(me), None)
        session.handle, session.exiting = None, False
        return success(f"{me} exited: handle, account and follower list deleted")
