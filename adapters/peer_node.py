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

from adapters.console import Console, clock_time
from protocol import limits
from protocol.auth import SessionKeys
from protocol.peer import (
    DirectEnded,
    Dropped,
    Event,
    MessageShown,
    PeerConfig,
    RingPeer,
    RoundEnded,
    Shown,
    TeardownEnded,
    Traced,
    TweetShown,
)
from protocol.ring import FollowerRing, Membership, Peer
from protocol.text import as_typed

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

    def __init__(self, console: Console, config: PeerConfig,
                 on_message: Callable[[int], None] | None = None) -> None:
        """``on_message(message_id)`` is called (on any thread, never blocking) for every direct
        message shown: the shell tells the tracker it arrived."""
        self.console, self.config, self.on_message = console, config, on_message
        self.own_ring = FollowerRing()     # kept across logins of one handle in this process
        self.shown = Shown()               # so is what was shown: each tweet once
        self.sockets: dict[str, socket.socket] = {}
        self._peer: RingPeer | None = None
        self._lock = threading.Lock()
        self._waiters: dict[tuple[str, int], _Waiter] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wakeup: socket.socket | None = None
        self._early: list[Callable[[RingPeer, float], None]] = []   # before start(): kept

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

    def start(self, me: Peer, keys: SessionKeys, following: Iterable[str],
              known: Iterable[Peer] = (), blocked: Iterable[str] = ()) -> None:
        """The tracker accepted ``me``: take part in rings from now on.  ``known`` are the
        tuples the tracker handed out with the login (the online authors it follows)."""
        peer = RingPeer(me, keys, self.config, seq_start=random.randrange(1, 2**31),
                        own_ring=self.own_ring, shown=self.shown)
        for author in following:
            peer.follow(author)
        for tuple_ in known:
            peer.know(tuple_)
        for handle in blocked:
            peer.block(handle)
        self.own_ring = peer.own_ring
        with self._lock:
            self._peer = peer
            early, self._early = self._early, []
        for action in early:             # messages pushed between the login's reply and now
            self._call(action)
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
            self._early = []
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

    def follow(self, author: str, tuple_: Peer | None = None) -> None:
        """Now following ``author`` (``tuple_``: its login, when it is online)."""
        self._call(lambda peer, now: peer.follow(author))
        if tuple_ is not None:
            self.know(tuple_)

    def unfollow(self, author: str) -> None:
        self._call(lambda peer, now: peer.unfollow(author))

    def know(self, tuple_: Peer) -> None:
        """A tuple the tracker handed out: that handle's current login."""
        self._call(lambda peer, now: peer.know(tuple_))

    def block(self, handle: str) -> None:
        self._call(lambda peer, now: peer.block(handle))

    def unblock(self, handle: str) -> None:
        self._call(lambda peer, now: peer.unblock(handle))

    def tweet_from_tracker(self, author: str, tid: int, text: str) -> None:
        self._call(lambda peer, now: peer.tweet_from_tracker(author, tid, text), keep=True)

    def message_from_tracker(self, sender: str, message_id: int, text: str,
                             created: float) -> None:
        self._call(lambda peer, now: peer.message_from_tracker(sender, message_id, text,
                                                               created), keep=True)

    def rings(self) -> tuple[list[Peer], list[Membership]]:
        """The own ring's followers and the memberships, as the peer keeps them now."""
        with self._lock:
            peer = self._peer
            members = list(peer.memberships.values()) if peer else []
            return list(self.own_ring.followers), members

    def _command(self, key: tuple[str, int],
                 start: Callable[[RingPeer, float], None]) -> Event | None:
        """Start something in the peer and wait for the event that ends it."""
        waiter = _Waiter()
        with self._lock:
            if self._peer is None:
                return None
            self._waiters[key] = waiter
        self._call(start)
        # The peer always ends what it started (rounds have a deadline, sends a give-up);
        # close() wakes every waiter too.  The bound is only a last resort.
        waiter.done.wait(3600.0)
        with self._lock:
            self._waiters.pop(key, None)
        return waiter.event

    def _call(self, action: Callable[[RingPeer, float], None], keep: bool = False) -> None:
        """Run ``action`` on the peer under the lock, then do what it asked.  Before the peer
        starts, an action to ``keep`` waits for it; others have nothing to act on."""
        with self._lock:
            peer = self._peer
            if peer is None:
                if keep:
                    self._early.append(action)
                return
            action(peer, time.monotonic())
            out, events = peer.take_datagrams(), peer.take_events()
        self._carry_out(out, events)
        if threading.current_thread() is not self._thread:
            self._wake()        # the selector thread looks at its deadlines after each call

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
            self._drain(selector)
            for key in list(selector.get_map().values()):
                if key.data == "wakeup":
                    key.fileobj.close()             # type: ignore[union-attr]

    def _drain(self, selector: selectors.BaseSelector, most: int = 64) -> None:
        """On the way out (logout, exit): take what has already arrived — the ack of the
        tweet this user brought home, say — so that it is not lost with the socket."""
        for key in list(selector.get_map().values()):
            if key.data == "wakeup":
                continue
            for _ in range(most):
                try:
                    data, sender = key.fileobj.recvfrom(  # type: ignore[union-attr]
                        limits.DATAGRAM_MAX + 1, socket.MSG_DONTWAIT)
                except OSError:
                    break                           # nothing more (or the socket is gone)
                self._call(lambda peer, now, role=key.data, data=data, sender=sender:
                           peer.receive(role, data, sender[:2], now))

    def _carry_out(self, out: list, events: list[Event]) -> None:
        # Every trace record is written before anything is sent, in the peer's own order: a
        # datagram's answer, which another thread may take at once, must never be recorded
        # before it, nor what was sent before what was received that caused it (the diagram
        # orders messages by what each process had received when it sent them).
        traced = [e for e in events if isinstance(e, Traced)]
        for event in traced:
            self._show(event)
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
            if not isinstance(event, Traced):
                self._show(event)

    def _show(self, event: Event) -> None:
        console = self.console
        if isinstance(event, TweetShown):
            via = event.prev or "the tracker"
            console.notice(f"tweet #{event.tid} by {event.author} via {via}: "
                        f"{as_typed(event.text)}")
        elif isinstance(event, MessageShown):
            kept = (f" (kept by the tracker, sent {clock_time(event.kept_since)})"
                    if event.kept_since is not None else "")
            console.notice(f"[message] {event.sender}: {as_typed(event.text)}{kept}")
            if self.on_message is not None:
                self.on_message(event.message_id)
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
            console.trace(event.summary, kind=event.summary)
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
