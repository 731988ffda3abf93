"""Unit tests of protocol.ring: ring order, neighbours and the setup planner (SPEC §3.1, §3.2)."""

from __future__ import annotations

import string
from collections.abc import Sequence

import pytest
from conftest import SAMPLE_KEY
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import limits
from protocol.ring import (
    FollowerRing,
    Peer,
    RingPlan,
    Setup,
    neighbours,
    plan_setup,
    ring_order,
)

FAST = settings(max_examples=300, deadline=None)

State = tuple[Peer, Peer, Peer, Peer]       # member, author, left, right


def peer(handle: str, ip: str = "127.0.0.1", base: int | None = None) -> Peer:
    base = base if base is not None else 10000 + 3 * (sum(map(ord, handle.lower())) % 5000)
    return Peer(handle, ip, base, base + 1, base + 2, SAMPLE_KEY)


A, B, C, D, E = (peer(h) for h in ("@a", "@b", "@c", "@d", "@e"))


def ring_states(author: Peer, followers: Sequence[Peer]) -> dict[str, State]:
    """What every follower of a ring stores, computed from SPEC §3.1 directly."""
    rows = [author, *followers]
    size = len(rows)
    return {rows[i].key: (rows[i], author, rows[(i - 1) % size], rows[(i + 1) % size])
            for i in range(1, size)}


def apply(states: dict[str, State], plan: RingPlan) -> dict[str, State]:
    result = dict(states)
    for setup in plan.setups:
        result[setup.member.key] = (setup.member, setup.author, setup.left, setup.right)
    for gone in plan.removed:
        del result[gone.key]
    return result


def members(plan: RingPlan) -> list[str]:
    return [setup.member.handle for setup in plan.setups]


def handles(peers: Sequence[Peer]) -> list[str]:
    return [p.handle for p in peers]


# ---- strategies ------------------------------------------------------------------------------

HANDLES = st.text(st.sampled_from(string.ascii_letters), min_size=1,
                  max_size=limits.HANDLE_MAX).map(lambda letters: "@" + letters)
IPS = st.sampled_from(["127.0.0.1", "10.0.0.2", "192.168.1.9"])
PORT_BASES = st.integers(1, 20000).map(lambda n: 3 * n)
AUTHOR_HANDLE = "@Author"


def peers_for(handle_strategy: st.SearchStrategy[str]) -> st.SearchStrategy[Peer]:
    return st.builds(lambda h, ip, base: Peer(h, ip, base, base + 1, base + 2, SAMPLE_KEY),
                     handle_strategy, IPS, PORT_BASES)


AUTHORS = peers_for(st.just(AUTHOR_HANDLE))
FOLLOWER_LISTS = st.lists(
    peers_for(HANDLES.filter(lambda h: h.lower() != AUTHOR_HANDLE.lower())),
    max_size=12, unique_by=lambda p: p.key).map(ring_order)


# ---- ring order and neighbours ---------------------------------------------------------------

def test_ring_order_is_alphabetical_case_insensitively() -> None:
    peers = [peer("@dave"), peer("@Bob"), peer("@carol"), peer("@alice"), peer("@Carl")]
    assert handles(ring_order(peers)) == ["@alice", "@Bob", "@Carl", "@carol", "@dave"]


def test_peer_key_and_lists() -> None:
    alice = Peer("@Alice", "10.0.0.1", 1, 2, 3, SAMPLE_KEY)
    assert alice.key == "@alice"
    assert alice.as_list() == ["@Alice", "10.0.0.1", 1, 2, 3, SAMPLE_KEY]
    assert Peer.from_list(alice.as_list()) == alice


K = SAMPLE_KEY


@pytest.mark.parametrize("row", [("@Alice", "10.0.0.1", 1, 2, 3, K),
                                 ["@Alice", "10.0.0.1", "1", 2, 3, K],
                                 ["alice", "10.0.0.1", 1, 2, 3, K],
                                 ["@a", "10.0.0.256", 1, 2, 3, K],
                                 ["@a", "10.0.0.1", 0, 2, 3, K], ["@a", "10.0.0.1", 1, 2, K],
                                 ["@a\x1b[2J", "10.0.0.1", 1, 2, 3, K], None,
                                 ["@a", "10.0.0.1", 1, 2, 3], ["@a", "10.0.0.1", 1, 2, 3, "key"],
                                 ["@a", "10.0.0.1", 1, 2, 3, K[:-4] + "????"]])
def test_peer_from_the_wire_is_validated(row: object) -> None:
    with pytest.raises(ValueError):
        Peer.from_list(row)


def test_neighbours() -> None:
    followers = [B, C, D]
    assert neighbours(A, followers, 0) == (A, C)
    assert neighbours(A, followers, 1) == (B, D)
    assert neighbours(A, followers, 2) == (C, A)
    assert neighbours(A, [B], 0) == (A, A)


# ---- SPEC §3.1: from nothing -----------------------------------------------------------------

def test_setup_from_nothing_matches_the_spec_example() -> None:
    # followers @d, @b, @c of @a: ring @a -> @b -> @c -> @d -> @a
    plan = FollowerRing().plan(A, [D, B, C])
    assert plan.removed == []
    assert plan.setups == [Setup(B, A, A, C), Setup(C, A, B, D), Setup(D, A, C, A)]


def test_setup_rows_carry_the_tuples() -> None:
    plan = plan_setup(None, [], A, [B, C])
    first = plan.setups[0]
    assert first.left.as_list() == A.as_list()
    assert first.right.as_list() == C.as_list()
    assert all(setup.author == A for setup in plan.setups)


def test_a_single_follower_has_the_author_on_both_sides() -> None:
    assert plan_setup(None, [], A, [B]).setups == [Setup(B, A, A, A)]


def test_no_followers_no_setups() -> None:
    assert plan_setup(None, [], A, []) == RingPlan([], [])


@FAST
@given(AUTHORS, FOLLOWER_LISTS)
def test_from_nothing_every_follower_gets_its_rows(author: Peer, followers: list[Peer]) -> None:
    plan = plan_setup(None, [], author, followers)
    assert plan.removed == []
    assert members(plan) == handles(followers)
    rows = [author, *followers]
    for i, setup in enumerate(plan.setups, start=1):
        assert setup.author == author
        assert setup.left == rows[(i - 1) % len(rows)]
        assert setup.right == rows[(i + 1) % len(rows)]


# ---- SPEC §3.2: updates ----------------------------------------------------------------------

def test_same_list_again_sends_nothing() -> None:
    assert plan_setup(A, [B, C, D], A, [B, C, D]) == RingPlan([], [])


@FAST
@given(AUTHORS, FOLLOWER_LISTS)
def test_unchanged_list_sends_no_setup(author: Peer, followers: list[Peer]) -> None:
    assert plan_setup(author, followers, author, list(followers)) == RingPlan([], [])


def test_inserting_in_the_middle() -> None:
    plan = plan_setup(A, [B, D, E], A, [B, C, D, E])
    assert plan.removed == []
    assert plan.setups == [Setup(B, A, A, C), Setup(C, A, B, D), Setup(D, A, C, E)]


def test_inserting_first_and_last() -> None:
    first = plan_setup(A, [C, D], A, [B, C, D])
    assert plan_setup(A, [C, D], A, [B, C, D]).removed == []
    assert members(first) == ["@b", "@c"]           # the author's own row is not a setup
    last = plan_setup(A, [B, C], A, [B, C, D])
    assert members(last) == ["@c", "@d"]


def test_first_follower_of_an_empty_ring() -> None:
    assert plan_setup(A, [], A, [B]) == RingPlan([Setup(B, A, A, A)], [])


def test_deleting() -> None:
    plan = plan_setup(A, [B, C, D, E], A, [B, D, E])
    assert plan.removed == [C]
    assert plan.setups == [Setup(B, A, A, D), Setup(D, A, B, E)]
    everyone_gone = plan_setup(A, [B, C], A, [])
    assert everyone_gone == RingPlan([], [B, C])


def test_a_changed_follower_address() -> None:
    moved = Peer("@c", "10.9.9.9", 7000, 7001, 7002, SAMPLE_KEY)
    plan = plan_setup(A, [B, C, D, E], A, [B, moved, D, E])
    assert plan.removed == []
    assert plan.setups == [Setup(B, A, A, moved), Setup(moved, A, B, D), Setup(D, A, moved, E)]


def test_a_changed_author_address_reaches_every_follower() -> None:
    moved = Peer("@a", "10.9.9.9", 7000, 7001, 7002, SAMPLE_KEY)
    plan = plan_setup(A, [B, C, D], moved, [B, C, D])
    assert plan.removed == []
    assert members(plan) == ["@b", "@c", "@d"]
    assert all(setup.author == moved for setup in plan.setups)
    assert plan.setups[0].left == moved
    assert plan.setups[-1].right == moved


@FAST
@given(AUTHORS, FOLLOWER_LISTS, st.data())
def test_inserting_one_follower_sends_at_most_three(author: Peer, old: list[Peer],
                                                    data: st.DataObject) -> None:
    taken = {p.key for p in old} | {author.key}
    newcomer = data.draw(peers_for(HANDLES.filter(lambda h: h.lower() not in taken)))
    new = ring_order([*old, newcomer])
    plan = plan_setup(author, old, author, new)
    assert plan.removed == []
    assert len(plan.setups) <= 3
    assert newcomer in [setup.member for setup in plan.setups]
    assert apply(ring_states(author, old), plan) == ring_states(author, new)


@FAST
@given(AUTHORS, FOLLOWER_LISTS.filter(bool), st.data())
def test_deleting_one_follower_sends_at_most_two(author: Peer, old: list[Peer],
                                                 data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(old) - 1))
    new = old[:index] + old[index + 1:]
    plan = plan_setup(author, old, author, new)
    assert plan.removed == [old[index]]
    assert len(plan.setups) <= 2
    assert apply(ring_states(author, old), plan) == ring_states(author, new)


@FAST
@given(AUTHORS, FOLLOWER_LISTS.filter(bool), st.data())
def test_one_changed_address_sends_at_most_three(author: Peer, old: list[Peer],
                                                 data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(old) - 1))
    moved = data.draw(peers_for(st.just(old[index].handle)).filter(lambda p: p != old[index]))
    new = [*old[:index], moved, *old[index + 1:]]
    plan = plan_setup(author, old, author, new)
    assert plan.removed == []
    assert 1 <= len(plan.setups) <= 3
    neighbourhood = {p.key for p in new[max(index - 1, 0):index + 2]}
    assert {setup.member.key for setup in plan.setups} <= neighbourhood
    assert apply(ring_states(author, old), plan) == ring_states(author, new)


@FAST
@given(AUTHORS, AUTHORS, FOLLOWER_LISTS)
def test_a_changed_author_sends_to_everyone(old_author: Peer, author: Peer,
                                            followers: list[Peer]) -> None:
    plan = plan_setup(old_author, followers, author, followers)
    if old_author == author:
        assert plan.setups == []
    else:
        assert members(plan) == handles(followers)
        assert all(setup.author == author for setup in plan.setups)


@st.composite
def transitions(draw: st.DrawFn) -> tuple[Peer, list[Peer], Peer, list[Peer]]:
    """An old ring and a new one: followers kept, moved, dropped and added; maybe a new author."""
    old_author = draw(AUTHORS)
    author = draw(st.one_of(st.just(old_author), AUTHORS))
    pool = draw(st.lists(peers_for(HANDLES.filter(lambda h: h.lower() != AUTHOR_HANDLE.lower())),
                         max_size=14, unique_by=lambda p: p.key))
    old, new = [], []
    for candidate in pool:
        fate = draw(st.sampled_from(["both", "both", "both", "moved", "old", "new", "neither"]))
        if fate in ("both", "moved", "old"):
            old.append(candidate)
        if fate == "both":
            new.append(candidate)
        elif fate == "moved":
            new.append(draw(peers_for(st.just(candidate.handle))))
        elif fate == "new":
            new.append(candidate)
    return old_author, ring_order(old), author, ring_order(new)


@FAST
@given(transitions())
def test_applying_the_plan_gives_exactly_the_new_ring(
        case: tuple[Peer, list[Peer], Peer, list[Peer]]) -> None:
    old_author, old, author, new = case
    before = ring_states(old_author, old)
    wanted = ring_states(author, new)
    plan = plan_setup(old_author, old, author, new)
    assert apply(before, plan) == wanted
    # ... and it is minimal: a setup goes exactly to the followers whose stored state changes
    assert {s.member.key for s in plan.setups} == {k for k in wanted if before.get(k) != wanted[k]}
    assert {p.key for p in plan.removed} == set(before) - set(wanted)
    assert members(plan) == [p.handle for p in new if p.key in {s.member.key for s in plan.setups}]


@FAST
@given(transitions())
def test_follower_ring_plan_sorts_and_stores(
        case: tuple[Peer, list[Peer], Peer, list[Peer]]) -> None:
    old_author, old, author, new = case
    ring = FollowerRing()
    ring.store(old_author, list(reversed(old)))
    assert ring.followers == old
    plan = ring.plan(author, list(reversed(new)))
    assert plan == plan_setup(old_author, old, author, new)
    ring.store(author, new)
    assert ring.plan(author, new) == RingPlan([], [])


# ---- FollowerRing ----------------------------------------------------------------------------

def test_successor_walks_the_ring() -> None:
    ring = FollowerRing()
    ring.store(A, [D, B, C])
    assert ring.successor("@a") == B            # the row after the author is the first follower
    assert ring.successor("@b") == C
    assert ring.successor("@C") == D             # case-insensitive
    assert ring.successor("@d") is None          # after the last follower: back to the author


def test_successor_of_an_empty_ring_is_the_author() -> None:
    ring = FollowerRing()
    ring.store(A, [])
    assert ring.successor("@a") is None


@pytest.mark.parametrize("count", [1, 2, 5])
def test_following_successors_visits_every_follower_once(count: int) -> None:
    followers = [peer(f"@{chr(ord('b') + i)}") for i in range(count)]
    ring = FollowerRing()
    ring.store(A, list(reversed(followers)))
    seen, current = [], ring.successor(A.handle)
    while current is not None:
        seen.append(current)
        current = ring.successor(current.handle)
    assert seen == followers


def test_member_lookup() -> None:
    ring = FollowerRing()
    ring.store(A, [B, C])
    assert ring.member("@B") == B
    assert ring.member("@z") is None
    assert ring.member("@a") is None            # the author is not a member of its own list
