"""Unit tests of protocol.peer.RingPeer against PROTOCOL.md §3–§6, one rule at a time.

The peer owns no socket, thread or clock, so neither do these tests: time is a float passed as
``now``, and :class:`Net` below is a tiny in-memory network that moves each ``Outgoing`` datagram
to the peer bound at its address, after a fixed latency, and can drop, duplicate or delay the
datagrams a test chooses.  Where a rule is about one datagram, the test feeds it to ``receive``
itself and looks at what the peer asks for.  ``tests/simulation.py`` runs whole networks; these
tests pin down each rule.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import auth, limits
from protocol.auth import SessionKeys
from protocol.datagrams import (
    Ack,
    Datagram,
    DatagramError,
    DirectMsg,
    SetupMsg,
    TeardownMsg,
    TweetMsg,
    body_of,
    decode,
    encode,
    summary,
)
from protocol.peer import (
    DirectEnded,
    Dropped,
    Event,
    MessageShown,
    PeerConfig,
    RingPeer,
    RoundEnded,
    RoundTripEstimate,
    SeenIds,
    TeardownEnded,
    TweetShown,
)
from protocol.ring import Peer

Address = tuple[str, int]
RTO_INITIAL, RTO_MIN, RTO_MAX = limits.RTO_INITIAL, limits.RTO_MIN, limits.RTO_MAX
GIVE_UP = limits.GIVE_UP
LATENCY = 0.001                 # one way, on the fake network
ROLES = ("left", "middle", "right")


# ---- users: a login's keys, tuple and ring peer ----------------------------------------------

@cache
def keys_for(handle: str, login: int = 1) -> SessionKeys:
    """The keys of one login of a handle, the same in every run."""
    return SessionKeys.from_bytes(hashlib.sha512(f"{handle}#{login}".encode()).digest())


class User:
    """One login: its tuple, its keys, its RingPeer and every event the peer reported."""

    def __init__(self, handle: str, ip: str, ports: tuple[int, int, int] = (5001, 5002, 5003),
                 login: int = 1, config: PeerConfig | None = None, **peer_args: Any) -> None:
        self.handle, self.ip, self.ports = handle, ip, ports
        self.keys = keys_for(handle, login)
        self.me = Peer(handle, ip, *ports, self.keys.public)
        # seqs of different users apart, so that a test can tell whose a seq is
        seq_start = 10_000 * (ord(handle[1].lower()) - ord("a") + 1) + 1000 * login
        self.peer = RingPeer(self.me, self.keys, config, seq_start=seq_start, **peer_args)
        self.events: list[Event] = []

    def __repr__(self) -> str:
        return f"User({self.handle})"

    def address(self, role: str) -> Address:
        return (self.ip, self.ports[ROLES.index(role)])

    def follows(self, author: User) -> None:
        """What the tracker's `follow` reply and the author's tuple tell this user."""
        self.peer.follow(author.handle)
        self.peer.know(author.me)

    def collect(self) -> list[Event]:
        self.events += self.peer.take_events()
        return self.events

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.collect() if isinstance(event, kind)]

    @property
    def shown(self) -> list[tuple[str, int, str | None, str]]:
        return [(e.author, e.tid, e.prev, e.text) for e in self.of(TweetShown)]

    @property
    def dropped(self) -> list[Dropped]:
        return self.of(Dropped)


# ---- the fake network --------------------------------------------------------------------------

@dataclass
class Flight:
    """One datagram on the network."""

    at: float
    source: Address
    destination: Address
    data: bytes
    sender: User | None
    receiver: User | None
    fate: str = "sent"

    @property
    def message(self) -> Datagram | None:
        try:
            return decode(self.data).message
        except DatagramError:
            return None

    @property
    def kind(self) -> str | None:
        message = self.message
        return summary(message).split()[0] if message is not None else None


Match = Callable[[Flight], bool]


def match(kind: str | None = None, frm: User | None = None, to: User | None = None,
          **fields: object) -> Match:
    """Flights of that kind, from that user, to that user, with those message fields."""
    def predicate(flight: Flight) -> bool:
        message = flight.message
        return ((kind is None or flight.kind == kind)
                and (frm is None or flight.sender is frm)
                and (to is None or flight.receiver is to)
                and all(getattr(message, name, None) == value for name, value in fields.items()))
    return predicate


@dataclass
class Rule:
    match: Match
    action: str                 # "drop", "duplicate" or "delay"
    times: float = math.inf
    delay: float = 0.0


@dataclass
class Net:
    """Users bound at addresses, datagrams in flight, and the rules that lose some of them."""

    latency: float = LATENCY
    now: float = 0.0
    users: list[User] = field(default_factory=list)
    bound: dict[Address, tuple[User, str]] = field(default_factory=dict)
    sent: list[Flight] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    _queue: list[tuple[float, int, Flight]] = field(default_factory=list)
    _order: itertools.count = field(default_factory=itertools.count)

    # ---- who is on it
    def join(self, handle: str, login: int = 1, ip: str | None = None,
             ports: tuple[int, int, int] = (5001, 5002, 5003), **args: Any) -> User:
        """A login bound at its three ports (replacing whatever was bound there)."""
        if ip is None:
            ip = f"10.0.0.{ord(handle[1].lower()) - ord('a') + 1}"
        user = User(handle, ip, ports, login, **args)
        for role in ROLES:
            old = self.bound.get(user.address(role))
            if old is not None:
                self.leave(old[0])
            self.bound[user.address(role)] = (user, role)
        self.users.append(user)
        return user

    def leave(self, user: User) -> None:
        """The user's process is gone: its ports are closed, its timers never run."""
        for address, (owner, _role) in list(self.bound.items()):
            if owner is user:
                del self.bound[address]
        if user in self.users:
            self.users.remove(user)

    # ---- what happens to datagrams
    def drop(self, what: Match, times: float = math.inf) -> None:
        self.rules.append(Rule(what, "drop", times))

    def duplicate(self, what: Match, times: float = math.inf) -> None:
        self.rules.append(Rule(what, "duplicate", times))

    def delay(self, what: Match, seconds: float, times: float = math.inf) -> None:
        self.rules.append(Rule(what, "delay", times, seconds))

    def inject(self, source: Address, destination: Address, data: bytes,
               delay: float | None = None) -> None:
        """A datagram from anywhere (a replay, a forgery), as if sent from ``source``."""
        self._send(source, destination, data, delay)

    def flights(self, what: Match = lambda flight: True) -> list[Flight]:
        return [flight for flight in self.sent if what(flight)]

    def _owner(self, address: Address) -> User | None:
        bound = self.bound.get(address)
        return bound[0] if bound else None

    def _send(self, source: Address, destination: Address, data: bytes,
              delay: float | None = None) -> None:
        flight = Flight(self.now, source, destination, data, self._owner(source),
                        self._owner(destination))
        self.sent.append(flight)
        copies, extra = 1, 0.0
        for rule in self.rules:
            if rule.times > 0 and rule.match(flight):
                rule.times -= 1
                if rule.action == "drop":
                    flight.fate = "lost"
                    return
                if rule.action == "duplicate":
                    copies = 2
                    flight.fate = "duplicated"
                else:
                    extra = rule.delay
                break
        for _ in range(copies):
            at = self.now + (self.latency if delay is None else delay) + extra
            heapq.heappush(self._queue, (at, next(self._order), flight))

    # ---- time
    def pump(self) -> None:
        """Send what every peer asked to send; collect what it reported."""
        for user in list(self.users):
            for out in user.peer.take_datagrams():
                self._send(user.address(out.port), out.address, out.data)
            user.collect()

    def run(self, until: float = math.inf, steps: int = 200_000) -> None:
        """Deliver datagrams and fire timers in time order, up to ``until`` (or until nothing
        is left to do)."""
        for _ in range(steps):
            self.pump()
            flight_at = self._queue[0][0] if self._queue else math.inf
            timers = [(max(deadline, self.now), user) for user in self.users
                      if (deadline := user.peer.next_deadline()) is not None]
            timer_at = min((at for at, _ in timers), default=math.inf)
            at = min(flight_at, timer_at)
            if at > until or at == math.inf:
                break
            self.now = at
            if flight_at <= timer_at:
                _, _, flight = heapq.heappop(self._queue)
                bound = self.bound.get(flight.destination)
                if bound is not None and bound[0] in self.users:
                    user, role = bound
                    user.peer.receive(role, flight.data, flight.source, self.now)
            else:
                for at, user in timers:
                    if at <= self.now and user in self.users:
                        user.peer.handle_timer(self.now)
        else:
            raise AssertionError("the network never settled")
        self.pump()
        if until != math.inf:
            self.now = max(self.now, until)

    def run_for(self, seconds: float) -> None:
        self.run(self.now + seconds)

    # ---- commands
    def tweet(self, author: User, tid: int, followers: Sequence[User],
              text: str | None = None) -> None:
        author.peer.start_tweet(tid, text or f"tweet {tid}", [f.me for f in followers],
                                self.now)
        self.pump()


# ---- datagrams made by hand --------------------------------------------------------------------

def seal(sender: User, to: Peer, message: Datagram) -> bytes:
    """A datagram as ``sender``'s login makes it for ``to``."""
    body = body_of(message)
    return encode(body, auth.mac(sender.keys.pair_key(to.public_key), body))


def forged(message: Datagram, mac: bytes = bytes(auth.MAC_BYTES)) -> bytes:
    return encode(body_of(message), mac)


def signature(author: User, tid: int, text: str) -> str:
    statement = auth.tweet_statement(author.me.public_key, author.handle, tid, text)
    return base64.b64encode(author.keys.sign(statement)).decode()


def decoded(data: bytes) -> Datagram:
    return decode(data).message


def unusable_key(user: User) -> str:
    """A key of the right shape whose X25519 half is a low-order point: no secret can be
    agreed with it."""
    raw = base64.b64decode(user.keys.public)
    return base64.b64encode(raw[:auth.SIGNING_KEY_BYTES] + bytes(32)).decode()


def ring(*followers: str, author: str = "@alice", **args: Any) -> tuple[Net, User, list[User]]:
    """An author and followers that follow it (none set up yet)."""
    net = Net(**args)
    writer = net.join(author)
    members = [net.join(handle) for handle in followers]
    for member in members:
        member.follows(writer)
    return net, writer, members


def ready_ring(*followers: str) -> tuple[Net, User, list[User]]:
    """A ring whose first tweet (#1) went round: every follower is set up."""
    net, alice, members = ring(*followers)
    net.tweet(alice, 1, members)
    net.run()
    assert [e.completed for e in alice.of(RoundEnded)] == [True]
    return net, alice, members


def ended(user: User) -> RoundEnded:
    """The one round ``user`` ran."""
    rounds = user.of(RoundEnded)
    assert len(rounds) == 1, rounds
    return rounds[0]


def last_round(user: User) -> RoundEnded:
    return user.of(RoundEnded)[-1]


# ==== §4.2 setup and update =====================================================================

def test_the_first_tweet_sets_up_every_follower_with_its_neighbours() -> None:
    net, alice, (dave, bob, carol) = ring("@dave", "@bob", "@carol")
    net.tweet(alice, 1, [dave, bob, carol])
    setups = net.flights(match("setup"))
    assert {f.receiver for f in setups} == {bob, carol, dave}
    for flight in setups:
        assert flight.source == alice.address("middle")
        assert flight.destination == flight.receiver.address("middle")
    assert not net.flights(match("tweet"))          # the tweet waits for the setups
    net.run()
    expected = {bob: (alice, carol), carol: (bob, dave), dave: (carol, alice)}
    for member, (left, right) in expected.items():
        ring_of = member.peer.memberships["@alice"]
        assert (ring_of.author, ring_of.left, ring_of.right) == (alice.me, left.me, right.me)
    assert [f.receiver for f in net.flights(match("tweet", frm=alice))] == [bob]


def test_the_setups_of_a_round_share_one_version_and_a_later_round_a_newer_one() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    first = {f.message.version for f in net.flights(match("setup"))}
    assert len(first) == 1
    eve = net.join("@eve")
    eve.follows(alice)
    start = len(net.sent)
    net.tweet(alice, 2, [bob, carol, dave, eve])
    net.run()
    later = [f for f in net.sent[start:] if f.kind == "setup"]
    second = {f.message.version for f in later}
    assert len(second) == 1 and min(second) > max(first)


def test_an_unchanged_ring_sends_no_setup() -> None:
    net, alice, members = ready_ring("@bob", "@carol", "@dave")
    before = len(net.flights(match("setup")))
    net.tweet(alice, 2, members)
    assert len(net.flights(match("setup"))) == before
    assert [f.receiver for f in net.flights(match("tweet", frm=alice, tid=2))] == [members[0]]
    net.run()
    assert alice.of(RoundEnded)[-1].completed


def test_a_follow_added_sets_up_only_the_newcomer_and_its_neighbours() -> None:
    net, alice, (bob, carol, eve) = ready_ring("@bob", "@carol", "@eve")
    dave = net.join("@dave")
    dave.follows(alice)
    start = len(net.sent)
    net.tweet(alice, 2, [bob, carol, dave, eve])
    setups = [f for f in net.sent[start:] if f.kind == "setup"]
    assert {f.receiver for f in setups} == {carol, dave, eve}       # at most three
    net.run()
    assert dave.shown == [("@alice", 2, "@carol", "tweet 2")]
    assert eve.shown[-1] == ("@alice", 2, "@dave", "tweet 2")


def test_a_dropped_follower_is_torn_down_in_the_background() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    net.leave(carol)                # a removed follower may well be gone: nobody waits for it
    start = len(net.sent)
    net.tweet(alice, 2, [bob, dave])
    new = net.sent[start:]
    assert {f.receiver for f in new if f.kind == "setup"} == {bob, dave}      # at most two
    assert [f.destination for f in new if f.kind == "teardown"] == [carol.address("middle")]
    net.run(net.now + 0.5)          # long before the teardown is given up
    assert last_round(alice).tid == 2
    assert last_round(alice).completed and last_round(alice).skipped == ()
    assert dave.shown[-1] == ("@alice", 2, "@bob", "tweet 2")


def test_the_tweet_starts_only_when_every_setup_is_answered() -> None:
    net, alice, (bob, carol, dave) = ring("@bob", "@carol", "@dave")
    net.delay(match("ack", frm=carol), 0.1, times=1)
    net.tweet(alice, 1, [bob, carol, dave])
    net.run(0.05)
    assert not net.flights(match("tweet"))
    net.run()
    first = net.flights(match("tweet", frm=alice))[0]
    assert first.at >= 0.1
    assert ended(alice).completed


def test_a_follower_that_does_not_ack_its_setup_is_left_out_and_reported_skipped() -> None:
    net, alice, (bob, carol, dave) = ring("@bob", "@carol", "@dave")
    net.drop(match(to=carol))
    net.tweet(alice, 1, [bob, carol, dave])
    net.run(GIVE_UP - 0.01)
    assert not net.flights(match("tweet"))
    net.run()
    replanned = [f for f in net.flights(match("setup")) if f.at >= GIVE_UP]
    assert {f.receiver for f in replanned} == {bob, dave}       # its neighbours re-linked
    assert bob.peer.memberships["@alice"].right == dave.me
    assert dave.peer.memberships["@alice"].left == bob.me
    result = ended(alice)
    assert (result.completed, result.reached, result.skipped) == (True, 2, ("@carol",))
    assert dave.shown == [("@alice", 1, "@bob", "tweet 1")]


def test_a_follower_logged_in_again_at_the_same_address_and_ports_is_set_up_again() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    bob2 = net.join("@bob", login=2)            # new keys, same address and ports
    assert bob2.address("left") == bob.address("left") and bob2.me != bob.me
    bob2.follows(alice)
    start = len(net.sent)
    net.tweet(alice, 2, [bob2, carol, dave])
    assert {f.receiver for f in net.sent[start:] if f.kind == "setup"} == {bob2, carol}
    net.run()
    assert bob2.shown == [("@alice", 2, "@alice", "tweet 2")]
    assert carol.peer.memberships["@alice"].left == bob2.me
    assert alice.of(RoundEnded)[-1].skipped == ()


def test_a_round_that_times_out_in_its_setups_sets_every_follower_up_again() -> None:
    """A round can run out of time while its setups are still being resent (three stages of
    give-ups).  A late one may still arrive and change a follower's neighbours, so the next
    round must not trust the ring stored before (simulation seed 37003)."""
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    abe = net.join("@abe", ip="10.0.0.31")
    abe.follows(alice)
    for user in (abe, bob, carol):              # each stage of setups fails in turn ...
        net.drop(match("setup", to=user))
    net.delay(match("setup", to=dave), 2.5, times=1)    # ... and the last one arrives late
    net.drop(match("setup", to=dave))
    start = net.now
    net.tweet(alice, 2, [abe, bob, carol, dave])
    net.run_for(GIVE_UP * 3 + 1)
    result = last_round(alice)
    assert not result.completed and result.seconds < 3 * GIVE_UP
    late = [f for f in net.flights(match("setup", to=dave)) if f.fate != "lost"][-1]
    assert late.at + 2.5 > start + result.seconds   # it reached dave after the round ended
    assert dave.peer.memberships["@alice"].left == alice.me
    net.rules.clear()
    net.tweet(alice, 3, [bob, carol, dave])
    net.run()
    assert last_round(alice).completed
    assert dave.peer.memberships["@alice"].left == carol.me
    assert dave.shown[-1] == ("@alice", 3, "@carol", "tweet 3")


def test_an_author_logged_in_again_sets_its_whole_ring_up_again() -> None:
    net, alice, (bob, carol) = ready_ring("@bob", "@carol")
    for tid in (2, 3, 4):           # the old login's version counter runs ahead
        net.tweet(alice, tid, [bob, carol])
        net.run()
    alice2 = net.join("@alice", login=2, own_ring=alice.peer.own_ring)
    for member in (bob, carol):
        member.peer.know(alice2.me)             # the presence push of the new login
    start = len(net.sent)
    net.tweet(alice2, 30, [bob, carol])
    setups = [f for f in net.sent[start:] if f.kind == "setup"]
    assert {f.receiver for f in setups} == {bob, carol}
    assert all(f.message.version == 1 for f in setups)
    net.run()
    assert bob.peer.memberships["@alice"].author == alice2.me
    assert bob.shown[-1] == ("@alice", 30, "@alice", "tweet 30")
    assert carol.shown[-1] == ("@alice", 30, "@bob", "tweet 30")
    assert alice2.of(RoundEnded)[-1].completed


# ---- setups and teardowns one by one, at a follower ----------------------------------------

@pytest.fixture
def trio() -> tuple[User, User, User]:
    """@alice the author, @bob that follows her and knows her tuple, @carol another user."""
    alice, bob = User("@alice", "10.0.0.1"), User("@bob", "10.0.0.2")
    carol = User("@carol", "10.0.0.3")
    bob.follows(alice)
    return alice, bob, carol


def setup_for(alice: User, bob: User, version: int, left: User, right: User,
              seq: int = 1) -> bytes:
    return seal(alice, bob.me, SetupMsg(alice.handle, seq, alice.handle, version, left.me,
                                        right.me))


def teardown_for(alice: User, bob: User, version: int, seq: int = 2) -> bytes:
    return seal(alice, bob.me, TeardownMsg(alice.handle, seq, alice.handle, version))


def acks_of(user: User) -> list[tuple[str, Address, int]]:
    """The acks ``user`` asked to send: (port, address, seq)."""
    acks = []
    for out in user.peer.take_datagrams():
        message = decoded(out.data)
        if isinstance(message, Ack):
            acks.append((out.port, out.address, message.seq))
    return acks


def test_a_setup_is_acked_from_the_middle_port_to_where_it_came_from(trio: Any) -> None:
    alice, bob, carol = trio
    bob.peer.receive("middle", setup_for(alice, bob, 1, alice, carol, seq=41),
                     alice.address("middle"), 0.0)
    outs = bob.peer.take_datagrams()
    assert [(o.port, o.address) for o in outs] == [("middle", alice.address("middle"))]
    assert decoded(outs[0].data) == Ack("@bob", 41)
    received = decode(outs[0].data)
    assert auth.mac_ok(alice.keys.pair_key(bob.me.public_key), received.body, received.mac)
    membership = bob.peer.memberships["@alice"]
    assert (membership.author, membership.left, membership.right) == (alice.me, alice.me,
                                                                      carol.me)
    assert not bob.dropped


def test_setups_and_teardowns_are_taken_once_per_version(trio: Any) -> None:
    alice, bob, carol = trio
    v1 = setup_for(alice, bob, 1, alice, alice, seq=1)
    v2 = setup_for(alice, bob, 2, alice, carol, seq=2)
    t1 = teardown_for(alice, bob, 1, seq=3)
    t3 = teardown_for(alice, bob, 3, seq=4)
    source = alice.address("middle")

    def deliver(data: bytes) -> tuple[Peer, Peer] | None:
        bob.peer.receive("middle", data, source, 1.0)
        assert acks_of(bob) == [("middle", source, decoded(data).seq)]   # always acked
        found = bob.peer.memberships.get("@alice")
        return (found.left, found.right) if found else None

    assert deliver(v2) == (alice.me, carol.me)
    assert deliver(v2) == (alice.me, carol.me)      # a resent copy
    assert deliver(v1) == (alice.me, carol.me)      # an older setup replayed: ignored
    assert deliver(t1) == (alice.me, carol.me)      # an older teardown replayed: ignored
    assert deliver(t3) is None                      # a newer teardown is taken
    assert deliver(v2) is None                      # the old ring cannot come back
    assert deliver(v1) is None
    assert not bob.dropped


def test_an_author_logged_in_again_is_taken_at_any_version(trio: Any) -> None:
    alice, bob, carol = trio
    bob.peer.receive("middle", setup_for(alice, bob, 9, alice, carol), alice.address("middle"),
                     0.0)
    alice2 = User("@alice", "10.0.0.1", login=2)
    bob.peer.know(alice2.me)
    bob.peer.receive("middle", setup_for(alice2, bob, 1, alice2, alice2),
                     alice2.address("middle"), 1.0)
    assert acks_of(bob)[-1][2] == 1
    assert bob.peer.memberships["@alice"].author == alice2.me
    # The earlier login's datagrams fail every check now: its key is no longer the author's.
    bob.peer.receive("middle", setup_for(alice, bob, 10, alice, carol, seq=7),
                     alice.address("middle"), 2.0)
    bob.peer.receive("middle", teardown_for(alice, bob, 11, seq=8), alice.address("middle"),
                     2.0)
    assert acks_of(bob) == []
    assert bob.peer.memberships["@alice"].author == alice2.me
    assert len(bob.dropped) == 2


def _not_followed(alice: User, bob: User, carol: User) -> tuple[str, bytes, Address]:
    bob.peer.unfollow("@alice")
    bob.peer.know(alice.me)
    return "middle", setup_for(alice, bob, 1, alice, alice), alice.address("middle")


def _never_handed_out(alice: User, bob: User, carol: User) -> tuple[str, bytes, Address]:
    bob.peer = RingPeer(bob.me, bob.keys)
    bob.peer.follow("@alice")               # follows her, but was never given her tuple
    return "middle", setup_for(alice, bob, 1, alice, alice), alice.address("middle")


def _earlier_login(alice: User, bob: User, carol: User) -> tuple[str, bytes, Address]:
    alice2 = User("@alice", "10.0.0.1", login=2)
    return "middle", setup_for(alice2, bob, 1, alice2, alice2), alice.address("middle")


def _bad_mac(alice: User, bob: User, carol: User) -> tuple[str, bytes, Address]:
    message = SetupMsg("@alice", 1, "@alice", 1, alice.me, carol.me)
    return "middle", forged(message), alice.address("middle")


def _mac_for_another(alice: User, bob: User, carol: User) -> tuple[str, bytes, Address]:
    return "middle", setup_for(alice, carol, 1, alice, carol), alice.address("middle")


def _made_by_another(alice: User, bob: User, carol: User) -> tuple[str, bytes, Address]:
    message = SetupMsg("@alice", 1, "@alice", 1, alice.me, carol.me)
    return "middle", seal(carol, bob.me, message), alice.address("middle")


def _wrong_port_of_the_author(alice: User, bob: User, carol: User) -> tuple[str, bytes,
                                                                              Address]:
    return "middle", setup_for(alice, bob, 1, alice, carol), alice.address("left")


def _wrong_host(alice: User, bob: User, carol: User) -> tuple[str, bytes, Address]:
    return "middle", setup_for(alice, bob, 1, alice, carol), ("10.0.0.66", 5002)


def _not_from_its_author(alice: User, bob: User, carol: User) -> tuple[str, bytes, Address]:
    bob.follows(carol)
    message = SetupMsg("@alice", 1, "@carol", 1, alice.me, carol.me)
    return "middle", seal(alice, bob.me, message), alice.address("middle")


def _on_the_left_port(alice: User, bob: User, carol: User) -> tuple[str, bytes, Address]:
    return "left", setup_for(alice, bob, 1, alice, carol), alice.address("middle")


def _on_the_right_port(alice: User, bob: User, carol: User) -> tuple[str, bytes, Address]:
    return "right", setup_for(alice, bob, 1, alice, carol), alice.address("middle")


@pytest.mark.parametrize("case", [
    _not_followed, _never_handed_out, _earlier_login, _bad_mac, _mac_for_another,
    _made_by_another, _wrong_port_of_the_author, _wrong_host, _not_from_its_author,
    _on_the_left_port, _on_the_right_port,
])
def test_a_setup_is_dropped_and_not_acked(trio: Any, case: Callable[..., Any]) -> None:
    alice, bob, carol = trio
    port, data, source = case(alice, bob, carol)
    bob.peer.receive(port, data, source, 0.0)
    assert bob.peer.take_datagrams() == []
    assert bob.peer.memberships == {}
    assert len(bob.dropped) == 1


def _teardown_bad_mac(alice: User, bob: User) -> tuple[str, bytes, Address]:
    return "middle", forged(TeardownMsg("@alice", 5, "@alice", 5)), alice.address("middle")


def _teardown_wrong_address(alice: User, bob: User) -> tuple[str, bytes, Address]:
    return "middle", teardown_for(alice, bob, 5), alice.address("right")


def _teardown_not_from_its_author(alice: User, bob: User) -> tuple[str, bytes, Address]:
    carol = User("@carol", "10.0.0.3")
    bob.peer.know(carol.me)
    return "middle", seal(carol, bob.me, TeardownMsg("@carol", 5, "@alice", 5)), \
        carol.address("middle")


def _teardown_on_the_left_port(alice: User, bob: User) -> tuple[str, bytes, Address]:
    return "left", teardown_for(alice, bob, 5), alice.address("middle")


@pytest.mark.parametrize("case", [_teardown_bad_mac, _teardown_wrong_address,
                                  _teardown_not_from_its_author, _teardown_on_the_left_port])
def test_a_teardown_is_dropped_and_not_acked(trio: Any, case: Callable[..., Any]) -> None:
    alice, bob, carol = trio
    bob.peer.receive("middle", setup_for(alice, bob, 1, alice, carol), alice.address("middle"),
                     0.0)
    bob.peer.take_datagrams()
    port, data, source = case(alice, bob)
    bob.peer.receive(port, data, source, 1.0)
    assert bob.peer.take_datagrams() == []
    assert "@alice" in bob.peer.memberships
    assert len(bob.dropped) == 1


def test_unfollow_leaves_the_ring_at_once(trio: Any) -> None:
    alice, bob, carol = trio
    bob.peer.receive("middle", setup_for(alice, bob, 1, alice, carol), alice.address("middle"),
                     0.0)
    assert "@alice" in bob.peer.memberships
    bob.peer.unfollow("@Alice")
    assert bob.peer.memberships == {}
    bob.peer.take_datagrams()
    tweet = TweetMsg("@alice", 8, "@alice", 5, "hi", signature(alice, 5, "hi"), "@alice")
    bob.peer.receive("left", seal(alice, bob.me, tweet), alice.address("right"), 0.5)
    bob.peer.handle_timer(0.5)
    assert bob.peer.take_datagrams() == [] and bob.shown == []      # not acked, not shown
    assert bob.dropped[-1].rule == "not a member"
    bob.peer.receive("middle", setup_for(alice, bob, 2, alice, carol, seq=9),
                     alice.address("middle"), 1.0)
    assert bob.peer.take_datagrams() == []
    assert bob.peer.memberships == {}
    bob.peer.receive("middle", teardown_for(alice, bob, 3, seq=10), alice.address("middle"),
                     1.5)
    bob.peer.follow("@alice")
    assert bob.peer.memberships == {}       # the teardown ended what was kept aside


def test_a_follower_that_drops_the_author_and_follows_again_stays_in_its_ring() -> None:
    """Simulation seed 19761.  Bob drops alice and follows her again before her next tweet:
    her ring is unchanged, so she sends no setup, and bob must still take her tweet."""
    net, alice, (bob, carol) = ready_ring("@bob", "@carol")
    bob.peer.unfollow("@alice")
    bob.follows(alice)
    setups = len(net.flights(match("setup")))
    net.tweet(alice, 2, [bob, carol])
    net.run()
    assert len(net.flights(match("setup"))) == setups      # nothing changed that she can see
    assert [s for s in bob.shown if s[1] == 2] == [("@alice", 2, "@alice", "tweet 2")]
    assert [s for s in carol.shown if s[1] == 2] == [("@alice", 2, "@bob", "tweet 2")]
    result = last_round(alice)
    assert (result.tid, result.completed, result.skipped) == (2, True, ())


# ==== §4.3 a tweet around the ring ==============================================================

def test_a_tweet_goes_around_the_ring() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    assert bob.shown == [("@alice", 1, "@alice", "tweet 1")]
    assert carol.shown == [("@alice", 1, "@bob", "tweet 1")]
    assert dave.shown == [("@alice", 1, "@carol", "tweet 1")]
    assert alice.shown == []
    result = ended(alice)
    assert (result.tid, result.completed, result.reached, result.skipped) == (1, True, 3, ())
    hops = [(f.sender, f.receiver, f.source, f.destination, f.message.prev)
            for f in net.flights(match("tweet"))]
    assert hops == [
        (alice, bob, alice.address("right"), bob.address("left"), "@alice"),
        (bob, carol, bob.address("right"), carol.address("left"), "@bob"),
        (carol, dave, carol.address("right"), dave.address("left"), "@carol"),
        (dave, alice, dave.address("right"), alice.address("left"), "@dave"),
    ]
    # Every datagram but an ack is acked once, back to where it came from, from the port that
    # received it; nothing is sent twice on a clean network.
    for flight in net.flights(lambda f: f.kind != "ack"):
        acks = net.flights(lambda f, d=flight: f.kind == "ack"
                           and f.message.seq == d.message.seq
                           and f.destination == d.source)
        assert [(a.source, a.sender) for a in acks] == [(flight.destination, flight.receiver)]
    assert len({f.data for f in net.flights()}) == len(net.sent)
    assert not any(user.dropped for user in (alice, bob, carol, dave))


def test_every_datagram_but_an_ack_has_a_new_seq() -> None:
    net, alice, members = ready_ring("@bob", "@carol", "@dave")
    net.tweet(alice, 2, members)
    net.run()
    for user in (alice, *members):
        seqs = [f.message.seq for f in net.flights(
            lambda f, u=user: f.sender is u and f.kind != "ack")]
        assert len(seqs) == len(set(seqs)) > 0


def test_the_round_ends_with_one_report_and_later_copies_change_nothing() -> None:
    net, alice, (_bob, carol) = ready_ring("@bob", "@carol")
    home = net.flights(match("tweet", frm=carol, to=alice))[0]
    net.inject(home.source, home.destination, home.data)
    net.run()
    assert len(alice.of(RoundEnded)) == 1
    assert len(net.flights(match("ack", frm=alice, to=carol))) == 2     # acked, and no more


def test_a_follower_forwards_before_it_acks_and_shows() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    text = "forwarded first"
    tweet = TweetMsg("@bob", 900, "@alice", 2, text, signature(alice, 2, text), "@bob")
    carol.peer.receive("left", seal(bob, carol.me, tweet), bob.address("right"), net.now)
    outs = carol.peer.take_datagrams()
    assert [(o.port, o.address, type(decoded(o.data))) for o in outs] == [
        ("right", dave.address("left"), TweetMsg),      # the next hop starts first
        ("left", bob.address("right"), Ack)]
    onward = decoded(outs[0].data)
    assert isinstance(onward, TweetMsg)
    assert (onward.sender, onward.prev, onward.text, onward.signature) \
        == ("@carol", "@carol", text, tweet.signature)
    assert carol.shown[1:] == []                # not shown yet ...
    assert carol.peer.next_deadline() == 0.0    # ... but at once, once the shell has sent
    carol.peer.handle_timer(net.now)
    assert carol.shown[1:] == [("@alice", 2, "@bob", text)]


def test_from_the_author_itself_its_mac_vouches_for_the_text() -> None:
    # The first follower's tweet comes from the author: its MAC (the pair key of the author's
    # login and this one) proves ring, tid and text already, so no signature check is waited for.
    net, alice, (bob, carol) = ready_ring("@bob", "@carol")
    tweet = TweetMsg("@alice", 900, "@alice", 2, "hi", "!" * 88, "@alice")
    bob.peer.receive("left", seal(alice, bob.me, tweet), alice.address("right"), net.now)
    assert bob.shown[-1] == ("@alice", 2, "@alice", "hi")
    # The signature still decides for everyone further on: this one is no signature at all.
    net.run()
    assert [s for s in carol.shown if s[1] == 2] == [] and carol.dropped


def _signed_by_a_member(alice: User, bob: User, tid: int, text: str) -> str:
    return signature(bob, tid, text)


def _signed_for_another_text(alice: User, bob: User, tid: int, text: str) -> str:
    return signature(alice, tid, "what alice really wrote")


def _signed_for_another_tid(alice: User, bob: User, tid: int, text: str) -> str:
    return signature(alice, tid + 1, text)


def _not_base64(alice: User, bob: User, tid: int, text: str) -> str:
    return "!" * 88


def _of_an_earlier_login(alice: User, bob: User, tid: int, text: str) -> str:
    old = User("@alice", alice.ip, login=9)
    return signature(old, tid, text)


def _the_real_tweets_signature(alice: User, bob: User, tid: int, text: str) -> str:
    return signature(alice, tid, "real")        # the signature the real tweet will carry


@pytest.mark.parametrize("forge", [_signed_by_a_member, _signed_for_another_text,
                                   _signed_for_another_tid, _not_base64, _of_an_earlier_login,
                                   _the_real_tweets_signature])
def test_a_tweet_not_signed_by_its_author_is_passed_on_but_never_shown(
        forge: Callable[..., str]) -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    evil = TweetMsg("@bob", 900, "@alice", 2, "evil", forge(alice, bob, 2, "evil"), "@bob")
    net.inject(bob.address("right"), carol.address("left"), seal(bob, carol.me, evil))
    net.run()
    assert net.flights(match("ack", frm=carol, seq=900))                  # acked
    assert net.flights(match("tweet", frm=carol, to=dave, tid=2, text="evil"))  # passed on
    assert [s for s in carol.shown + dave.shown if s[1] == 2] == []       # never shown
    assert carol.dropped and dave.dropped
    # The real tweet with the same id is neither blocked nor shown twice.
    net.tweet(alice, 2, [bob, carol, dave], text="real")
    net.run()
    for member, prev in ((bob, "@alice"), (carol, "@bob"), (dave, "@carol")):
        assert [s for s in member.shown if s[1] == 2] == [("@alice", 2, prev, "real")]
    assert alice.of(RoundEnded)[-1].completed


def test_a_neighbour_caught_passing_a_forgery_is_checked_before_passing_on() -> None:
    net, alice, (bob, carol, _dave) = ready_ring("@bob", "@carol", "@dave")
    evil = TweetMsg("@bob", 900, "@alice", 2, "evil", signature(bob, 2, "evil"), "@bob")
    carol.peer.receive("left", seal(bob, carol.me, evil), bob.address("right"), net.now)
    carol.peer.take_datagrams()
    carol.peer.handle_timer(net.now)            # the check after passing on: a forgery
    worse = TweetMsg("@bob", 901, "@alice", 3, "worse", signature(bob, 3, "worse"), "@bob")
    carol.peer.receive("left", seal(bob, carol.me, worse), bob.address("right"), net.now)
    assert [type(decoded(o.data)) for o in carol.peer.take_datagrams()] == [Ack]   # stops here
    text = "real, from a neighbour now suspected"
    real = TweetMsg("@bob", 902, "@alice", 4, text, signature(alice, 4, text), "@bob")
    carol.peer.receive("left", seal(bob, carol.me, real), bob.address("right"), net.now)
    assert [type(decoded(o.data)) for o in carol.peer.take_datagrams()] == [TweetMsg, Ack]
    assert carol.shown[-1] == ("@alice", 4, "@bob", text)      # checked first: shown at once


def test_a_second_text_for_one_tweet_is_checked_before_it_is_passed_on() -> None:
    net, alice, (bob, carol, _dave) = ready_ring("@bob", "@carol", "@dave")
    real_signature = signature(alice, 2, "real")
    real = TweetMsg("@bob", 901, "@alice", 2, "real", real_signature, "@bob")
    forged_again = TweetMsg("@bob", 902, "@alice", 2, "evil", real_signature, "@bob")
    carol.peer.receive("left", seal(bob, carol.me, real), bob.address("right"), net.now)
    carol.peer.take_datagrams()                 # the first copy: passed on, then checked
    carol.peer.handle_timer(net.now)
    assert carol.shown[-1] == ("@alice", 2, "@bob", "real")
    carol.peer.receive("left", seal(bob, carol.me, forged_again), bob.address("right"), net.now)
    assert [type(decoded(o.data)) for o in carol.peer.take_datagrams()] == [Ack]
    assert "evil" not in [s[3] for s in carol.shown]


def test_the_author_ends_no_round_with_a_copy_it_did_not_send() -> None:
    net, alice, (bob, carol) = ready_ring("@bob", "@carol")
    net.tweet(alice, 2, [bob, carol], text="real")
    home = TweetMsg("@carol", 900, "@alice", 2, "evil", signature(alice, 2, "real"), "@carol")
    net.inject(carol.address("right"), alice.address("left"), seal(carol, alice.me, home),
               delay=0.0)
    net.run()
    assert [d.rule for d in alice.dropped] == ["not the tweet sent"]
    assert [e.completed for e in alice.of(RoundEnded)] == [True, True]
    assert [s[3] for s in bob.shown + carol.shown if s[1] == 2] == ["real", "real"]


def test_the_real_tweet_first_then_a_forgery_with_its_id() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    net.tweet(alice, 2, [bob, carol, dave], text="real")
    net.run()
    evil = TweetMsg("@bob", 901, "@alice", 2, "evil", signature(bob, 2, "evil"), "@bob")
    net.inject(bob.address("right"), carol.address("left"), seal(bob, carol.me, evil))
    net.run()
    assert [s[3] for s in carol.shown + dave.shown if s[1] == 2] == ["real", "real"]


def _from_another_member(alice: User, bob: User, carol: User, dave: User) -> tuple[bytes,
                                                                                  Address]:
    tweet = TweetMsg("@dave", 77, "@alice", 5, "hi", signature(alice, 5, "hi"), "@dave")
    return seal(dave, carol.me, tweet), dave.address("right")


def _from_the_left_neighbours_other_port(alice: User, bob: User, carol: User,
                                         dave: User) -> tuple[bytes, Address]:
    tweet = TweetMsg("@bob", 77, "@alice", 5, "hi", signature(alice, 5, "hi"), "@bob")
    return seal(bob, carol.me, tweet), bob.address("middle")


def _claiming_the_left_neighbour(alice: User, bob: User, carol: User,
                                 dave: User) -> tuple[bytes, Address]:
    tweet = TweetMsg("@bob", 77, "@alice", 5, "hi", signature(alice, 5, "hi"), "@bob")
    return seal(dave, carol.me, tweet), bob.address("right")


def _with_a_bad_mac(alice: User, bob: User, carol: User, dave: User) -> tuple[bytes, Address]:
    tweet = TweetMsg("@bob", 77, "@alice", 5, "hi", signature(alice, 5, "hi"), "@bob")
    return forged(tweet), bob.address("right")


def _from_the_authors_left_port(alice: User, bob: User, carol: User,
                                dave: User) -> tuple[bytes, Address]:
    tweet = TweetMsg("@alice", 77, "@alice", 5, "hi", signature(alice, 5, "hi"), "@alice")
    return seal(alice, carol.me, tweet), alice.address("left")


def _a_detour_to_a_follower(alice: User, bob: User, carol: User,
                            dave: User) -> tuple[bytes, Address]:
    tweet = TweetMsg("@bob", 77, "@alice", 5, "hi", signature(alice, 5, "hi"), "@bob", "@dave")
    return seal(bob, carol.me, tweet), bob.address("right")


def _of_a_ring_it_is_not_in(alice: User, bob: User, carol: User,
                            dave: User) -> tuple[bytes, Address]:
    tweet = TweetMsg("@bob", 77, "@bob", 5, "hi", signature(bob, 5, "hi"), "@bob")
    return seal(bob, carol.me, tweet), bob.address("right")


@pytest.mark.parametrize("case", [
    _from_another_member, _from_the_left_neighbours_other_port, _claiming_the_left_neighbour,
    _with_a_bad_mac, _from_the_authors_left_port, _a_detour_to_a_follower,
    _of_a_ring_it_is_not_in,
])
def test_a_tweet_to_a_follower_is_dropped_and_not_acked(case: Callable[..., Any]) -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    data, source = case(alice, bob, carol, dave)
    before = len(carol.dropped)
    carol.peer.receive("left", data, source, net.now)
    carol.peer.handle_timer(net.now)
    assert carol.peer.take_datagrams() == []
    assert len(carol.shown) == 1 and len(carol.dropped) == before + 1


def test_a_tweet_relayed_by_the_author_is_taken_from_its_right_port() -> None:
    net, alice, (_bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    tweet = TweetMsg("@alice", 77, "@alice", 5, "hi", signature(alice, 5, "hi"), "@bob")
    carol.peer.receive("left", seal(alice, carol.me, tweet), alice.address("right"), net.now)
    carol.peer.handle_timer(net.now)
    outs = carol.peer.take_datagrams()
    assert [(o.port, o.address) for o in outs] == [("right", dave.address("left")),
                                                  ("left", alice.address("right"))]
    assert carol.shown[-1] == ("@alice", 5, "@bob", "hi")


# ==== §3.1 reliability: resends on a round-trip estimate ==========================================

def resends(user: User, start: float, until: float = 60.0) -> tuple[list[float], float]:
    """Run ``user``'s timers alone (nothing is answered): when it sent again, and when it had
    nothing more to wait for."""
    times: list[float] = []
    now = start
    while (deadline := user.peer.next_deadline()) is not None and deadline <= until:
        now = max(deadline, now)
        user.peer.handle_timer(now)
        if user.peer.take_datagrams():
            times.append(now)
    return times, now


def answer(sender: User, receiver: User, role: str, at: float) -> None:
    """``receiver`` acks every datagram ``sender`` has asked to send so far, at time ``at``."""
    for out in sender.peer.take_datagrams():
        message = decoded(out.data)
        ack = seal(receiver, sender.me, Ack(receiver.handle, message.seq))
        sender.peer.receive(out.port, ack, out.address, at)
        assert out.address == receiver.address(role)


def test_an_unmeasured_peer_is_resent_after_rto_initial_doubling_to_rto_max_until_give_up(
        ) -> None:
    alice, bob = User("@alice", "10.0.0.1"), User("@bob", "10.0.0.2")
    alice.peer.send_direct(bob.me, 5, "psst", 10.0)
    first = alice.peer.take_datagrams()
    assert len(first) == 1
    assert alice.peer.next_deadline() == pytest.approx(10.0 + RTO_INITIAL)
    times, end = resends(alice, 10.0)
    waits = [round(b - a, 6) for a, b in itertools.pairwise([10.0, *times])]
    assert waits == [0.2, 0.4, 0.8, 1.0]        # doubled, capped at RTO_MAX
    assert end == pytest.approx(10.0 + GIVE_UP)     # given up 3 s after the first send
    assert alice.of(DirectEnded) == [DirectEnded(5, False)]
    assert len(times) + 1 <= 8


def test_resent_copies_are_the_same_datagram() -> None:
    alice, bob = User("@alice", "10.0.0.1"), User("@bob", "10.0.0.2")
    alice.peer.send_direct(bob.me, 5, "psst", 0.0)
    (first,) = alice.peer.take_datagrams()
    alice.peer.handle_timer(RTO_INITIAL)
    (again,) = alice.peer.take_datagrams()
    assert again == first


def test_a_measured_round_trip_shortens_the_wait_and_give_up_stays_a_time() -> None:
    alice, bob = User("@alice", "10.0.0.1"), User("@bob", "10.0.0.2")
    alice.peer.start_teardown([bob.me], 0.0)
    answer(alice, bob, "middle", 0.04)          # measured: 0.04 s
    assert alice.of(TeardownEnded) == [TeardownEnded((), 1)]
    alice.peer.send_direct(bob.me, 5, "psst", 1.0)
    alice.peer.take_datagrams()
    # RFC 6298: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4 RTTVAR = 3R
    assert alice.peer.next_deadline() == pytest.approx(1.0 + 0.12)
    times, end = resends(alice, 1.0)
    assert end == pytest.approx(1.0 + GIVE_UP)      # the same time, more copies
    assert len(times) == 5
    assert alice.of(DirectEnded) == [DirectEnded(5, False)]


def test_the_wait_is_never_below_rto_min() -> None:
    alice, bob = User("@alice", "10.0.0.1"), User("@bob", "10.0.0.2")
    alice.peer.start_teardown([bob.me], 0.0)
    answer(alice, bob, "middle", 0.001)
    alice.peer.send_direct(bob.me, 5, "psst", 1.0)
    alice.peer.take_datagrams()
    assert alice.peer.next_deadline() == pytest.approx(1.0 + RTO_MIN)
    times, end = resends(alice, 1.0)
    waits = [round(b - a, 6) for a, b in itertools.pairwise([1.0, *times])]
    assert waits == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    assert end == pytest.approx(1.0 + GIVE_UP)
    assert len(times) + 1 <= 8                  # at most 8 copies within GIVE_UP


def test_the_estimate_is_per_destination_address() -> None:
    alice, bob = User("@alice", "10.0.0.1"), User("@bob", "10.0.0.2")
    alice.peer.start_teardown([bob.me], 0.0)
    answer(alice, bob, "middle", 0.001)         # bob's middle port is measured ...
    carol = User("@carol", "10.0.0.3")
    alice.peer.send_direct(carol.me, 6, "psst", 1.0)
    alice.peer.take_datagrams()
    assert alice.peer.next_deadline() == pytest.approx(1.0 + RTO_INITIAL)   # ... carol is not


def test_karn_a_resent_datagrams_ack_is_not_timed() -> None:
    alice, bob = User("@alice", "10.0.0.1"), User("@bob", "10.0.0.2")
    alice.peer.start_teardown([bob.me], 0.0)
    alice.peer.take_datagrams()
    alice.peer.handle_timer(RTO_INITIAL)        # resent: which copy is acked is unknown
    answer(alice, bob, "middle", RTO_INITIAL + 0.001)
    assert alice.of(TeardownEnded) == [TeardownEnded((), 1)]
    alice.peer.send_direct(bob.me, 5, "psst", 1.0)
    alice.peer.take_datagrams()
    assert alice.peer.next_deadline() == pytest.approx(1.0 + RTO_INITIAL)   # still unmeasured


def test_the_round_trip_estimate_follows_rfc_6298() -> None:
    estimate = RoundTripEstimate(PeerConfig())
    assert estimate.rto == RTO_INITIAL
    estimate.sample(0.1)
    assert (estimate.srtt, estimate.rttvar) == pytest.approx((0.1, 0.05))
    assert estimate.rto == pytest.approx(0.3)
    estimate.sample(0.02)
    assert estimate.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.08)
    assert estimate.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.02)
    assert estimate.rto == pytest.approx(estimate.srtt + 4 * estimate.rttvar)
    estimate.sample(0.9)
    assert estimate.rto == RTO_MAX              # never over RTO_MAX
    quick = RoundTripEstimate(PeerConfig())
    quick.sample(0.0001)
    assert quick.rto == RTO_MIN                 # never under RTO_MIN


def test_an_ack_ends_the_resends_and_counts_once() -> None:
    net, alice, (bob,) = ring("@bob")
    net.tweet(alice, 1, [bob])
    net.duplicate(match("ack"))
    net.run()
    assert ended(alice).completed
    assert alice.peer.next_deadline() is None and bob.peer.next_deadline() is None


# ==== §3.1 duplicates ===========================================================================

def test_a_duplicated_tweet_is_acked_every_time_but_shown_and_forwarded_once() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    net.duplicate(match("tweet", frm=bob, to=carol))
    net.tweet(alice, 2, [bob, carol, dave])
    net.run()
    (copy,) = net.flights(match("tweet", frm=bob, to=carol, tid=2))
    assert copy.fate == "duplicated"
    seq = copy.message.seq
    assert len(net.flights(match("ack", frm=carol, to=bob, seq=seq))) == 2
    assert len(net.flights(match("tweet", frm=carol, to=dave, tid=2))) == 1
    assert [s for s in carol.shown if s[1] == 2] == [("@alice", 2, "@bob", "tweet 2")]
    assert [s for s in dave.shown if s[1] == 2] == [("@alice", 2, "@carol", "tweet 2")]
    assert alice.of(RoundEnded)[-1].completed


def test_a_tweet_resent_after_its_ack_was_lost_is_acked_again_and_shown_once() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    net.drop(match("ack", frm=carol, to=bob), times=2)
    net.tweet(alice, 2, [bob, carol, dave])
    net.run()
    copies = net.flights(match("tweet", frm=bob, to=carol, tid=2))
    assert len(copies) == 3 and len({c.data for c in copies}) == 1
    assert len(net.flights(match("ack", frm=carol, to=bob, seq=copies[0].message.seq))) == 3
    assert len(net.flights(match("tweet", frm=carol, to=dave, tid=2))) == 1
    assert [s for s in carol.shown if s[1] == 2] == [("@alice", 2, "@bob", "tweet 2")]
    assert not net.flights(match("detour"))
    assert alice.of(RoundEnded)[-1].skipped == ()


def test_a_tweet_replayed_later_is_acked_but_not_shown_again() -> None:
    net, _alice, (bob, carol) = ready_ring("@bob", "@carol")
    hop = net.flights(match("tweet", frm=bob, to=carol))[0]
    net.run_for(100.0)
    net.inject(hop.source, hop.destination, hop.data)
    net.run()
    assert len(carol.shown) == 1
    assert len(net.flights(match("tweet", frm=carol))) == 1
    assert len(net.flights(match("ack", frm=carol, to=bob))) == 2


# ==== §4.4 detours, and the author's report =====================================================

def test_a_silent_right_neighbour_leads_to_a_detour_and_the_author_tries_it_itself() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    net.drop(match("tweet", frm=bob, to=carol))     # only this link fails
    start = net.now
    net.tweet(alice, 2, [bob, carol, dave])
    net.run()
    first = net.flights(match("tweet", frm=bob, to=carol, tid=2))[0]
    (detour,) = net.flights(match("detour"))
    assert (detour.sender, detour.source, detour.destination) \
        == (bob, bob.address("right"), alice.address("left"))
    message = detour.message
    assert isinstance(message, TweetMsg)
    assert (message.dead, message.prev, message.tid) == ("@carol", "@bob", 2)
    assert detour.at == pytest.approx(first.at + GIVE_UP)       # at bob's give-up
    (relay,) = net.flights(match("tweet", frm=alice, to=carol, tid=2))
    assert (relay.source, relay.destination) == (alice.address("right"), carol.address("left"))
    assert relay.message.prev == "@bob"
    assert [s for s in carol.shown if s[1] == 2] == [("@alice", 2, "@bob", "tweet 2")]
    assert [s for s in dave.shown if s[1] == 2] == [("@alice", 2, "@carol", "tweet 2")]
    result = alice.of(RoundEnded)[-1]
    assert (result.completed, result.reached, result.skipped) == (True, 3, ())
    assert result.seconds > GIVE_UP and net.now - start < 2 * GIVE_UP


def test_a_silent_follower_that_already_had_the_tweet_acks_the_author_and_is_not_skipped(
        ) -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    net.drop(match("ack", frm=carol, to=bob))       # carol's acks to bob are what is lost
    net.delay(match("tweet", frm=dave, to=alice), GIVE_UP + 0.5)    # and the way home is slow
    net.tweet(alice, 2, [bob, carol, dave])
    net.run()
    assert net.flights(match("detour", frm=bob, dead="@carol"))
    assert len(net.flights(match("tweet", frm=alice, to=carol, tid=2))) == 1
    assert len(net.flights(match("tweet", frm=carol, to=dave, tid=2))) == 1   # not again
    assert [s for s in carol.shown if s[1] == 2] == [("@alice", 2, "@bob", "tweet 2")]
    assert [s for s in dave.shown if s[1] == 2] == [("@alice", 2, "@carol", "tweet 2")]
    assert alice.of(RoundEnded)[-1].skipped == ()


def test_the_author_gives_a_silent_follower_up_and_relays_to_the_next() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    net.leave(carol)
    net.tweet(alice, 2, [bob, carol, dave])
    net.run()
    relays = net.flights(match("tweet", frm=alice, tid=2))
    assert [f.destination for f in relays[:2]] == [bob.address("left"), carol.address("left")]
    to_dave = [f for f in relays if f.receiver is dave]
    assert len(to_dave) == 1 and to_dave[0].message.prev == "@bob"
    tried = [f for f in relays if f.destination == carol.address("left")]
    assert to_dave[0].at == pytest.approx(tried[0].at + GIVE_UP)
    assert [s for s in dave.shown if s[1] == 2] == [("@alice", 2, "@bob", "tweet 2")]
    result = alice.of(RoundEnded)[-1]
    assert (result.completed, result.reached, result.skipped) == (True, 2, ("@carol",))


def test_a_silent_last_follower_ends_the_round_once_the_author_gave_it_up() -> None:
    net, alice, (bob, carol) = ready_ring("@bob", "@carol")
    net.leave(carol)
    net.tweet(alice, 2, [bob, carol])
    net.run()
    result = alice.of(RoundEnded)[-1]
    assert (result.reached, result.skipped) == (1, ("@carol",))
    assert result.seconds == pytest.approx(2 * GIVE_UP + 3 * LATENCY, abs=0.01)


def test_when_the_authors_first_hop_fails_it_goes_on_the_same_way() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    net.leave(bob)
    net.tweet(alice, 2, [bob, carol, dave])
    net.run()
    relays = net.flights(match("tweet", frm=alice, tid=2))
    assert relays[-1].receiver is carol and relays[-1].message.prev == "@alice"
    assert relays[-1].at == pytest.approx(relays[0].at + GIVE_UP)
    assert [s for s in carol.shown if s[1] == 2] == [("@alice", 2, "@alice", "tweet 2")]
    assert [s for s in dave.shown if s[1] == 2] == [("@alice", 2, "@carol", "tweet 2")]
    result = alice.of(RoundEnded)[-1]
    assert (result.completed, result.reached, result.skipped) == (True, 2, ("@bob",))


def test_a_detour_duplicated_by_the_network_is_relayed_once() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    net.leave(carol)
    net.duplicate(match("detour"))
    net.tweet(alice, 2, [bob, carol, dave])
    net.run()
    (detour,) = net.flights(match("detour"))
    assert len(net.flights(match("ack", frm=alice, seq=detour.message.seq))) == 2
    tried = net.flights(match("tweet", frm=alice, tid=2,
                              prev="@bob"))   # the author's relays for this detour
    first_copies = {f.message.seq for f in tried if f.destination
                    == carol.address("left")}
    assert len(first_copies) == 1
    assert len([f for f in tried if f.receiver is dave]) == 1
    assert [s for s in dave.shown if s[1] == 2] == [("@alice", 2, "@bob", "tweet 2")]
    assert alice.of(RoundEnded)[-1].skipped == ("@carol",)


def test_a_detour_resent_after_a_lost_ack_is_relayed_once() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    net.drop(match("tweet", frm=bob, to=carol))
    net.drop(match("ack", frm=alice, to=bob), times=2)
    net.tweet(alice, 2, [bob, carol, dave])
    net.run()
    detours = net.flights(match("detour"))
    assert len(detours) == 3 and len({d.data for d in detours}) == 1
    assert len({f.message.seq for f in net.flights(
        match("tweet", frm=alice, to=carol, tid=2))}) == 1
    assert [s for s in carol.shown if s[1] == 2] == [("@alice", 2, "@bob", "tweet 2")]
    assert [s for s in dave.shown if s[1] == 2] == [("@alice", 2, "@carol", "tweet 2")]
    assert alice.of(RoundEnded)[-1].skipped == ()


def test_a_follower_reached_by_a_detour_is_not_relayed_again_when_the_one_before_is_silent(
        ) -> None:
    """Simulation seed 18806.  Carol has the tweet but every ack she sends is lost, and dave is
    gone.  Bob's detour around carol and carol's detour around dave both reach the author: it
    tries carol, then dave (carol's detour).  When carol never answers it, the next follower is
    dave, already tried: the author does not relay to dave a second time."""
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    net.drop(match("ack", frm=carol))
    net.leave(dave)
    net.tweet(alice, 2, [bob, carol, dave])
    net.run()
    assert net.flights(match("detour", frm=bob, dead="@carol"))
    assert net.flights(match("detour", frm=carol, dead="@dave"))
    to_dave = net.flights(lambda f: f.sender is alice and f.kind == "tweet"
                          and f.destination == dave.address("left"))
    assert len({f.message.seq for f in to_dave}) == 1
    result = alice.of(RoundEnded)[-1]
    assert (result.completed, sorted(result.skipped)) == (True, ["@carol", "@dave"])


def hold_round(net: Net, alice: User, members: list[User], tid: int = 2) -> None:
    """Start tweet ``tid`` and keep it from coming home, so that the round is running."""
    net.drop(match("tweet", frm=members[-1], to=alice, tid=tid))
    net.tweet(alice, tid, members)
    net.run_for(0.5)
    assert alice.peer.busy


def test_a_detour_about_another_than_the_senders_right_neighbour_is_dropped() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    hold_round(net, alice, [bob, carol, dave])
    text = "tweet 2"
    before = len(net.flights(match("tweet", frm=alice)))
    for seq, dead in ((500, "@dave"), (501, "@bob"), (502, "@zed"), (503, "@alice")):
        detour = TweetMsg("@bob", seq, "@alice", 2, text, signature(alice, 2, text), "@bob",
                          dead)
        net.inject(bob.address("right"), alice.address("left"), seal(bob, alice.me, detour))
    net.run_for(0.5)
    assert len(net.flights(match("tweet", frm=alice))) == before
    assert len(alice.dropped) == 4
    assert [s for s in dave.shown if s[1] == 2] == [("@alice", 2, "@carol", "tweet 2")]
    assert alice.peer.busy


def test_a_detour_or_tweet_home_that_is_dropped_is_not_acked() -> None:
    """§3.1: a receiver acks every valid copy; §3.2: a detour is taken only about the sender's
    right neighbour, the tweet home only from the last follower, and everything else is
    dropped.  A dropped datagram is not acknowledged (as a dropped setup, tweet or message is
    not)."""
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    hold_round(net, alice, [bob, carol, dave])
    text, sig = "tweet 2", signature(alice, 2, "tweet 2")
    detour = TweetMsg("@bob", 600, "@alice", 2, text, sig, "@bob", "@dave")
    alice.peer.receive("left", seal(bob, alice.me, detour), bob.address("right"), net.now)
    home = TweetMsg("@carol", 601, "@alice", 2, text, sig, "@carol")
    alice.peer.receive("left", seal(carol, alice.me, home), carol.address("right"), net.now)
    assert len(alice.dropped) == 2
    assert acks_of(alice) == []


def test_the_tweet_home_is_taken_only_from_the_last_follower() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    hold_round(net, alice, [bob, carol, dave])
    text = "tweet 2"
    sig = signature(alice, 2, text)
    for user, seq in ((bob, 700), (carol, 701)):
        home = TweetMsg(user.handle, seq, "@alice", 2, text, sig, user.handle)
        alice.peer.receive("left", seal(user, alice.me, home), user.address("right"), net.now)
    net.run_for(0.1)
    assert alice.of(RoundEnded)[1:] == []
    assert len(alice.dropped) == 2
    home = TweetMsg("@dave", 702, "@alice", 2, text, sig, "@dave")
    alice.peer.receive("left", seal(dave, alice.me, home), dave.address("right"), net.now)
    net.run_for(0.1)
    assert last_round(alice).tid == 2 and last_round(alice).completed
    assert last_round(alice).skipped == () and last_round(alice).reached == 3


def test_a_tweet_or_detour_at_the_author_from_outside_its_ring_is_dropped() -> None:
    net, alice, (bob, carol) = ready_ring("@bob", "@carol")
    hold_round(net, alice, [bob, carol])
    eve = net.join("@eve")
    alice.peer.know(eve.me)
    text, sig = "tweet 2", signature(alice, 2, "tweet 2")
    cases = [
        (seal(eve, alice.me, TweetMsg("@eve", 1, "@alice", 2, text, sig, "@eve")),
         eve.address("right")),
        (seal(eve, alice.me, TweetMsg("@eve", 2, "@alice", 2, text, sig, "@eve", "@bob")),
         eve.address("right")),
        (seal(carol, alice.me, TweetMsg("@carol", 3, "@alice", 2, text, sig, "@carol")),
         carol.address("middle")),
        (forged(TweetMsg("@carol", 4, "@alice", 2, text, sig, "@carol")),
         carol.address("right")),
    ]
    for data, source in cases:
        alice.peer.receive("left", data, source, net.now)
    assert acks_of(alice) == []
    assert len(alice.dropped) == len(cases)
    net.run_for(0.1)
    assert len(alice.of(RoundEnded)) == 1


def test_a_round_that_does_not_come_home_ends_incomplete_at_its_deadline() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    net.drop(lambda f: f.sender is carol and f.kind != "ack")   # carol swallows the tweet
    net.tweet(alice, 2, [bob, carol, dave])
    started = net.now
    first = net.flights(match("tweet", frm=alice, tid=2))[0].at
    limit = PeerConfig().round_time(3)
    assert limit == pytest.approx(2 * GIVE_UP + 2.0 + 0.05 * 3)
    net.run(first + limit - 0.001)
    assert len(alice.of(RoundEnded)) == 1
    net.run(first + limit + 0.001)
    result = alice.of(RoundEnded)[-1]
    assert (result.tid, result.completed) == (2, False)
    assert sorted(result.skipped) == ["@carol", "@dave"]     # only bob acked the author
    assert result.reached == 1
    assert result.seconds == pytest.approx(first - started + limit, abs=1e-6)
    assert alice.peer.busy is False


def test_the_round_may_take_its_time_again_while_the_author_relays() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    net.leave(bob)                                          # the first hop fails
    net.drop(lambda f: f.sender is carol and f.kind != "ack")
    net.tweet(alice, 2, [bob, carol, dave])
    limit = PeerConfig().round_time(3)
    relays = net.flights(match("tweet", frm=alice, tid=2))
    net.run(relays[0].at + limit + 0.1)
    assert len(alice.of(RoundEnded)) == 1                   # not over: it relayed at 3 s
    net.run()
    relay_to_carol = net.flights(match("tweet", frm=alice, to=carol, tid=2))[0]
    result = alice.of(RoundEnded)[-1]
    assert result.completed is False
    assert net.now == pytest.approx(relay_to_carol.at + limit, abs=1e-6)
    assert sorted(result.skipped) == ["@bob", "@dave"]
    assert result.reached == 1


def test_the_report_counts_setup_failures_and_silent_followers() -> None:
    net, alice, (bob, carol, dave, eve) = ring("@bob", "@carol", "@dave", "@eve")
    net.drop(match("setup", to=carol))
    net.drop(match(kind="tweet", to=eve))
    net.tweet(alice, 1, [bob, carol, dave, eve])
    net.run()
    result = ended(alice)
    assert result.completed
    assert sorted(result.skipped) == ["@carol", "@eve"]
    assert result.reached == 2


# ==== §3.2 acks ==================================================================================

@pytest.fixture
def waiting() -> tuple[User, User, int]:
    """@alice has sent @bob a direct message, seq returned, and waits for its ack."""
    alice, bob = User("@alice", "10.0.0.1"), User("@bob", "10.0.0.2")
    alice.peer.send_direct(bob.me, 5, "psst", 0.0)
    (out,) = alice.peer.take_datagrams()
    return alice, bob, decoded(out.data).seq


@pytest.mark.parametrize("case", ["bad MAC", "MAC for another", "made by another",
                                  "wrong port", "wrong host", "claims another sender",
                                  "unknown seq"])
def test_an_ack_that_is_not_the_right_one_is_ignored(waiting: Any, case: str) -> None:
    alice, bob, seq = waiting
    carol = User("@carol", "10.0.0.3")
    alice.peer.know(carol.me)
    ack, source = seal(bob, alice.me, Ack("@bob", seq)), bob.address("middle")
    if case == "bad MAC":
        ack = forged(Ack("@bob", seq))
    elif case == "MAC for another":
        ack = seal(bob, carol.me, Ack("@bob", seq))
    elif case == "made by another":
        ack = seal(carol, alice.me, Ack("@bob", seq))
    elif case == "wrong port":
        source = bob.address("left")
    elif case == "wrong host":
        source = ("10.0.0.66", bob.ports[1])
    elif case == "claims another sender":
        ack = seal(carol, alice.me, Ack("@carol", seq))
    else:
        ack = seal(bob, alice.me, Ack("@bob", seq + 1))
    alice.peer.receive("middle", ack, source, 0.01)
    assert alice.of(DirectEnded) == []
    assert alice.peer.take_datagrams() == []        # an ack is never answered
    alice.peer.handle_timer(RTO_INITIAL)
    assert len(alice.peer.take_datagrams()) == 1    # still waiting: sent again
    alice.peer.receive("middle", seal(bob, alice.me, Ack("@bob", seq)), bob.address("middle"),
                       0.3)
    assert alice.of(DirectEnded) == [DirectEnded(5, True)]


def test_an_ack_comes_once_a_datagram_is_settled(waiting: Any) -> None:
    alice, bob, seq = waiting
    ack = seal(bob, alice.me, Ack("@bob", seq))
    alice.peer.receive("middle", ack, bob.address("middle"), 0.01)
    alice.peer.receive("middle", ack, bob.address("middle"), 0.02)
    assert alice.of(DirectEnded) == [DirectEnded(5, True)]
    assert alice.peer.next_deadline() is None


# ==== §5 exit ====================================================================================

def test_teardown_makes_every_follower_forget_the_ring() -> None:
    net, alice, members = ready_ring("@bob", "@carol", "@dave")
    alice.peer.start_teardown([m.me for m in members], net.now)
    net.run()
    assert all(m.peer.memberships == {} for m in members)
    assert alice.of(TeardownEnded) == [TeardownEnded((), 3)]
    for member in members:
        (flight,) = net.flights(match("teardown", to=member))
        assert (flight.source, flight.destination) == (alice.address("middle"),
                                                       member.address("middle"))


def test_teardown_ends_naming_the_silent_followers() -> None:
    net, alice, (bob, carol, dave) = ready_ring("@bob", "@carol", "@dave")
    net.leave(carol)
    start = net.now
    alice.peer.start_teardown([bob.me, carol.me, dave.me], net.now)
    net.run()
    assert alice.of(TeardownEnded) == [TeardownEnded(("@carol",), 3)]
    assert net.now == pytest.approx(start + GIVE_UP)
    assert bob.peer.memberships == {} and dave.peer.memberships == {}


def test_teardown_of_no_followers_ends_at_once() -> None:
    alice = User("@alice", "10.0.0.1")
    alice.peer.start_teardown([], 0.0)
    assert alice.of(TeardownEnded) == [TeardownEnded((), 0)]
    assert alice.peer.take_datagrams() == []


def test_a_new_login_that_never_tweeted_tears_down_an_earlier_logins_ring() -> None:
    net, _alice, (bob, carol) = ready_ring("@bob", "@carol")
    alice2 = net.join("@alice", login=2)
    for member in (bob, carol):
        member.peer.know(alice2.me)
    alice2.peer.start_teardown([bob.me, carol.me], net.now)
    net.run()
    assert bob.peer.memberships == {} and carol.peer.memberships == {}
    assert alice2.of(TeardownEnded) == [TeardownEnded((), 2)]


# ==== §6 direct messages =========================================================================

@pytest.fixture
def pair() -> tuple[Net, User, User]:
    """@alice may message @bob: the tracker handed @bob her tuple."""
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    bob.peer.know(alice.me)
    return net, alice, bob


def test_a_direct_message_is_delivered_and_shown_once(pair: Any) -> None:
    net, alice, bob = pair
    net.duplicate(match("message"))
    alice.peer.send_direct(bob.me, 5, "psst", net.now)
    net.run()
    assert bob.of(MessageShown) == [MessageShown("@alice", 5, "psst")]
    assert alice.of(DirectEnded) == [DirectEnded(5, True)]
    (flight,) = net.flights(match("message"))
    assert (flight.source, flight.destination) == (alice.address("middle"),
                                                   bob.address("middle"))
    acks = net.flights(match("ack", frm=bob))
    assert len(acks) == 2 and all(a.source == bob.address("middle") for a in acks)


def test_a_message_is_shown_once_per_sender_and_id(pair: Any) -> None:
    net, alice, bob = pair
    carol = net.join("@carol")
    bob.peer.know(carol.me)
    for sender, message_id in ((alice, 5), (alice, 6), (carol, 5), (alice, 5)):
        sender.peer.send_direct(bob.me, message_id, f"{sender.handle} {message_id}", net.now)
        net.run()
    assert [(m.sender, m.message_id) for m in bob.of(MessageShown)] == [
        ("@alice", 5), ("@alice", 6), ("@carol", 5)]
    assert [e.delivered for e in alice.of(DirectEnded)] == [True, True, True]


def test_a_message_resent_after_a_lost_ack_is_shown_once(pair: Any) -> None:
    net, alice, bob = pair
    net.drop(match("ack", frm=bob), times=2)
    alice.peer.send_direct(bob.me, 5, "psst", net.now)
    net.run()
    assert len(net.flights(match("message"))) == 3
    assert bob.of(MessageShown) == [MessageShown("@alice", 5, "psst")]
    assert alice.of(DirectEnded) == [DirectEnded(5, True)]


def test_a_message_replayed_later_is_not_shown_twice(pair: Any) -> None:
    net, alice, bob = pair
    alice.peer.send_direct(bob.me, 5, "psst", net.now)
    net.run()
    (flight,) = net.flights(match("message"))
    net.run_for(500.0)
    net.inject(flight.source, flight.destination, flight.data)
    net.run()
    assert len(bob.of(MessageShown)) == 1


def test_a_message_nobody_acks_ends_undelivered(pair: Any) -> None:
    net, alice, bob = pair
    net.leave(bob)
    alice.peer.send_direct(bob.me, 5, "psst", net.now)
    net.run()
    assert alice.of(DirectEnded) == [DirectEnded(5, False)]
    assert net.now == pytest.approx(GIVE_UP)


def _message_unknown_sender(alice: User, bob: User) -> tuple[str, bytes, Address]:
    carol = User("@carol", "10.0.0.3")
    return "middle", seal(carol, bob.me, DirectMsg("@carol", 1, 5, "hi")), \
        carol.address("middle")


def _message_blocked(alice: User, bob: User) -> tuple[str, bytes, Address]:
    bob.peer.block("@ALICE")
    return "middle", seal(alice, bob.me, DirectMsg("@alice", 1, 5, "hi")), \
        alice.address("middle")


def _message_bad_mac(alice: User, bob: User) -> tuple[str, bytes, Address]:
    return "middle", forged(DirectMsg("@alice", 1, 5, "hi")), alice.address("middle")


def _message_in_anothers_name(alice: User, bob: User) -> tuple[str, bytes, Address]:
    carol = User("@carol", "10.0.0.3")
    bob.peer.know(carol.me)
    return "middle", seal(carol, bob.me, DirectMsg("@alice", 1, 5, "hi")), \
        alice.address("middle")


def _message_earlier_login(alice: User, bob: User) -> tuple[str, bytes, Address]:
    old = User("@alice", alice.ip, login=7)
    return "middle", seal(old, bob.me, DirectMsg("@alice", 1, 5, "hi")), \
        alice.address("middle")


def _message_wrong_address(alice: User, bob: User) -> tuple[str, bytes, Address]:
    return "middle", seal(alice, bob.me, DirectMsg("@alice", 1, 5, "hi")), \
        alice.address("right")


def _message_wrong_port(alice: User, bob: User) -> tuple[str, bytes, Address]:
    return "left", seal(alice, bob.me, DirectMsg("@alice", 1, 5, "hi")), \
        alice.address("middle")


@pytest.mark.parametrize("case", [
    _message_unknown_sender, _message_blocked, _message_bad_mac, _message_in_anothers_name,
    _message_earlier_login, _message_wrong_address, _message_wrong_port,
])
def test_a_message_is_dropped_and_not_acked(case: Callable[..., Any]) -> None:
    alice, bob = User("@alice", "10.0.0.1"), User("@bob", "10.0.0.2")
    bob.peer.know(alice.me)
    port, data, source = case(alice, bob)
    bob.peer.receive(port, data, source, 0.0)
    assert bob.peer.take_datagrams() == []
    assert bob.of(MessageShown) == []
    assert len(bob.dropped) == 1


def test_a_blocked_sender_ends_undelivered_and_unblock_lets_it_through(pair: Any) -> None:
    net, alice, bob = pair
    bob.peer.block("@alice")
    alice.peer.send_direct(bob.me, 5, "psst", net.now)
    net.run()
    assert alice.of(DirectEnded) == [DirectEnded(5, False)]
    bob.peer.unblock("@alice")
    alice.peer.send_direct(bob.me, 6, "again", net.now)
    net.run()
    assert bob.of(MessageShown) == [MessageShown("@alice", 6, "again")]


def test_a_message_from_the_tracker_then_peer_to_peer_is_shown_once(pair: Any) -> None:
    net, alice, bob = pair
    bob.peer.message_from_tracker("@alice", 5, "psst", 1234.5)
    assert bob.of(MessageShown) == [MessageShown("@alice", 5, "psst", 1234.5)]
    alice.peer.send_direct(bob.me, 5, "psst", net.now)
    net.run()
    assert len(bob.of(MessageShown)) == 1
    assert alice.of(DirectEnded) == [DirectEnded(5, True)]      # acked all the same


def test_a_message_peer_to_peer_then_from_the_tracker_is_shown_once(pair: Any) -> None:
    net, alice, bob = pair
    alice.peer.send_direct(bob.me, 5, "psst", net.now)
    net.run()
    bob.peer.message_from_tracker("@Alice", 5, "psst", 1234.5)
    bob.peer.message_from_tracker("@alice", 5, "psst", 1234.5)
    assert bob.of(MessageShown) == [MessageShown("@alice", 5, "psst")]


def test_kept_messages_from_the_tracker_are_shown_once_each() -> None:
    bob = User("@bob", "10.0.0.2")
    for message_id in (3, 4, 3):
        bob.peer.message_from_tracker("@alice", message_id, f"m{message_id}", 10.0)
    bob.peer.message_from_tracker("@carol", 3, "other sender", 10.0)
    assert [(m.sender, m.message_id) for m in bob.of(MessageShown)] == [
        ("@alice", 3), ("@alice", 4), ("@carol", 3)]


def test_a_tweet_from_the_ring_then_from_the_tracker_is_shown_once() -> None:
    _net, _alice, (_bob, carol) = ready_ring("@bob", "@carol")
    carol.peer.tweet_from_tracker("@alice", 1, "tweet 1")
    carol.peer.tweet_from_tracker("@ALICE", 1, "tweet 1")
    assert carol.shown == [("@alice", 1, "@bob", "tweet 1")]


def test_a_tweet_from_the_tracker_then_from_the_ring_is_shown_once() -> None:
    net, alice, (bob, carol) = ready_ring("@bob", "@carol")
    carol.peer.tweet_from_tracker("@alice", 2, "tweet 2")
    assert carol.shown[-1] == ("@alice", 2, None, "tweet 2")
    acks = len(net.flights(match("ack", frm=carol, to=bob)))
    net.tweet(alice, 2, [bob, carol])
    net.run()
    assert [s for s in carol.shown if s[1] == 2] == [("@alice", 2, None, "tweet 2")]
    assert len(net.flights(match("ack", frm=carol, to=bob))) > acks     # acked all the same


def test_the_tracker_relays_a_tweet_once_per_author_and_tid() -> None:
    bob = User("@bob", "10.0.0.2")
    bob.peer.tweet_from_tracker("@alice", 7, "a")
    bob.peer.tweet_from_tracker("@carol", 7, "c")
    bob.peer.tweet_from_tracker("@alice", 7, "a")
    assert bob.shown == [("@alice", 7, None, "a"), ("@carol", 7, None, "c")]


def test_the_last_4096_ids_are_kept_and_older_ones_count_as_seen() -> None:
    assert limits.SEEN_MAX == 4096
    bob = User("@bob", "10.0.0.2")
    for message_id in range(1, limits.SEEN_MAX + 2):
        bob.peer.message_from_tracker("@alice", message_id, "m", 0.0)
    assert len(bob.of(MessageShown)) == limits.SEEN_MAX + 1
    for message_id in (1, 2, limits.SEEN_MAX + 1):
        bob.peer.message_from_tracker("@alice", message_id, "m", 0.0)
    assert len(bob.of(MessageShown)) == limits.SEEN_MAX + 1
    seen = SeenIds(limit=3)
    assert [seen.first_time("@a", n) for n in (5, 6, 7, 8, 5, 4, 9, 8)] == [
        True, True, True, True, False, False, True, False]


# ==== §3.2 malformed bytes, sizes and ports ======================================================

def _oversize(alice: User, bob: User) -> bytes:
    body = body_of(DirectMsg("@alice", 1, 5, "hi"))[:-1] + b',"pad":"' \
        + b"x" * limits.DATAGRAM_MAX + b'"}'
    return encode(body, auth.mac(alice.keys.pair_key(bob.me.public_key), body))


MALFORMED: list[Callable[[User, User], bytes]] = [
    lambda alice, bob: b"",
    lambda alice, bob: b"\x00" * 40,
    lambda alice, bob: b"hello\n",
    lambda alice, bob: b"\xff\xfe\n" + base64.b64encode(bytes(16)),
    lambda alice, bob: body_of(DirectMsg("@alice", 1, 5, "hi")),        # no MAC line
    lambda alice, bob: body_of(DirectMsg("@alice", 1, 5, "hi")) + b"\n!!",
    lambda alice, bob: encode(b'{"kind":"shout","from":"@alice","seq":1}', bytes(16)),
    lambda alice, bob: encode(b'{"kind":"message","from":"@alice","seq":1,"id":5}', bytes(16)),
    lambda alice, bob: encode(b"[" * 1000 + b"]" * 1000, bytes(16)),
    _oversize,
]


@pytest.mark.parametrize("make", MALFORMED)
@pytest.mark.parametrize("port", ROLES)
def test_malformed_datagrams_are_dropped(make: Callable[[User, User], bytes], port: str) -> None:
    alice, bob = User("@alice", "10.0.0.1"), User("@bob", "10.0.0.2")
    bob.peer.know(alice.me)
    bob.peer.receive(port, make(alice, bob), alice.address("middle"), 0.0)
    assert bob.peer.take_datagrams() == []
    (drop,) = bob.dropped
    assert drop.source == alice.address("middle") and drop.port == port


@pytest.mark.parametrize(("kind", "good"), [("setup", "middle"), ("teardown", "middle"),
                                            ("message", "middle"), ("tweet", "left"),
                                            ("detour", "left")])
def test_each_kind_is_taken_only_on_its_port(kind: str, good: str) -> None:
    net, alice, (bob, carol) = ready_ring("@bob", "@carol")
    bob.peer.know(carol.me)
    sig = signature(alice, 3, "x")
    messages = {
        "setup": (alice, SetupMsg("@alice", 50, "@alice", 9, alice.me, carol.me), "middle"),
        "teardown": (alice, TeardownMsg("@alice", 51, "@alice", 9), "middle"),
        "message": (carol, DirectMsg("@carol", 52, 1, "hi"), "middle"),
        "tweet": (alice, TweetMsg("@alice", 53, "@alice", 3, "x", sig, "@alice"), "right"),
        "detour": (alice, TweetMsg("@alice", 54, "@alice", 3, "x", sig, "@alice", "@carol"),
                   "right"),
    }
    sender, message, role = messages[kind]
    data = seal(sender, bob.me, message)
    for port in ROLES:
        if port == good:
            continue
        before = len(bob.dropped)
        bob.peer.receive(port, data, sender.address(role), net.now)
        assert bob.peer.take_datagrams() == []
        assert len(bob.dropped) == before + 1
    if kind != "detour":        # a follower takes no detour on any port
        bob.peer.receive(good, data, sender.address(role), net.now)
        answers = [decoded(out.data) for out in bob.peer.take_datagrams()]
        assert Ack("@bob", message.seq) in answers


# ---- never an exception -----------------------------------------------------------------------

def busy_bob() -> tuple[Net, User, User, User]:
    """@bob in @alice's ring (between @alice and @carol), with a round of his own running
    (@carol follows him) and a direct message waiting for its ack."""
    net, alice, (bob, carol) = ready_ring("@bob", "@carol")
    carol.follows(bob)
    bob.peer.know(carol.me)
    net.drop(match("tweet", frm=carol, to=bob))
    net.tweet(bob, 2, [carol])
    bob.peer.send_direct(alice.me, 9, "hi", net.now)    # alice does not know him: no ack
    net.run_for(0.01)
    assert bob.peer.busy and bob.peer.memberships
    return net, alice, bob, carol


HANDLES = st.sampled_from(["@alice", "@bob", "@carol", "@Alice", "@zed"])
SMALL = st.integers(0, 3) | st.integers(0, 2**53 - 1)


@st.composite
def near_datagrams(draw: st.DrawFn, peers: Sequence[Peer], sigs: Sequence[str]) -> Datagram:
    """Datagrams made of the values of the ring: right and wrong in every combination."""
    peer = st.sampled_from(list(peers))
    text = st.sampled_from(["tweet 1", "tweet 2", "hi"]) | st.text(min_size=1, max_size=20)
    sig = st.sampled_from(list(sigs))
    kind = draw(st.sampled_from(["ack", "setup", "teardown", "tweet", "detour", "message"]))
    sender, seq = draw(HANDLES), draw(st.integers(95, 110) | SMALL)
    if kind == "ack":
        return Ack(sender, seq)
    if kind == "message":
        return DirectMsg(sender, seq, draw(SMALL), draw(text))
    ring_of = draw(HANDLES)
    if kind == "setup":
        return SetupMsg(sender, seq, ring_of, draw(SMALL), draw(peer), draw(peer))
    if kind == "teardown":
        return TeardownMsg(sender, seq, ring_of, draw(SMALL))
    dead = draw(HANDLES) if kind == "detour" else None
    return TweetMsg(sender, seq, ring_of, draw(st.integers(0, 3)), draw(text), draw(sig),
                    draw(HANDLES), dead)


def check_outputs(user: User) -> None:
    for out in user.peer.take_datagrams():
        assert out.port in ROLES
        assert len(out.data) <= limits.DATAGRAM_MAX
        decode(out.data)
    user.collect()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=300), st.sampled_from(ROLES),
                          st.sampled_from([("10.0.0.1", 5001), ("10.0.0.1", 5002),
                                           ("10.0.0.3", 5003), ("10.0.0.66", 1)])),
                min_size=1, max_size=8))
def test_arbitrary_bytes_are_dropped_never_raised(
        datagrams: list[tuple[bytes, str, Address]]) -> None:
    net, _alice, bob, _carol = busy_bob()
    before = len(bob.dropped)
    for data, port, source in datagrams:
        bob.peer.receive(port, data, source, net.now)
        check_outputs(bob)
    bob.peer.handle_timer(net.now + 1.0)
    check_outputs(bob)
    assert len(bob.dropped) >= before + sum(1 for data, *_ in datagrams if not _decodes(data))


def _decodes(data: bytes) -> bool:
    try:
        decode(data)
    except DatagramError:
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_datagrams_made_by_ring_members_never_raise(data: st.DataObject) -> None:
    """Well-formed datagrams with good MACs, made by the peers @bob talks to, with the ring's
    own values in every combination, at every port: whatever they say, @bob never raises, and
    everything it sends is a datagram."""
    net, alice, bob, carol = busy_bob()
    peers = [alice.me, bob.me, carol.me, User("@zed", "10.0.0.26").me]
    sigs = [signature(alice, 1, "tweet 1"), signature(alice, 2, "tweet 2"),
            signature(bob, 2, "tweet 2"), "A" * 88]
    now = net.now
    for _ in range(data.draw(st.integers(1, 6))):
        message = data.draw(near_datagrams(peers, sigs))
        sender = data.draw(st.sampled_from([alice, carol]))
        source = sender.address(data.draw(st.sampled_from(ROLES)))
        port = data.draw(st.sampled_from(ROLES))
        now += data.draw(st.sampled_from([0.0, 0.01, 0.3, 3.5]))
        bob.peer.receive(port, seal(sender, bob.me, message), source, now)
        check_outputs(bob)
        bob.peer.handle_timer(now)
        check_outputs(bob)
    for later in (1.0, 4.0, 20.0):
        bob.peer.handle_timer(now + later)
        check_outputs(bob)


def test_a_neighbour_whose_key_cannot_agree_a_secret_does_not_make_receive_raise() -> None:
    """The author vouches for its ring, but a tuple's key is only checked for its shape: a
    low-order X25519 key must not turn the next tweet into an exception (§8: no input makes a
    program fail)."""
    alice, bob = User("@alice", "10.0.0.1"), User("@bob", "10.0.0.2")
    eve = User("@eve", "10.0.0.5")
    bad_eve = Peer("@eve", eve.ip, *eve.ports, unusable_key(eve))
    bob.follows(alice)
    setup = SetupMsg("@alice", 1, "@alice", 1, alice.me, bad_eve)
    bob.peer.receive("middle", seal(alice, bob.me, setup), alice.address("middle"), 0.0)
    assert acks_of(bob) == [("middle", alice.address("middle"), 1)]
    tweet = TweetMsg("@alice", 2, "@alice", 7, "hi", signature(alice, 7, "hi"), "@alice")
    bob.peer.receive("left", seal(alice, bob.me, tweet), alice.address("right"), 0.1)
    assert ("left", alice.address("right"), 2) in acks_of(bob)
    bob.peer.handle_timer(0.1)
    assert bob.shown == [("@alice", 7, "@alice", "hi")]
    for later in (1.0, 4.0, 8.0):
        bob.peer.handle_timer(later)


def test_a_message_to_a_tuple_whose_key_cannot_agree_a_secret_ends_undelivered() -> None:
    alice, eve = User("@alice", "10.0.0.1"), User("@eve", "10.0.0.5")
    bad_eve = Peer("@eve", eve.ip, *eve.ports, unusable_key(eve))
    alice.peer.send_direct(bad_eve, 5, "hi", 0.0)
    resends(alice, 0.0)
    assert alice.of(DirectEnded) == [DirectEnded(5, False)]


def test_a_follower_whose_key_cannot_agree_a_secret_is_left_out_of_the_round() -> None:
    net, alice, (bob, carol) = ring("@bob", "@carol")
    eve = net.join("@eve")
    bad_eve = Peer("@eve", eve.ip, *eve.ports, unusable_key(eve))
    alice.peer.start_tweet(1, "hi", [bob.me, carol.me, bad_eve], net.now)
    net.run()
    result = ended(alice)
    assert result.skipped == ("@eve",) and result.reached == 2
    assert carol.shown == [("@alice", 1, "@bob", "hi")]


def test_a_shown_tweet_carries_its_text_as_sent() -> None:
    """Control characters travel; showing them written out is the shell's job (§6)."""
    net, alice, (bob,) = ring("@bob")
    text = "red\x1b[31m\nline\u202e"
    net.tweet(alice, 1, [bob], text=text)
    net.run()
    assert bob.shown == [("@alice", 1, "@alice", text)]


def test_no_event_or_datagram_is_left_behind_after_a_quiet_round() -> None:
    _net, alice, members = ready_ring("@bob", "@carol")
    for user in (alice, *members):
        assert user.peer.next_deadline() is None
        assert user.peer.take_datagrams() == []
    assert alice.peer.busy is False
