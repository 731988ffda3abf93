"""Unit tests of protocol.messages: the typed replies and pushes of the tracker, to the wire and
back, and strict reading (a malformed frame raises ProtocolError and nothing else)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from conftest import SAMPLE_KEY
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import messages
from protocol.messages import (
    ANSWERS,
    NOTICES,
    Answer,
    Done,
    EndTweetReply,
    Failure,
    FollowReply,
    ListReply,
    LoginReply,
    MessagePush,
    MessageReply,
    PeerPush,
    PresencePush,
    QueryHandlesReply,
    TweetPush,
    TweetReply,
    TweetsReply,
    answer_from_wire,
    notice_from_wire,
)
from protocol.ring import Peer
from protocol.store import Tweet
from protocol.wire import COMMANDS, ProtocolError, decode_server_frame, encode_object, load_object

PEER = Peer("@bob", "10.0.0.2", 5001, 5002, 5003, SAMPLE_KEY)


def round_trip(message: Any) -> Any:
    """Through the bytes of the wire and back."""
    obj = load_object(encode_object(message.to_wire()))
    if isinstance(message, messages.Notice):
        return notice_from_wire(obj)
    cmd = "query-handles" if isinstance(message, Failure) else \
        next(cmd for cmd, cls in ANSWERS.items() if cls is type(message))
    return answer_from_wire(cmd, obj)


EXAMPLES = [
    Done(re=1, message="ok"),
    Failure(re=2, code="UNKNOWN_HANDLE", message="@zed is not registered"),
    Failure(re=None, code="BAD_FRAME", message="a frame is one JSON object"),
    LoginReply(re=3, message="in", handle="@Bob", new=2, blocked=("@eve",), kept=10),
    EndTweetReply(re=4, message="ended", reached=2, skipped=("@c",), relayed=("@c",)),
    FollowReply(re=4, message="follows", peer=PEER),
    ListReply(re=4, message="list", handle="@a", count=1, handles=("@bob",), peers=(PEER,)),
    ListReply(re=4, message="list", handle="@a", count=1, handles=("@bob",)),
    ListReply(re=4, message="page", handle="@a", count=9, handles=("@bob",), next="@bob"),
    QueryHandlesReply(re=4, message="page", count=9, handles=("@a", "@b"), next="@b"),
    QueryHandlesReply(re=4, message="all", count=0, handles=()),
    TweetPush(author="@a", tid=7, text="hi", created=1.7e9),
    PeerPush(peer=PEER),
    TweetReply(re=4, message="go", tid=7, text="hi", count=1, followers=(PEER,)),
    TweetsReply(re=5, message="1 tweet", count=1,
                tweets=(Tweet(7, "@a", "hi #x", 1.7e9, None),)),
    TweetsReply(re=5, message="a page", count=1,
                tweets=(Tweet(7, "@a", "hi #x", 1.7e9, None),), next=7),
    MessageReply(re=6, message="kept", message_id=3, to="@bob"),
    MessageReply(re=6, message="go", message_id=3, to="@bob", peer=PEER),
    PresencePush(handle="@bob", online=True, peer=PEER),
    PresencePush(handle="@bob", online=False),
    MessagePush(id=3, sender="@a", text="psst", created=1.7e9, kept=True),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Any) -> None:
    assert round_trip(message) == message


def test_the_wire_form_is_the_documented_one() -> None:
    assert TweetReply(re=4, message="go", tid=7, text="hi", count=1,
                      followers=(PEER,)).to_wire() == {
        "re": 4, "status": "SUCCESS", "message": "go", "tid": 7, "text": "hi", "count": 1,
        "followers": [["@bob", "10.0.0.2", 5001, 5002, 5003, SAMPLE_KEY]]}
    assert Failure(re=1, code="X", message="m").to_wire() == {
        "re": 1, "status": "FAILURE", "code": "X", "message": "m"}
    assert PresencePush(handle="@a", online=False).to_wire() == {
        "push": "presence", "handle": "@a", "online": False}      # no peer when offline
    assert MessageReply(message="kept", message_id=3, to="@b").to_wire() == {
        "re": None, "status": "SUCCESS", "message": "kept", "message_id": 3, "to": "@b"}


def test_the_untyped_envelope_reads_the_same_bytes() -> None:
    # user.py still reads envelopes (wire.decode_server_frame) until it moves to the classes.
    reply = LoginReply(re=3, message="in", handle="@Bob", new=2, blocked=(), kept=0)
    envelope = decode_server_frame(encode_object(reply.to_wire()))
    assert (envelope.re, envelope.status, envelope.data) == (
        3, "SUCCESS", {"handle": "@Bob", "new": 2, "blocked": [], "kept": 0})


def test_every_command_has_a_reply_class_and_every_push_a_kind() -> None:
    assert set(ANSWERS) == set(COMMANDS)
    assert all(cls.kind == kind for kind, cls in NOTICES.items())


def test_a_failure_reads_as_a_failure_whatever_the_command() -> None:
    reply = answer_from_wire("tweet", {"re": 1, "status": "FAILURE", "code": "TOO_LONG",
                                       "message": "too long"})
    assert isinstance(reply, Failure) and not reply.ok and reply.code == "TOO_LONG"


@pytest.mark.parametrize(("cmd", "obj"), [
    ("login", {"re": 1, "status": "SUCCESS", "message": "in", "handle": "@a",
               "blocked": []}),                                                    # no new
    ("login", {"re": 1, "status": "SUCCESS", "message": "in", "handle": "@a", "new": "2",
               "blocked": []}),
    ("login", {"re": 1, "status": "SUCCESS", "message": "in", "handle": "bob", "new": 2,
               "blocked": []}),
    ("login", {"re": 1, "status": "SUCCESS", "message": "in", "handle": "@a", "new": True,
               "blocked": []}),
    ("login", {"re": 1, "status": "SUCCESS", "message": "in", "handle": "@a", "new": 1,
               "blocked": "@b"}),
    ("end-tweet", {"re": 1, "status": "SUCCESS", "message": "m", "reached": 1,
                   "skipped": []}),                                        # no relayed
    ("tweet", {"re": 1, "status": "SUCCESS", "message": "m", "tid": 1, "text": "t",
               "count": 1, "followers": [["@b", "1.2.3.4", 1, 2, 3]]}),        # no key
    ("tweet", {"re": 1, "status": "SUCCESS", "message": "m", "tid": 1, "text": "t",
               "count": 1, "followers": "@b"}),
    ("feed", {"re": 1, "status": "SUCCESS", "message": "m", "count": 1,
              "tweets": [[1, "@a", "yesterday", "t", None]]}),
    ("query-handles", {"re": "1", "status": "SUCCESS", "message": "m", "count": 0,
                       "handles": []}),
    ("query-handles", {"re": 1, "status": "SUCCESS", "count": 0, "handles": []}),
    ("query-handles", {"re": 1, "status": "SUCCESS", "message": "m", "count": 3,
                       "handles": ["@a"], "next": 1}),                     # next: a handle
    ("search", {"re": 1, "status": "SUCCESS", "message": "m", "count": 0, "tweets": [],
                "next": "@a"}),                                            # next: an id
    ("login", {"re": 1, "status": "SUCCESS", "message": "in", "handle": "@a", "new": 1,
               "blocked": []}),                                            # no kept
    ("query-handles", {"re": 1, "status": "MAYBE", "message": "m", "count": 0,
                       "handles": []}),
    ("heartbeat", {"re": 1, "status": "FAILURE", "message": "m"}),              # no code
    ("fly", {"re": 1, "status": "SUCCESS", "message": "m"}),
])
def test_a_malformed_reply_raises_protocol_error(cmd: str, obj: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as raised:
        answer_from_wire(cmd, obj)
    assert raised.value.code == "BAD_REPLY"


@pytest.mark.parametrize("obj", [
    {"push": "presence", "handle": "@a"},
    {"push": "presence", "handle": "@a", "online": True, "peer": [1, 2]},
    {"push": "message", "id": 1, "sender": "@a", "text": "x", "created": "now", "kept": True},
    {"push": "say", "sender": "@a", "text": 5},
    {"push": "tweet", "author": "@a", "tid": -1, "text": "x", "created": 1.0},
    {"push": "peer"},
    {"push": "peer", "peer": ["@a", "1.2.3.4", 1, 2, 3, "short key"]},
    {"push": "gossip"},
    {"push": 7},
])
def test_a_malformed_push_raises_protocol_error(obj: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        notice_from_wire(obj)


def test_unknown_fields_are_ignored() -> None:
    obj = {"re": 1, "status": "SUCCESS", "message": "m", "count": 0, "handles": [], "x": 1}
    assert answer_from_wire("query-handles", obj).ok


JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=6),
                               st.dictionaries(st.text(max_size=8), children, max_size=6)),
    max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(cmd=st.sampled_from(sorted(COMMANDS)), obj=st.dictionaries(
    st.sampled_from(["re", "status", "message", "code", "handle", "handles", "count", "tid",
                     "text", "followers", "tweets", "peer", "new", "reached", "skipped",
                     "next", "kept"]),
    JSONISH, max_size=8))
def test_reading_any_reply_raises_nothing_but_protocol_error(cmd: str,
                                                              obj: dict[str, Any]) -> None:
    with contextlib.suppress(ProtocolError):
        assert isinstance(answer_from_wire(cmd, obj), Answer)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from([*sorted(NOTICES), "nothing"]), obj=st.dictionaries(
    st.sampled_from(["handle", "online", "peer", "by", "sender", "text", "id", "created",
                     "kept", "server", "password_required", "reason"]), JSONISH, max_size=8))
def test_reading_any_push_raises_nothing_but_protocol_error(kind: str,
                                                             obj: dict[str, Any]) -> None:
    with contextlib.suppress(ProtocolError):
        notice_from_wire({**obj, "push": kind})


def test_a_frame_of_the_tracker_is_json_on_one_line() -> None:
    line = encode_object(MessagePush(id=1, sender="@a", text="é\n", created=1.0,
                                     kept=False).to_wire())
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["text"] == "é\n"
