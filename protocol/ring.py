"""The logical ring: who sits where, and who needs a ``setup`` when the follower list changes.

A ring has ``n + 1`` rows: the author at row 0, then its ``n`` online followers in alphabetical
order.  Row ``i`` has row ``(i - 1) mod (n + 1)`` as its left neighbour and ``(i + 1) mod (n + 1)``
as its right one; a tweet travels left to right, from the author through every follower and back.

The author keeps the ring between tweets (:class:`FollowerRing`).  For the next tweet
:func:`plan_setup` walks the stored follower list and the new one in parallel, both sorted, and
returns a ``setup`` only for the followers whose neighbours (or the author's address, which every
member keeps to send detours to) changed, plus the followers that left the ring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from protocol.validate import check_ipv4, check_port, is_handle, is_public_key


@dataclass(frozen=True)
class Peer:
    """A user as the ring knows it: its handle, IPv4 address, three UDP ports, and the public
    keys of its current login (``protocol.auth``): a new login is a new tuple."""

    handle: str
    ip: str
    left: int
    middle: int
    right: int
    public_key: str         # the wire calls it `key`

    @property
    def key(self) -> str:
        return self.handle.lower()

    def as_list(self) -> list[object]:
        return [self.handle, self.ip, self.left, self.middle, self.right, self.public_key]

    @classmethod
    def from_list(cls, row: object) -> Peer:
        """A peer from its wire form; ValueError unless [handle, ipv4, port, port, port, key]."""
        if not isinstance(row, list) or len(row) != 6:
            raise ValueError("a peer is [handle, ip, left, middle, right, key]")
        handle, ip, left, middle, right, public_key = row
        if not is_handle(handle) or check_ipv4(ip) or not is_public_key(public_key) \
                or any(check_port(p) for p in (left, middle, right)):
            raise ValueError(f"not a valid peer: {row!r:.80}")
        return cls(handle, ip, left, middle, right, public_key)


@dataclass(frozen=True)
class Setup:
    """What follower ``member`` must store for the ring of ``author``."""

    member: Peer
    author: Peer
    left: Peer
    right: Peer


@dataclass(frozen=True)
class RingPlan:
    setups: list[Setup]
    removed: list[Peer]


def ring_order(followers: Sequence[Peer]) -> list[Peer]:
    """Followers in ring order: alphabetical, case-insensitively."""
    return sorted(followers, key=lambda peer: peer.key)


def neighbours(author: Peer, followers: Sequence[Peer], index: int) -> tuple[Peer, Peer]:
    """Left and right neighbour of ``followers[index]`` (row ``index + 1``) in sorted order."""
    rows = [author, *followers]
    row = index + 1
    return rows[(row - 1) % len(rows)], rows[(row + 1) % len(rows)]


def plan_setup(old_author: Peer | None, old: Sequence[Peer],
               author: Peer, new: Sequence[Peer]) -> RingPlan:
    """The ``setup`` messages that turn the stored ring into the new one.

    ``old`` and ``new`` must be in ring order.  The two lists are walked in parallel: a follower
    only in ``new`` was inserted and gets a setup; one only in ``old`` was removed; one in both
    gets a setup only if its left or right tuple, or the author's tuple, differs.
    """
    setups: list[Setup] = []
    removed: list[Peer] = []
    i = j = 0
    while i < len(old) or j < len(new):
        old_key = old[i].key if i < len(old) else None
        new_key = new[j].key if j < len(new) else None
        if new_key is None or (old_key is not None and old_key < new_key):
            removed.append(old[i])
            i += 1
            continue
        left, right = neighbours(author, new, j)
        wanted = Setup(new[j], author, left, right)
        if old_key == new_key:
            old_left, old_right = neighbours(old_author or author, old, i)
            stored = Setup(old[i], old_author or author, old_left, old_right)
            if stored != wanted:
                setups.append(wanted)
            i += 1
        else:
            setups.append(wanted)
        j += 1
    return RingPlan(setups, removed)


@dataclass
class FollowerRing:
    """The author's side of its ring: its own tuple and the followers, in ring order."""

    author: Peer | None = None
    followers: list[Peer] = field(default_factory=list)

    def plan(self, author: Peer, followers: Sequence[Peer]) -> RingPlan:
        return plan_setup(self.author, self.followers, author, ring_order(followers))

    def store(self, author: Peer, followers: Sequence[Peer]) -> None:
        self.author, self.followers = author, ring_order(followers)

    def successor(self, handle: str) -> Peer | None:
        """The row after ``handle`` (``None`` means the author: the ring is complete)."""
        keys = [peer.key for peer in self.followers]
        index = keys.index(handle.lower()) if handle.lower() in keys else -1
        if index + 1 < len(self.followers):
            return self.followers[index + 1]
        return None

    def member(self, handle: str) -> Peer | None:
        for peer in self.followers:
            if peer.key == handle.lower():
                return peer
        return None


@dataclass(frozen=True)
class Membership:
    """A follower's side of someone else's ring: the author and the two neighbours."""

    author: Peer
    left: Peer
    right: Peer
