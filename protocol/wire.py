"""The tracker's wire format: one UTF-8 JSON object per line, at most ``FRAME_MAX`` bytes.

Three shapes travel on a session connection, told apart by their first key::

    request  (user -> tracker)  {"id": 7, "cmd": "follow", "follower": "@b", "followee": "@a"}
    reply    (tracker -> user)  {"re": 7, "status": "SUCCESS", "message": "..."}
                                {"re": 7, "status": "FAILURE", "code": "UNKNOWN_HANDLE",
                                 "message": "..."}
    push     (tracker -> user)  {"push": "presence", "handle": "@a", "online": true}

A reply names the request it answers (``re``); a push has no ``re``.  ``decode_request`` and
``decode_server_frame`` never raise anything but :class:`ProtocolError`, whose ``code`` is the
reason the tracker answers with.

This module is the framing and the requests.  What the tracker says back is typed in
``protocol/messages.py``: the tracker encodes those classes with :func:`encode_object`, and a
user reads a line with :func:`load_object` and then ``messages.answer_from_wire`` or
``messages.notice_from_wire``.  :class:`Reply` and :class:`Push` are the untyped envelopes of
the same frames, kept for code that has not moved to the typed classes yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from protocol import limits
from protocol.validate import is_whole_number

SUCCESS = "SUCCESS"
FAILURE = "FAILURE"

# Argument names and JSON types of every request; a name ending in "?" is optional.
# `int` excludes bool (checked below).
COMMANDS: dict[str, dict[str, type]] = {
    # `key`: the session's public keys (protocol.auth), handed out with its tuple.
    "register": {"handle": str, "ip": str, "ports": list, "password": str, "key": str},
    "login": {"handle": str, "ip": str, "ports": list, "password": str, "key": str},
    "logout": {},
    # Lists come in pages (PROTOCOL.md §1.2): `after` a handle, `before` a tweet id, and the
    # reply's `next` is the value that asks for the page after it.
    "query-handles": {"after?": str, "limit?": int},
    "follow": {"follower": str, "followee": str},
    "drop": {"follower": str, "followee": str},
    "tweet": {"handle": str, "text": str},
    "end-tweet": {"handle": str, "tid": int, "reached": int, "skipped": list},
    "exit": {"handle": str},
    "exit-complete": {"handle": str},
    "online": {},
    "followers": {"handle?": str, "after?": str, "limit?": int},
    "following": {"handle?": str, "after?": str, "limit?": int},
    "feed": {"count?": int, "before?": int},
    "retweet": {"tid": int},
    "search": {"tag": str, "count?": int, "before?": int},
    "trending": {},
    "auth": {"password": str},
    "heartbeat": {},
    # `from` is accepted and ignored: the tracker always names the session's own handle.
    "say": {"text": str, "from?": str},
    "message": {"to": str, "text": str},
    "message-received": {"message_id": int},
    "message-undelivered": {"message_id": int},
    "block": {"handle": str},
    "unblock": {"handle": str},
}


@dataclass(frozen=True)
class _Schema:
    """A command's arguments, as ``decode_request`` checks them."""

    kinds: dict[str, type]          # every argument name -> its JSON type
    required: frozenset[str]
    usage: str                      # the names, for the BAD_REQUEST sentence


_SCHEMAS = {cmd: _Schema({name.rstrip("?"): kind for name, kind in spec.items()},
                         frozenset(name for name in spec if not name.endswith("?")),
                         ", ".join(spec) or "nothing")
            for cmd, spec in COMMANDS.items()}
# Compact JSON, UTF-8 as it is (the encoder is made once: the hot path encodes every reply).
# What is encoded is a fresh tree of dicts and lists (``to_wire``), never circular: the check
# for cycles would only cost time.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                           check_circular=False).encode
_ENCODE_ASCII = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
_DECODE = json.JSONDecoder().raw_decode
_JSON_SPACE = " \t\n\r"     # white space to JSON (str.strip() alone would take more)


class ProtocolError(Exception):
    """A frame that is not a well-formed message; ``code`` is the FAILURE reason, and
    ``request_id`` the request's id when it could be read (the reply then names it)."""

    def __init__(self, code: str, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


class Request(NamedTuple):
    """One decoded request (a named tuple: every request makes one, and they are cheap)."""

    id: int
    cmd: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    re: int | None
    status: str
    message: str
    code: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS


@dataclass(frozen=True)
class Push:
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


def load_object(frame: bytes, most: int = limits.FRAME_MAX) -> dict[str, Any]:
    """One frame of at most ``most`` bytes as a JSON object; ProtocolError (TOO_LARGE,
    BAD_FRAME) if it is not one.  Requests are bounded by ``FRAME_MAX``; what the tracker
    sends by ``SERVER_FRAME_MAX`` (the reply to a tweet lists every online follower)."""
    if len(frame) > most:
        raise ProtocolError("TOO_LARGE", f"a frame has at most {most} bytes")
    try:
        # json.loads, without its two regular-expression scans for white space: every
        # request and reply passes here.
        text = frame.decode("utf-8").strip(_JSON_SPACE)
        value, end = _DECODE(text)
        if end != len(text):
            raise ValueError("more after the object")
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError("BAD_FRAME", "a frame is one UTF-8 JSON object per line") from None
    if not isinstance(value, dict):
        raise ProtocolError("BAD_FRAME", "a frame is one JSON object")
    return value


def decode_request(frame: bytes) -> Request:
    """Parse one request line (the trailing newline may be present)."""
    obj = load_object(frame)
    request_id, cmd = obj.get("id"), obj.get("cmd")
    if type(request_id) is not int or not 0 <= request_id < 2**53:   # (bool is no int here)
        raise ProtocolError("BAD_FRAME", "a request needs an integer 'id'")
    schema = _SCHEMAS.get(cmd) if isinstance(cmd, str) else None
    if schema is None:
        raise ProtocolError("UNKNOWN_COMMAND", f"unknown command {cmd!r}", request_id)
    del obj["id"], obj["cmd"]
    args = obj                      # what is left are the arguments
    if not schema.required <= args.keys() <= schema.kinds.keys():
        raise ProtocolError("BAD_REQUEST", f"{cmd} takes: {schema.usage}", request_id)
    for name, value in args.items():
        kind = schema.kinds[name]
        # Integers are ids and counts: JSON may carry any size, SQLite and the ring may not.
        if kind is int:
            good = type(value) is int and 0 <= value < 2**53
        else:
            good = isinstance(value, kind)
        if not good:
            raise ProtocolError("BAD_REQUEST", f"{cmd}: {name!r} must be "
                                + ("a whole number from 0 to 2**53" if kind is int
                                   else f"a {kind.__name__}"), request_id)
    return Request(request_id, cmd, args)


def decode_server_frame(frame: bytes) -> Reply | Push:
    """Parse one line from the tracker: a reply or a push."""
    obj = load_object(frame, limits.SERVER_FRAME_MAX)
    if "push" in obj:
        kind = obj.pop("push")
        if not isinstance(kind, str):
            raise ProtocolError("BAD_FRAME", "a push names its kind")
        return Push(kind, obj)
    re_id, status, message = obj.pop("re", None), obj.pop("status", None), obj.pop("message", "")
    code = obj.pop("code", None)
    if (re_id is not None and not is_whole_number(re_id)) or status not in (SUCCESS, FAILURE) \
            or not isinstance(message, str) or (status == FAILURE and not isinstance(code, str)):
        raise ProtocolError("BAD_FRAME", "not a reply or a push")
    return Reply(re_id, status, message, code, obj)


def encode_object(obj: dict[str, Any]) -> bytes:
    """One JSON object as a frame: compact UTF-8 and a newline."""
    try:
        return (_ENCODE(obj) + "\n").encode()
    except UnicodeEncodeError:
        # A lone surrogate (JSON can carry one in, e.g. echoed in a FAILURE message) has no
        # UTF-8 form: JSON's own \uXXXX escapes carry it out again.
        return (_ENCODE_ASCII(obj) + "\n").encode("ascii")


def encode_request(request: Request) -> bytes:
    return encode_object({"id": request.id, "cmd": request.cmd, **request.args})


def encode_reply(reply: Reply) -> bytes:
    obj: dict[str, Any] = {"re": reply.re, "status": reply.status}
    if reply.code:
        obj["code"] = reply.code
    obj["message"] = reply.message
    obj.update(reply.data)
    return encode_object(obj)


def encode_push(push: Push) -> bytes:
    return encode_object({"push": push.kind, **push.data})


def success(message: str, **data: Any) -> Reply:
    """A SUCCESS reply whose ``re`` the connection fills in."""
    return Reply(None, SUCCESS, message, None, data)


def failure(code: str, message: str) -> Reply:
    return Reply(None, FAILURE, message, code)
