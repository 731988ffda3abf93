"""The user's three UDP sockets around its ring peer (SPEC §3): bind, select, send, show.

Every rule of the ring lives in :class:`protocol.peer.RingPeer`; this module only does its I/O::

    left   ─┐
    middle ─┼─> selector thread ──> RingPeer.receive / handle_timer ─┬─> sendto(...)
    right  ─┘        ^                                              └─> events: printed, or
                     └── wakeup socket (a command set a new deadline)      handed to a waiting
                                                                           command (run_tweet, ...)

The shell's thread calls the commands (``run_tweet``, ``teardown``, ``send_direct``) which start
the work in the peer and wait for its end event.  One lock keeps the peer single-threaded.
"""

from __future__ import annotations

import contextlib
import random
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from adapters.console import Console
from protocol import limits
from protocol.peer import (
    DirectEnded,
    Dropped,
    Event,
    MessageShown,
    PeerConfig,
    RingPeer,
    RoundEnded,
    TeardownEnded,
    Traced,
    TweetShown,
)
from protocol.ring import FollowerRing, Membership, Peer
from protocol.text import escape_for_terminal

ROLES = ("left", "middle", "right")


@dataclass
class TweetResult:
    reached: int
    skipped: list[str]
    seconds: float
    completed: bool


class _Waiter:
    """One command waiting for the event that ends it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.event: Event | None = None

    def settle(self, event: Event) -> None:
        self.event = event
        self.done.set()


class PeerNode:
    """Bound ports, a selector thread and the ring peer of the current login."""

    def __init__(self, console: Console, config: PeerConfig) -> None:
        self.console, self.config = console, config
        self.own_ring = FollowerRing()     # kept across logins of one handle in this process
        self.sockets: dict[str, socket.socket] = {}
        self._peer: RingPeer | None = None
        self._lock = threading.Lock()
        self._waiters: dict[tuple[str, int], _Waiter] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wakeup: socket.socket | None = None
        self._shown_kept: set[int] = set()

    # ---- life ------------------------------------------------------------------------------
    def bind(self, ip: str, ports: Sequence[int]) -> tuple[int, int, int]:
        """Bind left, middle and right on ``ip`` (0 = any free port); raise OSError if taken.
        Nothing is received until :meth:`start`."""
        self.close()
        bound: dict[str, socket.socket] = {}
        try:
            for role, port in zip(ROLES, ports, strict=True):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                bound[role] = sock
                sock.bind((ip, port))
        except OSError:
            for sock in bound.values():
                sock.close()
            raise
        self.sockets = bound
        left, middle, right = (bound[role].getsockname()[1] for role in ROLES)
        return left, middle, right

    def start(self, me: Peer, following: Iterable[str]) -> None:
        """The tracker accepted ``me``: take part in rings from now on."""
        peer = RingPeer(me, self.config, seq_start=random.randrange(1, 2**31),
                        own_ring=self.own_ring)
        for author in following:
            peer.follow(author)
        self.own_ring = peer.own_ring
        with self._lock:
            self._peer = peer
        selector = selectors.DefaultSelector()
        for role, sock in self.sockets.items():
            selector.register(sock, selectors.EVENT_READ, role)
        wake_reader, self._wakeup = socket.socketpair()
        wake_reader.setblocking(False)
        self._wakeup.setblocking(False)          # a full pipe already means "wake up"
        selector.register(wake_reader, selectors.EVENT_READ, "wakeup")
        self._stop = threading.Event()          # one selector thread per login
        self._thread = threading.Thread(target=self._serve, args=(selector, self._stop),
                                        name="peer-selector", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop receiving and release the ports; commands waiting now end unanswered."""
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        with self._lock:
            self._peer = None
            waiters, self._waiters = list(self._waiters.values()), {}
        for waiter in waiters:
            waiter.done.set()
        for sock in self.sockets.values():
            sock.close()
        self.sockets = {}
        if self._wakeup is not None:
            self._wakeup.close()
            self._wakeup = None

    @property
    def me(self) -> Peer | None:
        peer = self._peer
        return peer.me if peer else None

    # ---- commands (the shell's thread) -------------------------------------------------------
    def run_tweet(self, tid: int, text: str, followers: Sequence[Peer]) -> TweetResult:
        started = time.monotonic()
        event = self._command(("round", tid),
                              lambda peer, now: peer.start_tweet(tid, text, followers, now))
        if not isinstance(event, RoundEnded):
            return TweetResult(0, [], time.monotonic() - started, False)
        return TweetResult(event.reached, list(event.skipped), event.seconds, event.completed)

    def teardown(self, followers: Sequence[Peer]) -> list[str]:
        """Tell ``followers`` to forget this user's ring; those that did not answer."""
        event = self._command(("teardown", 0),
                              lambda peer, now: peer.start_teardown(followers, now))
        if not isinstance(event, TeardownEnded):
            return [p.handle for p in followers]
        return list(event.silent)

    def send_direct(self, to: Peer, message_id: int, text: str) -> bool:
        event = self._command(("message", message_id),
                              lambda peer, now: peer.send_direct(to, message_id, text, now))
        return isinstance(event, DirectEnded) and event.delivered

    def follow(self, author: str) -> None:
        self._call(lambda peer, now: peer.follow(author))

    def unfollow(self, author: str) -> None:
        self._call(lambda peer, now: peer.unfollow(author))

    def author_moved(self, author: Peer) -> None:
        self._call(lambda peer, now: peer.author_moved(author))

    def rings(self) -> tuple[list[Peer], list[Membership]]:
        """The own ring's followers and the memberships, as the peer keeps them now."""
        with self._lock:
            peer = self._peer
            members = list(peer.memberships.values()) if peer else []
            return list(self.own_ring.followers), members

    def first_kept_message(self, message_id: int) -> bool:
        """Whether a message the tracker kept was not shown already (it may have come peer to
        peer too)."""
        with self._lock:
            peer = self._peer
            if peer is not None and not peer.first_time_message(message_id):
                return False
            if message_id in self._shown_kept:
                return False
            self._shown_kept.add(message_id)
            return True

    def _command(self, key: tuple[str, int],
                 start: Callable[[RingPeer, float], None]) -> Event | None:
        """Start something in the peer and wait for the event that ends it."""
        waiter = _Waiter()
        with self._lock:
            if self._peer is None:
                return None
            self._waiters[key] = waiter
        self._call(start)
        waiter.done.wait(self.config.tweet_timeout + 5.0)
        with self._lock:
            self._waiters.pop(key, None)
        return waiter.event

    def _call(self, action: Callable[[RingPeer, float], None]) -> None:
        """Run ``action`` on the peer under the lock, then do what it asked."""
        with self._lock:
            peer = self._peer
            if peer is None:
                return
            action(peer, time.monotonic())
            out, events = peer.take_datagrams(), peer.take_events()
        self._carry_out(out, events)
        self._wake()

    # ---- the selector thread -------------------------------------------------------------------
    def _serve(self, selector: selectors.BaseSelector, stop: threading.Event) -> None:
        with selector:
            while not stop.is_set():
                with self._lock:
                    deadline = self._peer.next_deadline() if self._peer else None
                wait = 0.5 if deadline is None else min(max(deadline - time.monotonic(), 0), 0.5)
                try:
                    events = selector.select(timeout=wait)
                except (OSError, ValueError):
                    return
                for key, _mask in events:
                    if stop.is_set():
                        break
                    try:
                        data, sender = key.fileobj.recvfrom(  # type: ignore[union-attr]
                            limits.DATAGRAM_MAX + 1)
                    except OSError:
                        continue
                    if key.data != "wakeup":
                        self._call(lambda peer, now, role=key.data, data=data, sender=sender:
                                   peer.receive(role, data, sender[:2], now))
                self._call(lambda peer, now: peer.handle_timer(now))
                self.console.tick()
            for key in list(selector.get_map().values()):
                if key.data == "wakeup":
                    key.fileobj.close()             # type: ignore[union-attr]

    def _carry_out(self, out: list, events: list[Event]) -> None:
        for datagram in out:
            sock = self.sockets.get(datagram.port)
            if sock is None:
                continue
            try:
                sock.sendto(datagram.data, datagram.address)
            except OSError as error:
                self.console.trace(f"send to {datagram.address[0]}:{datagram.address[1]} "
                                   f"failed: {error}")
        for event in events:
            self._show(event)

    def _show(self, event: Event) -> None:
        console = self.console
        if isinstance(event, TweetShown):
            console.say(f"tweet #{event.tid} by {event.author} via {event.prev}: "
                        f"{escape_for_terminal(event.text)}")
        elif isinstance(event, MessageShown):
            console.say(f"[message] {event.sender}: {escape_for_terminal(event.text)}")
        elif isinstance(event, Dropped):
            console.trace(event.reason, kind=f"{event.source[0]} {event.rule}")
        elif isinstance(event, Traced):
            self._trace(event)
        else:
            key = {RoundEnded: lambda e: ("round", e.tid),
                   TeardownEnded: lambda e: ("teardown", 0),
                   DirectEnded: lambda e: ("message", e.message_id)}[type(event)](event)
            with self._lock:
                waiter = self._waiters.get(key)
            if waiter is not None:
                waiter.settle(event)

    def _trace(self, event: Traced) -> None:
        console, me = self.console, self.me
        name = me.handle if me else "?"
        if event.direction == "note":
            console.trace(event.summary)
            return
        kind = event.summary.split()[0]
        where = f"{event.address[0]}:{event.address[1]}"
        if event.direction == "send":
            console.records.send(event.peer, kind, event.summary)
            if kind != "ack":
                console.trace(f"{name} -> {event.peer} {where} {event.summary}")
        else:
            console.records.recv(event.peer, kind, event.summary)
            if kind != "ack":
                console.trace(f"{name} <- {where} {event.summary}")

    def _wake(self) -> None:
        """Make the selector thread look at its deadlines again."""
        with contextlib.suppress(OSError, AttributeError):
            self._wakeup.send(b"!")             # type: ignore[union-attr]
