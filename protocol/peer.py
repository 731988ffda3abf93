"""The ring peer as a state machine: every rule of PROTOCOL.md §3–§6, and no I/O.

A :class:`RingPeer` is one logged-in user's half of the peer-to-peer protocol.  It owns no socket,
thread or clock: the I/O shell (``adapters/peer_node.py``) feeds it and carries out what it asks,
in the style of h11 and aioquic::

    datagram in ─> receive(port, data, sender, now) ─┐            ┌─> take_datagrams():
    timer due   ─> handle_timer(now) ────────────────┼─ RingPeer ─┤     (port, address, bytes)
    command     ─> start_tweet / start_teardown /    │            └─> take_events():
                   send_direct(..., now) ────────────┘                  what happened
                    next_deadline(): when to call handle_timer again

Every datagram but ``ack`` is sent again at each deadline until its ``ack`` comes, and given up
after the last; what giving up means depends on what was sent (a detour around a silent
neighbour, the next follower, the end of a wait).  Events say what the shell shows or waits for:
:class:`TweetShown`, :class:`MessageShown`, :class:`Dropped`, :class:`RoundEnded`,
:class:`TeardownEnded`, :class:`DirectEnded`, :class:`Traced`.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

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
from protocol.validate import handle_key

Address = tuple[str, int]
SEEN_MAX = 4096         # (ring, tweet id) and message ids remembered, oldest forgotten first


# ---- what the peer asks the shell to do, and what it tells it -------------------------------
@dataclass(frozen=True)
class Outgoing:
    """A datagram to send from one of the three ports."""

    port: str               # "left", "middle" or "right"
    address: Address
    data: bytes


@dataclass(frozen=True)
class TweetShown:
    """A tweet to print: ``tweet #tid by author via prev: text``."""

    author: str
    tid: int
    prev: str
    text: str


@dataclass(frozen=True)
class MessageShown:
    """A direct message to print."""

    sender: str
    message_id: int
    text: str


@dataclass(frozen=True)
class Dropped:
    """A datagram that was not accepted, and why.  ``rule`` names the rule that refused it:
    the shell summarises a flood of drops by source and rule."""

    source: Address
    port: str
    rule: str
    reason: str


@dataclass(frozen=True)
class RoundEnded:
    """The author's round of tweet ``tid`` is over."""

    tid: int
    completed: bool             # the tweet came home (else the round timed out)
    reached: int
    skipped: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class TeardownEnded:
    silent: tuple[str, ...]     # followers that never acknowledged
    total: int


@dataclass(frozen=True)
class DirectEnded:
    message_id: int
    delivered: bool


@dataclass(frozen=True)
class Traced:
    """A datagram sent or received, for trace lines and trace records (only when tracing)."""

    direction: str              # "send" or "recv"
    peer: str                   # the other lifeline's name
    address: Address
    summary: str


Event = TweetShown | MessageShown | Dropped | RoundEnded | TeardownEnded | DirectEnded | Traced


@dataclass(frozen=True)
class PeerConfig:
    hop_timeout: float = limits.HOP_TIMEOUT
    hop_retries: int = limits.HOP_RETRIES
    tweet_timeout: float = limits.TWEET_TIMEOUT
    trace: bool = True          # emit Traced events (costs a summary per datagram)


# ---- the peer's own bookkeeping --------------------------------------------------------------
@dataclass(eq=False)
class _Pending:
    """A datagram waiting for its ack."""

    to: str
    address: Address
    port: str
    message: Datagram
    deadline: float
    resends_left: int
    on_ack: Callable[[], None] | None = None
    on_fail: Callable[[], None] | None = None


@dataclass(eq=False)
class _Round:
    """The author's tweet in progress: setups first, then the tweet around the ring."""

    tid: int
    text: str
    started: float
    deadline: float
    target: list[Peer]
    skipped: list[str] = field(default_factory=list)
    setups_waiting: int = 0
    setup_failed: set[str] = field(default_factory=set)
    base: tuple[Peer | None, list[Peer]] = (None, [])    # the ring the plan starts from
    propagating: bool = False
    relayed_to: set[str] = field(default_factory=set)     # followers the author sent it to


class RingPeer:
    """One user's rings: its own (as author) and those of the handles it follows."""

    def __init__(self, me: Peer, config: PeerConfig | None = None, seq_start: int = 1,
                 own_ring: FollowerRing | None = None) -> None:
        self.me = me
        self.config = config or PeerConfig()
        self.own_ring = own_ring if own_ring is not None else FollowerRing()
        if self.own_ring.author and self.own_ring.author.key != me.key:
            self.own_ring = FollowerRing()     # another handle: the old ring is not its own
        self.memberships: dict[str, Membership] = {}
        self.following: set[str] = set()      # keys of the authors whose rings it may join
        self._seen: collections.OrderedDict[tuple[str, int], None] = collections.OrderedDict()
        self._seq = seq_start
        self._pending: dict[int, _Pending] = {}
        self._round: _Round | None = None
        self._teardown: tuple[list[str], int, list[int]] | None = None
        self._out: list[Outgoing] = []
        self._events: list[Event] = []

    # ---- the shell's side ------------------------------------------------------------------
    def take_datagrams(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def next_deadline(self) -> float | None:
        deadlines = [p.deadline for p in self._pending.values()]
        if self._round is not None:
            deadlines.append(self._round.deadline)
        return min(deadlines, default=None)

    def follow(self, author: str) -> None:
        self.following.add(handle_key(author))

    def unfollow(self, author: str) -> None:
        """Stop following ``author``: its ring is forgotten at once."""
        self.following.discard(handle_key(author))
        self.memberships.pop(handle_key(author), None)

    def author_moved(self, author: Peer) -> None:
        """An author of a ring this user is in came online at a new address: take its teardown
        (and relayed detours) from there."""
        member = self.memberships.get(author.key)
        if member is None:
            return
        moved = {member.author: author}
        self.memberships[author.key] = Membership(
            author, moved.get(member.left, member.left), moved.get(member.right, member.right))

    @property
    def busy(self) -> bool:
        """Whether a round of this author's is still running."""
        return self._round is not None

    # ---- commands ----------------------------------------------------------------------------
    def start_tweet(self, tid: int, text: str, followers: Sequence[Peer], now: float) -> None:
        """Set the ring up for ``followers`` (only where needed), then send the tweet round."""
        if self._round is not None:
            raise RuntimeError("a round is already running")
        self._round = _Round(tid, text, now, now + self.config.tweet_timeout,
                             ring_order(followers),
                             base=(self.own_ring.author, list(self.own_ring.followers)))
        self._plan_setups(now)

    def start_teardown(self, followers: Sequence[Peer], now: float) -> None:
        """Tell ``followers`` to forget this user's ring; ends with :class:`TeardownEnded`."""
        silent: list[str] = []
        state = (silent, len(followers), [len(followers)])
        self._teardown = state
        if not followers:
            self._finish_teardown()
            return
        for peer in followers:
            self._post("middle", peer, peer.middle, lambda seq: TeardownMsg(seq, self.me.handle),
                       now, on_ack=self._teardown_answered,
                       on_fail=lambda peer=peer: self._teardown_answered(peer.handle))

    def send_direct(self, to: Peer, message_id: int, text: str, now: float) -> None:
        """A direct message to ``to``'s middle port; ends with :class:`DirectEnded`."""
        me = self.me.handle
        self._post("middle", to, to.middle, lambda seq: DirectMsg(seq, message_id, me, text),
                   now, on_ack=lambda: self._events.append(DirectEnded(message_id, True)),
                   on_fail=lambda: self._events.append(DirectEnded(message_id, False)))

    # ---- time ----------------------------------------------------------------------------------
    def handle_timer(self, now: float) -> None:
        """Send again what is due; give up on what had its last chance; end an overdue round."""
        due = [p for p in self._pending.values() if p.deadline <= now]
        for pending in due:
            seq = pending.message.seq       # type: ignore[union-attr]
            if seq not in self._pending:
                continue                    # settled by an earlier give-up in this loop
            if pending.resends_left == 0:
                del self._pending[seq]
                self._trace_note(pending, f"{pending.to} did not answer seq={seq}")
                if pending.on_fail is not None:
                    pending.on_fail()
            else:
                pending.resends_left -= 1
                pending.deadline = now + self.config.hop_timeout
                self._emit(pending.port, pending.address, pending.message, pending.to)
        if self._round is not None and now >= self._round.deadline:
            self._end_round(now, completed=False, reached=0, skipped=())

    # ---- datagrams in --------------------------------------------------------------------------
    def receive(self, port: str, data: bytes, sender: Address, now: float) -> None:
        try:
            message = datagrams.decode(data)
        except DatagramError as error:
            self._drop(sender, port, "malformed",
                       f"dropped datagram from {_where(sender)} on {port}: {error}")
            return
        if isinstance(message, Ack):
            pending = self._pending.get(message.seq)
            if pending is None or pending.address != sender:
                return                              # late, repeated, or not from there
            del self._pending[message.seq]
            self._trace("recv", pending.to, sender, message)
            if pending.on_ack is not None:
                pending.on_ack()
            return
        self._trace("recv", self._name_of(sender, message), sender, message)
        if isinstance(message, SetupMsg) and port == "middle":
            self._on_setup(message, sender)
        elif isinstance(message, TeardownMsg) and port == "middle":
            self._on_teardown(message, sender)
        elif isinstance(message, TweetMsg) and port == "left":
            self._on_tweet(message, sender, now)
        elif isinstance(message, DirectMsg) and port == "middle":
            self._ack("middle", message, sender)
            if self._first_time(("message", message.id)):
                self._events.append(MessageShown(message.sender, message.id, message.text))
        else:
            self._drop(sender, port, "wrong port",
                       f"dropped {type(message).__name__} on the {port} port from {_where(sender)}")

    def _on_setup(self, message: SetupMsg, sender: Address) -> None:
        author = message.author
        if handle_key(author.handle) != handle_key(message.ring) \
                or sender != (author.ip, author.middle):
            self._drop(sender, "middle", "not the author",
                       f"dropped setup for {message.ring}: not from its author")
            return
        if handle_key(message.ring) not in self.following:
            self._drop(sender, "middle", "not followed",
                       f"dropped setup for {message.ring}: not a handle I follow")
            return
        self.memberships[handle_key(message.ring)] = Membership(author, message.left,
                                                                message.right)
        self._ack("middle", message, sender)

    def _on_teardown(self, message: TeardownMsg, sender: Address) -> None:
        member = self.memberships.get(handle_key(message.ring))
        if member and sender != (member.author.ip, member.author.middle):
            self._drop(sender, "middle", "not the author",
                       f"dropped teardown of {message.ring}: not from its author")
            return
        self.memberships.pop(handle_key(message.ring), None)
        self._ack("middle", message, sender)

    def _on_tweet(self, message: TweetMsg, sender: Address, now: float) -> None:
        if handle_key(message.ring) == self.me.key:
            self._on_own_tweet(message, sender, now)
            return
        member = self.memberships.get(handle_key(message.ring))
        allowed = member and sender in ((member.left.ip, member.left.right),
                                        (member.author.ip, member.author.right))
        if not member or not allowed or message.is_detour:
            self._drop(sender, "left", "not a neighbour",
                       f"dropped tweet of {message.ring} from {_where(sender)}:"
                       " not my left neighbour in a ring I belong to")
            return
        self._ack("left", message, sender)
        if not self._first_time((handle_key(message.ring), message.tid)):
            return                              # a resend whose first ack was lost
        self._forward(message, member, now)     # first, so the next hop starts sooner
        self._events.append(TweetShown(message.ring, message.tid, message.prev, message.text))

    def _forward(self, message: TweetMsg, member: Membership, now: float) -> None:
        """Pass a tweet to the right neighbour; if it never answers, send the tweet to the
        author as a detour around it (SPEC §3.3)."""
        onward = replace(message, prev=self.me.handle, hops=message.hops + 1)
        right, author = member.right, member.author

        def around_the_silent_neighbour() -> None:
            if right.key == author.key:
                self._note(f"the author {right.handle} is gone; the tweet ends here")
                return
            detour = replace(onward, dead=right.handle,
                             skipped=(*onward.skipped, right.handle)[:limits.SKIPPED_MAX])
            self._post("right", author, author.left, lambda seq: replace(detour, seq=seq),
                       now, on_fail=lambda: self._note(
                           f"the author {author.handle} is gone; the tweet ends here"))

        self._post("right", right, right.left, lambda seq: replace(onward, seq=seq), now,
                   on_fail=around_the_silent_neighbour)

    # ---- the author's side ---------------------------------------------------------------------
    def _plan_setups(self, now: float) -> None:
        """Send the setups the ring needs; when every one is answered, start the tweet."""
        state = self._round
        assert state is not None
        old_author, old = state.base
        plan = FollowerRing(old_author, list(old)).plan(self.me, state.target)
        me = self.me
        for peer in plan.removed:   # leaving followers forget the ring; nobody waits
            if peer.handle not in state.skipped:
                self._post("middle", peer, peer.middle, lambda seq: TeardownMsg(seq, me.handle),
                           now)
        state.setups_waiting = len(plan.setups)
        state.setup_failed = set()
        if not plan.setups:
            self._setups_done(now)
            return
        for setup in plan.setups:
            self._post("middle", setup.member, setup.member.middle,
                       lambda seq, s=setup: SetupMsg(seq, me.handle, s.author, s.left, s.right),
                       now, on_ack=lambda: self._setup_answered(None, now),
                       on_fail=lambda s=setup: self._setup_answered(s.member.key, now))

    def _setup_answered(self, failed: str | None, now: float) -> None:
        state = self._round
        if state is None or state.propagating:
            return
        if failed is not None:
            state.setup_failed.add(failed)
        state.setups_waiting -= 1
        if state.setups_waiting == 0:
            self._setups_done(now)

    def _setups_done(self, now: float) -> None:
        state = self._round
        assert state is not None
        if state.setup_failed:      # plan again without those that did not answer
            state.skipped += [p.handle for p in state.target if p.key in state.setup_failed]
            state.base = (self.me, state.target)
            state.target = [p for p in state.target if p.key not in state.setup_failed]
            self._plan_setups(now)
            return
        self.own_ring.store(self.me, state.target)
        state.propagating = True
        first = TweetMsg(0, self.me.handle, state.tid, state.text, self.me.handle, 0, ())
        self._relay(first, self.own_ring.successor(self.me.handle), now)

    def _on_own_tweet(self, message: TweetMsg, sender: Address, now: float) -> None:
        if not any(sender == (p.ip, p.right) for p in self.own_ring.followers):
            self._drop(sender, "left", "not a member",
                       f"dropped own tweet from {_where(sender)}: not a member")
            return
        self._ack("left", message, sender)
        state = self._round
        if state is None or not state.propagating or state.tid != message.tid:
            return                              # late or repeated: the round is over
        if message.is_detour and message.dead:
            dead = self.own_ring.member(message.dead)
            if dead is None:
                self._drop(sender, "left", "not a member",
                           f"dropped detour around {message.dead}: not in my ring")
                return
            if dead.key in state.relayed_to:
                return          # a resent or duplicated detour, or one the author ran into
            # The neighbour heard nothing back; the follower may still have it (its acks may
            # be what was lost).  The author tries it itself before skipping it.
            self._relay(replace(message, dead=None, skipped=tuple(
                name for name in message.skipped if handle_key(name) != dead.key)), dead, now)
        else:
            self._end_round(now, True, message.hops, tuple(state.skipped) + message.skipped)

    def _relay(self, message: TweetMsg, target: Peer | None, now: float) -> None:
        """Send the tweet to ``target``, or to the follower after it if it never answers;
        when none is left (``None``: the author is next) the round is over."""
        state = self._round
        if target is None:
            if state is not None and state.tid == message.tid:
                self._end_round(now, True, message.hops, tuple(state.skipped) + message.skipped)
            return
        if state is not None:
            state.relayed_to.add(target.key)
        hop = replace(message, dead=None)
        skipping = replace(message, skipped=(*message.skipped, target.handle)[:limits.SKIPPED_MAX])
        self._post("right", target, target.left, lambda seq: replace(hop, seq=seq), now,
                   on_fail=lambda: self._relay(skipping, self.own_ring.successor(target.handle),
                                               now))

    def _end_round(self, now: float, completed: bool, reached: int,
                   skipped: tuple[str, ...]) -> None:
        state = self._round
        assert state is not None
        self._round = None
        self._events.append(RoundEnded(state.tid, completed, reached if completed else 0,
                                       skipped if completed else tuple(state.skipped),
                                       now - state.started))

    def _teardown_answered(self, silent: str | None = None) -> None:
        if self._teardown is None:
            return
        silent_list, _total, left = self._teardown
        if silent is not None:
            silent_list.append(silent)
        left[0] -= 1
        if left[0] == 0:
            self._finish_teardown()

    def _finish_teardown(self) -> None:
        assert self._teardown is not None
        silent, total, _left = self._teardown
        self._teardown = None
        self._events.append(TeardownEnded(tuple(silent), total))

    # ---- plumbing ------------------------------------------------------------------------------
    def _post(self, port: str, to: Peer, to_port: int, build: Callable[[int], Datagram],
              now: float, on_ack: Callable[[], None] | None = None,
              on_fail: Callable[[], None] | None = None) -> None:
        """Send a datagram now, and again at each deadline until its ack comes."""
        seq, self._seq = self._seq, self._seq + 1
        message = build(seq)
        pending = _Pending(to.handle, (to.ip, to_port), port, message,
                           now + self.config.hop_timeout, self.config.hop_retries, on_ack,
                           on_fail)
        self._pending[seq] = pending
        self._emit(port, pending.address, message, to.handle)

    def _emit(self, port: str, address: Address, message: Datagram, name: str) -> None:
        self._out.append(Outgoing(port, address, datagrams.encode(message)))
        self._trace("send", name, address, message)

    def _ack(self, port: str, message: Datagram, sender: Address) -> None:
        assert not isinstance(message, Ack)
        self._emit(port, sender, Ack(message.seq), self._name_of(sender, message))

    def first_time_message(self, message_id: int) -> bool:
        """True the first time a direct message id is seen (peer to peer, or kept by the
        tracker and pushed at login): it is shown once."""
        return self._first_time(("message", message_id))

    def _first_time(self, key: tuple[str, int]) -> bool:
        """True the first time ``key`` is seen: duplicates (resends) are shown once."""
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        return True

    def _name_of(self, address: Address, message: Datagram) -> str:
        """Who sent from ``address``: known ring addresses first (after a detour a tweet comes
        from the author, not from the ``prev`` it names), else what the datagram says."""
        for member in self.memberships.values():
            for peer in (member.author, member.left):
                if address in ((peer.ip, peer.right), (peer.ip, peer.middle)):
                    return peer.handle
        for peer in self.own_ring.followers:
            if address == (peer.ip, peer.right):
                return peer.handle
        return _sender_name(message)

    def _drop(self, source: Address, port: str, rule: str, reason: str) -> None:
        self._events.append(Dropped(source, port, rule, reason))

    def _note(self, text: str) -> None:
        if self.config.trace:
            self._events.append(Traced("note", "", ("", 0), text))

    def _trace_note(self, pending: _Pending, text: str) -> None:
        self._note(text)

    def _trace(self, direction: str, name: str, address: Address, message: Datagram) -> None:
        if self.config.trace:
            self._events.append(Traced(direction, name, address, datagrams.summary(message)))


def _where(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


def _sender_name(message: Datagram) -> str:
    """The lifeline a datagram comes from, as the datagram itself names it."""
    if isinstance(message, (SetupMsg, TeardownMsg)):
        return message.ring
    if isinstance(message, TweetMsg):
        return message.prev
    if isinstance(message, DirectMsg):
        return message.sender
    return "?"
