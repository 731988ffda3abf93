"""Unit tests of protocol.wire: the tracker's JSON-line frames, decoded and encoded."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import limits
from protocol.wire import (
    COMMANDS,
    FAILURE,
    SUCCESS,
    ProtocolError,
    Push,
    Reply,
    Request,
    decode_request,
    decode_server_frame,
    encode_push,
    encode_reply,
    encode_request,
    failure,
    success,
)

FAST = settings(max_examples=400, deadline=None)

REQUEST_CODES = {"TOO_LARGE", "BAD_FRAME", "UNKNOWN_COMMAND", "BAD_REQUEST"}
SERVER_CODES = {"TOO_LARGE", "BAD_FRAME"}
# A name ending in "?" marks an optional argument.
ARG_NAMES = sorted({name.rstrip("?") for schema in COMMANDS.values() for name in schema})


def schema_of(cmd: str) -> tuple[dict[str, type], set[str]]:
    """The argument types of ``cmd`` and the names it requires."""
    names = COMMANDS[cmd]
    return ({name.rstrip("?"): kind for name, kind in names.items()},
            {name for name in names if not name.endswith("?")})
REPLY_KEYS = ["re", "status", "message", "code", "push"]

# ---- strategies ------------------------------------------------------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(2**64), 2**64),
                    st.floats(), st.text(max_size=12))
JSONISH = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=6), children, max_size=4)),
    max_leaves=12)
FINITE_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60),
                           st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
FINITE_JSON = st.recursive(
    FINITE_SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=6), children, max_size=4)),
    max_leaves=10)


def request_like() -> st.SearchStrategy[dict[str, Any]]:
    """Objects near a request: real keys, with right, wrong and arbitrary values."""
    ids = st.one_of(st.integers(0, 2**53 - 1), st.integers(-5, 2**60), JSONISH)
    cmds = st.one_of(st.sampled_from(sorted(COMMANDS)), JSONISH)
    return st.fixed_dictionaries(
        {}, optional={"id": ids, "cmd": cmds, **{name: JSONISH for name in ARG_NAMES},
                      "extra": JSONISH})


def server_like() -> st.SearchStrategy[dict[str, Any]]:
    """Objects near a reply or a push."""
    return st.fixed_dictionaries(
        {}, optional={"re": st.one_of(st.integers(), JSONISH),
                      "status": st.one_of(st.sampled_from([SUCCESS, FAILURE]), JSONISH),
                      "message": st.one_of(st.text(max_size=20), JSONISH),
                      "code": st.one_of(st.sampled_from(["UNKNOWN_HANDLE", ""]), JSONISH),
                      "push": st.one_of(st.text(max_size=8), JSONISH),
                      "data": JSONISH})


def value_of(kind: type) -> st.SearchStrategy[Any]:
    if kind is int:         # ids and counts: whole numbers a JSON double holds exactly
        return st.integers(0, 2**53 - 1)
    if kind is str:
        return st.text(max_size=40)
    if kind is list:
        return st.lists(FINITE_JSON, max_size=5)
    raise AssertionError(kind)


@st.composite
def valid_requests(draw: st.DrawFn) -> Request:
    cmd = draw(st.sampled_from(sorted(COMMANDS)))
    schema, required = schema_of(cmd)
    args = {name: draw(value_of(kind)) for name, kind in schema.items()
            if name in required or draw(st.booleans())}
    return Request(draw(st.integers(0, 2**53 - 1)), cmd, args)


DATA_KEYS = st.text(max_size=10).filter(lambda key: key not in REPLY_KEYS)
DATA = st.dictionaries(DATA_KEYS, FINITE_JSON, max_size=4)


@st.composite
def valid_replies(draw: st.DrawFn) -> Reply:
    status = draw(st.sampled_from([SUCCESS, FAILURE]))
    code = draw(st.from_regex(r"[A-Z_]{1,20}", fullmatch=True)) if status == FAILURE else None
    re_id = draw(st.one_of(st.none(), st.integers(0, 2**53 - 1)))
    return Reply(re_id, status, draw(st.text(max_size=60)), code, draw(DATA))


@st.composite
def valid_pushes(draw: st.DrawFn) -> Push:
    data = draw(st.dictionaries(st.text(max_size=10).filter(lambda key: key != "push"),
                                FINITE_JSON, max_size=4))
    return Push(draw(st.text(max_size=12)), data)


def dump(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def request_error(frame: bytes) -> str:
    with pytest.raises(ProtocolError) as caught:
        decode_request(frame)
    return caught.value.code


def server_error(frame: bytes) -> str:
    with pytest.raises(ProtocolError) as caught:
        decode_server_frame(frame)
    return caught.value.code


def check_request(frame: bytes) -> None:
    """Decoding gives a well-formed Request or a ProtocolError, never another exception."""
    try:
        request = decode_request(frame)
    except ProtocolError as error:
        assert error.code in REQUEST_CODES
        assert isinstance(error.message, str) and error.message
        return
    assert type(request.id) is int and 0 <= request.id < 2**53
    schema, required = schema_of(request.cmd)
    assert required <= set(request.args) <= set(schema)
    for name, value in request.args.items():
        kind = schema[name]
        assert type(value) is int if kind is int else isinstance(value, kind)


def check_server_frame(frame: bytes) -> None:
    try:
        decoded = decode_server_frame(frame)
    except ProtocolError as error:
        assert error.code in SERVER_CODES
        return
    if isinstance(decoded, Push):
        assert isinstance(decoded.kind, str)
        assert "push" not in decoded.data
    else:
        assert isinstance(decoded, Reply)
        assert decoded.status in (SUCCESS, FAILURE)
        assert decoded.re is None or type(decoded.re) is int
        assert isinstance(decoded.message, str)
        if decoded.status == FAILURE:
            assert isinstance(decoded.code, str)
        assert not set(decoded.data) & {"re", "status", "message", "code"}


# ---- decoders never raise anything but ProtocolError -----------------------------------------

@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_request(frame: bytes) -> None:
    check_request(frame)


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_from_server(frame: bytes) -> None:
    check_server_frame(frame)


@FAST
@given(JSONISH)
def test_arbitrary_json_as_request(value: object) -> None:
    check_request(dump(value))


@FAST
@given(JSONISH)
def test_arbitrary_json_from_server(value: object) -> None:
    check_server_frame(dump(value))


@FAST
@given(request_like())
def test_request_like_objects(obj: dict[str, Any]) -> None:
    check_request(dump(obj))


@FAST
@given(server_like())
def test_server_like_objects(obj: dict[str, Any]) -> None:
    check_server_frame(dump(obj))


@pytest.mark.parametrize("cmd", [[], ["tweet"], {}, {"a": 1}])
def test_unhashable_command_is_a_protocol_error(cmd: object) -> None:
    # `cmd not in COMMANDS` hashes cmd: a list or object there must not escape as TypeError.
    assert request_error(dump({"id": 1, "cmd": cmd})) == "UNKNOWN_COMMAND"


@pytest.mark.parametrize("frame", [
    b"", b"\n", b"   \n", b"not json\n", b"[]\n", b"[1, 2]\n", b'"text"\n', b"42\n", b"null\n",
    b"true\n", b"\xff\xfe\n", b"\xc3\x28\n", b"\xef\xbb\xbf{}\n",
    b'{"id": 1, "cmd": "query-handles"}{"id": 2}\n', b'{"id": 1, "cmd": "query-handles"\n',
    b"{'id': 1}\n",
])
def test_frames_that_are_not_one_json_object(frame: bytes) -> None:
    assert request_error(frame) == "BAD_FRAME"
    assert server_error(frame) == "BAD_FRAME"


def test_deep_nesting_is_a_bad_frame() -> None:
    depth = 2000
    assert request_error(b"[" * depth + b"]" * depth) == "BAD_FRAME"
    nested = b'{"id":1,"cmd":"register","handle":"@a","ip":"1.2.3.4","ports":' \
        + b"[" * 1900 + b"]" * 1900 + b"}"
    assert len(nested) <= limits.FRAME_MAX
    assert request_error(nested) == "BAD_FRAME"
    assert server_error(b'{"push":"x","d":' + b"[" * 1900 + b"]" * 1900 + b"}") == "BAD_FRAME"


# ---- request rules ---------------------------------------------------------------------------

def test_a_good_request() -> None:
    request = decode_request(b'{"id": 7, "cmd": "follow", "follower": "@b", "followee": "@a"}\n')
    assert request == Request(7, "follow", {"follower": "@b", "followee": "@a"})


def test_the_trailing_newline_is_optional() -> None:
    assert decode_request(b'{"id":0,"cmd":"query-handles"}') == Request(0, "query-handles", {})


@pytest.mark.parametrize("request_id", [None, "1", 1.0, 1.5, True, False, -1, 2**53, [1], {}])
def test_request_id_must_be_a_non_negative_integer(request_id: object) -> None:
    obj: dict[str, Any] = {"cmd": "query-handles"}
    if request_id is not None:
        obj["id"] = request_id
    assert request_error(dump(obj)) == "BAD_FRAME"


def test_largest_request_id() -> None:
    assert decode_request(dump({"id": 2**53 - 1, "cmd": "query-handles"})).id == 2**53 - 1


@pytest.mark.parametrize("cmd", ["nope", "", "Register", "query handles", "end_tweet", None, 5,
                                 True])
def test_unknown_commands(cmd: object) -> None:
    assert request_error(dump({"id": 1, "cmd": cmd})) == "UNKNOWN_COMMAND"


def test_missing_command() -> None:
    assert request_error(dump({"id": 1})) == "UNKNOWN_COMMAND"


@pytest.mark.parametrize("obj", [
    {"id": 1, "cmd": "follow", "follower": "@a"},
    {"id": 1, "cmd": "follow", "follower": "@a", "followee": "@b", "extra": 1},
    {"id": 1, "cmd": "query-handles", "handle": "@a"},
    {"id": 1, "cmd": "register", "handle": "@a", "ip": "1.2.3.4", "password": "pw"},
    {"id": 1, "cmd": "register", "handle": "@a", "ip": "1.2.3.4", "ports": [1, 2, 3]},
    {"id": 1, "cmd": "register", "handle": 5, "ip": "1.2.3.4", "ports": [1, 2, 3],
     "password": "pw"},
    {"id": 1, "cmd": "register", "handle": "@a", "ip": "1.2.3.4", "ports": "1 2 3",
     "password": "pw"},
    {"id": 1, "cmd": "register", "handle": "@a", "ip": None, "ports": [1, 2, 3],
     "password": "pw"},
    {"id": 1, "cmd": "login", "handle": "@a", "ip": "1.2.3.4", "ports": [1, 2, 3],
     "password": None, "key": "k"},
    {"id": 1, "cmd": "login", "handle": "@a", "ip": "1.2.3.4", "ports": [1, 2, 3],
     "password": "pw"},
    {"id": 1, "cmd": "login", "handle": "@a", "ip": "1.2.3.4", "ports": [1, 2, 3],
     "password": "pw", "key": 5},
    {"id": 1, "cmd": "logout", "handle": "@a"},
    {"id": 1, "cmd": "followers", "handle?": "@a"},
    {"id": 1, "cmd": "followers", "handle": None},
    {"id": 1, "cmd": "following", "handle": "@a", "count": 1},
    {"id": 1, "cmd": "feed", "count": True},
    {"id": 1, "cmd": "feed", "count": "20"},
    {"id": 1, "cmd": "retweet"},
    {"id": 1, "cmd": "retweet", "tid": 1.0},
    {"id": 1, "cmd": "search", "tag": 5},
    {"id": 1, "cmd": "trending", "count": 5},
    {"id": 1, "cmd": "tweet", "handle": "@a", "text": ["hi"]},
    {"id": 1, "cmd": "tweet", "handle": "@a", "text": None},
    {"id": 1, "cmd": "end-tweet", "handle": "@a", "tid": True, "reached": 0, "skipped": []},
    {"id": 1, "cmd": "end-tweet", "handle": "@a", "tid": 1, "reached": 1.5, "skipped": []},
    {"id": 1, "cmd": "end-tweet", "handle": "@a", "tid": "1", "reached": 0, "skipped": []},
    {"id": 1, "cmd": "end-tweet", "handle": "@a", "tid": 1, "reached": 0, "skipped": "@b"},
    {"id": 1, "cmd": "exit", "handle": {"h": "@a"}},
    {"id": 1, "cmd": "exit-complete"},
])
def test_bad_arguments(obj: dict[str, Any]) -> None:
    assert request_error(dump(obj)) == "BAD_REQUEST"


EXAMPLES: list[dict[str, Any]] = [
    {"id": 3, "cmd": "register", "handle": "@a", "ip": "1.2.3.4", "ports": [1, 2, 3],
     "password": "pw", "key": "k"},
    {"id": 3, "cmd": "login", "handle": "@a", "ip": "1.2.3.4", "ports": [1, 2, 3],
     "password": "pw", "key": "k"},
    {"id": 3, "cmd": "logout"},
    {"id": 3, "cmd": "online"},
    {"id": 3, "cmd": "followers"},
    {"id": 3, "cmd": "followers", "handle": "@b"},
    {"id": 3, "cmd": "following"},
    {"id": 3, "cmd": "following", "handle": "@b"},
    {"id": 3, "cmd": "feed"},
    {"id": 3, "cmd": "feed", "count": 5},
    {"id": 3, "cmd": "retweet", "tid": 12},
    {"id": 3, "cmd": "search", "tag": "#x"},
    {"id": 3, "cmd": "trending"},
    {"id": 3, "cmd": "query-handles"},
    {"id": 3, "cmd": "follow", "follower": "@a", "followee": "@b"},
    {"id": 3, "cmd": "drop", "follower": "@a", "followee": "@b"},
    {"id": 3, "cmd": "tweet", "handle": "@a", "text": "hi"},
    {"id": 3, "cmd": "end-tweet", "handle": "@a", "tid": 1, "reached": 2, "skipped": ["@c"]},
    {"id": 3, "cmd": "exit", "handle": "@a"},
    {"id": 3, "cmd": "exit-complete", "handle": "@a"},
]


@pytest.mark.parametrize("obj", EXAMPLES)
def test_every_command_decodes(obj: dict[str, Any]) -> None:
    request = decode_request(dump(obj))
    assert request.id == 3
    assert request.cmd == obj["cmd"]
    assert request.args == {k: v for k, v in obj.items() if k not in ("id", "cmd")}


def test_values_are_not_validated_by_the_wire() -> None:
    # Handles, addresses and texts are checked by the tracker core, which answers the reason.
    request = decode_request(dump({"id": 1, "cmd": "tweet", "handle": "nope", "text": ""}))
    assert request.args == {"handle": "nope", "text": ""}


# ---- size ------------------------------------------------------------------------------------

def tweet_frame_of(size: int) -> bytes:
    head = encode_request(Request(1, "tweet", {"handle": "@a", "text": ""}))
    frame = encode_request(Request(1, "tweet", {"handle": "@a", "text": "x" * (size - len(head))}))
    assert len(frame) == size
    return frame


def test_a_frame_of_exactly_frame_max_bytes_is_accepted() -> None:
    frame = tweet_frame_of(limits.FRAME_MAX)
    assert decode_request(frame).cmd == "tweet"
    base = encode_reply(Reply(1, SUCCESS, ""))
    reply = encode_reply(Reply(1, SUCCESS, "y" * (limits.FRAME_MAX - len(base))))
    assert len(reply) == limits.FRAME_MAX
    assert decode_server_frame(reply).ok


def test_one_byte_more_is_too_large() -> None:
    frame = tweet_frame_of(limits.FRAME_MAX + 1)
    assert request_error(frame) == "TOO_LARGE"


def test_lines_from_the_tracker_may_be_longer() -> None:
    # The reply to a tweet lists every online follower with its key: 50 of them make 7 KB.
    peer = ["@abcdefghijklmno", "192.168.100.200", 65001, 65002, 65003, "k" * 88]
    reply = encode_reply(Reply(1, SUCCESS, "tweet #1", None, {"followers": [peer] * 50}))
    assert limits.FRAME_MAX < len(reply) <= limits.SERVER_FRAME_MAX
    assert decode_server_frame(reply).data["followers"][49] == peer
    base = encode_reply(Reply(1, SUCCESS, ""))
    most = encode_reply(Reply(1, SUCCESS, "y" * (limits.SERVER_FRAME_MAX - len(base))))
    assert len(most) == limits.SERVER_FRAME_MAX and decode_server_frame(most).ok
    assert server_error(most[:-1] + b"y\n") == "TOO_LARGE"


def test_too_large_comes_before_any_parsing() -> None:
    junk = b"\xff" * (limits.FRAME_MAX + 1)
    assert request_error(junk) == "TOO_LARGE"
    assert server_error(b"\xff" * (limits.SERVER_FRAME_MAX + 1)) == "TOO_LARGE"
    assert request_error(b"[" * 100_000) == "TOO_LARGE"


@FAST
@given(st.binary(max_size=300), st.binary(min_size=1, max_size=1), st.integers(1, 5000))
def test_every_oversize_frame_is_too_large(head: bytes, pad: bytes, extra: int) -> None:
    assert request_error(head.ljust(limits.FRAME_MAX + extra, pad)) == "TOO_LARGE"
    assert server_error(head.ljust(limits.SERVER_FRAME_MAX + extra, pad)) == "TOO_LARGE"


def test_too_large_error_carries_code_and_message() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_request(b" " * (limits.FRAME_MAX + 1))
    assert caught.value.code == "TOO_LARGE"
    assert str(limits.FRAME_MAX) in caught.value.message
    assert str(caught.value) == caught.value.message


# ---- round trips -----------------------------------------------------------------------------

def assert_one_line(frame: bytes) -> None:
    assert frame.endswith(b"\n")
    assert frame.count(b"\n") == 1


@FAST
@given(valid_requests())
def test_request_round_trip(request: Request) -> None:
    frame = encode_request(request)
    assert_one_line(frame)
    assert frame.startswith(b'{"id":')
    if len(frame) <= limits.FRAME_MAX:
        assert decode_request(frame) == request
    else:
        assert request_error(frame) == "TOO_LARGE"


@FAST
@given(valid_replies())
def test_reply_round_trip(reply: Reply) -> None:
    frame = encode_reply(reply)
    assert_one_line(frame)
    assert frame.startswith(b'{"re":')
    decoded = decode_server_frame(frame)
    assert decoded == reply
    assert isinstance(decoded, Reply)
    assert decoded.ok is (reply.status == SUCCESS)


@FAST
@given(valid_pushes())
def test_push_round_trip(push: Push) -> None:
    frame = encode_push(push)
    assert_one_line(frame)
    assert frame.startswith(b'{"push":')
    assert decode_server_frame(frame) == push


def test_success_and_failure_helpers() -> None:
    good = success("done", count=2, handles=["@a", "@b"])
    assert good == Reply(None, SUCCESS, "done", None, {"count": 2, "handles": ["@a", "@b"]})
    assert good.ok
    bad = failure("UNKNOWN_HANDLE", "@x is not registered")
    assert bad == Reply(None, FAILURE, "@x is not registered", "UNKNOWN_HANDLE")
    assert not bad.ok
    assert decode_server_frame(encode_reply(Reply(4, bad.status, bad.message, bad.code))) \
        == Reply(4, FAILURE, "@x is not registered", "UNKNOWN_HANDLE")


def test_reply_wire_form() -> None:
    frame = encode_reply(Reply(7, FAILURE, "@a is already registered", "DUPLICATE_HANDLE"))
    assert json.loads(frame) == {"re": 7, "status": "FAILURE", "code": "DUPLICATE_HANDLE",
                                 "message": "@a is already registered"}
    ok = encode_reply(Reply(7, SUCCESS, "fine"))
    assert json.loads(ok) == {"re": 7, "status": "SUCCESS", "message": "fine"}


def test_text_is_sent_as_utf8_not_escaped() -> None:
    frame = encode_request(Request(1, "tweet", {"handle": "@a", "text": "héllo 🎉\nnext"}))
    assert "héllo 🎉".encode() in frame
    assert decode_request(frame).args["text"] == "héllo 🎉\nnext"


# ---- server frames ---------------------------------------------------------------------------

def test_a_push_is_told_from_a_reply() -> None:
    assert decode_server_frame(b'{"push":"notice","text":"hi"}\n') == Push("notice", {"text": "hi"})
    assert decode_server_frame(b'{"re":1,"status":"SUCCESS","message":"ok"}\n') \
        == Reply(1, SUCCESS, "ok")
    # a frame naming a push is a push, whatever else it holds
    assert decode_server_frame(b'{"push":"x","re":1}\n') == Push("x", {"re": 1})


def test_a_reply_without_re_or_message() -> None:
    assert decode_server_frame(b'{"status":"SUCCESS"}') == Reply(None, SUCCESS, "")


@pytest.mark.parametrize("obj", [
    {},
    {"re": 1},
    {"re": 1, "status": "OK", "message": "x"},
    {"re": 1, "status": "success", "message": "x"},
    {"re": 1, "status": None, "message": "x"},
    {"re": 1, "status": ["SUCCESS"], "message": "x"},
    {"re": "1", "status": "SUCCESS", "message": "x"},
    {"re": True, "status": "SUCCESS", "message": "x"},
    {"re": 1.0, "status": "SUCCESS", "message": "x"},
    {"re": 1, "status": "SUCCESS", "message": 5},
    {"re": 1, "status": "FAILURE", "message": "x"},
    {"re": 1, "status": "FAILURE", "message": "x", "code": 3},
    {"push": 5},
    {"push": None},
    {"push": ["notice"]},
])
def test_bad_server_frames(obj: dict[str, Any]) -> None:
    assert server_error(dump(obj)) == "BAD_FRAME"


@pytest.mark.parametrize("value", [-1, 2**53, 2**64])
def test_integer_fields_are_whole_numbers_below_2_to_the_53(value: int) -> None:
    frame = json.dumps({"id": 1, "cmd": "retweet", "tid": value}).encode()
    with pytest.raises(ProtocolError) as caught:
        decode_request(frame)
    assert caught.value.code == "BAD_REQUEST"
