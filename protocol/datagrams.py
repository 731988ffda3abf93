"""Datagrams between peers: a UTF-8 JSON object, a newline, and the MAC of the object's bytes.

::

    {"kind":"tweet","from":"@bob","seq":812,"ring":"@alice","tid":7,"text":"hi","sig":"…","prev":"@bob"}
    Vh3kq0yTQ0a7Qf9m2w3q4A==

The last line is base64 of a MAC (keyed BLAKE2b, 16 bytes) of the JSON bytes exactly as sent,
keyed with the secret the two ends share (``protocol.auth.SessionKeys.pair_key``): the receiver
checks it before it believes anything in the datagram.  At most ``DATAGRAM_MAX`` bytes in all.

========== ============== ================================================================
kind       to port        fields (besides kind, from, seq)
========== ============== ================================================================
setup      middle         ring (the author), version, left, right (tuples with keys)
teardown   middle         ring, version
tweet      left           ring, tid, text, sig (the author's signature), prev (shown as "via")
detour     author's left  as tweet, plus dead: the right neighbour that did not answer
message    middle         id (the tracker's message id), text: a direct message
ack        back           seq: the datagram it acknowledges
========== ============== ================================================================

``seq`` is chosen by the sender, new for every datagram but an ``ack``, which carries the ``seq``
it answers.  A text may hold control characters: the receiver never trusts the sender's checks,
and shows every text escaped.  ``decode`` raises only :class:`DatagramError`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from protocol import limits
from protocol.ring import Peer
from protocol.validate import is_handle, is_whole_number

SIGNATURE_CHARS = 88        # base64 of an ECDSA P-256 signature (r and s: 64 bytes)


class DatagramError(Exception):
    """A datagram that is not in the documented format."""


@dataclass(frozen=True)
class Ack:
    sender: str
    seq: int


@dataclass(frozen=True)
class SetupMsg:
    sender: str
    seq: int
    ring: str
    version: int
    left: Peer
    right: Peer


@dataclass(frozen=True)
class TeardownMsg:
    sender: str
    seq: int
    ring: str
    version: int


@dataclass(frozen=True)
class TweetMsg:
    sender: str
    seq: int
    ring: str
    tid: int
    text: str
    signature: str              # base64 of the author's ECDSA signature (protocol.auth)
    prev: str
    dead: str | None = None     # set on a detour: the follower that did not answer

    @property
    def is_detour(self) -> bool:
        return self.dead is not None


@dataclass(frozen=True)
class DirectMsg:
    sender: str
    seq: int
    id: int
    text: str


Datagram = Ack | SetupMsg | TeardownMsg | TweetMsg | DirectMsg


@dataclass(frozen=True)
class Received:
    """A decoded datagram with the bytes its MAC covers, for the receiver to check."""

    message: Datagram
    body: bytes
    mac: bytes


def _int(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if not is_whole_number(value) or not 0 <= value < 2**53:  # type: ignore[operator]
        raise DatagramError(f"{name!r} must be a whole number")
    return value  # type: ignore[return-value]


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


def _signature(value: object) -> str:
    if not isinstance(value, str) or len(value) != SIGNATURE_CHARS or not value.isascii():
        raise DatagramError("'sig' must be a signature (88 characters of base64)")
    return value


def _peer(value: object, name: str) -> Peer:
    try:
        return Peer.from_list(value)
    except ValueError:
        raise DatagramError(f"{name!r} must be [handle, ip, left, middle, right, key]") from None


def decode(data: bytes) -> Received:
    """Parse a datagram.  Its MAC is returned, not checked: only the receiver knows the key."""
    if len(data) > limits.DATAGRAM_MAX:
        raise DatagramError("datagram too large")
    body, newline, tag = data.rpartition(b"\n")
    if not newline:
        raise DatagramError("no MAC after the JSON object")
    try:
        mac = base64.b64decode(tag, validate=True)
    except (binascii.Error, ValueError):
        raise DatagramError("the MAC is not base64") from None
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DatagramError("not a UTF-8 JSON object") from None
    if not isinstance(obj, dict):
        raise DatagramError("not a JSON object")
    return Received(_message(obj), body, mac)


def _message(obj: dict[str, Any]) -> Datagram:
    kind, sender, seq = obj.get("kind"), _handle(obj.get("from"), "from"), _int(obj, "seq")
    if kind == "ack":
        return Ack(sender, seq)
    if kind == "message":
        return DirectMsg(sender, seq, _int(obj, "id"), _text(obj.get("text")))
    ring = _handle(obj.get("ring"), "ring")
    if kind == "setup":
        return SetupMsg(sender, seq, ring, _int(obj, "version"), _peer(obj.get("left"), "left"),
                        _peer(obj.get("right"), "right"))
    if kind == "teardown":
        return TeardownMsg(sender, seq, ring, _int(obj, "version"))
    if kind in ("tweet", "detour"):
        dead = _handle(obj.get("dead"), "dead") if kind == "detour" else None
        return TweetMsg(sender, seq, ring, _int(obj, "tid"), _text(obj.get("text")),
                        _signature(obj.get("sig")), _handle(obj.get("prev"), "prev"), dead)
    raise DatagramError(f"unknown kind {kind!r}")


def body_of(message: Datagram) -> bytes:
    """The JSON bytes of a datagram, which its MAC covers."""
    obj: dict[str, Any]
    if isinstance(message, Ack):
        obj = {"kind": "ack", "from": message.sender, "seq": message.seq}
    elif isinstance(message, SetupMsg):
        obj = {"kind": "setup", "from": message.sender, "seq": message.seq,
               "ring": message.ring, "version": message.version,
               "left": message.left.as_list(), "right": message.right.as_list()}
    elif isinstance(message, TeardownMsg):
        obj = {"kind": "teardown", "from": message.sender, "seq": message.seq,
               "ring": message.ring, "version": message.version}
    elif isinstance(message, DirectMsg):
        obj = {"kind": "message", "from": message.sender, "seq": message.seq,
               "id": message.id, "text": message.text}
    else:
        obj = {"kind": "detour" if message.is_detour else "tweet", "from": message.sender,
               "seq": message.seq, "ring": message.ring, "tid": message.tid,
               "text": message.text, "sig": message.signature, "prev": message.prev}
        if message.is_detour:
            obj["dead"] = message.dead
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def encode(body: bytes, mac: bytes) -> bytes:
    """The datagram: the JSON bytes, a newline, and their MAC in base64."""
    return body + b"\n" + base64.b64encode(mac)


def summary(message: Datagram) -> str:
    """One short line for the trace."""
    if isinstance(message, Ack):
        return f"ack seq={message.seq}"
    if isinstance(message, SetupMsg):
        return (f"setup ring={message.ring} left={message.left.handle} "
                f"right={message.right.handle} version={message.version} seq={message.seq}")
    if isinstance(message, TeardownMsg):
        return f"teardown ring={message.ring} version={message.version} seq={message.seq}"
    if isinstance(message, DirectMsg):
        return f"message id={message.id} seq={message.seq}"
    kind = f"detour dead={message.dead}" if message.is_detour else "tweet"
    return f"{kind} ring={message.ring} tid={message.tid} prev={message.prev} seq={message.seq}"
