"""Datagrams between peers: one UTF-8 JSON object per UDP datagram, at most ``DATAGRAM_MAX`` bytes.

Every datagram but ``ack`` carries a ``seq`` number chosen by its sender; the receiver answers
``{"kind": "ack", "seq": n}`` to the address it came from, and the sender sends again until it
does (:mod:`protocol.limits` ``HOP_TIMEOUT``, ``HOP_RETRIES``).

========== ============ ======================================================================
kind       port         fields
========== ============ ======================================================================
setup      middle       ring (author handle), author, left, right (tuples [h, ip, l, m, r])
teardown   middle       ring
tweet      left         ring, tid, text, prev (handle of the previous hop), hops, skipped
detour     author left  as tweet, plus dead: the follower that did not answer
message    middle       id (the tracker's message id), sender, text: a direct message
ack        back         seq
========== ============ ======================================================================

A text may hold control characters: the receiver never trusts the sender's checks, and shows
every text escaped (``protocol.text.escape_for_terminal``).  ``decode`` raises only
:class:`DatagramError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from protocol import limits
from protocol.ring import Peer
from protocol.validate import is_handle, is_whole_number


class DatagramError(Exception):
    """A datagram that is not in the documented format."""


@dataclass(frozen=True)
class Ack:
    seq: int


@dataclass(frozen=True)
class SetupMsg:
    seq: int
    ring: str
    author: Peer
    left: Peer
    right: Peer


@dataclass(frozen=True)
class TeardownMsg:
    seq: int
    ring: str


@dataclass(frozen=True)
class TweetMsg:
    seq: int
    ring: str
    tid: int
    text: str
    prev: str
    hops: int
    skipped: tuple[str, ...]
    dead: str | None = None          # set on a detour: the follower that did not answer

    @property
    def is_detour(self) -> bool:
        return self.dead is not None


@dataclass(frozen=True)
class DirectMsg:
    seq: int
    id: int
    sender: str
    text: str


Datagram = Ack | SetupMsg | TeardownMsg | TweetMsg | DirectMsg


def _int(obj: dict[str, Any], name: str, low: int = 0, high: int = 2**53) -> int:
    value = obj.get(name)
    if not is_whole_number(value) or not low <= value < high:  # type: ignore[operator]
        raise DatagramError(f"{name!r} must be an integer")
    return value


def _handle(value: object, name: str) -> str:
    if not is_handle(value):
        raise DatagramError(f"{name!r} must be a handle")
    return value  # type: ignore[return-value]


def _text(value: object) -> str:
    """Any text of 1 to RING_TEXT_MAX characters that UTF-8 can carry (no lone surrogates)."""
    if not isinstance(value, str) or not 0 < len(value) <= limits.RING_TEXT_MAX:
        raise DatagramError(f"'text' must be 1 to {limits.RING_TEXT_MAX} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DatagramError("'text' is not valid Unicode") from None
    return value


def _peer(value: object, name: str) -> Peer:
    try:
        return Peer.from_list(value)
    except ValueError:
        raise DatagramError(f"{name!r} must be [handle, ip, left, middle, right]") from None


def decode(data: bytes) -> Datagram:
    if len(data) > limits.DATAGRAM_MAX:
        raise DatagramError("datagram too large")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DatagramError("not a UTF-8 JSON object") from None
    if not isinstance(obj, dict):
        raise DatagramError("not a JSON object")
    kind, seq = obj.get("kind"), _int(obj, "seq")
    if kind == "ack":
        return Ack(seq)
    if kind == "message":
        return DirectMsg(seq, _int(obj, "id"), _handle(obj.get("sender"), "sender"),
                         _text(obj.get("text")))
    ring = _handle(obj.get("ring"), "ring")
    if kind == "setup":
        return SetupMsg(seq, ring, _peer(obj.get("author"), "author"),
                        _peer(obj.get("left"), "left"), _peer(obj.get("right"), "right"))
    if kind == "teardown":
        return TeardownMsg(seq, ring)
    if kind in ("tweet", "detour"):
        text, skipped = _text(obj.get("text")), obj.get("skipped")
        if not isinstance(skipped, list) or len(skipped) > 4096:
            raise DatagramError("'skipped' must be a list of handles")
        dead = _handle(obj.get("dead"), "dead") if kind == "detour" else None
        return TweetMsg(seq, ring, _int(obj, "tid"), text, _handle(obj.get("prev"), "prev"),
                        _int(obj, "hops"), tuple(_handle(h, "skipped") for h in skipped), dead)
    raise DatagramError(f"unknown kind {kind!r}")


def encode(message: Datagram) -> bytes:
    obj: dict[str, Any]
    if isinstance(message, Ack):
        obj = {"kind": "ack", "seq": message.seq}
    elif isinstance(message, SetupMsg):
        obj = {"kind": "setup", "seq": message.seq, "ring": message.ring,
               "author": message.author.as_list(), "left": message.left.as_list(),
               "right": message.right.as_list()}
    elif isinstance(message, TeardownMsg):
        obj = {"kind": "teardown", "seq": message.seq, "ring": message.ring}
    elif isinstance(message, DirectMsg):
        obj = {"kind": "message", "seq": message.seq, "id": message.id,
               "sender": message.sender, "text": message.text}
    else:
        obj = {"kind": "detour" if message.is_detour else "tweet", "seq": message.seq,
               "ring": message.ring, "tid": message.tid, "text": message.text,
               "prev": message.prev, "hops": message.hops, "skipped": list(message.skipped)}
        if message.is_detour:
            obj["dead"] = message.dead
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def summary(message: Datagram) -> str:
    """One short line for the trace."""
    if isinstance(message, Ack):
        return f"ack seq={message.seq}"
    if isinstance(message, SetupMsg):
        return (f"setup ring={message.ring} left={message.left.handle} "
                f"right={message.right.handle} seq={message.seq}")
    if isinstance(message, TeardownMsg):
        return f"teardown ring={message.ring} seq={message.seq}"
    if isinstance(message, DirectMsg):
        return f"message id={message.id} sender={message.sender} seq={message.seq}"
    kind = f"detour dead={message.dead}" if message.is_detour else "tweet"
    return (f"{kind} ring={message.ring} tid={message.tid} prev={message.prev} "
            f"hops={message.hops} seq={message.seq}")
