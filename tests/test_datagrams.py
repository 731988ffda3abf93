"""Unit tests of protocol.datagrams: the UDP datagrams peers send each other around a ring."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from conftest import SAMPLE_KEY
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import limits
from protocol.datagrams import (
    Ack,
    Datagram,
    DatagramError,
    SetupMsg,
    TeardownMsg,
    TweetMsg,
    decode,
    encode,
    summary,
)
from protocol.ring import Peer
from protocol.validate import check_text

FAST = settings(max_examples=400, deadline=None)
# The longest text a ring carries: a tweet, or a retweet with its "RT @author: " prefix.
RING_TEXT_MAX: int = getattr(limits, "RING_TEXT_MAX", limits.TWEET_MAX)

# ---- strategies ------------------------------------------------------------------------------

HANDLES = st.text(st.sampled_from(string.ascii_letters), min_size=1,
                  max_size=limits.HANDLE_MAX).map(lambda letters: "@" + letters)
IPS = st.lists(st.integers(0, 255), min_size=4, max_size=4).map(lambda o: ".".join(map(str, o)))
PORTS = st.integers(1, 65535)
PEERS = st.builds(Peer, HANDLES, IPS, PORTS, PORTS, PORTS, st.just(SAMPLE_KEY))
SEQS = st.integers(0, 2**53 - 1)
TEXTS = st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1,
                max_size=limits.TWEET_MAX).filter(lambda text: check_text(text) is None)


@st.composite
def tweets(draw: st.DrawFn) -> TweetMsg:
    return TweetMsg(draw(SEQS), draw(HANDLES), draw(SEQS), draw(TEXTS), draw(HANDLES),
                    draw(st.integers(0, 2**53 - 1)),
                    tuple(draw(st.lists(HANDLES, max_size=8))),
                    draw(st.one_of(st.none(), HANDLES)))


MESSAGES: st.SearchStrategy[Datagram] = st.one_of(
    st.builds(Ack, SEQS),
    st.builds(SetupMsg, SEQS, HANDLES, PEERS, PEERS, PEERS),
    st.builds(TeardownMsg, SEQS, HANDLES),
    tweets(),
)

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(2**64), 2**64),
                    st.floats(), st.text(max_size=12))
JSONISH = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(st.text(max_size=6), children, max_size=4)),
    max_leaves=12)
PEERISH = st.one_of(PEERS.map(Peer.as_list),
                    st.lists(st.one_of(HANDLES, IPS, PORTS, JSONISH), min_size=5, max_size=5),
                    JSONISH)


def datagram_like() -> st.SearchStrategy[dict[str, Any]]:
    """Objects near a datagram: real keys with right, wrong and arbitrary values."""
    return st.fixed_dictionaries({}, optional={
        "kind": st.one_of(st.sampled_from(["ack", "setup", "teardown", "tweet", "detour"]),
                          JSONISH),
        "seq": st.one_of(SEQS, JSONISH),
        "ring": st.one_of(HANDLES, JSONISH),
        "author": PEERISH, "left": PEERISH, "right": PEERISH,
        "tid": st.one_of(SEQS, JSONISH),
        "hops": st.one_of(SEQS, st.integers(), JSONISH),
        "text": st.one_of(TEXTS, JSONISH),
        "prev": st.one_of(HANDLES, JSONISH),
        "dead": st.one_of(HANDLES, JSONISH),
        "skipped": st.one_of(st.lists(HANDLES, max_size=3),
                             st.lists(st.one_of(HANDLES, JSONISH), max_size=3), JSONISH),
    })


def check_decode(data: bytes) -> None:
    """A datagram decodes to a message that can be sent on again, or is a DatagramError."""
    try:
        message = decode(data)
    except DatagramError as error:
        assert str(error)
        return
    assert isinstance(message, (Ack, SetupMsg, TeardownMsg, TweetMsg))
    assert decode(encode(message)) == message
    assert "\n" not in summary(message)


def dumps(obj: object) -> bytes:
    return json.dumps(obj).encode()


def rejected(obj: object) -> None:
    with pytest.raises(DatagramError):
        decode(dumps(obj))


PEER = ["@bob", "127.0.0.1", 5001, 5002, 5003, SAMPLE_KEY]
GOOD_SETUP = {"kind": "setup", "seq": 1, "ring": "@alice", "author": PEER, "left": PEER,
              "right": PEER}
GOOD_TWEET = {"kind": "tweet", "seq": 1, "ring": "@alice", "tid": 4, "text": "hello",
              "prev": "@alice", "hops": 0, "skipped": []}


# ---- the decoder never raises anything but DatagramError -------------------------------------

@FAST
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data: bytes) -> None:
    check_decode(data)


@FAST
@given(JSONISH)
def test_arbitrary_json(value: object) -> None:
    check_decode(dumps(value))


@FAST
@given(datagram_like())
def test_datagram_like_objects(obj: dict[str, Any]) -> None:
    check_decode(dumps(obj))


@FAST
@given(MESSAGES, st.data())
def test_mutated_datagrams(message: Datagram, data: st.DataObject) -> None:
    obj = json.loads(encode(message))
    key = data.draw(st.sampled_from(sorted(obj)))
    if data.draw(st.booleans()):
        del obj[key]
    else:
        obj[key] = data.draw(JSONISH)
    check_decode(dumps(obj))


@pytest.mark.parametrize("depth", [10, 100, 500, 900, 1000])
def test_deep_nesting(depth: int) -> None:
    with pytest.raises(DatagramError):
        decode(b"[" * depth + b"]" * depth)
    # nesting in an extra field is ignored or refused, never a RecursionError
    data = dumps(GOOD_TWEET)[:-1] + b',"x":' + b"[" * depth + b"]" * depth + b"}"
    if len(data) <= limits.DATAGRAM_MAX:
        check_decode(data)


@pytest.mark.parametrize("data", [
    b"", b"   ", b"nope", b"[]", b"1", b'"ack"', b"null", b"\xff\xfe", b"\xc3\x28",
    b'{"kind":"ack","seq":1}{"kind":"ack","seq":2}',
])
def test_not_one_json_object(data: bytes) -> None:
    with pytest.raises(DatagramError):
        decode(data)


def test_oversize_datagram() -> None:
    padded = dumps({"kind": "ack", "seq": 1})[:-1] + b',"pad":"' + b"x" * limits.DATAGRAM_MAX \
        + b'"}'
    assert len(padded) > limits.DATAGRAM_MAX
    with pytest.raises(DatagramError):
        decode(padded)
    exact = dumps({"kind": "ack", "seq": 1})[:-1] + b',"pad":"'
    exact += b"x" * (limits.DATAGRAM_MAX - len(exact) - 2) + b'"}'
    assert len(exact) == limits.DATAGRAM_MAX
    assert decode(exact) == Ack(1)
    with pytest.raises(DatagramError):
        decode(exact[:-2] + b'x"}')
    with pytest.raises(DatagramError):
        decode(b"\xff" * (limits.DATAGRAM_MAX + 1))


# ---- round trips -----------------------------------------------------------------------------

@FAST
@given(MESSAGES)
def test_round_trip(message: Datagram) -> None:
    data = encode(message)
    assert len(data) <= limits.DATAGRAM_MAX
    assert decode(data) == message


def test_wire_forms() -> None:
    assert json.loads(encode(Ack(3))) == {"kind": "ack", "seq": 3}
    peer = Peer.from_list(PEER)
    assert json.loads(encode(SetupMsg(1, "@alice", peer, peer, peer))) == GOOD_SETUP
    assert json.loads(encode(TeardownMsg(2, "@alice"))) == {"kind": "teardown", "seq": 2,
                                                            "ring": "@alice"}
    tweet = TweetMsg(1, "@alice", 4, "hello", "@alice", 0, ())
    assert json.loads(encode(tweet)) == GOOD_TWEET
    assert not tweet.is_detour
    detour = TweetMsg(1, "@alice", 4, "hello", "@alice", 0, ("@bob",), dead="@bob")
    assert detour.is_detour
    assert json.loads(encode(detour)) == {**GOOD_TWEET, "kind": "detour", "skipped": ["@bob"],
                                          "dead": "@bob"}


def test_a_full_tweet_fits_one_datagram() -> None:
    longest = "@" + "w" * limits.HANDLE_MAX
    tweet = TweetMsg(2**53 - 1, longest, 2**53 - 1, "😀" * limits.TWEET_MAX, longest, 2**53 - 1,
                     (longest,) * 20, longest)
    data = encode(tweet)
    assert len(data) <= limits.DATAGRAM_MAX
    assert decode(data) == tweet


def test_good_datagrams_decode() -> None:
    assert decode(b'{"kind":"ack","seq":0}') == Ack(0)
    assert decode(dumps({"kind": "teardown", "seq": 9, "ring": "@Al"})) == TeardownMsg(9, "@Al")
    setup = decode(dumps(GOOD_SETUP))
    assert setup == SetupMsg(1, "@alice", Peer("@bob", "127.0.0.1", 5001, 5002, 5003, SAMPLE_KEY),
                             Peer("@bob", "127.0.0.1", 5001, 5002, 5003, SAMPLE_KEY),
                             Peer("@bob", "127.0.0.1", 5001, 5002, 5003, SAMPLE_KEY))
    tweet = decode(dumps({**GOOD_TWEET, "skipped": ["@x", "@Y"]}))
    assert tweet == TweetMsg(1, "@alice", 4, "hello", "@alice", 0, ("@x", "@Y"))
    detour = decode(dumps({**GOOD_TWEET, "kind": "detour", "dead": "@x"}))
    assert isinstance(detour, TweetMsg)
    assert detour.dead == "@x"
    assert detour.is_detour


def test_a_tweet_ignores_dead_and_extra_fields() -> None:
    tweet = decode(dumps({**GOOD_TWEET, "dead": "@x", "extra": [1, 2]}))
    assert isinstance(tweet, TweetMsg)
    assert tweet.dead is None


# ---- rejections ------------------------------------------------------------------------------

@pytest.mark.parametrize("obj", [
    {"kind": "ack"},
    {"kind": "ack", "seq": -1},
    {"kind": "ack", "seq": 2**53},
    {"kind": "ack", "seq": True},
    {"kind": "ack", "seq": 1.0},
    {"kind": "ack", "seq": "1"},
    {"kind": "nope", "seq": 1, "ring": "@a"},
    {"seq": 1, "ring": "@a"},
    {"kind": None, "seq": 1, "ring": "@a"},
    {"kind": ["ack"], "seq": 1, "ring": "@a"},
    {"kind": {"a": 1}, "seq": 1, "ring": "@a"},
    {"kind": "teardown", "seq": 1},
    {"kind": "teardown", "seq": 1, "ring": "alice"},
    {"kind": "teardown", "seq": 1, "ring": "@" + "a" * 16},
    {"kind": "teardown", "seq": 1, "ring": ["@a"]},
])
def test_bad_headers(obj: dict[str, Any]) -> None:
    rejected(obj)


@pytest.mark.parametrize(("field", "value"), [
    ("author", None), ("author", PEER[:4]), ("author", [*PEER, 1]), ("author", "@bob"),
    ("left", ["bob", "127.0.0.1", 1, 2, 3]), ("left", ["@bob", "127.0.0.256", 1, 2, 3, SAMPLE_KEY]),
    ("left", ["@bob", "localhost", 1, 2, 3]), ("right", ["@bob", "127.0.0.1", 0, 2, 3, SAMPLE_KEY]),
    ("right", ["@bob", "127.0.0.1", 1, 2, 65536, SAMPLE_KEY]),
    ("right", ["@bob", "127.0.0.1", True, 2, 3]),
    ("right", ["@bob", "127.0.0.1", 1, "2", 3]), ("right", ["@bob", "127.0.0.1", 1, 2.0, 3]),
    ("right", {"handle": "@bob"}),
])
def test_bad_setups(field: str, value: object) -> None:
    rejected({**GOOD_SETUP, field: value})


@pytest.mark.parametrize(("field", "value"), [
    ("text", ""), ("text", None), ("text", 5), ("text", "x" * (RING_TEXT_MAX + 1)),
    ("text", "\ud800"), ("text", ["hi"]),
    ("tid", -1), ("tid", True), ("tid", None), ("tid", "4"),
    ("hops", -1), ("hops", False), ("hops", 1.5),
    ("prev", "alice"), ("prev", None), ("prev", ""),
    ("skipped", None), ("skipped", "@bob"), ("skipped", ["bob"]), ("skipped", [["@bob"]]),
    ("skipped", ["@ok", 5]), ("skipped", ["@ok"] * 4097), ("skipped", {"@bob": 1}),
])
def test_bad_tweets(field: str, value: object) -> None:
    obj = {**GOOD_TWEET, field: value}
    if len(dumps(obj)) <= limits.DATAGRAM_MAX:
        rejected(obj)
        rejected({**obj, "kind": "detour", "dead": "@bob"})
    else:
        with pytest.raises(DatagramError):
            decode(dumps(obj))


@pytest.mark.parametrize("text", ["\x1b[2J", "a\nb", "\u202eevil", "red\rX\x07"])
def test_control_characters_travel_and_are_escaped_only_when_shown(text: str) -> None:
    """A receiver never trusts the sender's checks: it takes the text and shows it escaped."""
    message = decode(dumps({**GOOD_TWEET, "text": text}))
    assert isinstance(message, TweetMsg) and message.text == text


@pytest.mark.parametrize("dead", [None, "bob", "", 5, ["@bob"]])
def test_a_detour_names_a_dead_handle(dead: object) -> None:
    obj: dict[str, Any] = {**GOOD_TWEET, "kind": "detour"}
    if dead is not None:
        obj["dead"] = dead
    rejected(obj)


def test_max_text_is_accepted() -> None:
    tweet = decode(dumps({**GOOD_TWEET, "text": "x" * RING_TEXT_MAX}))
    assert isinstance(tweet, TweetMsg)
    assert tweet.text == "x" * RING_TEXT_MAX


def test_a_tweet_with_a_lone_surrogate_is_rejected_or_can_be_forwarded() -> None:
    # JSON lets "\udc80" through as a lone surrogate.  A follower that accepts such a tweet must
    # be able to forward it (encode) to its right neighbour; if it cannot, decode must refuse it.
    data = b'{"kind":"tweet","seq":1,"ring":"@alice","tid":4,"text":"hi \\udc80",' \
           b'"prev":"@alice","hops":0,"skipped":[]}'
    try:
        message = decode(data)
    except DatagramError:
        return
    assert decode(encode(message)) == message


# ---- summary ---------------------------------------------------------------------------------

def test_summaries() -> None:
    peer = Peer.from_list(PEER)
    assert summary(Ack(5)) == "ack seq=5"
    assert summary(SetupMsg(1, "@a", peer, peer, peer)) \
        == "setup ring=@a left=@bob right=@bob seq=1"
    assert summary(TeardownMsg(2, "@a")) == "teardown ring=@a seq=2"
    assert summary(TweetMsg(3, "@a", 4, "t", "@b", 1, ())) \
        == "tweet ring=@a tid=4 prev=@b hops=1 seq=3"
    assert summary(TweetMsg(3, "@a", 4, "t", "@b", 1, (), "@c")).startswith("detour dead=@c ")


@settings(max_examples=200, deadline=None)
@given(MESSAGES)
def test_summary_is_one_line(message: Datagram) -> None:
    line = summary(message)
    assert line
    assert "\n" not in line
