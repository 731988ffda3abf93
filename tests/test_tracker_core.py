"""Unit tests of protocol.tracker_core: what the tracker answers, without sockets or threads.

The core is a state machine: a test feeds it requests and a clock reading, runs the password work
it hands back as the tracker would (outside any lock), and reads what it decided from its outbox.
Time is a number the test moves forward; nothing here sleeps or starts a thread.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from conftest import SAMPLE_KEY

from protocol import datagrams, limits
from protocol.accounts import LoginThrottle, PasswordHasher
from protocol.messages import Answer, Failure, MessagePush, Notice
from protocol.store import MemoryStore
from protocol.tracker_core import PasswordWork, Session, TrackerCore
from protocol.validate import check_text
from protocol.wire import Request

PASSWORD = "correct horse"
CHEAP_HASHER = PasswordHasher(n=2, r=1, p=1)     # command semantics, not hashing cost
WALL = 1_700_000_000.0                          # the wall clock the core stamps tweets with


class Net:
    """A TrackerCore, a clock, and a few sessions talking to it.

    ``call`` returns the reply to the request it sends; everything else the core decided on
    the way is kept: pushes in ``pushes``, replies to earlier requests (an ``exit`` answered
    late) in ``later``.
    """

    def __init__(self, **options: Any) -> None:
        self.logs: list[str] = []
        self.now = 1000.0
        options.setdefault("log", self.logs.append)
        options.setdefault("hasher", CHEAP_HASHER)
        options.setdefault("wall_clock", lambda: WALL)
        self.core = TrackerCore(**options)
        self.store = self.core.model            # the state as the core sees it
        self.pushes: list[tuple[Session, Notice]] = []
        self.later: list[tuple[Session, Answer]] = []
        self._ids = itertools.count(1)
        self._ports = itertools.count(20000, 3)

    def session(self, name: str, address: str = "127.0.0.1") -> Session:
        return Session(name, address, self.now)

    def start(self, session: Session, cmd: str, **args: Any) -> tuple[int, PasswordWork | None]:
        """Send a request; its id, and the password work it left (register, login)."""
        request = Request(next(self._ids), cmd, args)
        return request.id, self.core.execute(session, request, self.now)

    def finish(self, session: Session, work: PasswordWork) -> None:
        self.core.resume(session, work, work.run(), self.now)

    def call(self, session: Session, cmd: str, **args: Any) -> Answer | None:
        """Send a request and run it to its end; its reply, or None when it comes later."""
        re, work = self.start(session, cmd, **args)
        if work is not None:
            self.finish(session, work)
        return self.reply(session, re)

    def reply(self, session: Session, re: int) -> Answer | None:
        """The reply to request ``re`` among what the core decided (the rest is kept)."""
        found = None
        for to, message in self.later:
            if to is session and message.re == re:
                self.later.remove((to, message))
                return message
        for to, message in self.core.take_outbox():
            if isinstance(message, Notice):
                self.pushes.append((to, message))
            elif to is session and message.re == re and found is None:
                found = message
            else:
                self.later.append((to, message))
        if found is not None:
            assert isinstance(found.message, str) and found.message
        return found

    def ok(self, session: Session, cmd: str, **args: Any) -> Answer:
        reply = self.call(session, cmd, **args)
        assert reply is not None and reply.ok, reply
        return reply

    def advance(self, seconds: float) -> None:
        """Time passes: the reaper's tick."""
        self.now += seconds
        self.core.tick(self.now)
        self.reply(Session("nobody", "0.0.0.0", 0.0), -1)

    def ports(self) -> list[int]:
        base = next(self._ports)
        return [base, base + 1, base + 2]

    def register(self, session: Session, handle: str, ip: str | None = None,
                 ports: list[Any] | None = None, password: Any = PASSWORD) -> Answer | None:
        return self.call(session, "register", handle=handle, ip=ip or session.address,
                         key=SAMPLE_KEY, ports=self.ports() if ports is None else ports,
                         password=password)

    def login(self, session: Session, handle: str, password: Any = PASSWORD,
              ip: str | None = None, ports: list[Any] | None = None) -> Answer | None:
        return self.call(session, "login", handle=handle, ip=ip or session.address,
                         key=SAMPLE_KEY, ports=self.ports() if ports is None else ports,
                         password=password)

    def join(self, handle: str, ip: str = "127.0.0.1") -> Session:
        session = self.session(f"test {handle}", ip)
        reply = self.register(session, handle)
        assert reply is not None and reply.ok, reply
        return session

    def follow(self, session: Session, followee: str) -> None:
        assert session.handle is not None
        self.ok(session, "follow", follower=session.handle, followee=followee)

    def tweet(self, session: Session, text: str = "hello") -> Any:
        assert session.handle is not None
        return self.call(session, "tweet", handle=session.handle, text=text)

    def end(self, session: Session, tid: int, reached: int = 0,
            skipped: list[object] | None = None) -> Any:
        assert session.handle is not None
        return self.call(session, "end-tweet", handle=session.handle, tid=tid, reached=reached,
                         skipped=skipped or [])

    def handles(self) -> list[str]:
        reply: Any = self.ok(self.session("observer"), "query-handles")
        assert reply.count == len(reply.handles)
        return list(reply.handles)

    def pushed(self, session: Session) -> list[Notice]:
        """The pushes for ``session`` so far (and forget them)."""
        mine = [notice for to, notice in self.pushes if to is session]
        self.pushes = [(to, notice) for to, notice in self.pushes if to is not session]
        return mine


def failed(reply: Answer | None, code: str) -> None:
    assert isinstance(reply, Failure), reply
    assert reply.code == code, reply
    assert not reply.ok and reply.status == "FAILURE"


def names(reply: Any) -> list[str]:
    return [peer.handle for peer in reply.followers]


# ---- before registering or logging in -------------------------------------------------------

@pytest.mark.parametrize(("cmd", "args"), [
    ("follow", {"follower": "@a", "followee": "@b"}),
    ("drop", {"follower": "@a", "followee": "@b"}),
    ("tweet", {"handle": "@a", "text": "hi"}),
    ("end-tweet", {"handle": "@a", "tid": 1, "reached": 0, "skipped": []}),
    ("exit", {"handle": "@a"}),
    ("exit-complete", {"handle": "@a"}),
    ("logout", {}),
    ("followers", {}),
    ("following", {"handle": "@a"}),
    ("feed", {}),
    ("retweet", {"tid": 1}),
    ("search", {"tag": "#x"}),
    ("trending", {}),
])
def test_commands_before_register_fail(cmd: str, args: dict[str, Any]) -> None:
    net = Net()
    net.join("@a")
    failed(net.call(net.session("fresh"), cmd, **args), "NOT_LOGGED_IN")
    assert net.handles() == ["@a"]


def test_anonymous_commands_are_allowed_before_register() -> None:
    net = Net()
    session = net.session("fresh", "10.0.0.7")
    reply: Any = net.ok(session, "query-handles")
    assert (reply.count, reply.handles) == (0, ())
    assert net.ok(session, "online")
    failed(net.login(session, "@alice"), "UNKNOWN_HANDLE")          # login is allowed: no such
    reply = net.register(session, "@alice", "10.0.0.7", [5001, 5002, 5003])
    assert reply.ok
    assert reply.handle == "@alice"
    assert "10.0.0.7" in reply.message
    assert session.handle == "@alice"
    assert net.core.online_handles() == ["@alice"]


def test_every_reply_names_its_request() -> None:
    net = Net()
    session = net.session("fresh")
    re, work = net.start(session, "query-handles")
    assert work is None
    [(to, reply)] = net.core.take_outbox()
    assert to is session and reply.re == re


# ---- register --------------------------------------------------------------------------------

@pytest.mark.parametrize("handle", ["@alice", "@ALICE", "@bob"])
def test_already_logged_in(handle: str) -> None:
    net = Net()
    session = net.join("@alice")
    failed(net.register(session, handle), "ALREADY_LOGGED_IN")
    failed(net.login(session, "@alice"), "ALREADY_LOGGED_IN")
    assert net.handles() == ["@alice"]
    assert session.handle == "@alice"


@pytest.mark.parametrize(("handle", "ip", "ports", "password", "code"), [
    ("alice", "127.0.0.1", [1, 2, 3], PASSWORD, "BAD_HANDLE"),
    ("@", "127.0.0.1", [1, 2, 3], PASSWORD, "BAD_HANDLE"),
    ("@al1ce", "127.0.0.1", [1, 2, 3], PASSWORD, "BAD_HANDLE"),
    ("@" + "a" * 16, "127.0.0.1", [1, 2, 3], PASSWORD, "BAD_HANDLE"),
    ("@alicé", "127.0.0.1", [1, 2, 3], PASSWORD, "BAD_HANDLE"),
    ("@alice", "127.0.0.256", [1, 2, 3], PASSWORD, "BAD_ADDRESS"),
    ("@alice", "localhost", [1, 2, 3], PASSWORD, "BAD_ADDRESS"),
    ("@alice", "1.2.3", [1, 2, 3], PASSWORD, "BAD_ADDRESS"),
    ("@alice", "127.0.0.1", [0, 2, 3], PASSWORD, "BAD_PORT"),
    ("@alice", "127.0.0.1", [1, 2, 65536], PASSWORD, "BAD_PORT"),
    ("@alice", "127.0.0.1", [1, 1, 3], PASSWORD, "REPEATED_PORTS"),
    ("@alice", "127.0.0.1", [7, 7, 7], PASSWORD, "REPEATED_PORTS"),
    ("@alice", "127.0.0.1", [1, 2], PASSWORD, "BAD_PORT"),
    ("@alice", "127.0.0.1", [1, 2, 3, 4], PASSWORD, "BAD_PORT"),
    ("@alice", "127.0.0.1", [1, 2, True], PASSWORD, "BAD_PORT"),
    ("@alice", "127.0.0.1", [1, 2, "3"], PASSWORD, "BAD_PORT"),
    ("@alice", "127.0.0.1", [1, 2, 3], "", "BAD_PASSWORD"),
    ("@alice", "127.0.0.1", [1, 2, 3], "x" * (limits.PASSWORD_MAX + 1), "BAD_PASSWORD"),
    ("@alice", "127.0.0.1", [1, 2, 3], None, "BAD_PASSWORD"),
])
def test_register_validation(handle: str, ip: str, ports: list[object], password: Any,
                             code: str) -> None:
    net = Net()
    session = net.session("fresh")
    failed(net.register(session, handle, ip, ports, password), code)
    assert session.handle is None
    assert net.handles() == []
    assert net.core.online_handles() == []
    assert net.ok(session, "register", handle="@alice", ip="127.0.0.1", ports=[1, 2, 3],
                  key=SAMPLE_KEY, password=PASSWORD)


@pytest.mark.parametrize(("ip", "why"), [
    ("0.0.0.0", "this host"), ("224.0.0.1", "multicast"), ("255.255.255.255", "broadcast"),
    ("240.0.0.9", "reserved"),
])
def test_an_address_no_single_host_owns_is_refused(ip: str, why: str) -> None:
    net = Net()
    reply = net.register(net.session("fresh", "127.0.0.1"), "@alice", ip)
    failed(reply, "BAD_ADDRESS")
    assert reply is not None and why in reply.message


def test_a_peer_address_must_be_the_sessions_own() -> None:
    net = Net()
    session = net.session("fresh", "10.0.0.5")
    reply = net.register(session, "@alice", "127.0.0.1")
    failed(reply, "ADDRESS_MISMATCH")
    assert reply is not None and reply.message == (
        "the tracker sees this session at 10.0.0.5: a peer's address must be its own")
    assert session.handle is None and net.handles() == []
    assert net.register(session, "@alice", "10.0.0.5").ok          # type: ignore[union-attr]


def test_a_bad_key_is_refused() -> None:
    net = Net()
    failed(net.call(net.session("fresh"), "register", handle="@a", ip="127.0.0.1",
                    ports=[1, 2, 3], key="not a key", password=PASSWORD), "BAD_KEY")


def test_duplicate_handle_is_case_insensitive_and_shown_as_first_registered() -> None:
    net = Net()
    net.join("@Alice")
    second = net.session("second")
    reply = net.register(second, "@alice")
    failed(reply, "DUPLICATE_HANDLE")
    assert reply is not None and "@Alice" in reply.message
    failed(net.register(second, "@ALICE"), "DUPLICATE_HANDLE")
    assert second.handle is None
    assert net.handles() == ["@Alice"]
    assert net.core.online_handles() == ["@Alice"]


def test_the_core_has_no_cap_on_sessions_of_its_own() -> None:
    # SPEC §6's "at most 4096 sessions" is the connection cap of tracker.py (--max-sessions,
    # SERVER_FULL before the welcome).  A second count in the core only disagreed with it: a
    # tracker run with --max-sessions 10000 still refused the 4097th login.
    net = Net(register_limit=10**6)
    for number in range(limits.SESSION_MAX + 1):
        net.join("@u" + "".join(chr(97 + (number // 26**k) % 26) for k in range(3)))
    assert len(net.core.online_handles()) == limits.SESSION_MAX + 1


def test_registering_one_handle_at_once_exactly_one_wins() -> None:
    # The tracker hashes outside its lock: every registration may pass the cheap duplicate
    # check before any of them is stored.  Then exactly one wins.
    net = Net()
    spellings = ["@racer", "@Racer", "@RACER", "@rAcEr"]
    sessions = [net.session(f"s{i}") for i in range(len(spellings))]
    started = [net.start(session, "register", handle=handle, ip="127.0.0.1",
                         ports=net.ports(), key=SAMPLE_KEY, password=PASSWORD)
               for session, handle in zip(sessions, spellings, strict=True)]
    assert all(work is not None for _, work in started)
    replies = []
    for session, (re, work) in zip(sessions, started, strict=True):
        assert work is not None
        net.finish(session, work)
        replies.append(net.reply(session, re))
    winners = [i for i, reply in enumerate(replies) if reply is not None and reply.ok]
    assert winners == [0]
    for reply in replies[1:]:
        failed(reply, "DUPLICATE_HANDLE")
    assert net.handles() == ["@racer"] == net.core.online_handles()
    assert [s.handle for s in sessions] == ["@racer", None, None, None]


# ---- query handles ---------------------------------------------------------------------------

def test_query_handles_is_alphabetical_case_insensitively() -> None:
    net = Net()
    for handle in ("@bob", "@Carl", "@anna", "@Alice", "@dave"):
        net.join(handle)
    reply: Any = net.ok(net.session("observer"), "query-handles")
    assert (reply.count, reply.handles) == (5, ("@Alice", "@anna", "@bob", "@Carl", "@dave"))
    assert reply.message.startswith("5")


def test_query_handles_when_none() -> None:
    reply: Any = Net().ok(Session("observer", "127.0.0.1", 0.0), "query-handles")
    assert (reply.count, reply.handles, reply.next) == (0, (), None)


def pages(net: Net, session: Session, cmd: str, **args: Any) -> list[Any]:
    """Every page of a list, following ``next`` as ``after``."""
    replies = [net.ok(session, cmd, **args)]
    while replies[-1].next is not None:                     # type: ignore[attr-defined]
        replies.append(net.ok(session, cmd, **args, after=replies[-1].next))  # type: ignore
    return replies


def test_query_handles_comes_in_pages() -> None:
    net = Net()
    for handle in ("@bob", "@Carl", "@anna", "@Alice", "@dave"):
        net.join(handle)
    observer = net.session("observer")
    replies = pages(net, observer, "query-handles", limit=2)
    assert [r.handles for r in replies] == [("@Alice", "@anna"), ("@bob", "@Carl"), ("@dave",)]
    assert [r.count for r in replies] == [5, 5, 5] and replies[-1].next is None
    # `after` is a place in the order, registered or not (a handle may go between pages)
    reply: Any = net.ok(observer, "query-handles", after="@BETTY", limit=1000)
    assert (reply.handles, reply.next) == (("@bob", "@Carl", "@dave"), None)
    assert net.ok(observer, "query-handles", after="@zz").handles == ()  # type: ignore
    assert len(net.ok(observer, "query-handles").handles) == 5          # type: ignore
    for args, code in [({"limit": 0}, "BAD_COUNT"), ({"limit": limits.LIST_PAGE_MAX + 1},
                       "BAD_COUNT"), ({"after": "bob"}, "BAD_HANDLE")]:
        failed(net.call(observer, "query-handles", **args), code)


def test_a_long_list_of_handles_is_answered_a_page_at_a_time() -> None:
    net = Net(register_limit=10**6)
    handles = ["@u" + "".join(chr(97 + (n // 26**k) % 26) for k in (2, 1, 0)) for n in range(2500)]
    for handle in handles:
        net.join(handle)
    replies = pages(net, net.session("observer"), "query-handles")
    assert [len(r.handles) for r in replies] == [1000, 1000, 500]
    assert [h for r in replies for h in r.handles] == handles


# ---- follow and drop -------------------------------------------------------------------------

def test_follow_and_drop() -> None:
    net = Net()
    alice, _bob = net.join("@alice"), net.join("@Bob")
    assert net.ok(alice, "follow", follower="@alice", followee="@bob")
    assert net.store.followers("@bob") == ["@alice"]
    failed(net.call(alice, "follow", follower="@alice", followee="@BOB"), "ALREADY_FOLLOWING")
    assert net.ok(alice, "drop", follower="@ALICE", followee="@bob")   # own handle, any case
    assert net.store.followers("@bob") == []
    failed(net.call(alice, "drop", follower="@alice", followee="@bob"), "NOT_FOLLOWING")


def test_the_followee_is_told_and_the_follower_gets_its_key() -> None:
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob", "10.0.0.2")
    reply: Any = net.ok(alice, "follow", follower="@alice", followee="@bob")
    assert reply.peer.as_list()[:2] == ["@bob", "10.0.0.2"]
    assert reply.peer.public_key == SAMPLE_KEY
    assert [n.to_wire() for n in net.pushed(bob)] == [{"push": "followed", "by": "@alice"}]
    assert net.ok(bob, "logout")
    offline: Any = net.ok(net.join("@erin"), "follow", follower="@erin", followee="@bob")
    assert offline.peer is None and "peer" not in offline.to_wire()


def test_follower_list_is_kept_alphabetical() -> None:
    net = Net()
    net.join("@star")
    for handle in ("@dave", "@Bob", "@carol", "@alice"):
        net.follow(net.join(handle), "@star")
    assert net.store.followers("@star") == ["@alice", "@Bob", "@carol", "@dave"]


@pytest.mark.parametrize("cmd", ["follow", "drop"])
@pytest.mark.parametrize(("followee", "code"), [
    ("@nobody", "UNKNOWN_HANDLE"), ("bob", "BAD_HANDLE"), ("@b0b", "BAD_HANDLE"),
])
def test_follow_and_drop_need_a_known_handle(cmd: str, followee: str, code: str) -> None:
    net = Net()
    alice = net.join("@alice")
    failed(net.call(alice, cmd, follower="@alice", followee=followee), code)


@pytest.mark.parametrize("me", ["@alice", "@ALICE"])
def test_self_follow(me: str) -> None:
    net = Net()
    alice = net.join("@alice")
    failed(net.call(alice, "follow", follower="@alice", followee=me), "SELF_FOLLOW")
    assert net.store.followers("@alice") == []


@pytest.mark.parametrize("cmd", ["follow", "drop"])
def test_follow_and_drop_for_another_handle(cmd: str) -> None:
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    net.join("@carol")
    net.follow(bob, "@carol")
    failed(net.call(alice, cmd, follower="@bob", followee="@carol"), "NOT_YOUR_HANDLE")
    failed(net.call(alice, cmd, follower="@carol", followee="@bob"), "NOT_YOUR_HANDLE")
    assert net.store.followers("@carol") == ["@bob"]
    assert net.store.followers("@bob") == []


# ---- tweet -----------------------------------------------------------------------------------

def test_tweet_lists_online_followers_alphabetically_with_their_addresses() -> None:
    net = Net()
    star = net.join("@star", "10.0.0.1")
    rows = {}
    for handle, ip in (("@dave", "10.0.0.4"), ("@Bob", "10.0.0.2"), ("@carl", "10.0.0.3")):
        session = net.session(handle, ip)
        ports = net.ports()
        assert net.register(session, handle, ip, ports).ok      # type: ignore[union-attr]
        net.follow(session, "@star")
        rows[handle] = [handle, ip, *ports, SAMPLE_KEY]
    net.join("@stranger")                                   # not a follower
    reply = net.tweet(star, "first")
    assert reply.ok
    assert reply.count == 3
    assert [peer.as_list() for peer in reply.followers] == [rows["@Bob"], rows["@carl"],
                                                            rows["@dave"]]
    assert reply.to_wire()["followers"] == [rows["@Bob"], rows["@carl"], rows["@dave"]]
    assert isinstance(reply.tid, int)
    assert net.store.tweet(reply.tid).created == WALL          # the injected wall clock


def test_tweet_with_no_followers() -> None:
    net = Net()
    alice = net.join("@alice")
    reply = net.tweet(alice)
    assert reply.ok
    assert (reply.count, reply.followers) == (0, ())
    assert net.end(alice, reply.tid).ok


@pytest.mark.parametrize(("text", "code"), [
    ("", "EMPTY_TEXT"),
    ("x" * (limits.TWEET_MAX + 1), "TOO_LONG"),
    ("\x1b[2Jgotcha", "CONTROL_CHARACTERS"),
    ("two\nlines", "CONTROL_CHARACTERS"),
    ("\u202eevil", "CONTROL_CHARACTERS"),
])
def test_tweet_text_is_checked(text: str, code: str) -> None:
    net = Net()
    alice = net.join("@alice")
    failed(net.tweet(alice, text), code)
    assert net.tweet(alice, "x" * limits.TWEET_MAX).ok      # nothing left running


def test_tweet_in_progress_and_tweets_of_different_authors_run_together() -> None:
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    net.follow(bob, "@alice")
    net.follow(alice, "@bob")
    first = net.tweet(alice)
    assert first.ok
    failed(net.tweet(alice, "again"), "TWEET_IN_PROGRESS")
    assert net.tweet(bob).ok
    end = net.end(alice, first.tid, reached=1)
    assert end.ok
    assert (end.reached, end.skipped) == (1, ())
    second = net.tweet(alice, "again")
    assert second.ok
    assert second.tid != first.tid


def test_tweet_for_another_handle() -> None:
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    failed(net.call(alice, "tweet", handle="@bob", text="not mine"), "NOT_YOUR_HANDLE")
    assert net.tweet(bob).ok                     # no tweet of @bob was started
    assert net.tweet(alice).ok


def test_follows_during_a_tweet_take_effect_on_the_next() -> None:
    net = Net()
    alice, bob, carol = net.join("@alice"), net.join("@bob"), net.join("@carol")
    net.follow(bob, "@alice")
    first = net.tweet(alice)
    net.follow(carol, "@alice")
    assert net.ok(bob, "drop", follower="@bob", followee="@alice")
    assert names(first) == ["@bob"]
    assert net.end(alice, first.tid).ok
    assert names(net.tweet(alice)) == ["@carol"]


# ---- end-tweet -------------------------------------------------------------------------------

def test_no_tweet_in_progress() -> None:
    net = Net()
    alice = net.join("@alice")
    failed(net.end(alice, 1), "NO_TWEET_IN_PROGRESS")
    tid = net.tweet(alice).tid
    failed(net.end(alice, tid + 1), "NO_TWEET_IN_PROGRESS")
    assert net.end(alice, tid).ok
    failed(net.end(alice, tid), "NO_TWEET_IN_PROGRESS")


def test_end_tweet_for_another_handle() -> None:
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    tid = net.tweet(alice).tid
    failed(net.call(bob, "end-tweet", handle="@alice", tid=tid, reached=0, skipped=[]),
           "NOT_YOUR_HANDLE")
    failed(net.tweet(alice), "TWEET_IN_PROGRESS")             # still running


def test_skipped_is_a_report_a_live_follower_stays_online_and_gets_the_tweet() -> None:
    net = Net()
    star = net.join("@star")
    fans = {handle: net.join(handle) for handle in ("@a", "@b", "@c")}
    for fan in fans.values():
        net.follow(fan, "@star")
    net.join("@outsider")
    first = net.tweet(star, "for everyone")
    assert names(first) == ["@a", "@b", "@c"]
    net.pushes.clear()
    end = net.end(star, first.tid, reached=1,
                  skipped=["@B", "@c", "@b", "@outsider", "@nobody", 7])
    assert end.ok
    # Only followers of this tweet count, once each, named as registered; all alive.
    assert (end.reached, end.skipped, end.relayed) == (1, ("@b", "@c"), ("@b", "@c"))
    assert "sent by the tracker to @b @c" in end.message
    for handle in ("@b", "@c"):
        assert [n.to_wire() for n in net.pushed(fans[handle])] == [
            {"push": "tweet", "author": "@star", "tid": first.tid, "text": "for everyone",
             "created": WALL}]
    assert net.pushed(fans["@a"]) == []
    assert net.core.online_handles() == ["@a", "@b", "@c", "@outsider", "@star"]
    assert names(net.tweet(star)) == ["@a", "@b", "@c"]     # nobody was taken offline


def test_a_skipped_follower_whose_connection_is_gone_goes_offline() -> None:
    net = Net()
    star, bob, carol = net.join("@star"), net.join("@bob"), net.join("@carol")
    net.follow(bob, "@star")
    net.follow(carol, "@star")
    net.core.disconnect(bob, net.now)
    assert bob.handle is None
    assert "@bob" in net.core.online_handles()              # lost: listed for the ring
    first = net.tweet(star)
    assert names(first) == ["@bob", "@carol"]
    end = net.end(star, first.tid, reached=1, skipped=["@bob"])
    assert (end.skipped, end.relayed) == (("@bob",), ())
    assert "@bob" not in net.core.online_handles()
    assert names(net.tweet(star)) == ["@carol"]
    assert "@bob" in net.handles()                          # offline, not deleted


def test_a_follower_that_logged_in_again_gets_the_tweet_in_its_new_session() -> None:
    net = Net()
    star, bob = net.join("@star"), net.join("@bob")
    net.follow(bob, "@star")
    net.core.disconnect(bob, net.now)
    first = net.tweet(star)                     # handed out at its old address
    again = net.session("bob again")
    assert net.login(again, "@bob").ok                      # type: ignore[union-attr]
    end = net.end(star, first.tid, skipped=["@bob"])
    assert end.relayed == ("@bob",)
    assert [n.kind for n in net.pushed(again)] == ["tweet"]
    assert "@bob" in net.core.online_handles()


@pytest.mark.parametrize("how", ["disconnect", "logout", "timeout"])
def test_a_tweet_ended_without_end_tweet_goes_to_every_live_follower(how: str) -> None:
    net = Net(tweet_timeout=10.0)
    star, bob, carol, dave = (net.join(h) for h in ("@star", "@bob", "@carol", "@dave"))
    for fan in (bob, carol, dave):
        net.follow(fan, "@star")
    net.core.disconnect(dave, net.now)          # lost: nobody to send it to
    tid = net.tweet(star, "half way").tid
    net.pushes.clear()
    if how == "disconnect":
        net.core.disconnect(star, net.now)
    elif how == "logout":
        assert net.ok(star, "logout")
    else:
        net.advance(10.5)
    net.reply(star, -1)
    for fan in (bob, carol):
        tweets = [n for n in net.pushed(fan) if n.kind == "tweet"]     # and a presence
        assert [n.tid for n in tweets] == [tid]                         # type: ignore
    assert net.pushed(dave) == []
    assert any("sent by the tracker to @bob @carol" in line for line in net.logs)


# ---- disconnect ------------------------------------------------------------------------------

def test_disconnect_of_an_unregistered_session_does_nothing() -> None:
    net = Net()
    net.join("@alice")
    net.core.disconnect(net.session("stranger"), net.now)
    assert net.core.online_handles() == ["@alice"]


def test_disconnect_in_the_middle_of_exit_goes_offline_at_once() -> None:
    net = Net()
    alice = net.join("@alice")
    assert net.ok(alice, "exit", handle="@alice")
    net.core.disconnect(alice, net.now)
    assert net.core.online_handles() == []
    assert net.handles() == ["@alice"]                      # exit-complete never came


def test_an_author_that_disconnects_ends_its_tweet() -> None:
    net = Net()
    star, bob = net.join("@star"), net.join("@bob")
    net.follow(bob, "@star")
    assert net.tweet(star).ok
    net.core.disconnect(star, net.now)
    assert any("connection closed" in line for line in net.logs)
    assert "@star" in net.core.online_handles()             # listed, marked lost
    assert net.ok(bob, "exit", handle="@bob")               # nothing to wait for: no BUSY


# ---- tweet timeout ---------------------------------------------------------------------------

def test_a_tweet_without_end_tweet_is_ended_after_the_timeout() -> None:
    net = Net(tweet_timeout=60.0)
    alice, bob = net.join("@alice"), net.join("@bob")
    net.follow(bob, "@alice")
    first = net.tweet(alice).tid
    net.now += 60.0
    failed(net.tweet(alice), "TWEET_IN_PROGRESS")
    net.now += 0.5
    second = net.tweet(alice)
    assert second.ok
    assert any("no end-tweet within 60s" in line for line in net.logs)
    failed(net.end(alice, first), "NO_TWEET_IN_PROGRESS")
    assert net.end(alice, second.tid).ok


def test_a_tick_ends_a_stale_tweet_without_any_request() -> None:
    net = Net(tweet_timeout=5.0)
    alice = net.join("@alice")
    assert net.tweet(alice).ok
    net.advance(5.5)
    assert any("no end-tweet within 5s" in line for line in net.logs)


def test_a_timed_out_tweet_no_longer_holds_up_exit() -> None:
    net = Net(tweet_timeout=5.0, exit_wait=1.0)
    alice, bob = net.join("@alice"), net.join("@bob")
    net.follow(bob, "@alice")
    assert net.tweet(alice).ok
    net.now += 6.0
    assert net.ok(bob, "exit", handle="@bob")


# ---- exit ------------------------------------------------------------------------------------

def test_exit_deletes_the_handle_and_its_follows() -> None:
    net = Net()
    alice, bob, carol = net.join("@alice"), net.join("@bob"), net.join("@carol")
    net.follow(bob, "@alice")       # bob follows alice
    net.follow(alice, "@bob")       # alice follows bob
    net.follow(carol, "@bob")
    assert net.ok(bob, "exit", handle="@bob")
    assert bob.exiting
    assert net.ok(bob, "exit-complete", handle="@bob")
    assert bob.handle is None and not bob.exiting
    assert net.handles() == ["@alice", "@carol"]
    assert net.core.online_handles() == ["@alice", "@carol"]
    assert net.store.followers("@alice") == []
    assert names(net.tweet(alice)) == []
    # the handle is free again, with nothing attached to it
    again = net.join("@Bob")
    assert net.store.followers("@bob") == []
    assert net.handles() == ["@alice", "@Bob", "@carol"]
    assert net.tweet(again).followers == ()
    # and the old session may register anew
    assert net.register(bob, "@dave").ok                    # type: ignore[union-attr]


def test_exit_hands_out_the_online_followers() -> None:
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    net.join("@carol")
    net.follow(bob, "@alice")
    reply: Any = net.ok(alice, "exit", handle="@alice")
    assert [peer.handle for peer in reply.followers] == ["@bob"]


def test_exit_complete_before_exit() -> None:
    net = Net()
    alice = net.join("@alice")
    failed(net.call(alice, "exit-complete", handle="@alice"), "EXIT_NOT_STARTED")
    assert net.handles() == ["@alice"]


@pytest.mark.parametrize(("cmd", "args"), [
    ("tweet", {"handle": "@alice", "text": "hi"}),
    ("follow", {"follower": "@alice", "followee": "@bob"}),
    ("drop", {"follower": "@alice", "followee": "@bob"}),
    ("exit", {"handle": "@alice"}),
    ("end-tweet", {"handle": "@alice", "tid": 1, "reached": 0, "skipped": []}),
])
def test_only_exit_complete_is_left_while_exiting(cmd: str, args: dict[str, Any]) -> None:
    net = Net()
    alice = net.join("@alice")
    net.join("@bob")
    assert net.ok(alice, "exit", handle="@alice")
    failed(net.call(alice, cmd, **args), "EXITING")
    assert net.ok(alice, "exit-complete", handle="@alice")


def test_heartbeat_is_allowed_while_exiting() -> None:
    net = Net()
    alice = net.join("@alice")
    assert net.ok(alice, "exit", handle="@alice")
    assert net.ok(alice, "heartbeat")


@pytest.mark.parametrize("cmd", ["exit", "exit-complete"])
def test_exit_for_another_handle(cmd: str) -> None:
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    failed(net.call(alice, cmd, handle="@bob"), "NOT_YOUR_HANDLE")
    assert not alice.exiting and not bob.exiting
    assert net.handles() == ["@alice", "@bob"]
    assert net.tweet(alice).ok and net.tweet(bob).ok


def test_an_exiting_follower_gets_no_new_tweet() -> None:
    net = Net()
    star, bob, carol = net.join("@star"), net.join("@bob"), net.join("@carol")
    net.follow(bob, "@star")
    net.follow(carol, "@star")
    assert net.ok(bob, "exit", handle="@bob")
    assert names(net.tweet(star)) == ["@carol"]


def test_exit_of_a_handle_not_involved_does_not_wait() -> None:
    net = Net()
    star, _bob, carol = net.join("@star"), net.join("@bob"), net.join("@carol")
    assert net.tweet(star).ok                     # carol does not follow star
    assert net.ok(carol, "exit", handle="@carol")


def exit_waiting_for_a_tweet(**options: Any) -> tuple[Net, Session, Session, int, int]:
    """@bob asks to exit while @star's tweet to it runs: (net, star, bob, tid, exit's id)."""
    net = Net(**options)
    star, bob = net.join("@star"), net.join("@bob")
    net.follow(bob, "@star")
    tid = net.tweet(star).tid
    re, work = net.start(bob, "exit", handle="@bob")
    assert work is None
    assert net.reply(bob, re) is None               # no answer yet: the tweet runs
    assert bob.exiting
    return net, star, bob, tid, re


def late_reply(net: Net, session: Session, re: int) -> Answer:
    found = [reply for to, reply in net.later if to is session and reply.re == re]
    assert len(found) == 1, net.later
    return found[0]


def test_exit_waits_for_end_tweet() -> None:
    net, star, bob, tid, re = exit_waiting_for_a_tweet()
    failed(net.call(bob, "exit-complete", handle="@bob"), "EXITING")   # not answered yet
    assert names(net.tweet(net.join("@other"))) == []
    assert net.end(star, tid, reached=1).ok             # the end of the tweet answers exit
    assert late_reply(net, bob, re).ok
    assert net.ok(bob, "exit-complete", handle="@bob")
    assert net.handles() == ["@other", "@star"]


def test_exit_waits_until_the_author_disconnects() -> None:
    net, star, bob, _tid, re = exit_waiting_for_a_tweet()
    net.core.disconnect(star, net.now)
    net.reply(star, -1)
    assert late_reply(net, bob, re).ok


def test_exit_waits_until_the_tweet_times_out() -> None:
    net, _star, bob, _tid, re = exit_waiting_for_a_tweet(tweet_timeout=5.0, exit_wait=30.0)
    net.advance(4.0)
    assert net.later == []
    net.advance(1.5)
    assert late_reply(net, bob, re).ok


def test_busy_when_a_tweet_involving_the_handle_never_ends() -> None:
    net, star, bob, _tid, re = exit_waiting_for_a_tweet(exit_wait=30.0)
    net.advance(29.0)
    assert net.later == []
    net.advance(1.0)
    failed(late_reply(net, bob, re), "BUSY")
    assert not bob.exiting                       # back to normal: bob may act, and exit later
    assert net.ok(bob, "drop", follower="@bob", followee="@star")
    re, _ = net.start(star, "exit", handle="@star")      # its own tweet involves it too
    assert net.reply(star, re) is None
    net.advance(30.0)
    failed(late_reply(net, star, re), "BUSY")


def test_a_waiting_exit_ends_with_its_connection() -> None:
    net, star, bob, tid, _re = exit_waiting_for_a_tweet()
    net.core.disconnect(bob, net.now)
    assert net.end(star, tid).ok
    assert net.later == []                           # nobody left to answer
    assert "@bob" not in net.core.online_handles()


def test_a_skipped_follower_in_the_middle_of_exit_finishes_its_exit() -> None:
    net, star, bob, tid, re = exit_waiting_for_a_tweet()
    assert net.end(star, tid, skipped=["@bob"]).ok
    assert late_reply(net, bob, re).ok
    assert net.ok(bob, "exit-complete", handle="@bob")
    assert net.store.find("@bob") is None


# ---- tweet ids -------------------------------------------------------------------------------

def test_tweet_ids_are_never_reused() -> None:
    # A follower drops a tweet whose (ring, tid) it has seen before (a resend).  If an id comes
    # back after its author exits, a re-registered author's tweet can be dropped as a "resend".
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    seen = []
    for session in (alice, bob):
        tid = net.tweet(session).tid
        assert net.end(session, tid).ok
        seen.append(tid)
    assert net.ok(bob, "exit", handle="@bob")
    assert net.ok(bob, "exit-complete", handle="@bob")
    again = net.join("@bob")
    tid = net.tweet(again).tid
    assert tid not in seen, f"tweet id {tid} handed out again (earlier ids: {seen})"


# ---- login and logout ------------------------------------------------------------------------

def test_logout_keeps_everything_and_login_comes_back_at_a_new_address() -> None:
    net = Net()
    star, bob = net.join("@star"), net.join("@Bob")
    net.follow(bob, "@star")
    assert net.ok(bob, "logout")
    assert bob.handle is None
    assert net.core.online_handles() == ["@star"]
    assert net.handles() == ["@Bob", "@star"]
    failed(net.call(bob, "tweet", handle="@Bob", text="hi"), "NOT_LOGGED_IN")
    first = net.tweet(star, "while you were out")
    assert names(first) == []                            # offline followers get no ring
    assert net.end(star, first.tid).ok
    again = net.session("bob again", "10.0.0.9")
    reply: Any = net.login(again, "@BOB", ports=[7001, 7002, 7003])
    assert reply.ok
    assert (reply.handle, reply.new, reply.blocked) == ("@Bob", 1, ())  # as registered
    assert again.handle == "@Bob"
    assert [p.as_list() for p in net.tweet(star).followers] == [
        ["@Bob", "10.0.0.9", 7001, 7002, 7003, SAMPLE_KEY]]


def test_logout_ends_the_authors_running_tweet() -> None:
    net = Net()
    star, bob = net.join("@star"), net.join("@bob")
    net.follow(bob, "@star")
    assert net.tweet(star).ok
    assert net.ok(star, "logout")
    assert net.ok(bob, "exit", handle="@bob")      # nothing left to wait for


def test_logout_restarts_the_registration_clock() -> None:
    net = Net(register_timeout=30)
    session = net.join("@a")
    net.now += 100                                  # an old connection
    assert net.ok(session, "logout")
    assert net.core.expire(session, net.now) is None    # it may log in again in time
    failed(net.core.expire(session, net.now + 31), "REGISTER_TIMEOUT")


@pytest.mark.parametrize(("handle", "ip", "ports", "code"), [
    ("alice", "127.0.0.1", [1, 2, 3], "BAD_HANDLE"),
    ("@alice", "1.2.3", [1, 2, 3], "BAD_ADDRESS"),
    ("@alice", "127.0.0.1", [1, 1, 3], "REPEATED_PORTS"),
    ("@alice", "224.0.0.1", [1, 2, 3], "BAD_ADDRESS"),
    ("@alice", "10.0.0.5", [1, 2, 3], "ADDRESS_MISMATCH"),
    ("@nobody", "127.0.0.1", [1, 2, 3], "UNKNOWN_HANDLE"),
])
def test_login_validation(handle: str, ip: str, ports: list[int], code: str) -> None:
    net = Net()
    alice = net.join("@alice")
    assert net.ok(alice, "logout")
    session = net.session("fresh")
    failed(net.login(session, handle, ip=ip, ports=ports), code)
    assert session.handle is None


def login_code(net: Net, session: Session, handle: str, password: str = PASSWORD) -> str:
    reply = net.login(session, handle, password=password)
    assert reply is not None
    return "ok" if reply.ok else reply.code                 # type: ignore[attr-defined]


def test_failed_logins_wait_longer_each_time_per_address_and_handle() -> None:
    net = Net(throttle=LoginThrottle(backoff=1.0, backoff_max=4.0))
    assert net.ok(net.join("@alice"), "logout")
    guess = net.session("guess", "127.0.0.2")
    assert login_code(net, guess, "@alice", "wrong") == "WRONG_PASSWORD"
    reply = net.login(guess, "@alice")                       # even the right one, for now
    failed(reply, "THROTTLED")
    assert reply is not None and "try again in 1 s" in reply.message
    waits = []
    for _ in range(4):                                       # 1 s, then 2, 4, and 4 at most
        waited = 0.0
        while login_code(net, guess, "@alice", "wrong") == "THROTTLED":
            net.now += 0.25
            waited += 0.25
        waits.append(waited)
    assert waits == [1.0, 2.0, 4.0, 4.0]
    net.now += 4.0
    assert login_code(net, guess, "@alice") == "ok"          # a success starts afresh
    assert net.ok(guess, "logout")
    assert login_code(net, guess, "@alice", "wrong") == "WRONG_PASSWORD"
    net.now += 1.0
    assert login_code(net, guess, "@alice") == "ok"


def test_guesses_from_one_address_never_lock_the_owner_out_from_another() -> None:
    # SPEC §6: throttling per (address, handle).  Five guesses from anyone used to make the
    # owner's right password THROTTLED for a minute.
    net = Net()
    owner = net.join("@owner")
    assert net.ok(owner, "logout")
    attacker = net.session("attacker", "127.0.0.2")
    codes = []
    for _ in range(40):                 # a guess whenever it may, for as long as it likes
        codes.append(login_code(net, attacker, "@owner", "guess"))
        assert login_code(net, owner, "@owner") == "ok"
        assert net.ok(owner, "logout")
        net.now += 2.0
    assert "WRONG_PASSWORD" in codes and "THROTTLED" in codes
    assert attacker.handle is None


def test_parallel_wrong_logins_cannot_outrun_the_throttle() -> None:
    # Every guess is counted as failed before its hash is checked: thirty guesses from one
    # address that all start before any is checked give one try.
    net = Net()
    assert net.ok(net.join("@a"), "logout")
    guesses = [net.session(f"guess{i}", "127.0.0.2") for i in range(30)]
    started = [net.start(session, "login", handle="@a", ip="127.0.0.2", ports=[1, 2, 3],
                         key=SAMPLE_KEY, password="wrong") for session in guesses]
    for session, (_re, work) in zip(guesses, started, strict=True):
        if work is not None:
            net.finish(session, work)
    codes = [net.reply(session, re).code  # type: ignore[union-attr]
             for session, (re, _work) in zip(guesses, started, strict=True)]
    assert codes.count("WRONG_PASSWORD") == 1 and codes.count("THROTTLED") == 29


def test_each_address_has_a_budget_of_failed_logins() -> None:
    net = Net(throttle=LoginThrottle(per_address=3))
    for handle in ("@a", "@b", "@c", "@d"):
        assert net.ok(net.join(handle), "logout")
    assert login_code(net, net.session("ok", "127.0.0.2"), "@a") == "ok"   # costs nothing
    guesser = net.session("guesser", "127.0.0.2")
    assert [login_code(net, guesser, h, "x") for h in ("@b", "@c", "@nobody")] == \
        ["WRONG_PASSWORD", "WRONG_PASSWORD", "UNKNOWN_HANDLE"]
    reply = net.login(guesser, "@d")                         # another handle, the same address
    failed(reply, "THROTTLED")
    assert reply is not None and "from 127.0.0.2" in reply.message
    elsewhere = net.session("elsewhere", "127.0.0.3")
    assert login_code(net, elsewhere, "@d") == "ok"
    assert net.ok(elsewhere, "logout")
    net.now += 3600 / 3                                     # a third of an hour: one more
    assert login_code(net, guesser, "@d") == "ok"


def test_an_unknown_handle_costs_a_hash_and_counts_as_a_failed_login() -> None:
    # The same work as a wrong password, so that the time taken does not depend on whether
    # the handle exists; and no free probing.
    net = Net()
    assert net.ok(net.join("@alice"), "logout")
    session = net.session("probe", "127.0.0.2")
    works = []
    for handle in ("@nobody", "@alice"):
        _re, work = net.start(session, "login", handle=handle, ip="127.0.0.2",
                              ports=net.ports(), key=SAMPLE_KEY, password="wrong")
        assert work is not None
        works.append(work.job)
        net.finish(session, work)
    unknown, known = works
    assert unknown.stored.split("$")[:4] == known.stored.split("$")[:4]  # type: ignore
    assert unknown.run() is False
    failed(net.login(session, "@nobody"), "THROTTLED")


def test_a_right_password_that_finds_the_handle_online_is_no_failure() -> None:
    net = Net()
    net.join("@alice")
    second = net.session("second")
    for _ in range(3):                  # told again and again, never THROTTLED
        failed(net.login(second, "@alice"), "ALREADY_ONLINE")


def test_login_checks_the_hash_of_the_account_it_logs_in() -> None:
    # The hash is checked outside the core; meanwhile the account may be deleted and the
    # handle registered again with another password, which the old one must not open.
    net = Net()
    alice = net.join("@alice")
    for then in ("deleted", "registered again"):
        late = net.session(f"late, {then}", "127.0.0.2")
        re, work = net.start(late, "login", handle="@alice", ip="127.0.0.2", ports=net.ports(),
                             key=SAMPLE_KEY, password=PASSWORD)
        assert work is not None
        assert net.ok(alice, "exit", handle="@alice")
        assert net.ok(alice, "exit-complete", handle="@alice")
        if then == "registered again":
            alice = net.session("new alice")
            assert net.register(alice, "@alice", password="another").ok  # type: ignore
        net.finish(late, work)
        failed(net.reply(late, re), "UNKNOWN_HANDLE" if then == "deleted" else "ACCOUNT_CHANGED")
        assert late.handle is None
        if then == "deleted":
            alice = net.join("@alice")
    assert net.ok(alice, "logout")
    assert login_code(net, net.session("old"), "@alice", PASSWORD) == "WRONG_PASSWORD"
    assert login_code(net, net.session("new"), "@alice", "another") == "THROTTLED"


def test_each_address_has_a_budget_of_registrations() -> None:
    net = Net(register_limit=2)
    outsider = "127.0.0.2"
    assert [net.register(net.session(h, outsider), h).ok  # type: ignore[union-attr]
            for h in ("@a", "@b")] == [True, True]
    reply = net.register(net.session("@c", outsider), "@c")
    failed(reply, "THROTTLED")
    assert reply is not None and "try again in 30 min" in reply.message
    net.join("@d")                                           # another address: its own budget
    net.now += 3600 / 2
    assert net.register(net.session("@c", outsider), "@c").ok    # type: ignore[union-attr]
    failed(net.register(net.session("@dup", outsider), "@a"), "DUPLICATE_HANDLE")  # free


@pytest.mark.parametrize("cmd", ["register", "login"])
def test_a_password_utf8_cannot_encode_is_bad(cmd: str) -> None:
    net = Net()
    assert net.ok(net.join("@odd"), "logout")
    session = net.session("surrogate")
    re, work = net.start(session, cmd, handle="@odd" if cmd == "login" else "@new",
                         ip="127.0.0.1", ports=net.ports(), key=SAMPLE_KEY, password="\ud800")
    assert work is None                                     # refused before any hash
    failed(net.reply(session, re), "BAD_PASSWORD")


def test_already_online_and_a_lost_handle_may_log_in_again() -> None:
    net = Net()
    alice = net.join("@alice")
    failed(net.login(net.session("second"), "@alice"), "ALREADY_ONLINE")
    net.core.disconnect(alice, net.now)                     # listed, marked lost
    assert net.login(net.session("again"), "@alice").ok     # type: ignore[union-attr]
    assert net.core.online_handles() == ["@alice"]
    failed(net.login(net.session("third"), "@alice"), "ALREADY_ONLINE")


def test_logging_in_one_handle_at_once_exactly_one_wins() -> None:
    net = Net()
    assert net.ok(net.join("@racer"), "logout")
    # From four addresses: from one, the second attempt would wait for the first's result.
    sessions = [net.session(f"s{i}", f"127.0.0.{i + 1}") for i in range(4)]
    started = [net.start(session, "login", handle="@racer", ip=session.address,
                         ports=net.ports(), key=SAMPLE_KEY, password=PASSWORD)
               for session in sessions]
    replies = []
    for session, (re, work) in zip(sessions, started, strict=True):
        assert work is not None
        net.finish(session, work)
        replies.append(net.reply(session, re))
    assert sum(reply.ok for reply in replies) == 1, replies    # type: ignore[union-attr]
    for reply in replies[1:]:
        failed(reply, "ALREADY_ONLINE")
    assert [s.handle for s in sessions].count("@racer") == 1


def test_kept_messages_follow_the_login_reply() -> None:
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    assert net.ok(bob, "logout")
    assert net.ok(alice, "message", to="@bob", text="later").peer is None  # type: ignore
    again = net.session("bob again")
    re, work = net.start(again, "login", handle="@bob", ip="127.0.0.1", ports=net.ports(),
                         key=SAMPLE_KEY, password=PASSWORD)
    assert work is not None
    net.finish(again, work)
    out = [(to, message.to_wire()) for to, message in net.core.take_outbox() if to is again]
    assert [wire.get("re", wire.get("push")) for _, wire in out] == [re, "message"]
    assert out[1][1]["text"] == "later" and out[1][1]["kept"] is True


# ---- timeouts (SPEC §6) ----------------------------------------------------------------------

def test_a_connection_that_never_logs_in_is_closed() -> None:
    net = Net(register_timeout=30.0)
    session = net.session("idle")
    assert net.core.expire(session, net.now + 30.0) is None
    reply = net.core.expire(session, net.now + 30.5)
    failed(reply, "REGISTER_TIMEOUT")
    assert session.closing
    assert net.core.expire(session, net.now + 60.0) is None     # decided once


def test_a_silent_session_goes_offline_and_its_followers_are_told() -> None:
    net = Net(idle_timeout=90.0)
    alice, bob = net.join("@alice"), net.join("@bob")
    net.follow(bob, "@alice")
    net.now += 80.0
    assert net.ok(bob, "heartbeat")                 # bob keeps itself alive
    net.now += 11.0
    assert net.core.expire(bob, net.now) is None
    reply = net.core.expire(alice, net.now)
    failed(reply, "IDLE_TIMEOUT")
    assert "90s" in reply.message                   # type: ignore[union-attr]
    net.reply(alice, -1)
    assert [n.to_wire() for n in net.pushed(bob)] == [
        {"push": "presence", "handle": "@alice", "online": False}]
    assert net.core.online_handles() == ["@bob"]    # offline, not lost
    assert alice.closing and alice.handle is None


# ---- flood control and the server password ---------------------------------------------------

def test_flood_control_throttles_but_never_housekeeping() -> None:
    net = Net(flood_burst=3, flood_rate=1.0)
    alice = net.join("@alice")                      # the registration took one
    assert net.ok(alice, "online") and net.ok(alice, "online")
    failed(net.call(alice, "online"), "THROTTLED")
    assert net.ok(alice, "heartbeat")
    net.now += 1.0
    assert net.ok(alice, "online")


def test_receipts_of_kept_messages_are_never_throttled_other_receipts_are() -> None:
    # A login may be pushed a thousand kept messages, each confirmed by its own receipt.
    net = Net(flood_burst=3, flood_rate=1.0)
    alice, bob = net.join("@alice"), net.join("@bob")
    assert net.ok(bob, "logout")
    net.now += 10.0
    for n in range(3):
        assert net.ok(alice, "message", to="@bob", text=f"{n}")
    again = net.session("bob again")
    net.now += 10.0
    assert net.login(again, "@bob").ok                      # type: ignore[union-attr]
    kept = [notice.id for notice in net.pushed(again)       # type: ignore[attr-defined]
            if isinstance(notice, MessagePush)]
    assert net.ok(again, "online") and net.ok(again, "online")
    failed(net.call(again, "online"), "THROTTLED")          # its commands are spent ...
    for message_id in kept:                                 # ... its receipts go through
        assert net.ok(again, "message-received", message_id=message_id)
    failed(net.call(again, "message-received", message_id=kept[0]), "THROTTLED")  # again
    failed(net.call(again, "message-received", message_id=999), "THROTTLED")
    net.now += 1.0
    failed(net.call(again, "message-received", message_id=999), "UNKNOWN_MESSAGE")


def test_the_server_password_comes_first() -> None:
    net = Net(server_password="sesame")
    assert net.core.welcome().to_wire() == {"push": "welcome", "server": "tweeter",
                                            "password_required": True}
    rude = net.session("rude")
    failed(net.call(rude, "query-handles"), "SERVER_PASSWORD_REQUIRED")
    assert rude.closing
    wrong = net.session("wrong")
    failed(net.call(wrong, "auth", password="open"), "WRONG_SERVER_PASSWORD")
    assert wrong.closing
    right = net.session("right")
    assert net.ok(right, "auth", password="sesame")
    assert not right.closing
    assert net.ok(right, "query-handles")


def test_auth_without_a_server_password_is_a_no_op() -> None:
    net = Net()
    assert net.core.welcome().password_required is False
    assert "no server password" in net.ok(net.session("s"), "auth", password="x").message


# ---- online, followers, following ------------------------------------------------------------

def test_your_following_list_carries_the_keys_of_those_online() -> None:
    net = Net()
    me = net.join("@me")
    for handle in ("@a", "@b", "@c"):
        net.join(handle, "10.0.0.9")
        net.follow(me, handle)
    net.core.disconnect(net.join("@d"), net.now)          # lost: not online
    net.follow(me, "@d")
    reply: Any = net.ok(me, "following")
    assert reply.handles == ("@a", "@b", "@c", "@d")
    assert [peer.handle for peer in reply.peers] == ["@a", "@b", "@c"]
    assert reply.to_wire()["peers"][0] == reply.peers[0].as_list()
    assert reply.to_wire()["peers"][0][1::4] == ["10.0.0.9", SAMPLE_KEY]
    assert "peers" not in net.ok(me, "followers").to_wire()


def test_online_marks_the_handles_you_follow() -> None:
    net = Net()
    alice, _bob, carol = net.join("@alice"), net.join("@Bob"), net.join("@carol")
    net.join("@dave")
    net.follow(alice, "@bob")
    net.core.disconnect(carol, net.now)                     # lost: not online any more
    reply: Any = net.ok(alice, "online")
    assert (reply.count, reply.online) == (3, (("@alice", False), ("@Bob", True),
                                               ("@dave", False)))
    anonymous: Any = net.ok(net.session("anonymous"), "online")
    assert [row[1] for row in anonymous.online] == [False, False, False]


def test_followers_and_following() -> None:
    net = Net()
    alice, bob, carol = net.join("@alice"), net.join("@Bob"), net.join("@carol")
    net.follow(bob, "@alice")
    net.follow(carol, "@alice")
    net.follow(alice, "@carol")
    reply: Any = net.ok(alice, "followers")
    assert (reply.handle, reply.count, reply.handles) == ("@alice", 2, ("@Bob", "@carol"))
    reply = net.ok(alice, "following", handle="@BOB")
    assert (reply.handle, reply.count, reply.handles) == ("@Bob", 1, ("@alice",))
    assert reply.peers is None                      # keys come with your own list only
    assert net.ok(alice, "following").handles == ("@carol",)    # type: ignore[attr-defined]
    failed(net.call(alice, "followers", handle="@nobody"), "UNKNOWN_HANDLE")
    failed(net.call(alice, "following", handle="nobody"), "BAD_HANDLE")


def test_followers_and_following_come_in_pages() -> None:
    net = Net()
    star = net.join("@star")
    fans = [net.join(handle) for handle in ("@eve", "@Bob", "@dan", "@amy", "@Cat")]
    for fan in fans:
        net.follow(fan, "@star")
        net.follow(star, fan.handle)                    # type: ignore[arg-type]
    followers = pages(net, star, "followers", limit=2)
    assert [r.handles for r in followers] == [("@amy", "@Bob"), ("@Cat", "@dan"), ("@eve",)]
    assert {r.count for r in followers} == {5}
    following = pages(net, fans[0], "following", handle="@STAR", limit=3)
    assert [r.handles for r in following] == [("@amy", "@Bob", "@Cat"), ("@dan", "@eve")]
    # your own list: the keys of the page's handles that are online
    mine = pages(net, star, "following", limit=3)
    assert [[peer.handle for peer in r.peers] for r in mine] == [["@amy", "@Bob", "@Cat"],
                                                                 ["@dan", "@eve"]]
    failed(net.call(star, "followers", limit=0), "BAD_COUNT")
    failed(net.call(star, "following", after="@"), "BAD_HANDLE")


# ---- feed, retweet, search, trending ---------------------------------------------------------

def tweet_and_end(net: Net, session: Session, text: str) -> int:
    reply = net.tweet(session, text)
    assert reply.ok, reply
    assert net.end(session, reply.tid).ok
    return int(reply.tid)


def test_feed_is_own_and_followed_tweets_newest_first() -> None:
    net = Net()
    alice, bob, carol = net.join("@alice"), net.join("@bob"), net.join("@carol")
    net.follow(alice, "@bob")
    first = tweet_and_end(net, bob, "one")
    tweet_and_end(net, carol, "not followed")
    mine = tweet_and_end(net, alice, "mine")
    second = tweet_and_end(net, bob, "two")
    reply: Any = net.ok(alice, "feed")
    assert [tweet.id for tweet in reply.tweets] == [second, mine, first]
    assert (reply.tweets[0].author, reply.tweets[0].text) == ("@bob", "two")
    assert reply.to_wire()["tweets"][0] == [second, "@bob", WALL, "two", None]
    assert [t.id for t in net.ok(alice, "feed", count=2).tweets] == [second, mine]  # type: ignore


@pytest.mark.parametrize("count", [0, -1, limits.FEED_MAX + 1])
def test_feed_count_is_checked(count: int) -> None:
    net = Net()
    alice = net.join("@alice")
    failed(net.call(alice, "feed", count=count), "BAD_COUNT")


def test_retweet() -> None:
    net = Net()
    alice, bob, carol = net.join("@alice"), net.join("@bob"), net.join("@carol")
    net.follow(carol, "@bob")
    original = tweet_and_end(net, alice, "worth repeating")
    reply: Any = net.ok(bob, "retweet", tid=original)
    assert reply.text == "RT @alice: worth repeating"
    assert names(reply) == ["@carol"]                       # around the retweeter's own ring
    failed(net.call(bob, "retweet", tid=original), "TWEET_IN_PROGRESS")
    assert net.end(bob, reply.tid).ok
    # a retweet of a retweet repeats the original, not "RT @bob: RT @alice: ..."
    again: Any = net.ok(carol, "retweet", tid=reply.tid)
    assert again.text == "RT @alice: worth repeating"
    failed(net.call(alice, "retweet", tid=9999), "UNKNOWN_TWEET")


def test_a_retweet_always_fits_in_a_ring_datagram() -> None:
    # The ring carries at most RING_TEXT_MAX characters: peers refuse anything longer, so a
    # longer retweet is dropped by every follower, none acks, and the author skips them all.
    # Here the original of a retweet is gone (its author exited), and the retweet of the
    # retweet would nest a second "RT @x: " prefix: it is refused.
    net = Net()
    author, middle, last = "@" + "a" * 15, "@" + "b" * 15, "@" + "c" * 15
    first, second, third = net.join(author), net.join(middle), net.join(last)
    original = tweet_and_end(net, first, "x" * limits.TWEET_MAX)
    retweet: Any = net.ok(second, "retweet", tid=original)
    assert check_text(retweet.text, most=limits.RING_TEXT_MAX) is None
    hop = datagrams.TweetMsg(middle, 2**53 - 1, middle, retweet.tid, retweet.text, "A" * 86 + "==",
                             middle)                                # the longest fields
    data = datagrams.encode(datagrams.body_of(hop), bytes(16))
    assert len(data) <= limits.DATAGRAM_MAX and datagrams.decode(data).message == hop
    assert net.end(second, retweet.tid).ok
    assert net.ok(first, "exit", handle=author)
    assert net.ok(first, "exit-complete", handle=author)
    failed(net.call(third, "retweet", tid=retweet.tid), "TOO_LONG")


def test_search_and_trending() -> None:
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    first = tweet_and_end(net, alice, "#Python is fun #tests")
    tweet_and_end(net, bob, "no tags here, not even this: a#b")
    second = tweet_and_end(net, bob, "more #python")
    reply: Any = net.ok(alice, "search", tag="#PYTHON")
    assert [tweet.id for tweet in reply.tweets] == [second, first]
    empty: Any = net.ok(alice, "search", tag="#nothing")
    assert (empty.count, empty.tweets) == (0, ())
    for tag in ("python", "#", "#a b", "#" + "x" * (limits.TAG_MAX + 1)):
        failed(net.call(alice, "search", tag=tag), "BAD_TAG")
    assert net.ok(bob, "trending").tags == (("#python", 2), ("#tests", 1))  # type: ignore


def test_feed_and_search_come_in_pages_newest_first() -> None:
    net = Net()
    alice = net.join("@alice")
    ids = [tweet_and_end(net, alice, f"number {n} #count") for n in range(7)]
    for cmd, args in (("feed", {}), ("search", {"tag": "#count"})):
        replies = [net.ok(alice, cmd, **args, count=3)]
        while replies[-1].next is not None:                 # type: ignore[attr-defined]
            replies.append(net.ok(alice, cmd, **args, count=3,
                                  before=replies[-1].next))  # type: ignore[attr-defined]
        assert [[t.id for t in r.tweets] for r in replies] == \
            [ids[6:3:-1], ids[3:0:-1], ids[:1]], cmd
        assert [r.count for r in replies] == [3, 3, 1]
    exact: Any = net.ok(alice, "feed", count=7)
    assert (len(exact.tweets), exact.next) == (7, None)     # no more: no next
    assert net.ok(alice, "search", tag="#count").count == 7  # type: ignore[attr-defined]
    failed(net.call(alice, "search", tag="#count", count=0), "BAD_COUNT")


# ---- say and direct messages -----------------------------------------------------------------

def test_say_reaches_everyone_else_online_under_the_real_sender() -> None:
    net = Net()
    alice, bob, carol = net.join("@alice"), net.join("@bob"), net.join("@carol")
    net.core.disconnect(carol, net.now)
    reply: Any = net.ok(alice, "say", text="hello", **{"from": "@bob"})
    assert reply.count == 1
    assert [n.to_wire() for n in net.pushed(bob)] == [
        {"push": "say", "sender": "@alice", "text": "hello"}]
    assert net.pushed(alice) == []
    failed(net.call(alice, "say", text=""), "EMPTY_TEXT")


def test_direct_messages_blocks_and_unblocks() -> None:
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    reply: Any = net.ok(alice, "message", to="@bob", text="psst")
    assert reply.peer is not None and reply.peer.handle == "@bob"
    failed(net.call(alice, "message", to="@nobody", text="x"), "UNKNOWN_HANDLE")
    failed(net.call(alice, "message", to="@bob", text=""), "EMPTY_TEXT")
    failed(net.call(bob, "block", handle="@bob"), "SELF_BLOCK")
    assert net.ok(bob, "block", handle="@alice")
    failed(net.call(bob, "block", handle="@ALICE"), "ALREADY_BLOCKED")
    failed(net.call(alice, "message", to="@bob", text="hey"), "BLOCKED")
    failed(net.call(alice, "follow", follower="@alice", followee="@bob"), "BLOCKED")
    assert net.ok(bob, "logout")
    assert net.login(net.session("bob again"), "@bob").blocked == ("@alice",)  # type: ignore


def test_kept_messages_are_bounded_per_recipient_and_per_sender() -> None:
    net = Net(kept_per_recipient=5, kept_per_sender=3)
    bob = net.join("@bob")
    senders = [net.join(handle) for handle in ("@a", "@b", "@c")]
    assert net.ok(bob, "logout")
    for sender in senders[:2]:
        for n in range(3):
            reply = net.call(sender, "message", to="@bob", text=f"{n}")
            if sender is senders[1] and n == 2:             # 5 kept for @bob: no more
                failed(reply, "MAILBOX_FULL")
            else:
                assert reply is not None and reply.ok, reply
    failed(net.call(senders[0], "message", to="@c", text="x"), "TOO_MANY_UNREAD")
    failed(net.call(senders[2], "message", to="@bob", text="x"), "MAILBOX_FULL")
    assert net.ok(senders[2], "message", to="@a", text="another recipient")
    # Confirmed messages are no longer kept: room again, for the recipient and the sender
    again = net.session("bob again")
    assert net.login(again, "@bob").kept == 5               # type: ignore[union-attr]
    kept = [notice for notice in net.pushed(again) if isinstance(notice, MessagePush)]
    assert len(kept) == 5
    assert net.ok(again, "message-received", message_id=kept[0].id)
    assert net.ok(senders[0], "message", to="@bob", text="room again")
    failed(net.call(senders[0], "message", to="@c", text="3 of mine wait"), "TOO_MANY_UNREAD")
    # and a deleted account's kept messages are counted out with it
    assert net.ok(senders[1], "exit", handle="@b")
    assert net.ok(senders[1], "exit-complete", handle="@b")
    assert net.ok(senders[2], "message", to="@bob", text="two were @b's")


def test_kept_messages_are_pushed_a_page_at_a_time_after_the_login_reply() -> None:
    net = Net(kept_page=4, kept_per_recipient=100, kept_per_sender=100)
    alice, bob = net.join("@alice"), net.join("@bob")
    assert net.ok(bob, "logout")
    sent = [net.ok(alice, "message", to="@bob", text=f"m{n}").message_id  # type: ignore
            for n in range(10)]
    again = net.session("bob again")
    re, work = net.start(again, "login", handle="@bob", ip="127.0.0.1", ports=net.ports(),
                         key=SAMPLE_KEY, password=PASSWORD)
    assert work is not None
    net.finish(again, work)
    out = [message for to, message in net.core.take_outbox() if to is again]
    assert out[0].re == re and out[0].kept == 10            # type: ignore[union-attr]
    assert [m.id for m in out[1:]] == sent[:4]              # type: ignore[attr-defined]
    assert net.core.take_paging() == [again]
    assert net.core.take_outbox() == []                     # nothing until the page has left
    assert net.ok(alice, "message", to="@bob", text="while online")    # not kept for the login
    assert net.ok(again, "message-received", message_id=sent[5])        # confirmed meanwhile
    net.core.next_page(again, net.now)
    second = [m.id for _to, m in net.core.take_outbox()]    # type: ignore[attr-defined]
    assert second == [sent[4], sent[6], sent[7], sent[8]] and net.core.take_paging() == [again]
    net.core.next_page(again, net.now)
    assert [m.id for _to, m in net.core.take_outbox()] == [sent[9]]  # type: ignore[attr-defined]
    assert net.core.take_paging() == []                     # that was the last page
    net.core.next_page(again, net.now)
    assert net.core.take_outbox() == []


def test_kept_pages_stop_when_the_session_goes_offline() -> None:
    net = Net(kept_page=2)
    alice, bob = net.join("@alice"), net.join("@bob")
    assert net.ok(bob, "logout")
    for n in range(5):
        assert net.ok(alice, "message", to="@bob", text=f"m{n}")
    again = net.session("bob again")
    assert net.login(again, "@bob").ok                      # type: ignore[union-attr]
    assert net.core.take_paging() == [again]
    assert net.ok(again, "logout")
    net.core.next_page(again, net.now)
    assert net.core.take_outbox() == []


def test_unblock() -> None:
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    failed(net.call(bob, "unblock", handle="@alice"), "NOT_BLOCKED")
    assert net.ok(bob, "block", handle="@alice")
    assert net.ok(bob, "unblock", handle="@alice")
    assert net.ok(alice, "follow", follower="@alice", followee="@bob")
    failed(net.call(bob, "unblock", handle="@nobody"), "UNKNOWN_HANDLE")


def test_a_message_to_an_online_user_hands_each_side_the_others_key() -> None:
    net = Net()
    alice, bob = net.join("@alice", "10.0.0.1"), net.join("@bob", "10.0.0.2")
    re, _ = net.start(alice, "message", to="@bob", text="psst")
    out = [(to.name, message.to_wire()) for to, message in net.core.take_outbox()]
    # The recipient gets the sender's tuple first, so it can check the datagram.
    assert [name for name, _ in out] == ["test @bob", "test @alice"]
    assert out[0][1]["push"] == "peer" and out[0][1]["peer"][:2] == ["@alice", "10.0.0.1"]
    assert out[1][1]["re"] == re and out[1][1]["peer"][:2] == ["@bob", "10.0.0.2"]
    message_id = out[1][1]["message_id"]
    assert not net.store.message(message_id).delivered      # type: ignore[union-attr]
    failed(net.call(alice, "message-received", message_id=message_id), "UNKNOWN_MESSAGE")
    failed(net.call(bob, "message-received", message_id=999), "UNKNOWN_MESSAGE")
    assert net.ok(bob, "message-received", message_id=message_id)
    assert net.store.message(message_id).delivered          # type: ignore[union-attr]
    assert net.ok(bob, "message-received", message_id=message_id)       # a repeat is fine
    assert "after all" in net.ok(alice, "message-undelivered", message_id=message_id).message


def test_an_unconfirmed_message_goes_through_the_tracker() -> None:
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    message_id = net.ok(alice, "message", to="@bob", text="knock").message_id  # type: ignore
    net.pushes.clear()
    failed(net.call(alice, "message-undelivered", message_id=999), "UNKNOWN_MESSAGE")
    failed(net.call(bob, "message-undelivered", message_id=message_id),
           "UNKNOWN_MESSAGE")                       # not bob's to report
    reply = net.ok(alice, "message-undelivered", message_id=message_id)
    assert "kept for the recipient's next login" in reply.message
    assert [n.to_wire() for n in net.pushed(bob)] == [
        {"push": "message", "id": message_id, "sender": "@alice", "text": "knock",
         "created": WALL, "kept": True}]
    assert net.ok(bob, "logout")
    assert net.ok(alice, "message-undelivered", message_id=message_id)
    assert net.pushed(bob) == []                    # offline: it waits for the next login


def test_a_message_stays_kept_until_its_receipt() -> None:
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    assert net.ok(bob, "logout")
    message_id = net.ok(alice, "message", to="@bob", text="later").message_id  # type: ignore
    for _ in range(2):                  # pushed at every login until confirmed
        session = net.session("bob")
        assert net.login(session, "@bob").ok                # type: ignore[union-attr]
        assert [n.id for n in net.pushed(session)] == [message_id]  # type: ignore[attr-defined]
        assert net.ok(session, "logout")
    session = net.session("bob")
    assert net.login(session, "@bob").ok                    # type: ignore[union-attr]
    assert net.ok(session, "message-received", message_id=message_id)
    assert net.ok(session, "logout")
    session = net.session("bob")
    assert net.login(session, "@bob").ok                    # type: ignore[union-attr]
    assert net.pushed(session) == []


# ---- "N new tweets since the last session" ---------------------------------------------------

def new_at_login(net: Net, handle: str) -> int:
    reply: Any = net.login(net.session(handle), handle)
    assert reply.ok, reply
    return int(reply.new)


def test_new_counts_what_was_missed_offline_not_what_arrived_online() -> None:
    net = Net()
    star, bob = net.join("@star"), net.join("@bob")
    net.follow(bob, "@star")
    for text in ("one", "two", "three"):
        tweet_and_end(net, star, text)          # bob is online: each reaches it
    assert net.ok(bob, "logout")
    tweet_and_end(net, star, "missed one")
    tweet_and_end(net, star, "missed two")
    tweet_and_end(net, net.join("@stranger"), "not in bob's feed")
    assert new_at_login(net, "@bob") == 2


def test_new_is_right_after_a_tracker_restart() -> None:
    # A tracker killed with its users online never saw them log out: the count must come
    # from what the store knows, not from a logout that never happened.
    store = MemoryStore()
    net = Net(store=store)
    star, bob = net.join("@star"), net.join("@bob")
    net.follow(bob, "@star")
    for number in range(30):
        net.now += 1.0                          # within flood control
        tweet_and_end(net, star, f"seen {number}")
    net.core.disconnect(bob, net.now)
    tweet_and_end(net, star, "missed one")
    tweet_and_end(net, star, "missed two")
    assert new_at_login(Net(store=store), "@bob") == 2     # a new core, the same store
    assert new_at_login(Net(store=store), "@bob") == 0     # told once


def test_a_tweet_skipped_while_lost_counts_as_new() -> None:
    net = Net()
    star, bob = net.join("@star"), net.join("@bob")
    net.follow(bob, "@star")
    net.core.disconnect(bob, net.now)           # listed, lost: the ring will skip it
    tid = net.tweet(star, "into the void").tid
    assert net.end(star, tid, skipped=["@bob"]).ok
    assert new_at_login(net, "@bob") == 1


def test_own_tweets_are_not_new() -> None:
    net = Net()
    me = net.join("@me")
    tweet_and_end(net, me, "mine")
    assert net.ok(me, "logout")
    assert new_at_login(net, "@me") == 0
