"""What the tracker says, as typed values: one small frozen class per reply and per push.

The core (``protocol.tracker_core``) builds them; ``tracker.py`` sends ``to_wire()`` as one JSON
line; ``user.py`` turns what it reads back into the same classes::

    TrackerCore ── TweetReply(re=7, message=…, tid=12, …) ──to_wire()──> {"re": 7, "status": …}
    {"re": 7, …} ──answer_from_wire("tweet", obj)──> TweetReply     (user.py knows it sent tweet)
    {"push": "presence", …} ──notice_from_wire(obj)──> PresencePush

Every reply (:class:`Answer`) has ``re`` (the id of the request it answers) and ``message`` (a
sentence for people); a :class:`Failure` adds its ``code``.  Every push (:class:`Notice`) has a
``kind``.  The other fields are the data of PROTOCOL.md §1, each declared with its wire codec
(``field(metadata=…)`` below), so encoding and checking are written once.

``from_wire`` is strict: a missing field, a field of the wrong type or a peer tuple that is not
one raises :class:`~protocol.wire.ProtocolError` (code ``BAD_REPLY``), and nothing else — so a
program can catch that one error at its edge and let every other exception be the bug it is.
Fields it does not know are ignored (a newer tracker may send more).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar, TypeVar

from protocol.ring import Peer
from protocol.store import Tweet
from protocol.validate import is_handle, is_whole_number
from protocol.wire import FAILURE, SUCCESS, ProtocolError

# ---- field codecs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    """How one field travels: ``encode`` makes the JSON value, ``decode`` checks and reads it
    (raising ValueError or TypeError when it is not what the protocol says)."""

    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]
    optional: bool = False          # absent from the wire when None


def _same(value: Any) -> Any:
    return value


def _checked(test: Callable[[Any], bool], what: str) -> Callable[[Any], Any]:
    def decode(value: Any) -> Any:
        if not test(value):
            raise ValueError(f"not {what}")
        return value
    return decode


def _list_of(item: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, ...]]:
    def decode(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise ValueError("not a list")
        return tuple(item(element) for element in value)
    return decode


def _is_count(value: Any) -> bool:
    """Ids and counts: whole numbers from 0 to 2**53 (what JSON numbers carry exactly)."""
    return is_whole_number(value) and 0 <= value < 2**53


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _tweet(row: Any) -> Tweet:
    if not isinstance(row, list) or len(row) != 5:
        raise ValueError("a tweet is [id, author, created, text, retweet_of]")
    tid, author, created, text, retweet_of = row
    if not (_is_count(tid) and is_handle(author) and _is_number(created)
            and isinstance(text, str) and (retweet_of is None or _is_count(retweet_of))):
        raise ValueError("not a tweet row")
    return Tweet(tid, author, text, created, retweet_of)


def _pair(first: Callable[[Any], bool], second: Callable[[Any], bool]
          ) -> Callable[[Any], tuple[Any, Any]]:
    def decode(row: Any) -> tuple[Any, Any]:
        if not isinstance(row, list) or len(row) != 2 or not first(row[0]) \
                or not second(row[1]):
            raise ValueError("not a pair of the expected kind")
        return row[0], row[1]
    return decode


def _peer_list(peers: tuple[Peer, ...]) -> list[list[object]]:
    return [peer.as_list() for peer in peers]


TEXT = {"wire": Codec(_same, _checked(lambda v: isinstance(v, str), "text"))}
WHOLE = {"wire": Codec(_same, _checked(_is_count, "a whole number from 0 to 2**53"))}
NUMBER = {"wire": Codec(_same, _checked(_is_number, "a number"))}
FLAG = {"wire": Codec(_same, _checked(lambda v: isinstance(v, bool), "true or false"))}
HANDLE = {"wire": Codec(_same, _checked(is_handle, "a handle"))}
MAYBE_HANDLE = {"wire": Codec(_same, _checked(is_handle, "a handle"), optional=True)}
MAYBE_WHOLE = {"wire": Codec(_same, _checked(_is_count, "a whole number from 0 to 2**53"),
                             optional=True)}
HANDLES = {"wire": Codec(list, _list_of(_checked(is_handle, "a handle")))}
MAYBE_PEER = {"wire": Codec(lambda p: p.as_list(), Peer.from_list, optional=True)}
PEER = {"wire": Codec(lambda p: p.as_list(), Peer.from_list)}
PEERS = {"wire": Codec(_peer_list, _list_of(Peer.from_list))}
MAYBE_PEERS = {"wire": Codec(_peer_list, _list_of(Peer.from_list), optional=True)}
TWEETS = {"wire": Codec(lambda ts: [t.as_list() for t in ts], _list_of(_tweet))}
TAGS = {"wire": Codec(lambda rows: [list(r) for r in rows],
                      _list_of(_pair(lambda t: isinstance(t, str), _is_count)))}
ONLINE = {"wire": Codec(lambda rows: [list(r) for r in rows],
                        _list_of(_pair(is_handle, lambda f: isinstance(f, bool))))}


@cache
def _wire_fields(cls: type) -> tuple[tuple[str, Codec], ...]:
    """The data fields of a message class with their codecs (``re`` and ``message`` aside)."""
    return tuple((f.name, f.metadata["wire"]) for f in dataclasses.fields(cls)
                 if "wire" in f.metadata)


def _data(message: Any) -> dict[str, Any]:
    out = {}
    for name, codec in _wire_fields(type(message)):
        value = getattr(message, name)
        if value is not None or not codec.optional:
            out[name] = codec.encode(value)
    return out


def _read_fields(cls: type, obj: dict[str, Any], what: str) -> dict[str, Any]:
    values = {}
    for name, codec in _wire_fields(cls):
        if name not in obj or (obj[name] is None and codec.optional):
            if not codec.optional:
                raise ProtocolError("BAD_REPLY", f"{what} lacks its {name!r}")
            values[name] = None
            continue
        try:
            values[name] = codec.decode(obj[name])
        except (ValueError, TypeError) as error:
            raise ProtocolError("BAD_REPLY", f"{what}: {name!r} is {error}") from None
    return values


# ---- replies ----------------------------------------------------------------------------------
A = TypeVar("A", bound="Answer")


@dataclass(frozen=True, kw_only=True)
class Answer:
    """A SUCCESS reply with no data (the base of every reply)."""

    re: int | None = None           # the request's id; None when it could not be read
    message: str                    # a sentence for people

    ok: ClassVar[bool] = True

    @property
    def status(self) -> str:
        return SUCCESS if self.ok else FAILURE

    def answering(self: A, re: int | None) -> A:
        """This reply as the answer to request ``re``.  A copy of the fields as they are,
        without ``dataclasses.replace``'s second pass through ``__init__``: every reply
        takes this step, and the fields were checked when it was made."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__, re=re)
        return copy

    def to_wire(self) -> dict[str, Any]:
        return {"re": self.re, "status": SUCCESS, "message": self.message, **_data(self)}

    @classmethod
    def from_wire(cls: type[A], obj: dict[str, Any]) -> A:
        what = f"a {cls.__name__}"
        if obj.get("status") != (SUCCESS if cls.ok else FAILURE):
            raise ProtocolError("BAD_REPLY", f"{what} with status {obj.get('status')!r:.20}")
        re, message = obj.get("re"), obj.get("message")
        if (re is not None and not is_whole_number(re)) or not isinstance(message, str):
            raise ProtocolError("BAD_REPLY", f"{what} needs a whole 're' and a 'message'")
        return cls(re=re, message=message, **_read_fields(cls, obj, what))


Done = Answer       # logout, drop, exit-complete, auth, heartbeat, block, unblock, message-…


@dataclass(frozen=True, kw_only=True)
class Failure(Answer):
    """A FAILURE: ``code`` says why in one word, ``message`` in a sentence."""

    code: str = field(metadata=TEXT)
    ok: ClassVar[bool] = False

    def to_wire(self) -> dict[str, Any]:
        return {"re": self.re, "status": FAILURE, "code": self.code, "message": self.message}


@dataclass(frozen=True, kw_only=True)
class RegisterReply(Answer):
    handle: str = field(metadata=HANDLE)            # as registered


@dataclass(frozen=True, kw_only=True)
class LoginReply(Answer):
    handle: str = field(metadata=HANDLE)            # as registered
    new: int = field(metadata=WHOLE)                # tweets in the feed it has not had
    blocked: tuple[str, ...] = field(metadata=HANDLES)  # its peer refuses their messages
    kept: int = field(metadata=WHOLE)               # messages waiting: pushed in pages next


@dataclass(frozen=True, kw_only=True)
class QueryHandlesReply(Answer):
    """One page of every handle: ``count`` is how many there are in all, ``handles`` this
    page, and ``next``, when more follow, the ``after`` that asks for the next page."""

    count: int = field(metadata=WHOLE)
    handles: tuple[str, ...] = field(metadata=HANDLES)
    next: str | None = field(default=None, metadata=MAYBE_HANDLE)


@dataclass(frozen=True, kw_only=True)
class FollowReply(Answer):
    peer: Peer | None = field(default=None, metadata=MAYBE_PEER)  # the followee, when online


@dataclass(frozen=True, kw_only=True)
class ListReply(Answer):
    """followers and following: whose list, and one page of the handles in it (``count`` in
    all; ``next``, when more follow, asks for the next page).  Your own ``following`` also
    carries ``peers``: the tuples (with their keys) of the page's handles that are online."""

    handle: str = field(metadata=HANDLE)
    count: int = field(metadata=WHOLE)
    handles: tuple[str, ...] = field(metadata=HANDLES)
    peers: tuple[Peer, ...] | None = field(default=None, metadata=MAYBE_PEERS)
    next: str | None = field(default=None, metadata=MAYBE_HANDLE)


@dataclass(frozen=True, kw_only=True)
class TweetReply(Answer):
    """tweet and retweet: the stored tweet and the online followers to run the ring with."""

    tid: int = field(metadata=WHOLE)
    text: str = field(metadata=TEXT)
    count: int = field(metadata=WHOLE)
    followers: tuple[Peer, ...] = field(metadata=PEERS)


@dataclass(frozen=True, kw_only=True)
class EndTweetReply(Answer):
    reached: int = field(metadata=WHOLE)
    skipped: tuple[str, ...] = field(metadata=HANDLES)     # reported, and handed out
    relayed: tuple[str, ...] = field(metadata=HANDLES)     # alive: the tracker pushed it


@dataclass(frozen=True, kw_only=True)
class ExitReply(Answer):
    followers: tuple[Peer, ...] = field(metadata=PEERS)     # online: they hold its ring


@dataclass(frozen=True, kw_only=True)
class OnlineReply(Answer):
    count: int = field(metadata=WHOLE)
    online: tuple[tuple[str, bool], ...] = field(metadata=ONLINE)   # (handle, you follow it)


@dataclass(frozen=True, kw_only=True)
class TweetsReply(Answer):
    """feed and search: a page of tweets, newest first; ``next``, when older ones follow,
    is the ``before`` that asks for them."""

    count: int = field(metadata=WHOLE)
    tweets: tuple[Tweet, ...] = field(metadata=TWEETS)
    next: int | None = field(default=None, metadata=MAYBE_WHOLE)


@dataclass(frozen=True, kw_only=True)
class TrendingReply(Answer):
    count: int = field(metadata=WHOLE)
    tags: tuple[tuple[str, int], ...] = field(metadata=TAGS)       # ("#tag", uses)


@dataclass(frozen=True, kw_only=True)
class SayReply(Answer):
    count: int = field(metadata=WHOLE)              # listeners


@dataclass(frozen=True, kw_only=True)
class MessageReply(Answer):
    message_id: int = field(metadata=WHOLE)
    to: str = field(metadata=HANDLE)
    peer: Peer | None = field(default=None, metadata=MAYBE_PEER)  # the recipient, when online


# The reply class of each command's SUCCESS (every FAILURE is a Failure).
ANSWERS: dict[str, type[Answer]] = {
    "register": RegisterReply, "login": LoginReply, "logout": Done,
    "query-handles": QueryHandlesReply, "follow": FollowReply, "drop": Done,
    "tweet": TweetReply,
    "end-tweet": EndTweetReply, "exit": ExitReply, "exit-complete": Done,
    "online": OnlineReply, "followers": ListReply, "following": ListReply, "feed": TweetsReply,
    "retweet": TweetReply, "search": TweetsReply, "trending": TrendingReply, "auth": Done,
    "heartbeat": Done, "say": SayReply, "message": MessageReply, "message-received": Done,
    "message-undelivered": Done, "block": Done, "unblock": Done,
}


def answer_from_wire(cmd: str, obj: dict[str, Any]) -> Answer:
    """The reply to a ``cmd`` request, read strictly from its JSON object."""
    if obj.get("status") == FAILURE:
        return Failure.from_wire(obj)
    if cmd not in ANSWERS:
        raise ProtocolError("BAD_REPLY", f"no reply is defined for {cmd!r:.30}")
    return ANSWERS[cmd].from_wire(obj)


# ---- pushes -----------------------------------------------------------------------------------
N = TypeVar("N", bound="Notice")


@dataclass(frozen=True, kw_only=True)
class Notice:
    """A push: something the tracker tells a session without being asked."""

    kind: ClassVar[str]

    def to_wire(self) -> dict[str, Any]:
        return {"push": self.kind, **_data(self)}

    @classmethod
    def from_wire(cls: type[N], obj: dict[str, Any]) -> N:
        if obj.get("push") != cls.kind:
            raise ProtocolError("BAD_REPLY", f"not a {cls.kind} push")
        return cls(**_read_fields(cls, obj, f"a {cls.kind} push"))


@dataclass(frozen=True, kw_only=True)
class WelcomePush(Notice):
    kind: ClassVar[str] = "welcome"
    server: str = field(metadata=TEXT)
    password_required: bool = field(metadata=FLAG)


@dataclass(frozen=True, kw_only=True)
class PresencePush(Notice):
    kind: ClassVar[str] = "presence"
    handle: str = field(metadata=HANDLE)
    online: bool = field(metadata=FLAG)
    peer: Peer | None = field(default=None, metadata=MAYBE_PEER)   # its new tuple, when online


@dataclass(frozen=True, kw_only=True)
class FollowedPush(Notice):
    kind: ClassVar[str] = "followed"
    by: str = field(metadata=HANDLE)


@dataclass(frozen=True, kw_only=True)
class SayPush(Notice):
    kind: ClassVar[str] = "say"
    sender: str = field(metadata=HANDLE)
    text: str = field(metadata=TEXT)


@dataclass(frozen=True, kw_only=True)
class MessagePush(Notice):
    kind: ClassVar[str] = "message"
    id: int = field(metadata=WHOLE)
    sender: str = field(metadata=HANDLE)
    text: str = field(metadata=TEXT)
    created: float = field(metadata=NUMBER)
    kept: bool = field(metadata=FLAG)               # came through the tracker, not a peer


@dataclass(frozen=True, kw_only=True)
class TweetPush(Notice):
    """A tweet the ring did not bring: the author skipped this live follower, or the round
    ended without ``end-tweet``.  A peer shows a tweet once, by (author, tid)."""

    kind: ClassVar[str] = "tweet"
    author: str = field(metadata=HANDLE)
    tid: int = field(metadata=WHOLE)
    text: str = field(metadata=TEXT)
    created: float = field(metadata=NUMBER)


@dataclass(frozen=True, kw_only=True)
class PeerPush(Notice):
    """The tuple (and keys) of a peer about to send this session a direct message."""

    kind: ClassVar[str] = "peer"
    peer: Peer = field(metadata=PEER)


NOTICES: dict[str, type[Notice]] = {cls.kind: cls for cls in (
    WelcomePush, PresencePush, FollowedPush, SayPush, MessagePush, TweetPush, PeerPush)}


def notice_from_wire(obj: dict[str, Any]) -> Notice:
    """A push, read strictly from its JSON object."""
    kind = obj.get("push")
    if not isinstance(kind, str) or kind not in NOTICES:
        raise ProtocolError("BAD_REPLY", f"unknown push {kind!r:.30}")
    return NOTICES[kind].from_wire(obj)
