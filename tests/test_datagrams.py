"""Unit tests of protocol.datagrams, the codec of the datagrams peers send (PROTOCOL.md §3).

A datagram is a UTF-8 JSON object, a newline, and the base64 MAC of the object's bytes, at most
DATAGRAM_MAX bytes.  ``decode`` returns the message with the bytes the MAC covers and the MAC
itself (it cannot check the MAC: only the receiver knows the key), and raises nothing but
DatagramError.
"""

from __future__ import annotations

import base64
import json
import string
from typing import Any

import pytest
from conftest import SAMPLE_KEY
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import limits
from protocol.datagrams import (
    SIGNATURE_CHARS,
    Ack,
    Datagram,
    DatagramError,
    DirectMsg,
    Received,
    SetupMsg,
    TeardownMsg,
    TweetMsg,
    body_of,
    decode,
    encode,
    summary,
)
from protocol.ring import Peer

FAST = settings(max_examples=300, deadline=None)
MAC = bytes(range(16))
SIG = base64.b64encode(bytes(range(64))).decode()
PEER = ["@bob", "10.0.0.2", 5001, 5002, 5003, SAMPLE_KEY]
BOB = Peer(*PEER)

# ---- strategies ------------------------------------------------------------------------------

HANDLES = st.text(st.sampled_from(string.ascii_letters), min_size=1,
                  max_size=limits.HANDLE_MAX).map(lambda letters: "@" + letters)
# Addresses one host can own (§1.9), as the tracker hands them out.
IPS = st.tuples(st.integers(1, 223), st.integers(0, 255), st.integers(0, 255),
                st.integers(1, 254)).map(lambda o: ".".join(map(str, o)))
PORTS = st.integers(1, 65535)
KEYS = st.binary(min_size=65, max_size=65).map(lambda raw: base64.b64encode(raw).decode())
PEERS = st.builds(lambda handle, ip, ports, key: Peer(handle, ip, *ports, key), HANDLES, IPS,
                  st.lists(PORTS, min_size=3, max_size=3, unique=True), KEYS)
NUMBERS = st.integers(0, 2**53 - 1)
# Any text a ring may carry: 1 to RING_TEXT_MAX code points, control characters included,
# no lone surrogates (UTF-8 cannot carry them).
TEXTS = st.text(st.characters(exclude_categories=["Cs"]), min_size=1,
                max_size=limits.RING_TEXT_MAX)
SIGS = st.binary(min_size=64, max_size=64).map(lambda raw: base64.b64encode(raw).decode())
MACS = st.binary(min_size=0, max_size=32)

MESSAGES: st.SearchStrategy[Datagram] = st.one_of(
    st.builds(Ack, HANDLES, NUMBERS),
    st.builds(SetupMsg, HANDLES, NUMBERS, HANDLES, NUMBERS, PEERS, PEERS),
    st.builds(TeardownMsg, HANDLES, NUMBERS, HANDLES, NUMBERS),
    st.builds(TweetMsg, HANDLES, NUMBERS, HANDLES, NUMBERS, TEXTS, SIGS, HANDLES,
              st.one_of(st.none(), HANDLES)),
    st.builds(DirectMsg, HANDLES, NUMBERS, NUMBERS, TEXTS),
)

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(2**64), 2**64),
                    st.floats(), st.text(max_size=12))
JSONISH = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(st.text(max_size=6), children, max_size=4)),
    max_leaves=12)
PEERISH = st.one_of(PEERS.map(Peer.as_list),
                    st.lists(st.one_of(HANDLES, IPS, PORTS, KEYS, JSONISH), min_size=6,
                             max_size=6),
                    JSONISH)


def datagram_like() -> st.SearchStrategy[dict[str, Any]]:
    """Objects near a datagram: the real keys with right, wrong and arbitrary values."""
    return st.fixed_dictionaries({}, optional={
        "kind": st.one_of(st.sampled_from(["ack", "setup", "teardown", "tweet", "detour",
                                           "message"]), JSONISH),
        "from": st.one_of(HANDLES, JSONISH),
        "seq": st.one_of(NUMBERS, JSONISH),
        "ring": st.one_of(HANDLES, JSONISH),
        "version": st.one_of(NUMBERS, JSONISH),
        "left": PEERISH, "right": PEERISH,
        "tid": st.one_of(NUMBERS, JSONISH),
        "id": st.one_of(NUMBERS, JSONISH),
        "text": st.one_of(TEXTS, JSONISH),
        "sig": st.one_of(SIGS, JSONISH),
        "prev": st.one_of(HANDLES, JSONISH),
        "dead": st.one_of(HANDLES, JSONISH),
    })


def framed(obj: object, mac: bytes = MAC) -> bytes:
    """A datagram of any JSON value, with a well-formed MAC line."""
    return encode(json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass"), mac)


def check_decode(data: bytes) -> None:
    """Either a message that encodes back to a datagram of the same meaning, or DatagramError."""
    try:
        received = decode(data)
    except DatagramError as error:
        assert str(error)
        return
    message = received.message
    assert isinstance(message, (Ack, SetupMsg, TeardownMsg, TweetMsg, DirectMsg))
    again = encode(body_of(message), received.mac)
    assert decode(again).message == message
    assert "\n" not in summary(message)


def rejected(obj: object) -> None:
    with pytest.raises(DatagramError):
        decode(framed(obj))


def ack_obj(**change: object) -> dict[str, object]:
    return {"kind": "ack", "from": "@bob", "seq": 7, **change}


def setup_obj(**change: object) -> dict[str, object]:
    return {"kind": "setup", "from": "@alice", "seq": 1, "ring": "@alice", "version": 3,
            "left": PEER, "right": PEER, **change}


def teardown_obj(**change: object) -> dict[str, object]:
    return {"kind": "teardown", "from": "@alice", "seq": 2, "ring": "@alice", "version": 4,
            **change}


def tweet_obj(**change: object) -> dict[str, object]:
    return {"kind": "tweet", "from": "@bob", "seq": 812, "ring": "@alice", "tid": 7,
            "text": "hi", "sig": SIG, "prev": "@bob", **change}


def detour_obj(**change: object) -> dict[str, object]:
    return tweet_obj(**{"kind": "detour", "dead": "@carol", **change})


def message_obj(**change: object) -> dict[str, object]:
    return {"kind": "message", "from": "@bob", "seq": 9, "id": 41, "text": "psst", **change}


GOOD = {"ack": ack_obj, "setup": setup_obj, "teardown": teardown_obj, "tweet": tweet_obj,
        "detour": detour_obj, "message": message_obj}


# ---- the wire form ---------------------------------------------------------------------------

def test_the_documented_example_decodes() -> None:
    body = ('{"kind":"tweet","from":"@bob","seq":812,"ring":"@alice","tid":7,"text":"hi",'
            f'"sig":"{SIG}","prev":"@bob"}}').encode()
    data = body + b"\nVh3kq0yTQ0a7Qf9m2w3q4A=="
    received = decode(data)
    assert received == Received(TweetMsg("@bob", 812, "@alice", 7, "hi", SIG, "@bob"), body,
                                base64.b64decode("Vh3kq0yTQ0a7Qf9m2w3q4A=="))
    assert not received.message.is_detour


def test_encode_is_the_body_a_newline_and_the_mac_in_base64() -> None:
    assert encode(b'{"kind":"ack"}', MAC) == b'{"kind":"ack"}\n' + base64.b64encode(MAC)
    assert encode(b"{}", b"") == b"{}\n"


@pytest.mark.parametrize(("message", "expected"), [
    (Ack("@bob", 7), ack_obj()),
    (SetupMsg("@alice", 1, "@alice", 3, BOB, BOB), setup_obj()),
    (TeardownMsg("@alice", 2, "@alice", 4), teardown_obj()),
    (TweetMsg("@bob", 812, "@alice", 7, "hi", SIG, "@bob"), tweet_obj()),
    (TweetMsg("@bob", 812, "@alice", 7, "hi", SIG, "@bob", "@carol"), detour_obj()),
    (DirectMsg("@bob", 9, 41, "psst"), message_obj()),
])
def test_wire_forms(message: Datagram, expected: dict[str, object]) -> None:
    body = body_of(message)
    assert json.loads(body) == expected
    assert b"\n" not in body and b" " not in body          # compact, one line
    assert decode(encode(body, MAC)) == Received(message, body, MAC)


def test_the_body_is_utf8_json_and_never_holds_a_newline() -> None:
    message = DirectMsg("@bob", 1, 2, "héllo\nwörld 😀")
    body = body_of(message)
    assert "héllo".encode() in body            # UTF-8 as such, not \u escapes
    assert b"\n" not in body                    # the newline in the text is escaped by JSON
    assert decode(encode(body, MAC)).message == message


def test_the_mac_covers_the_bytes_as_sent() -> None:
    """The receiver checks the MAC over the exact bytes: any spacing or key order the sender
    used is what ``body`` holds."""
    body = b'{ "seq" : 7,\n "from": "@bob",  "kind": "ack" }'
    received = decode(encode(body, MAC))
    assert received.message == Ack("@bob", 7)
    assert received.body == body
    assert received.mac == MAC


def test_the_mac_line_is_the_last_line() -> None:
    received = decode(b'{"kind":"ack","from":"@bob","seq":1}\n' + base64.b64encode(b"x" * 16))
    assert received.mac == b"x" * 16


# ---- round trips -------------------------------------------------------------------------------

@FAST
@given(MESSAGES, MACS)
def test_round_trip(message: Datagram, mac: bytes) -> None:
    body = body_of(message)
    data = encode(body, mac)
    assert len(data) <= limits.DATAGRAM_MAX
    assert decode(data) == Received(message, body, mac)


@FAST
@given(MESSAGES)
def test_body_is_deterministic(message: Datagram) -> None:
    assert body_of(message) == body_of(decode(encode(body_of(message), MAC)).message)


def test_the_largest_datagram_fits() -> None:
    longest = "@" + "W" * limits.HANDLE_MAX
    text = "\U0001f600" * limits.RING_TEXT_MAX        # four UTF-8 bytes each
    big = 2**53 - 1
    tweet = TweetMsg(longest, big, longest, big, text, SIG, longest, longest)
    data = encode(body_of(tweet), bytes(16))
    assert len(data) <= limits.DATAGRAM_MAX
    assert decode(data).message == tweet
    wide = Peer(longest, "223.255.255.254", 65533, 65534, 65535, SAMPLE_KEY)
    setup = SetupMsg(longest, big, longest, big, wide, wide)
    assert len(encode(body_of(setup), bytes(16))) <= limits.DATAGRAM_MAX


# ---- the decoder refuses, and only with DatagramError ------------------------------------------

@FAST
@given(st.binary(max_size=600))
def test_arbitrary_bytes(data: bytes) -> None:
    check_decode(data)


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_with_a_mac_line(data: bytes) -> None:
    check_decode(data + b"\n" + base64.b64encode(MAC))


@FAST
@given(JSONISH)
def test_arbitrary_json(value: object) -> None:
    check_decode(framed(value))


@FAST
@given(datagram_like())
def test_datagram_like_objects(obj: dict[str, Any]) -> None:
    check_decode(framed(obj))


@FAST
@given(MESSAGES, st.data())
def test_mutated_datagrams(message: Datagram, data: st.DataObject) -> None:
    obj = json.loads(body_of(message))
    key = data.draw(st.sampled_from(sorted(obj)))
    if data.draw(st.booleans()):
        del obj[key]
    else:
        obj[key] = data.draw(JSONISH)
    check_decode(framed(obj))


@pytest.mark.parametrize("depth", [10, 500, 1000])
def test_deep_nesting(depth: int) -> None:
    with pytest.raises(DatagramError):
        decode(encode(b"[" * depth + b"]" * depth, MAC))
    body = json.dumps(ack_obj()).encode()[:-1] + b',"x":' + b"[" * depth + b"]" * depth + b"}"
    check_decode(encode(body, MAC))


@pytest.mark.parametrize("body", [
    b"", b"   ", b"nope", b"[]", b"1", b'"ack"', b"null", b"NaN", b"\xff\xfe", b"\xc3\x28",
    b'{"kind":"ack","from":"@bob","seq":1}{"kind":"ack","from":"@bob","seq":2}',
    b'{"kind":"ack","from":"@bob","seq":1',
])
def test_not_one_json_object(body: bytes) -> None:
    with pytest.raises(DatagramError):
        decode(encode(body, MAC))


def test_a_datagram_without_a_mac_line_is_refused() -> None:
    body = json.dumps(ack_obj()).encode()
    with pytest.raises(DatagramError, match="MAC"):
        decode(body)


@pytest.mark.parametrize("tag", [b"!!!!", b"AAA", b"A===", b"AA AA", b"\xff\xfe", b"-_-_"])
def test_a_mac_that_is_not_base64_is_refused(tag: bytes) -> None:
    body = json.dumps(ack_obj()).encode()
    with pytest.raises(DatagramError):
        decode(body + b"\n" + tag)


def test_oversize() -> None:
    def padded(size: int) -> bytes:
        head = b'{"kind":"ack","from":"@bob","seq":1,"pad":"'
        tail = b'"}\n' + base64.b64encode(MAC)
        return head + b"x" * (size - len(head) - len(tail)) + tail

    exact = padded(limits.DATAGRAM_MAX)
    assert len(exact) == limits.DATAGRAM_MAX
    assert decode(exact).message == Ack("@bob", 1)
    with pytest.raises(DatagramError, match="large"):
        decode(padded(limits.DATAGRAM_MAX + 1))
    with pytest.raises(DatagramError):
        decode(b"\xff" * (limits.DATAGRAM_MAX + 1))
    with pytest.raises(DatagramError):
        decode(b"x" * 100_000)


@pytest.mark.parametrize("kind", [None, "nope", "Tweet", "ACK", "hello", "", 5, ["ack"],
                                  {"kind": "ack"}, "end-tweet"])
def test_unknown_kinds(kind: object) -> None:
    rejected(tweet_obj(kind=kind))
    rejected(setup_obj(kind=kind))


def test_a_missing_kind_is_refused() -> None:
    obj = tweet_obj()
    del obj["kind"]
    rejected(obj)


# ---- every field's validation ------------------------------------------------------------------

BAD_NUMBERS = [None, -1, 2**53, 2**64, True, False, 1.0, 1.5, "1", [1], {"n": 1}]
BAD_HANDLES = [None, "", "@", "bob", "@bob1", "@bo b", "@" + "b" * 16, "@bób", "@\u212aelvin",
               5, ["@bob"], {"h": "@bob"}, True]
BAD_TEXTS = [None, "", "x" * (limits.RING_TEXT_MAX + 1), 5, ["hi"], {"t": "hi"}, True]
BAD_SIGS = [None, "", SIG[:-1], SIG + "A", "é" * SIGNATURE_CHARS, 5, [SIG], True]
BAD_PEERS = [
    None, "@bob", PEER[:5], [*PEER, 1], {"handle": "@bob"}, [],
    ["bob", *PEER[1:]], [PEER[0], "10.0.0.256", *PEER[2:]], [PEER[0], "localhost", *PEER[2:]],
    [PEER[0], "10.0.0.02", *PEER[2:]], [PEER[0], 167772162, *PEER[2:]],
    [*PEER[:2], 0, *PEER[3:]], [*PEER[:3], 65536, *PEER[4:]], [*PEER[:4], True, PEER[5]],
    [*PEER[:2], "5001", *PEER[3:]], [*PEER[:3], 5002.0, *PEER[4:]], [*PEER[:4], -1, PEER[5]],
    [*PEER[:5], None], [*PEER[:5], ""], [*PEER[:5], SAMPLE_KEY[:-4]],
    [*PEER[:5], SAMPLE_KEY + "AAAA"], [*PEER[:5], "!" * 88],
    [*PEER[:5], base64.b64encode(bytes(66))[:88].decode()],
]

FIELDS: list[tuple[str, str, list[object]]] = [
    (kind, "from", BAD_HANDLES) for kind in GOOD
] + [
    (kind, "seq", BAD_NUMBERS) for kind in GOOD
] + [
    (kind, "ring", BAD_HANDLES) for kind in ("setup", "teardown", "tweet", "detour")
] + [
    ("setup", "version", BAD_NUMBERS), ("teardown", "version", BAD_NUMBERS),
    ("setup", "left", BAD_PEERS), ("setup", "right", BAD_PEERS),
    ("tweet", "tid", BAD_NUMBERS), ("detour", "tid", BAD_NUMBERS),
    ("tweet", "text", BAD_TEXTS), ("detour", "text", BAD_TEXTS),
    ("message", "text", BAD_TEXTS), ("message", "id", BAD_NUMBERS),
    ("tweet", "sig", BAD_SIGS), ("detour", "sig", BAD_SIGS),
    ("tweet", "prev", BAD_HANDLES), ("detour", "prev", BAD_HANDLES),
    ("detour", "dead", BAD_HANDLES),
]


@pytest.mark.parametrize(("kind", "name", "value"), [
    pytest.param(kind, name, value, id=f"{kind}-{name}-{index}")
    for kind, name, values in FIELDS for index, value in enumerate(values)
])
def test_a_bad_field_is_refused(kind: str, name: str, value: object) -> None:
    rejected(GOOD[kind](**{name: value}))


@pytest.mark.parametrize(("kind", "name"), [
    pytest.param(kind, name, id=f"{kind}-{name}")
    for kind, make in GOOD.items() for name in make() if name != "kind"
])
def test_a_missing_field_is_refused(kind: str, name: str) -> None:
    obj = GOOD[kind]()
    del obj[name]
    rejected(obj)


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_every_good_form_decodes(kind: str) -> None:
    received = decode(framed(GOOD[kind]()))
    assert json.loads(body_of(received.message)) == GOOD[kind]()


def test_bounds_are_accepted() -> None:
    big = 2**53 - 1
    assert decode(framed(ack_obj(seq=0))).message == Ack("@bob", 0)
    assert decode(framed(ack_obj(seq=big))).message == Ack("@bob", big)
    assert decode(framed(ack_obj(**{"from": "@" + "z" * 15}))).message.sender == "@" + "z" * 15
    low = [PEER[0], "1.0.0.1", 1, 2, 3, SAMPLE_KEY]
    high = [PEER[0], "223.255.255.254", 65533, 65534, 65535, SAMPLE_KEY]
    setup = decode(framed(setup_obj(left=low, right=high, version=0))).message
    assert isinstance(setup, SetupMsg)
    assert setup.left == Peer(*low) and setup.right == Peer(*high)


@pytest.mark.parametrize("text", [
    "x", "x" * limits.RING_TEXT_MAX, "\U0001f600" * limits.RING_TEXT_MAX,
    "\x1b[2J", "a\nb", "\u202eevil", "red\rX\x07", "\x00", "\x85\u2028",
])
def test_any_text_of_1_to_161_characters_is_carried(text: str) -> None:
    """Control characters are accepted: a receiver never relies on the sender's checks."""
    assert limits.RING_TEXT_MAX == 161
    for make in (tweet_obj, detour_obj, message_obj):
        message = decode(framed(make(text=text))).message
        assert message.text == text


@pytest.mark.parametrize("body", [
    b'{"kind":"tweet","from":"@bob","seq":1,"ring":"@alice","tid":7,"text":"hi \\udc80",'
    b'"sig":"' + SIG.encode() + b'","prev":"@bob"}',
    b'{"kind":"message","from":"@bob","seq":1,"id":2,"text":"\\ud800"}',
])
def test_a_text_that_is_not_valid_unicode_is_refused(body: bytes) -> None:
    """JSON can spell a lone surrogate; UTF-8 cannot carry it on, so it is refused."""
    with pytest.raises(DatagramError):
        decode(encode(body, MAC))


def test_the_kind_decides_whether_it_is_a_detour() -> None:
    try:
        tweet = decode(framed(tweet_obj(dead="@carol"))).message
    except DatagramError:
        pass                                    # refusing the stray field is as good
    else:
        assert isinstance(tweet, TweetMsg)
        assert tweet.dead is None and not tweet.is_detour
    detour = decode(framed(detour_obj())).message
    assert isinstance(detour, TweetMsg)
    assert detour.dead == "@carol" and detour.is_detour


# ---- summary -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("message", "line"), [
    (Ack("@bob", 5), "ack seq=5"),
    (SetupMsg("@a", 1, "@a", 3, BOB, BOB), "setup ring=@a left=@bob right=@bob version=3 seq=1"),
    (TeardownMsg("@a", 2, "@a", 4), "teardown ring=@a version=4 seq=2"),
    (TweetMsg("@b", 3, "@a", 4, "t", SIG, "@b"), "tweet ring=@a tid=4 prev=@b seq=3"),
    (TweetMsg("@b", 3, "@a", 4, "t", SIG, "@b", "@c"),
     "detour dead=@c ring=@a tid=4 prev=@b seq=3"),
    (DirectMsg("@b", 6, 41, "psst"), "message id=41 seq=6"),
])
def test_summaries(message: Datagram, line: str) -> None:
    assert summary(message) == line


@FAST
@given(MESSAGES)
def test_a_summary_is_one_line_that_starts_with_the_kind(message: Datagram) -> None:
    line = summary(message)
    kind = json.loads(body_of(message))["kind"]
    assert line.split()[0] == kind
    assert "\n" not in line and "\r" not in line
    assert line.isprintable()
