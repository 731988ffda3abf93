"""The ring peer as a state machine: every rule of PROTOCOL.md §3–§6, and no I/O.

A :class:`RingPeer` is one login's half of the peer-to-peer protocol.  It owns no socket, thread
or clock: the I/O shell (``adapters/peer_node.py``, or the simulation in ``tests/``) feeds it and
carries out what it asks, in the style of h11 and aioquic::

    datagram in ─> receive(port, data, sender, now) ─┐            ┌─> take_datagrams():
    timer due   ─> handle_timer(now) ────────────────┼─ RingPeer ─┤     (port, address, bytes)
    command     ─> start_tweet / start_teardown /    │            └─> take_events():
                   send_direct / ..._from_tracker ───┘                  what happened
                   next_deadline(): when to call handle_timer again

What it trusts: the tuples the tracker hands out (``know``, ``start_tweet``'s followers, the
recipient of ``send_direct``) and, for a ring it belongs to, the neighbours its author's setup
names.  Every datagram carries a MAC only its two ends can make (``protocol.auth``); a tweet also
carries its author's signature, checked before it is shown.  Datagrams from anyone else, from the
wrong address or port, or out of turn are dropped (:class:`Dropped`).

Every datagram but ``ack`` is sent again until it is acknowledged: after a round-trip estimate
that doubles at each resend (RFC 6298), and given up after ``give_up`` seconds.  What giving up
means depends on what was sent: a detour around a silent right neighbour, the author trying that
follower itself and then the next one, the end of a teardown or a direct message.

A follower forwards a tweet before it checks the signature and shows it (``handle_timer`` does
the check right after the shell has sent what ``receive`` asked for), so the check costs nothing
on the ring's path.  The author builds the round's report from what it saw itself: followers it
sent the tweet to that never answered, and on a round that does not come home in time those it
cannot vouch for.  That report is never an order: the tracker judges who is alive.
"""

from __future__ import annotations

import base64
import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from protocol import auth, datagrams, limits
from protocol.auth import SessionKeys
from protocol.datagrams import (
    Ack,
    Datagram,
    DatagramError,
    DirectMsg,
    Received,
    SetupMsg,
    TeardownMsg,
    TweetMsg,
)
from protocol.ring import FollowerRing, Membership, Peer, ring_order
from protocol.validate import handle_key

Address = tuple[str, int]


# ---- what the peer asks the shell to do, and what it tells it -------------------------------
@dataclass(frozen=True)
class Outgoing:
    """A datagram to send from one of the three ports."""

    port: str               # "left", "middle" or "right"
    address: Address
    data: bytes


@dataclass(frozen=True)
class TweetShown:
    """A tweet to print: ``tweet #tid by author via prev: text`` (``prev`` is None when the
    tracker delivered it)."""

    author: str
    tid: int
    prev: str | None
    text: str


@dataclass(frozen=True)
class MessageShown:
    """A direct message to print; ``kept_since`` is set when the tracker kept it."""

    sender: str
    message_id: int
    text: str
    kept_since: float | None = None


@dataclass(frozen=True)
class Dropped:
    """A datagram that was not accepted.  ``rule`` names the rule that refused it: the shell
    summarises a flood of drops by source and rule."""

    source: Address
    port: str
    rule: str
    reason: str


@dataclass(frozen=True)
class RoundEnded:
    """The author's round of tweet ``tid`` is over."""

    tid: int
    completed: bool             # it came home (else it did not within the round's time)
    reached: int                # followers the author can vouch for
    skipped: tuple[str, ...]    # followers it cannot vouch for: the tracker relays to them
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
    """A datagram sent or accepted, or a note, for trace lines and records (when tracing)."""

    direction: str              # "send", "recv" or "note"
    peer: str                   # the other lifeline's name
    address: Address
    summary: str


Event = TweetShown | MessageShown | Dropped | RoundEnded | TeardownEnded | DirectEnded | Traced


@dataclass(frozen=True)
class PeerConfig:
    rto_initial: float = limits.RTO_INITIAL
    rto_min: float = limits.RTO_MIN
    rto_max: float = limits.RTO_MAX
    give_up: float = limits.GIVE_UP
    trace: bool = True          # emit Traced events (costs a summary per datagram)

    def round_time(self, followers: int) -> float:
        """How long an author waits for its tweet to come home."""
        return 2 * self.give_up + limits.ROUND_SLACK + limits.ROUND_PER_FOLLOWER * followers


# ---- the peer's own bookkeeping --------------------------------------------------------------
class RoundTripEstimate:
    """RFC 6298's smoothed round-trip time and its variation, for one destination."""

    def __init__(self, config: PeerConfig) -> None:
        self.config = config
        self.srtt: float | None = None
        self.rttvar = 0.0

    def sample(self, rtt: float) -> None:
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    @property
    def rto(self) -> float:
        if self.srtt is None:
            return self.config.rto_initial
        return min(max(self.srtt + 4 * self.rttvar, self.config.rto_min), self.config.rto_max)


class SeenIds:
    """Ids already handled, per author or sender: each is handled once.

    Ids of one author (or sender) only grow, so the set is bounded: when it is full the oldest
    id is forgotten and becomes a floor below which everything counts as seen.
    """

    def __init__(self, limit: int = limits.SEEN_MAX) -> None:
        self.limit = limit
        self._ids: collections.OrderedDict[str, tuple[int, set[int]]] = collections.OrderedDict()

    def first_time(self, who: str, number: int) -> bool:
        floor, ids = self._ids.get(who, (0, set()))
        if number <= floor or number in ids:
            return False
        ids.add(number)
        if len(ids) > self.limit:
            oldest = min(ids)
            ids.discard(oldest)
            floor = max(floor, oldest)
        self._ids[who] = (floor, ids)
        self._ids.move_to_end(who)
        if len(self._ids) > self.limit:
            self._ids.popitem(last=False)
        return True

    def __contains__(self, item: tuple[str, int]) -> bool:
        floor, ids = self._ids.get(item[0], (0, set()))
        return item[1] <= floor or item[1] in ids


@dataclass
class Shown:
    """What a user has been shown: each tweet and each direct message once.  Kept by the
    program across its logins (a new login is a new ``RingPeer``, the same person's screen)."""

    tweets: SeenIds = field(default_factory=SeenIds)      # (author, tid)
    messages: SeenIds = field(default_factory=SeenIds)    # (sender, message id)


@dataclass(eq=False)
class _Pending:
    """A datagram waiting for its ack."""

    to: Peer
    address: Address
    port: str
    seq: int
    data: bytes
    summary: str
    give_up_at: float
    sent_at: float
    rto: float
    deadline: float
    on_ack: Callable[[float], None] | None = None
    on_fail: Callable[[float], None] | None = None
    resent: bool = False


@dataclass(eq=False)
class _Member:
    """A follower's side of someone else's ring."""

    author: Peer
    left: Peer
    right: Peer
    version: int


@dataclass(eq=False)
class _Round:
    """The author's tweet in progress: setups first, then the tweet around the ring."""

    tid: int
    text: str
    signature: str
    started: float
    deadline: float
    target: list[Peer]
    base: tuple[Peer | None, list[Peer]]        # the ring the plan starts from
    setup_failed: list[str] = field(default_factory=list)
    setups_waiting: int = 0
    propagating: bool = False
    relayed_to: set[str] = field(default_factory=set)   # followers the author sent it to
    confirmed: set[str] = field(default_factory=set)    # ... that acknowledged
    dead: list[str] = field(default_factory=list)       # ... that never did


class RingPeer:
    """One login's rings: its own (as author) and those of the handles it follows."""

    def __init__(self, me: Peer, keys: SessionKeys, config: PeerConfig | None = None,
                 seq_start: int = 1, own_ring: FollowerRing | None = None,
                 shown: Shown | None = None) -> None:
        self.me, self.keys = me, keys
        self.config = config or PeerConfig()
        self.own_ring = own_ring if own_ring is not None else FollowerRing()
        if self.own_ring.author and self.own_ring.author.key != me.key:
            self.own_ring = FollowerRing()     # another handle: the old ring is not its own
        self._members: dict[str, _Member] = {}
        # Per author: the login and version of its last setup or teardown taken (kept after a
        # teardown too), so that an old one replayed cannot bring back an old ring.
        self._versions: dict[str, tuple[Peer, int, str]] = {}
        self._following: set[str] = set()     # authors whose rings it may join
        self._known: dict[str, Peer] = {}     # tuples the tracker vouched for, by handle key
        self._blocked: set[str] = set()
        self.shown = shown if shown is not None else Shown()
        self._shown, self._messages = self.shown.tweets, self.shown.messages
        # The copy of each tweet passed on, (author, tid) -> (signature, text); and the
        # neighbours (ring, sender) that once passed on a tweet its author did not sign.
        self._forwarded: collections.OrderedDict[tuple[str, int], tuple[str, str]] = \
            collections.OrderedDict()
        self._suspects: set[tuple[str, str]] = set()
        self._to_check: list[tuple[Peer, TweetMsg, str]] = []  # forwarded, not yet shown
        self._estimates: dict[Address, RoundTripEstimate] = {}
        self._seq = seq_start
        self._version = 0                      # of this login's setups and teardowns
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
        """When ``handle_timer`` must run next (0.0: at once, there is work waiting)."""
        if self._to_check:
            return 0.0
        deadlines = [p.deadline for p in self._pending.values()]
        if self._round is not None:
            deadlines.append(self._round.deadline)
        return min(deadlines, default=None)

    @property
    def busy(self) -> bool:
        """Whether a round of this author's is still running."""
        return self._round is not None

    @property
    def memberships(self) -> dict[str, Membership]:
        """The rings of others this login is in, by author key."""
        return {key: Membership(m.author, m.left, m.right) for key, m in self._members.items()
                if key in self._following}

    # ---- what the tracker said ---------------------------------------------------------------
    def know(self, peer: Peer) -> None:
        """A tuple the tracker handed out: that handle's current login.  A ring of an earlier
        login of that author is forgotten: its datagrams no longer count (its new login sets
        the ring up again)."""
        self._known[peer.key] = peer
        member = self._members.get(peer.key)
        if member is not None and member.author != peer:
            del self._members[peer.key]

    def follow(self, author: str) -> None:
        self._following.add(handle_key(author))

    def unfollow(self, author: str) -> None:
        """Stop following ``author``: its ring is left at once (its tweets are dropped)."""
        # Its last setup is kept aside, not forgotten: followed again before the author's next
        # tweet, the author's ring is unchanged and it sends no setup, so that setup is what
        # makes this login a member again.  A teardown or a new login of the author drops it.
        self._following.discard(handle_key(author))

    def block(self, handle: str) -> None:
        self._blocked.add(handle_key(handle))

    def unblock(self, handle: str) -> None:
        self._blocked.discard(handle_key(handle))

    def tweet_from_tracker(self, author: str, tid: int, text: str) -> None:
        """The tracker relayed a tweet the ring did not bring (SPEC §3.3): shown once."""
        if self._shown.first_time(handle_key(author), tid):
            self._events.append(TweetShown(author, tid, None, text))

    def message_from_tracker(self, sender: str, message_id: int, text: str,
                             created: float) -> None:
        """A direct message the tracker kept or relayed: shown once."""
        if self._messages.first_time(handle_key(sender), message_id):
            self._events.append(MessageShown(sender, message_id, text, created))

    # ---- commands ----------------------------------------------------------------------------
    def start_tweet(self, tid: int, text: str, followers: Sequence[Peer], now: float) -> None:
        """Set the ring up for ``followers`` (only where needed), then send the tweet round."""
        if self._round is not None:
            raise RuntimeError("a round is already running")
        signature = base64.b64encode(self.keys.sign(
            auth.tweet_statement(self.me.public_key, self.me.handle, tid, text))).decode()
        target = ring_order(followers)
        self._round = _Round(tid, text, signature, now,
                             now + self.config.round_time(len(target)), target,
                             (self.own_ring.author, list(self.own_ring.followers)))
        self._plan_setups(now)

    def start_teardown(self, followers: Sequence[Peer], now: float) -> None:
        """Tell ``followers`` to forget this login's ring; ends with :class:`TeardownEnded`."""
        self._version += 1
        version, me = self._version, self.me.handle
        self._teardown = ([], len(followers), [len(followers)])
        if not followers:
            self._finish_teardown()
            return
        for peer in followers:
            self._post("middle", peer, peer.middle,
                       lambda seq: TeardownMsg(me, seq, me, version), now,
                       on_ack=lambda _now: self._teardown_answered(),
                       on_fail=lambda _now, peer=peer: self._teardown_answered(peer.handle))

    def send_direct(self, to: Peer, message_id: int, text: str, now: float) -> None:
        """A direct message to ``to``'s middle port; ends with :class:`DirectEnded`."""
        me = self.me.handle
        self._post("middle", to, to.middle, lambda seq: DirectMsg(me, seq, message_id, text),
                   now, on_ack=lambda _now: self._events.append(DirectEnded(message_id, True)),
                   on_fail=lambda _now: self._events.append(DirectEnded(message_id, False)))

    # ---- time ----------------------------------------------------------------------------------
    def handle_timer(self, now: float) -> None:
        """Check and show forwarded tweets; resend what is due, give up on what had its time;
        end a round that did not come home in time."""
        checks, self._to_check = self._to_check, []
        for author, message, passed_by in checks:
            if self._signed(author, message):
                self._show_once(author, message)
            else:
                self._suspects.add((author.key, passed_by))
        for pending in [p for p in self._pending.values() if p.deadline <= now]:
            if self._pending.get(pending.seq) is not pending:
                continue                    # settled by an earlier give-up in this loop
            if now >= pending.give_up_at:
                del self._pending[pending.seq]
                self._note(f"{pending.to.handle} did not answer seq={pending.seq}")
                if pending.on_fail is not None:
                    pending.on_fail(now)
                continue
            pending.resent = True           # Karn: a resent datagram's ack is not timed
            pending.rto = min(pending.rto * 2, self.config.rto_max)
            pending.sent_at = now
            pending.deadline = min(now + pending.rto, pending.give_up_at)
            self._out.append(Outgoing(pending.port, pending.address, pending.data))
            self._trace("send", pending.to.handle, pending.address, pending.summary)
        state = self._round
        if state is not None and now >= state.deadline:
            self._end_round(state, now, completed=False)

    # ---- datagrams in --------------------------------------------------------------------------
    def receive(self, port: str, data: bytes, sender: Address, now: float) -> None:
        try:
            received = datagrams.decode(data)
        except DatagramError as error:
            self._drop(sender, port, "malformed",
                       f"datagram from {_where(sender)} on {port}: {error}")
            return
        message = received.message
        if isinstance(message, Ack):
            self._on_ack(received, message, sender, now)
        elif isinstance(message, SetupMsg) and port == "middle":
            self._on_setup(received, message, sender)
        elif isinstance(message, TeardownMsg) and port == "middle":
            self._on_teardown(received, message, sender)
        elif isinstance(message, TweetMsg) and port == "left":
            if handle_key(message.ring) == self.me.key:
                self._on_own_tweet(received, message, sender, now)
            else:
                self._on_tweet(received, message, sender, now)
        elif isinstance(message, DirectMsg) and port == "middle":
            self._on_direct(received, message, sender)
        else:
            kind = datagrams.summary(message).split()[0]
            self._drop(sender, port, "wrong port", f"{kind} on the {port} port")

    def _authentic(self, received: Received, peer: Peer) -> bool:
        """Whether the datagram's MAC is the one ``peer``'s current login would make."""
        return self.keys.opens(peer.public_key, received.body, received.mac)

    def _from(self, received: Received, sender: Address, peer: Peer | None, port: int,
              rule: str, port_name: str) -> bool:
        """Accept only from ``peer``: its handle, its address and port, its MAC."""
        message = received.message
        if peer is None or handle_key(message.sender) != peer.key \
                or sender != (peer.ip, port):
            self._drop(sender, port_name, rule,
                       f"{datagrams.summary(message).split()[0]} from {_where(sender)} "
                       f"claiming {message.sender}: {rule}")
            return False
        if not self._authentic(received, peer):
            self._drop(sender, port_name, "bad MAC",
                       f"{datagrams.summary(message).split()[0]} from {_where(sender)} "
                       f"claiming {message.sender}: its MAC is wrong")
            return False
        self._trace("recv", peer.handle, sender, datagrams.summary(message))
        return True

    def _on_ack(self, received: Received, message: Ack, sender: Address, now: float) -> None:
        pending = self._pending.get(message.seq)
        if pending is None:
            return                          # late, repeated, or never ours: nothing to do
        if not self._from(received, sender, pending.to, pending.address[1], "not where it went",
                          pending.port):
            return
        del self._pending[message.seq]
        if not pending.resent:
            self._estimate(pending.address).sample(now - pending.sent_at)
        if pending.on_ack is not None:
            pending.on_ack(now)

    def _on_setup(self, received: Received, message: SetupMsg, sender: Address) -> None:
        key = handle_key(message.ring)
        author = self._known.get(key)
        if key not in self._following or handle_key(message.sender) != key:
            self._drop(sender, "middle", "not followed",
                       f"setup for {message.ring} from {_where(sender)}: not a handle I follow")
            return
        if not self._from(received, sender, author, author.middle if author else 0,
                          "not its author", "middle"):
            return
        assert author is not None
        if self._newer(author, message.version, "setup"):
            self._members[key] = _Member(author, message.left, message.right, message.version)
        self._ack("middle", message, author, sender)     # an older version is acked, not kept

    def _on_teardown(self, received: Received, message: TeardownMsg, sender: Address) -> None:
        key = handle_key(message.ring)
        author = self._known.get(key) if handle_key(message.sender) == key else None
        if not self._from(received, sender, author, author.middle if author else 0,
                          "not its author", "middle"):
            return
        assert author is not None
        if self._newer(author, message.version, "teardown"):
            self._members.pop(key, None)
        self._ack("middle", message, author, sender)

    def _newer(self, author: Peer, version: int, kind: str) -> bool:
        """Whether a setup or teardown of ``author`` at ``version`` is to be taken: from a new
        login, or newer than the last one taken (a setup resent at the same version too)."""
        last = self._versions.get(author.key)
        if last is not None and last[0] == author and (
                version < last[1] or (version == last[1] and (kind, last[2]) != ("setup",
                                                                                "setup"))):
            return False
        self._versions[author.key] = (author, version, kind)
        return True

    def _on_tweet(self, received: Received, message: TweetMsg, sender: Address,
                  now: float) -> None:
        key = handle_key(message.ring)
        member = self._members.get(key) if key in self._following else None
        if member is None:
            self._drop(sender, "left", "not a member",
                       f"tweet of {message.ring} from {_where(sender)}: a ring I am not in")
            return
        # From the left neighbour, or from the author, which relays around a silent follower.
        expected = member.author if handle_key(message.sender) == member.author.key \
            else member.left
        if not self._from(received, sender, expected, expected.right, "not my left neighbour",
                          "left"):
            return
        if message.is_detour:
            self._drop(sender, "left", "detour to a follower",
                       f"detour from {_where(sender)}: only an author takes detours")
            return
        author, tweet = member.author, (member.author.key, message.tid)
        earlier = self._forwarded.get(tweet)
        if tweet in self._shown or earlier == (message.signature, message.text):
            self._ack("left", message, expected, sender)
            return                              # this copy was passed on already
        # The author's own MAC (a key only the two share) proves ring, tid and text, as the
        # signature would, at a fraction of the cost.  Any other copy is passed on first (the
        # next hop starts at once) and checked right after, before it is shown -- unless another
        # text of this tweet was passed on already (one of the two is forged) or this neighbour
        # once passed a forgery on: then it is checked first, so that a forgery stops here.
        from_author = expected.key == author.key
        check_first = not from_author and (
            earlier is not None or (author.key, expected.key) in self._suspects)
        if check_first and not self._signed(author, message):
            self._ack("left", message, expected, sender)
            self._suspects.add((author.key, expected.key))
            return
        self._pass_on(tweet, message, member, now)      # first: the next hop starts at once,
        self._ack("left", message, expected, sender)    # then the ack
        if from_author or check_first:
            self._show_once(author, message)
        else:
            self._to_check.append((author, message, expected.key))

    def _pass_on(self, tweet: tuple[str, int], message: TweetMsg, member: _Member,
                 now: float) -> None:
        self._forwarded[tweet] = (message.signature, message.text)
        while len(self._forwarded) > limits.SEEN_MAX:
            self._forwarded.popitem(last=False)
        self._forward(message, member, now)

    def _signed(self, author: Peer, message: TweetMsg) -> bool:
        """Whether ``author`` signed this ring, tid and text; a drop is said if not."""
        try:
            signature = base64.b64decode(message.signature, validate=True)
        except ValueError:
            signature = b""
        statement = auth.tweet_statement(author.public_key, message.ring, message.tid,
                                         message.text)
        if self.keys.signed_by(author.public_key, signature, statement):
            return True
        self._drop((author.ip, author.right), "left", "bad signature",
                   f"tweet #{message.tid} of {message.ring}: not signed by its author")
        return False

    def _show_once(self, author: Peer, message: TweetMsg) -> None:
        if self._shown.first_time(author.key, message.tid):
            self._events.append(TweetShown(author.handle, message.tid, message.prev,
                                           message.text))

    def _forward(self, message: TweetMsg, member: _Member, now: float) -> None:
        """Pass a tweet to the right neighbour; if it never answers, send the tweet to the
        author as a detour around it (SPEC §3.3)."""
        right, author, me = member.right, member.author, self.me.handle

        def onward(seq: int, dead: str | None = None) -> TweetMsg:
            return TweetMsg(me, seq, message.ring, message.tid, message.text,
                            message.signature, me, dead)

        def around_the_silent_neighbour(now: float) -> None:
            if right.key == author.key:
                self._note(f"the author {author.handle} did not take the tweet back")
                return
            self._post("right", author, author.left, lambda seq: onward(seq, right.handle), now,
                       on_fail=lambda _now: self._note(
                           f"the author {author.handle} did not take the detour"))

        self._post("right", right, right.left, onward, now, on_fail=around_the_silent_neighbour)

    def _on_direct(self, received: Received, message: DirectMsg, sender: Address) -> None:
        peer = self._known.get(handle_key(message.sender))
        if not self._from(received, sender, peer, peer.middle if peer else 0,
                          "not a sender the tracker named", "middle"):
            return
        assert peer is not None
        if peer.key in self._blocked:
            self._drop(sender, "middle", "blocked", f"message from {peer.handle}: blocked")
            return
        self._ack("middle", message, peer, sender)
        if self._messages.first_time(peer.key, message.id):
            self._events.append(MessageShown(peer.handle, message.id, message.text))

    # ---- the author's side ---------------------------------------------------------------------
    def _plan_setups(self, now: float) -> None:
        """Send the setups the ring needs; when every one is answered, start the tweet."""
        state = self._round
        assert state is not None
        old_author, old = state.base
        plan = FollowerRing(old_author, list(old)).plan(self.me, state.target)
        self._version += 1
        version, me = self._version, self.me.handle
        for peer in plan.removed:   # leaving followers forget the ring; nobody waits
            if peer.handle not in state.setup_failed:
                self._post("middle", peer, peer.middle,
                           lambda seq: TeardownMsg(me, seq, me, version), now)
        state.setups_waiting = len(plan.setups)
        if not plan.setups:
            self._setups_done(state, now, set())
            return
        failed: set[str] = set()

        def answered(member: str | None, now: float) -> None:
            if self._round is not state or state.propagating:
                return
            if member is not None:
                failed.add(member)
            state.setups_waiting -= 1
            if state.setups_waiting == 0:
                self._setups_done(state, now, failed)

        for setup in plan.setups:
            self._post("middle", setup.member, setup.member.middle,
                       lambda seq, s=setup: SetupMsg(me, seq, me, version, s.left, s.right),
                       now, on_ack=lambda now: answered(None, now),
                       on_fail=lambda now, s=setup: answered(s.member.key, now))

    def _setups_done(self, state: _Round, now: float, failed: set[str]) -> None:
        if failed:                  # plan again without those that did not answer
            state.setup_failed += [p.handle for p in state.target if p.key in failed]
            state.base = (self.me, state.target)
            state.target = [p for p in state.target if p.key not in failed]
            self._plan_setups(now)
            return
        self.own_ring.store(self.me, state.target)
        state.propagating = True
        self._relay(state, self.own_ring.successor(self.me.handle), self.me.handle, now)

    def _relay(self, state: _Round, target: Peer | None, prev: str, now: float) -> None:
        """Send the tweet to ``target`` itself, or to the follower after it if it never
        answers; when none is left (``None``: the author is next) the round is over."""
        if self._round is not state:
            return
        if target is None:
            self._end_round(state, now, completed=True)
            return
        if target.key in state.relayed_to:
            # Each follower is tried once a round: a detour resent or duplicated, one about a
            # follower the author's relays reached already, or the follower after a silent one
            # that a detour reached first.  That first try (its ack or give-up) carries it on.
            return
        state.relayed_to.add(target.key)
        me = self.me.handle
        state.deadline = max(state.deadline, now + self.config.round_time(
            len(state.target)))         # progress: the round may take its time again

        def answered(now: float) -> None:
            state.confirmed.add(target.key)

        def silent(now: float) -> None:
            state.dead.append(target.handle)
            self._relay(state, self.own_ring.successor(target.handle), prev, now)

        self._post("right", target, target.left,
                   lambda seq: TweetMsg(me, seq, me, state.tid, state.text, state.signature,
                                        prev), now, on_ack=answered, on_fail=silent)

    def _on_own_tweet(self, received: Received, message: TweetMsg, sender: Address,
                      now: float) -> None:
        follower = self.own_ring.member(message.sender)
        if not self._from(received, sender, follower, follower.right if follower else 0,
                          "not one of my followers", "left"):
            return
        assert follower is not None
        if message.is_detour:
            dead = self.own_ring.member(message.dead or "")
            if dead is None or dead != self.own_ring.successor(follower.handle):
                self._drop(sender, "left", "not its neighbour",
                           f"detour from {follower.handle} around {message.dead}: "
                           "not its right neighbour")
                return
        elif not self.own_ring.followers or follower != self.own_ring.followers[-1]:
            self._drop(sender, "left", "not the last follower",
                       f"tweet #{message.tid} back from {follower.handle}: "
                       "only the last follower brings it home")
            return
        self._ack("left", message, follower, sender)
        state = self._round
        if state is None or not state.propagating or state.tid != message.tid:
            return                              # late or repeated: that round is over
        if (message.text, message.signature) != (state.text, state.signature):
            self._drop(sender, "left", "not the tweet sent",
                       f"tweet #{message.tid} back from {follower.handle}: not the text sent")
            return                              # a forgery ends no round
        if message.is_detour:
            assert dead is not None
            # The neighbour heard nothing back, but the follower may have it (its acks may be
            # what was lost): the author tries it itself (once) before it gives it up.
            self._relay(state, dead, message.prev, now)
            return
        self._end_round(state, now, completed=True)

    def _end_round(self, state: _Round, now: float, completed: bool) -> None:
        if self._round is not state:
            return
        self._round = None
        if not state.propagating:
            # Out of time before every setup was answered: a setup still being resent (or late
            # on the network) may yet change a follower's neighbours, so the stored ring no
            # longer says what each follower keeps.  Forget it: the next round sets every
            # follower up again, at a newer version that outranks the late one.
            self.own_ring.store(self.me, [])
        ring = [p.handle for p in state.target]
        if completed:
            skipped = [*state.setup_failed, *state.dead]
        else:                           # it did not come home: vouch only for what answered
            skipped = [*state.setup_failed,
                       *(h for h in ring if handle_key(h) not in state.confirmed)]
        reached = len(ring) - (len(skipped) - len(state.setup_failed))
        self._events.append(RoundEnded(state.tid, completed, reached, tuple(skipped),
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
    def _estimate(self, address: Address) -> RoundTripEstimate:
        found = self._estimates.get(address)
        if found is None:
            if len(self._estimates) > limits.SEEN_MAX:
                self._estimates.clear()
            found = self._estimates[address] = RoundTripEstimate(self.config)
        return found

    def _post(self, port: str, to: Peer, to_port: int, build: Callable[[int], Datagram],
              now: float, on_ack: Callable[[float], None] | None = None,
              on_fail: Callable[[float], None] | None = None) -> None:
        """Send a datagram now, and again until its ack comes or ``give_up`` has passed."""
        seq, self._seq = self._seq, self._seq + 1
        message = build(seq)
        address = (to.ip, to_port)
        summary = datagrams.summary(message) if self.config.trace else ""
        try:
            data = self._seal(message, to)
        except ValueError:          # its key agrees no secret (a low-order point): nobody can
            self._note(f"{to.handle}'s key agrees no secret: given up")       # answer this
            self._pending[seq] = _Pending(to, address, port, seq, b"", summary, now, now, 0.0,
                                          now, on_ack, on_fail)     # the next timer gives up
            return
        rto = self._estimate(address).rto
        self._pending[seq] = _Pending(to, address, port, seq, data, summary,
                                      now + self.config.give_up, now, rto, now + rto, on_ack,
                                      on_fail)
        self._out.append(Outgoing(port, address, data))
        self._trace("send", to.handle, address, summary)

    def _seal(self, message: Datagram, to: Peer) -> bytes:
        body = datagrams.body_of(message)
        return datagrams.encode(body, self.keys.seal(to.public_key, body))

    def _ack(self, port: str, message: Datagram, to: Peer, sender: Address) -> None:
        ack = Ack(self.me.handle, message.seq)
        self._out.append(Outgoing(port, sender, self._seal(ack, to)))
        if self.config.trace:
            self._trace("send", to.handle, sender, datagrams.summary(ack))

    def _drop(self, source: Address, port: str, rule: str, reason: str) -> None:
        self._events.append(Dropped(source, port, rule, f"dropped {reason}"))

    def _note(self, text: str) -> None:
        if self.config.trace:
            self._events.append(Traced("note", "", ("", 0), text))

    def _trace(self, direction: str, name: str, address: Address, summary: str) -> None:
        if self.config.trace:
            self._events.append(Traced(direction, name, address, summary))


def _where(address: Address) -> str:
    return f"{address[0]}:{address[1]}"
