"""The user's three UDP sockets and the rings it takes part in (SPEC §3).

How data flows::

    left   <── ring traffic from the left neighbour (tweets, detours)
    middle <── ring control from authors (setup, teardown), direct messages
    right  ──> ring traffic to the right neighbour (acks come back here)

One selector thread receives every datagram and keeps every retransmission deadline.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import math
import random
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from adapters.console import Console
from protocol import datagrams, limits
from protocol.datagrams import (
    Ack,
    Datagram,
    DatagramError,
    DirectMsg,
    SetupMsg,
    TeardownMsg,
    TweetMsg,
)
from protocol.ring import FollowerRing, Membership, Peer, ring_order
from protocol.text import escape_for_terminal
from protocol.validate import handle_key


@dataclass(eq=False)
class _Outgoing:
    """A datagram waiting for its ack.  The selector thread sends it again at each deadline,
    and gives up after the last one: ``done`` is then set and ``on_fail`` runs."""

    to: str                     # the handle it was sent to (traces name the ack by it)
    address: tuple[str, int]    # where it was sent: only an ack from there counts
    role: str                   # the socket it goes out of
    message: Datagram           # what is sent again
    deadline: float             # when to send again, or give up
    resends_left: int
    on_fail: Callable[[], None] | None = None     # runs on the selector thread: must not block
    done: threading.Event = field(default_factory=threading.Event)
    acked: bool = False


@dataclass
class TweetResult:
    reached: int
    skipped: list[str]
    seconds: float
    completed: bool


def sender_name(message: Datagram) -> str:
    """The lifeline a datagram comes from, as the datagram itself names it."""
    if isinstance(message, (SetupMsg, TeardownMsg)):
        return message.ring
    if isinstance(message, TweetMsg):
        return message.prev
    if isinstance(message, DirectMsg):
        return message.sender
    return "?"


class PeerNode:
    """The three UDP sockets of one user and the rings it takes part in."""

    def __init__(self, console: Console, hop_timeout: float, hop_retries: int) -> None:
        self.console = console
        self.hop_timeout, self.hop_retries = hop_timeout, hop_retries
        self.me: Peer | None = None
        self.sockets: dict[str, socket.socket] = {}
        self.own_ring = FollowerRing()
        self.memberships: dict[str, Membership] = {}
        # (ring, tweet id) and ("message", id) already shown, oldest first, bounded
        self._seen: collections.OrderedDict[tuple[str, int], None] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._seq = itertools.count(random.randrange(1, 2**31))
        self._outgoing: dict[int, _Outgoing] = {}
        self._active_tweet: tuple[int, threading.Event, list[TweetMsg]] | None = None
        self.following: set[str] = set()     # keys of the authors whose rings it may join
        self._stop = threading.Event()
        self._selector_thread: threading.Thread | None = None
        self._wakeup: socket.socket | None = None     # written to when a new deadline is set

    # ---- life ------------------------------------------------------------------------------
    def bind(self, ip: str, ports: Sequence[int], handle: str, public_key: str) -> Peer:
        """Bind left, middle and right on ``ip`` (0 = any free port); raise OSError if taken."""
        bound: dict[str, socket.socket] = {}
        try:
            for role, port in zip(("left", "middle", "right"), ports, strict=True):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                bound[role] = sock
                sock.bind((ip, port))
        except OSError:
            for sock in bound.values():
                sock.close()
            raise
        self.sockets = bound
        ports = (bound[role].getsockname()[1] for role in ("left", "middle", "right"))
        self.me = Peer(handle, ip, *ports, public_key)
        if self.own_ring.author and self.own_ring.author.key != self.me.key:
            self.own_ring = FollowerRing()     # another handle: the old ring is not its own
        selector = selectors.DefaultSelector()
        for role, sock in bound.items():
            selector.register(sock, selectors.EVENT_READ, role)
        wake_reader, self._wakeup = socket.socketpair()
        wake_reader.setblocking(False)
        self._wakeup.setblocking(False)          # a full pipe already means "wake up"
        selector.register(wake_reader, selectors.EVENT_READ, "wakeup")
        self._stop = threading.Event()          # one selector thread per binding
        self._selector_thread = threading.Thread(target=self._serve, args=(selector, self._stop),
                                                 name="peer-selector", daemon=True)
        self._selector_thread.start()
        return self.me

    def close(self) -> None:
        """Stop receiving and release the ports.  The author's own ring is kept: a later
        login of the same handle plans its next setup from it (and `exit` tears it down)."""
        self._stop.set()
        self._wake()
        if self._selector_thread is not None:
            self._selector_thread.join(2.0)
            self._selector_thread = None
        with self._lock:
            waiting, self._outgoing = list(self._outgoing.values()), {}
        for outgoing in waiting:                # nobody will answer them now
            outgoing.done.set()
        for sock in self.sockets.values():
            sock.close()
        if self._wakeup is not None:
            self._wakeup.close()
            self._wakeup = None
        self.sockets = {}
        self.me = None
        self.memberships.clear()

    # ---- sending ---------------------------------------------------------------------------
    def _send(self, role: str, to: tuple[str, int], message: Datagram, label: str,
              handle: str) -> None:
        if self.console.tracing:                # nobody reads it otherwise: no work per hop
            summary = datagrams.summary(message)
            self.console.records.send(handle, summary.split()[0], summary)
            if not isinstance(message, Ack):
                self.console.trace(f"{self.handle} -> {label} {to[0]}:{to[1]} {summary}")
        try:
            self.sockets[role].sendto(datagrams.encode(message), to)
        except (OSError, KeyError) as error:
            self.console.trace(f"send to {to[0]}:{to[1]} failed: {error}")

    def post(self, role: str, to: Peer, port: int, build: Callable[[int], Datagram],
             on_fail: Callable[[], None] | None = None) -> _Outgoing:
        """Send a datagram now and keep it until its ack comes: the selector thread sends it
        again at each deadline and, after the last, sets ``done`` and calls ``on_fail``.
        Never blocks: any thread may post, the selector thread included."""
        message = build(next(self._seq))
        outgoing = _Outgoing(to.handle, (to.ip, port), role, message,
                             time.monotonic() + self.hop_timeout, self.hop_retries, on_fail)
        with self._lock:
            self._outgoing[message.seq] = outgoing     # type: ignore[union-attr]
        self._send(role, outgoing.address, message, to.handle, to.handle)
        self._wake()
        return outgoing

    def wait_for(self, posted: Sequence[_Outgoing]) -> list[bool]:
        """Block until each posted datagram was acknowledged or given up; which were acked."""
        patience = self.hop_timeout * (self.hop_retries + 2) + 1.0
        for outgoing in posted:
            outgoing.done.wait(patience)
        return [outgoing.acked for outgoing in posted]

    def send_reliably(self, role: str, to: Peer, port: int,
                      build: Callable[[int], Datagram]) -> bool:
        """Send until acknowledged; False if ``to`` never answered."""
        return self.wait_for([self.post(role, to, port, build)])[0]

    def _wake(self) -> None:
        """Make the selector thread look at its deadlines again."""
        with contextlib.suppress(OSError, AttributeError):
            self._wakeup.send(b"!")             # type: ignore[union-attr]

    def _next_deadline(self) -> float:
        with self._lock:
            return min((o.deadline for o in self._outgoing.values()), default=math.inf)

    def _resend_due(self) -> None:
        """Send again what is due; give up on what had its last chance (selector thread)."""
        now = time.monotonic()
        failed: list[_Outgoing] = []
        with self._lock:
            due = [o for o in self._outgoing.values() if o.deadline <= now]
            for outgoing in due:
                if outgoing.resends_left == 0:
                    del self._outgoing[outgoing.message.seq]   # type: ignore[union-attr]
                    failed.append(outgoing)
                else:
                    outgoing.resends_left -= 1
                    outgoing.deadline = now + self.hop_timeout
        for outgoing in due:
            if outgoing not in failed:
                attempt = self.hop_retries - outgoing.resends_left
                self._send(outgoing.role, outgoing.address, outgoing.message,
                           f"{outgoing.to} (again, {attempt})", outgoing.to)
        for outgoing in failed:
            self.console.trace(f"{outgoing.to} did not answer "
                               f"seq={outgoing.message.seq}")         # type: ignore[union-attr]
            outgoing.done.set()
            if outgoing.on_fail is not None:
                outgoing.on_fail()

    @property
    def handle(self) -> str:
        return self.me.handle if self.me else "?"

    # ---- receiving -------------------------------------------------------------------------
    def _serve(self, selector: selectors.BaseSelector, stop: threading.Event) -> None:
        """The selector thread: every datagram in, and every resend and give-up, happen here."""
        with selector:
            while not stop.is_set():
                wait = min(max(self._next_deadline() - time.monotonic(), 0.0), 0.5)
                try:
                    events = selector.select(timeout=wait)
                except (OSError, ValueError):
                    return
                for key, _mask in events:
                    if stop.is_set():
                        return
                    try:
                        data, sender = key.fileobj.recvfrom(  # type: ignore[union-attr]
                            limits.DATAGRAM_MAX + 1)
                    except OSError:
                        continue
                    if key.data != "wakeup":
                        self._receive(key.data, data, sender)
                self._resend_due()
            for key in list(selector.get_map().values()):
                if key.data == "wakeup":
                    key.fileobj.close()             # type: ignore[union-attr]

    def _receive(self, role: str, data: bytes, sender: tuple[str, int]) -> None:
        where = f"{sender[0]}:{sender[1]}"
        try:
            message = datagrams.decode(data)
        except DatagramError as error:
            self.console.trace(f"dropped datagram from {where} on {role}: {error}")
            return
        if isinstance(message, Ack):
            with self._lock:
                outgoing = self._outgoing.get(message.seq)
                if outgoing is None or outgoing.address != sender:
                    return                              # late, repeated, or not from there
                del self._outgoing[message.seq]
            self.console.records.recv(outgoing.to, "ack", datagrams.summary(message))
            outgoing.acked = True
            outgoing.done.set()
            return
        if self.console.tracing:
            summary = datagrams.summary(message)
            self.console.records.recv(self.name_of(sender, message), summary.split()[0], summary)
            self.console.trace(f"{self.handle} <- {where} {summary}")
        if isinstance(message, SetupMsg) and role == "middle":
            self._on_setup(message, sender)
        elif isinstance(message, TeardownMsg) and role == "middle":
            self._on_teardown(message, sender)
        elif isinstance(message, TweetMsg) and role == "left":
            self._on_tweet(message, sender)
        elif isinstance(message, DirectMsg) and role == "middle":
            self._ack("middle", message, sender)
            if self.first_time(("message", message.id)):
                self.console.say(f"[message] {message.sender}: {escape_for_terminal(message.text)}")
        else:
            self.console.trace(f"dropped {type(message).__name__} on the {role} port from {where}")

    def _ack(self, role: str, message: Datagram, sender: tuple[str, int]) -> None:
        assert not isinstance(message, Ack)
        self._send(role, sender, Ack(message.seq), "", self.name_of(sender, message))

    def name_of(self, address: tuple[str, int], message: Datagram) -> str:
        """Who sent from ``address``: known ring addresses first (after a detour a tweet comes
        from the author, not from the ``prev`` it names), else what the datagram says."""
        with self._lock:
            members = list(self.memberships.values())
        for member in members:
            for peer in (member.author, member.left):
                if address in ((peer.ip, peer.right), (peer.ip, peer.middle)):
                    return peer.handle
        for peer in self.own_ring.followers:
            if address == (peer.ip, peer.right):
                return peer.handle
        return sender_name(message)

    def _on_setup(self, message: SetupMsg, sender: tuple[str, int]) -> None:
        author = message.author
        if handle_key(author.handle) != handle_key(message.ring) \
                or sender != (author.ip, author.middle):
            self.console.trace(f"dropped setup for {message.ring}: not from its author")
            return
        if handle_key(message.ring) not in self.following:
            self.console.trace(f"dropped setup for {message.ring}: not a handle I follow")
            return
        with self._lock:
            self.memberships[handle_key(message.ring)] = Membership(
                author, message.left, message.right)
        self._ack("middle", message, sender)

    def _on_teardown(self, message: TeardownMsg, sender: tuple[str, int]) -> None:
        with self._lock:
            member = self.memberships.get(handle_key(message.ring))
            if member and sender != (member.author.ip, member.author.middle):
                self.console.trace(f"dropped teardown of {message.ring}: not from its author")
                return
            self.memberships.pop(handle_key(message.ring), None)
        self._ack("middle", message, sender)

    def _on_tweet(self, message: TweetMsg, sender: tuple[str, int]) -> None:
        if self.me and handle_key(message.ring) == self.me.key:
            self._on_own_tweet(message, sender)
            return
        with self._lock:
            member = self.memberships.get(handle_key(message.ring))
        allowed = member and sender in ((member.left.ip, member.left.right),
                                        (member.author.ip, member.author.right))
        if not member or not allowed or message.is_detour:
            self.console.trace(f"dropped tweet of {message.ring} from {sender[0]}:{sender[1]}:"
                               " not my left neighbour in a ring I belong to")
            return
        self._ack("left", message, sender)
        if not self.first_time((handle_key(message.ring), message.tid)):
            return                              # a resend whose first ack was lost
        self._forward(message, member)          # first, so the next hop starts sooner
        self.console.say(f"tweet #{message.tid} by {message.ring} via {message.prev}: "
                         f"{escape_for_terminal(message.text)}")

    def first_time(self, key: tuple[str, int]) -> bool:
        """True the first time ``key`` is seen: duplicates (resends) are shown once."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            while len(self._seen) > 4096:
                self._seen.popitem(last=False)
            return True

    def send_direct(self, to: Peer, message_id: int, text: str) -> bool:
        """A direct message to ``to``'s middle port; False if it never answered."""
        me = self.handle
        return self.send_reliably("middle", to, to.middle,
                                  lambda seq: DirectMsg(seq, message_id, me, text))

    def _forward(self, message: TweetMsg, member: Membership) -> None:
        """Pass a tweet to the right neighbour; if it never answers, send the tweet to the
        author as a detour around it (SPEC §3.3).  Never blocks."""
        onward = replace(message, prev=self.handle, hops=message.hops + 1)
        right, author = member.right, member.author

        def around_the_silent_neighbour() -> None:
            if handle_key(right.handle) == handle_key(author.handle):
                self.console.trace(f"the author {right.handle} is gone; the tweet ends here")
                return
            detour = replace(onward, dead=right.handle,
                             skipped=(*onward.skipped, right.handle)[:limits.SKIPPED_MAX])
            self.post("right", author, author.left, lambda seq: replace(detour, seq=seq),
                      on_fail=lambda: self.console.trace(
                          f"the author {author.handle} is gone; the tweet ends here"))

        self.post("right", right, right.left, lambda seq: replace(onward, seq=seq),
                  on_fail=around_the_silent_neighbour)

    # ---- the author's side -----------------------------------------------------------------
    def _on_own_tweet(self, message: TweetMsg, sender: tuple[str, int]) -> None:
        if not any(sender == (p.ip, p.right) for p in self.own_ring.followers):
            self.console.trace(f"dropped own tweet from {sender[0]}:{sender[1]}: not a member")
            return
        self._ack("left", message, sender)
        active = self._active_tweet
        if active is None or active[0] != message.tid or active[1].is_set():
            return                              # late or repeated: the round is over
        if message.is_detour and message.dead:
            if self.own_ring.member(message.dead) is None:
                self.console.trace(f"dropped detour around {message.dead}: not in my ring")
                return
            self._deliver(message, message.dead)
        else:
            active[2].append(message)
            active[1].set()

    def _deliver(self, message: TweetMsg, after: str) -> None:
        """Send the tweet to the follower after ``after``, or the next one if that one never
        answers; when none is left the round is over.  Never blocks."""
        nxt = self.own_ring.successor(after)
        if nxt is None:
            active = self._active_tweet
            if active and active[0] == message.tid:
                active[2].append(replace(message, dead=None))
                active[1].set()
            return
        hop = replace(message, dead=None)
        skipping = replace(message, skipped=(*message.skipped, nxt.handle)[:limits.SKIPPED_MAX])
        self.post("right", nxt, nxt.left, lambda seq: replace(hop, seq=seq),
                  on_fail=lambda: self._deliver(skipping, nxt.handle))

    def setup_ring(self, followers: Sequence[Peer]) -> list[str]:
        """Bring every follower's ring state up to date; return those that did not answer."""
        assert self.me is not None
        me, target = self.me, ring_order(followers)
        old_author, old = self.own_ring.author, self.own_ring.followers
        skipped: list[str] = []
        while True:
            plan = FollowerRing(old_author, list(old)).plan(me, target)
            results = self.wait_for([    # all setups in flight at once
                self.post("middle", s.member, s.member.middle,
                          lambda seq, s=s: SetupMsg(seq, me.handle, s.author, s.left, s.right))
                for s in plan.setups])
            failed = {s.member.key for s, ok in zip(plan.setups, results, strict=True) if not ok}
            for peer in plan.removed:   # leaving followers forget the ring; nobody waits
                if peer.handle not in skipped:
                    self.post("middle", peer, peer.middle,
                              lambda seq: TeardownMsg(seq, me.handle))
            if not failed:
                break
            skipped += [p.handle for p in target if p.key in failed]
            old_author, old = me, target
            target = [p for p in target if p.key not in failed]
        self.own_ring.store(me, target)
        return skipped

    def run_tweet(self, tid: int, text: str, followers: Sequence[Peer],
                  timeout: float) -> TweetResult:
        skipped = self.setup_ring(followers)
        done: threading.Event = threading.Event()
        returned: list[TweetMsg] = []
        self._active_tweet = (tid, done, returned)
        started = time.perf_counter()
        first = TweetMsg(0, self.handle, tid, text, self.handle, 0, ())
        self._deliver(first, self.handle)
        completed = done.wait(timeout)
        seconds = time.perf_counter() - started
        self._active_tweet = None
        if not completed or not returned:
            return TweetResult(0, skipped, seconds, False)
        back = returned[0]
        return TweetResult(back.hops, skipped + list(back.skipped), seconds, True)

    def teardown(self, peers: Sequence[Peer]) -> list[str]:
        """Tell ``peers`` to forget this user's ring; return those that did not answer."""
        me = self.handle
        acked = self.wait_for([self.post("middle", p, p.middle, lambda seq: TeardownMsg(seq, me))
                               for p in peers])
        return [p.handle for p, ok in zip(peers, acked, strict=True) if not ok]

    def author_moved(self, author: Peer) -> None:
        """An author of a ring this user is in came online at a new address: remember it, so
        that its teardown (and its relayed detours) are taken from there."""
        with self._lock:
            member = self.memberships.get(author.key)
            if member is None:
                return
            moved = {member.author: author}
            self.memberships[author.key] = Membership(
                author, moved.get(member.left, member.left), moved.get(member.right, member.right))

    def forget(self, author: str) -> None:
        with self._lock:
            self.memberships.pop(handle_key(author), None)
