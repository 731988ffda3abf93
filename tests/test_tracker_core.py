"""Unit tests of protocol.tracker_core: what the tracker answers, without sockets (SPEC §2)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import SAMPLE_KEY

from protocol import datagrams, limits
from protocol.accounts import LoginThrottle, PasswordHasher
from protocol.tracker_core import MemoryStore, Session, TrackerCore, by_name
from protocol.validate import check_text
from protocol.wire import FAILURE, SUCCESS, Reply, Request

JOIN_TIMEOUT = 10.0
PASSWORD = "correct horse"
CHEAP_HASHER = PasswordHasher(n=2, r=1, p=1)     # command semantics, not hashing cost


class Net:
    """A TrackerCore and a few sessions talking to it."""

    def __init__(self, **options: Any) -> None:
        self.logs: list[str] = []
        options.setdefault("log", self.logs.append)
        options.setdefault("hasher", CHEAP_HASHER)
        self.core = TrackerCore(**options)
        self.store: MemoryStore = self.core.store  # type: ignore[assignment]
        self._ids = itertools.count(1)
        self._ports = itertools.count(20000, 3)

    def call(self, session: Session, cmd: str, **args: Any) -> Reply:
        reply = self.core.execute(session, Request(next(self._ids), cmd, args))
        assert reply.status in (SUCCESS, FAILURE)
        assert isinstance(reply.message, str) and reply.message
        return reply

    def ports(self) -> list[int]:
        base = next(self._ports)
        return [base, base + 1, base + 2]

    def register(self, session: Session, handle: str, ip: str = "127.0.0.1",
                 ports: list[Any] | None = None, password: Any = PASSWORD) -> Reply:
        return self.call(session, "register", handle=handle, ip=ip, key=SAMPLE_KEY,
                         ports=self.ports() if ports is None else ports, password=password)

    def login(self, session: Session, handle: str, password: Any = PASSWORD,
              ip: str = "127.0.0.1", ports: list[Any] | None = None) -> Reply:
        return self.call(session, "login", handle=handle, ip=ip, key=SAMPLE_KEY,
                         ports=self.ports() if ports is None else ports, password=password)

    def join(self, handle: str, ip: str = "127.0.0.1") -> Session:
        session = Session(f"test {handle}")
        reply = self.register(session, handle, ip)
        assert reply.ok, reply
        return session

    def follow(self, session: Session, followee: str) -> None:
        assert session.handle is not None
        reply = self.call(session, "follow", follower=session.handle, followee=followee)
        assert reply.ok, reply

    def tweet(self, session: Session, text: str = "hello") -> Reply:
        assert session.handle is not None
        return self.call(session, "tweet", handle=session.handle, text=text)

    def end(self, session: Session, tid: int, reached: int = 0,
            skipped: list[object] | None = None) -> Reply:
        assert session.handle is not None
        return self.call(session, "end-tweet", handle=session.handle, tid=tid, reached=reached,
                         skipped=skipped or [])

    def handles(self) -> list[str]:
        reply = self.call(Session("observer"), "query-handles")
        assert reply.ok
        assert reply.data["count"] == len(reply.data["handles"])
        return reply.data["handles"]


def failed(reply: Reply, code: str) -> None:
    assert reply.status == FAILURE, reply
    assert reply.code == code, reply
    assert not reply.ok


def names(reply: Reply) -> list[str]:
    return [row[0] for row in reply.data["followers"]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def in_thread(target: Callable[[], Reply], name: str) -> tuple[threading.Thread, list[Reply]]:
    result: list[Reply] = []
    thread = threading.Thread(target=lambda: result.append(target()), name=name, daemon=True)
    thread.start()
    return thread, result


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
    failed(net.call(Session("fresh"), cmd, **args), "NOT_LOGGED_IN")
    assert net.handles() == ["@a"]


def test_anonymous_commands_are_allowed_before_register() -> None:
    net = Net()
    session = Session("fresh")
    reply = net.call(session, "query-handles")
    assert reply.ok
    assert reply.data == {"count": 0, "handles": []}
    assert net.call(session, "online").ok
    failed(net.login(session, "@alice"), "UNKNOWN_HANDLE")          # login is allowed: no such
    reply = net.register(session, "@alice", "10.0.0.7", [5001, 5002, 5003])
    assert reply.ok
    assert reply.data == {"handle": "@alice"}
    assert "10.0.0.7" in reply.message
    assert session.handle == "@alice"
    assert net.core.online_handles() == ["@alice"]


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
    ("@alice", "127.0.0.1", [1, 1, 3], PASSWORD, "BAD_PORT"),
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
    session = Session("fresh")
    failed(net.register(session, handle, ip, ports, password), code)
    assert session.handle is None
    assert net.handles() == []
    assert net.core.online_handles() == []
    assert net.register(session, "@alice", "127.0.0.1", [1, 2, 3]).ok


def test_duplicate_handle_is_case_insensitive_and_shown_as_first_registered() -> None:
    net = Net()
    net.join("@Alice")
    second = Session("second")
    reply = net.register(second, "@alice")
    failed(reply, "DUPLICATE_HANDLE")
    assert "@Alice" in reply.message
    failed(net.register(second, "@ALICE"), "DUPLICATE_HANDLE")
    assert second.handle is None
    assert net.handles() == ["@Alice"]
    assert net.core.online_handles() == ["@Alice"]


def test_server_full() -> None:
    net = Net(session_max=2)
    alice, _bob = net.join("@alice"), net.join("@bob")
    carol = Session("carol")
    failed(net.register(carol, "@carol"), "SERVER_FULL")
    assert carol.handle is None
    assert net.handles() == ["@alice", "@bob"]
    # the others are still served, and a place frees up when someone exits or logs out
    assert net.call(alice, "exit", handle="@alice").ok
    assert net.call(alice, "exit-complete", handle="@alice").ok
    assert net.register(carol, "@carol").ok
    assert net.handles() == ["@bob", "@carol"]
    failed(net.login(Session("bob again"), "@bob"), "ALREADY_ONLINE")


def test_login_when_full() -> None:
    net = Net(session_max=2)
    alice, _bob = net.join("@alice"), net.join("@bob")
    assert net.call(alice, "logout").ok
    net.join("@carol")
    failed(net.login(Session("alice again"), "@alice"), "SERVER_FULL")


def test_closed_connections_do_not_count_against_the_session_limit() -> None:
    # SPEC §6: "at most 4096 sessions; past that FAILURE SERVER_FULL".  A connection that closed
    # is no session any more (`online` does not list it either); if its listing (marked lost)
    # keeps counting, a tracker with no connection left refuses every registration until the
    # lost handles log in again or some ring skips them - which never happens to a handle that
    # follows nobody.
    net = Net(session_max=2)
    alice, bob = net.join("@alice"), net.join("@bob")
    net.core.disconnect(alice)
    net.core.disconnect(bob)
    assert net.call(Session("observer"), "online").data["count"] == 0
    carol = Session("carol")
    assert net.register(carol, "@carol").ok


# ---- query handles ---------------------------------------------------------------------------

def test_query_handles_is_alphabetical_case_insensitively() -> None:
    net = Net()
    for handle in ("@bob", "@Carl", "@anna", "@Alice", "@dave"):
        net.join(handle)
    reply = net.call(Session("observer"), "query-handles")
    assert reply.data == {"count": 5, "handles": ["@Alice", "@anna", "@bob", "@Carl", "@dave"]}
    assert reply.message.startswith("5")


def test_query_handles_when_none() -> None:
    reply = Net().call(Session("observer"), "query-handles")
    assert reply.ok
    assert reply.data["count"] == 0
    assert reply.data["handles"] == []


# ---- follow and drop -------------------------------------------------------------------------

def test_follow_and_drop() -> None:
    net = Net()
    alice, _bob = net.join("@alice"), net.join("@Bob")
    reply = net.call(alice, "follow", follower="@alice", followee="@bob")
    assert reply.ok
    assert net.store.followers("@bob") == ["@alice"]
    failed(net.call(alice, "follow", follower="@alice", followee="@BOB"), "ALREADY_FOLLOWING")
    assert net.call(alice, "drop", follower="@ALICE", followee="@bob").ok   # own handle, any case
    assert net.store.followers("@bob") == []
    failed(net.call(alice, "drop", follower="@alice", followee="@bob"), "NOT_FOLLOWING")


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
        session = Session(handle)
        ports = net.ports()
        assert net.register(session, handle, ip, ports).ok
        net.follow(session, "@star")
        rows[handle] = [handle, ip, *ports, SAMPLE_KEY]
    net.join("@stranger")                                   # not a follower
    reply = net.tweet(star, "first")
    assert reply.ok
    assert reply.data["count"] == 3
    assert reply.data["followers"] == [rows["@Bob"], rows["@carl"], rows["@dave"]]
    assert isinstance(reply.data["tid"], int)


def test_tweet_with_no_followers() -> None:
    net = Net()
    alice = net.join("@alice")
    reply = net.tweet(alice)
    assert reply.ok
    assert reply.data["count"] == 0
    assert reply.data["followers"] == []
    assert net.end(alice, reply.data["tid"]).ok


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
    end = net.end(alice, first.data["tid"], reached=1)
    assert end.ok
    assert end.data == {"reached": 1, "skipped": []}
    second = net.tweet(alice, "again")
    assert second.ok
    assert second.data["tid"] != first.data["tid"]


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
    assert net.call(bob, "drop", follower="@bob", followee="@alice").ok
    assert names(first) == ["@bob"]
    assert net.end(alice, first.data["tid"]).ok
    assert names(net.tweet(alice)) == ["@carol"]


# ---- end-tweet -------------------------------------------------------------------------------

def test_no_tweet_in_progress() -> None:
    net = Net()
    alice = net.join("@alice")
    failed(net.end(alice, 1), "NO_TWEET_IN_PROGRESS")
    tid = net.tweet(alice).data["tid"]
    failed(net.end(alice, tid + 1), "NO_TWEET_IN_PROGRESS")
    assert net.end(alice, tid).ok
    failed(net.end(alice, tid), "NO_TWEET_IN_PROGRESS")


def test_end_tweet_for_another_handle() -> None:
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    tid = net.tweet(alice).data["tid"]
    failed(net.call(bob, "end-tweet", handle="@alice", tid=tid, reached=0, skipped=[]),
           "NOT_YOUR_HANDLE")
    failed(net.tweet(alice), "TWEET_IN_PROGRESS")             # still running


def test_a_skipped_follower_is_taken_offline() -> None:
    net = Net()
    star = net.join("@star")
    for handle in ("@a", "@b", "@c"):
        net.follow(net.join(handle), "@star")
    net.join("@outsider")
    first = net.tweet(star)
    assert names(first) == ["@a", "@b", "@c"]
    end = net.end(star, first.data["tid"], reached=2, skipped=["@B", "@outsider", "@nobody", 7])
    assert end.ok
    # Only followers of this tweet count, named as registered.
    assert end.data == {"reached": 2, "skipped": ["@b"]}
    assert net.core.online_handles() == ["@a", "@c", "@outsider", "@star"]
    assert names(net.tweet(star)) == ["@a", "@c"]
    assert "@b" in net.handles()                            # offline, not deleted


# ---- disconnect ------------------------------------------------------------------------------

def test_a_lost_follower_stays_listed_until_a_ring_skips_it() -> None:
    net = Net()
    star, bob, carol = net.join("@star"), net.join("@bob"), net.join("@carol")
    net.follow(bob, "@star")
    net.follow(carol, "@star")
    net.core.disconnect(bob)
    assert bob.handle is None
    assert "@bob" in net.core.online_handles()
    first = net.tweet(star)
    assert names(first) == ["@bob", "@carol"]
    assert net.end(star, first.data["tid"], reached=1, skipped=["@bob"]).ok
    assert "@bob" not in net.core.online_handles()
    assert names(net.tweet(star)) == ["@carol"]


def test_disconnect_of_an_unregistered_session_does_nothing() -> None:
    net = Net()
    net.join("@alice")
    net.core.disconnect(Session("stranger"))
    assert net.core.online_handles() == ["@alice"]


def test_disconnect_in_the_middle_of_exit_goes_offline_at_once() -> None:
    net = Net()
    alice = net.join("@alice")
    assert net.call(alice, "exit", handle="@alice").ok
    net.core.disconnect(alice)
    assert net.core.online_handles() == []
    assert net.handles() == ["@alice"]                      # exit-complete never came


def test_an_author_that_disconnects_ends_its_tweet() -> None:
    net = Net(exit_wait=0.2)
    star, bob = net.join("@star"), net.join("@bob")
    net.follow(bob, "@star")
    assert net.tweet(star).ok
    net.core.disconnect(star)
    assert any("connection closed" in line for line in net.logs)
    assert "@star" in net.core.online_handles()             # listed, marked lost
    exit_reply = net.call(bob, "exit", handle="@bob")       # nothing to wait for: no BUSY
    assert exit_reply.ok, exit_reply


# ---- tweet timeout ---------------------------------------------------------------------------

def test_a_tweet_without_end_tweet_is_ended_after_the_timeout() -> None:
    clock = FakeClock()
    net = Net(clock=clock, tweet_timeout=60.0)
    alice, bob = net.join("@alice"), net.join("@bob")
    net.follow(bob, "@alice")
    first = net.tweet(alice).data["tid"]
    clock.now += 60.0
    failed(net.tweet(alice), "TWEET_IN_PROGRESS")
    clock.now += 0.5
    second = net.tweet(alice)
    assert second.ok
    assert any("no end-tweet within 60s" in line for line in net.logs)
    failed(net.end(alice, first), "NO_TWEET_IN_PROGRESS")
    assert net.end(alice, second.data["tid"]).ok


def test_a_timed_out_tweet_no_longer_holds_up_exit() -> None:
    clock = FakeClock()
    net = Net(clock=clock, tweet_timeout=5.0, exit_wait=1.0)
    alice, bob = net.join("@alice"), net.join("@bob")
    net.follow(bob, "@alice")
    assert net.tweet(alice).ok
    clock.now += 6.0
    thread, result = in_thread(lambda: net.call(bob, "exit", handle="@bob"), "exit-bob")
    thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive()
    assert result[0].ok


# ---- exit ------------------------------------------------------------------------------------

def test_exit_deletes_the_handle_and_its_follows() -> None:
    net = Net()
    alice, bob, carol = net.join("@alice"), net.join("@bob"), net.join("@carol")
    net.follow(bob, "@alice")       # bob follows alice
    net.follow(alice, "@bob")       # alice follows bob
    net.follow(carol, "@bob")
    assert net.call(bob, "exit", handle="@bob").ok
    assert bob.exiting
    done = net.call(bob, "exit-complete", handle="@bob")
    assert done.ok
    assert bob.handle is None and not bob.exiting
    assert net.handles() == ["@alice", "@carol"]
    assert net.core.online_handles() == ["@alice", "@carol"]
    assert net.store.followers("@alice") == []
    assert names(net.tweet(alice)) == []
    # the handle is free again, with nothing attached to it
    again = net.join("@Bob")
    assert net.store.followers("@bob") == []
    assert net.handles() == ["@alice", "@Bob", "@carol"]
    assert net.tweet(again).data["followers"] == []
    # and the old session may register anew
    assert net.register(bob, "@dave").ok


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
    assert net.call(alice, "exit", handle="@alice").ok
    failed(net.call(alice, cmd, **args), "EXITING")
    assert net.call(alice, "exit-complete", handle="@alice").ok


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
    assert net.call(bob, "exit", handle="@bob").ok
    assert names(net.tweet(star)) == ["@carol"]


def test_busy_when_a_tweet_involving_the_handle_never_ends() -> None:
    net = Net(exit_wait=0.2)
    star, bob = net.join("@star"), net.join("@bob")
    net.follow(bob, "@star")
    assert net.tweet(star).ok
    failed(net.call(bob, "exit", handle="@bob"), "BUSY")
    assert not bob.exiting                       # back to normal: bob may act, and exit later
    assert net.call(bob, "drop", follower="@bob", followee="@star").ok
    failed(net.call(star, "exit", handle="@star"), "BUSY")   # its own tweet involves it too


def test_exit_of_a_handle_not_involved_does_not_wait() -> None:
    net = Net(exit_wait=30.0)
    star, _bob, carol = net.join("@star"), net.join("@bob"), net.join("@carol")
    assert net.tweet(star).ok                     # carol does not follow star
    thread, result = in_thread(lambda: net.call(carol, "exit", handle="@carol"), "exit-carol")
    thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive()
    assert result[0].ok


def exit_that_waits(end_it: Callable[[Net, Session, int], None]) -> None:
    """@bob exits while @star's tweet to it runs; ``end_it`` ends the tweet from this thread."""
    exit_is_waiting = threading.Event()

    def clock() -> float:
        # Called with the core's lock held by the exit thread, which keeps it until it waits.
        if threading.current_thread().name == "exit-bob":
            exit_is_waiting.set()
        return time.monotonic()

    net = Net(clock=clock, exit_wait=30.0)
    star, bob = net.join("@star"), net.join("@bob")
    net.follow(bob, "@star")
    tid = net.tweet(star).data["tid"]
    order: list[str] = []

    def exit_bob() -> Reply:
        reply = net.call(bob, "exit", handle="@bob")
        order.append("exit answered")
        return reply

    thread, result = in_thread(exit_bob, "exit-bob")
    assert exit_is_waiting.wait(JOIN_TIMEOUT)
    order.append("tweet ended")
    end_it(net, star, tid)      # takes the lock: only possible once exit waits on it
    thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive()
    assert order == ["tweet ended", "exit answered"]
    assert result[0].ok, result[0]
    assert net.call(bob, "exit-complete", handle="@bob").ok
    assert net.handles() == ["@star"]


def test_exit_waits_for_end_tweet() -> None:
    def end_tweet(net: Net, star: Session, tid: int) -> None:
        assert net.end(star, tid, reached=1).ok

    exit_that_waits(end_tweet)


def test_exit_waits_until_the_author_disconnects() -> None:
    exit_that_waits(lambda net, star, tid: net.core.disconnect(star))


# ---- concurrency -----------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [2, 8])
def test_registering_one_handle_at_once_exactly_one_wins(threads: int) -> None:
    spellings = ["@racer", "@Racer", "@RACER", "@rAcEr"]
    for _round in range(20):
        net = Net()
        barrier = threading.Barrier(threads, timeout=JOIN_TIMEOUT)
        sessions = [Session(f"s{i}") for i in range(threads)]

        def register(i: int, net: Net = net, barrier: threading.Barrier = barrier,
                     sessions: list[Session] = sessions) -> Reply:
            barrier.wait()
            return net.register(sessions[i], spellings[i % len(spellings)], "127.0.0.1",
                                [1000 + 3 * i, 1001 + 3 * i, 1002 + 3 * i])

        started = [in_thread(lambda i=i: register(i), f"register-{i}") for i in range(threads)]
        for thread, _ in started:
            thread.join(JOIN_TIMEOUT)
            assert not thread.is_alive()
        replies = [result[0] for _, result in started]
        winners = [i for i, reply in enumerate(replies) if reply.ok]
        assert len(winners) == 1, replies
        assert all(reply.code == "DUPLICATE_HANDLE" for reply in replies if not reply.ok)
        winner = spellings[winners[0] % len(spellings)]
        assert net.handles() == [winner]
        assert net.core.online_handles() == [winner]
        assert [s.handle for s in sessions].count(None) == threads - 1


def test_server_full_holds_under_concurrent_registrations() -> None:
    threads, room = 12, 5
    for _round in range(10):
        net = Net(session_max=room)
        barrier = threading.Barrier(threads, timeout=JOIN_TIMEOUT)

        def register(i: int, net: Net = net, barrier: threading.Barrier = barrier) -> Reply:
            barrier.wait()
            return net.register(Session(f"s{i}"), "@u" + "x" * (i + 1), "127.0.0.1",
                                [1000 + 3 * i, 1001 + 3 * i, 1002 + 3 * i])

        started = [in_thread(lambda i=i: register(i), f"register-{i}") for i in range(threads)]
        for thread, _ in started:
            thread.join(JOIN_TIMEOUT)
            assert not thread.is_alive()
        replies = [result[0] for _, result in started]
        assert sum(reply.ok for reply in replies) == room
        assert all(reply.code == "SERVER_FULL" for reply in replies if not reply.ok)
        assert len(net.handles()) == room


# ---- tweet ids -------------------------------------------------------------------------------

def test_tweet_ids_are_never_reused() -> None:
    # A follower drops a tweet whose (ring, tid) it has seen before (a resend).  If an id comes
    # back after its author exits, a re-registered author's tweet can be dropped as a "resend".
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    seen = []
    for session in (alice, bob):
        tid = net.tweet(session).data["tid"]
        assert net.end(session, tid).ok
        seen.append(tid)
    assert net.call(bob, "exit", handle="@bob").ok
    assert net.call(bob, "exit-complete", handle="@bob").ok
    again = net.join("@bob")
    tid = net.tweet(again).data["tid"]
    assert tid not in seen, f"tweet id {tid} handed out again (earlier ids: {seen})"


# ---- login and logout ------------------------------------------------------------------------

def test_logout_keeps_everything_and_login_comes_back_at_a_new_address() -> None:
    net = Net()
    star, bob = net.join("@star"), net.join("@Bob")
    net.follow(bob, "@star")
    reply = net.call(bob, "logout")
    assert reply.ok
    assert bob.handle is None
    assert net.core.online_handles() == ["@star"]
    assert net.handles() == ["@Bob", "@star"]
    failed(net.call(bob, "tweet", handle="@Bob", text="hi"), "NOT_LOGGED_IN")
    first = net.tweet(star, "while you were out")
    assert names(first) == []                            # offline followers get no ring
    assert net.end(star, first.data["tid"]).ok
    again = Session("bob again")
    reply = net.login(again, "@BOB", ip="10.0.0.9", ports=[7001, 7002, 7003])
    assert reply.ok
    assert reply.data == {"handle": "@Bob", "new": 1}    # shown as registered
    assert again.handle == "@Bob"
    assert net.tweet(star).data["followers"] == [["@Bob", "10.0.0.9", 7001, 7002, 7003, SAMPLE_KEY]]


def test_logout_ends_the_authors_running_tweet() -> None:
    net = Net(exit_wait=0.2)
    star, bob = net.join("@star"), net.join("@bob")
    net.follow(bob, "@star")
    assert net.tweet(star).ok
    assert net.call(star, "logout").ok
    assert net.call(bob, "exit", handle="@bob").ok      # nothing left to wait for


@pytest.mark.parametrize(("handle", "ip", "ports", "code"), [
    ("alice", "127.0.0.1", [1, 2, 3], "BAD_HANDLE"),
    ("@alice", "1.2.3", [1, 2, 3], "BAD_ADDRESS"),
    ("@alice", "127.0.0.1", [1, 1, 3], "BAD_PORT"),
    ("@nobody", "127.0.0.1", [1, 2, 3], "UNKNOWN_HANDLE"),
])
def test_login_validation(handle: str, ip: str, ports: list[int], code: str) -> None:
    net = Net()
    alice = net.join("@alice")
    assert net.call(alice, "logout").ok
    session = Session("fresh")
    failed(net.login(session, handle, ip=ip, ports=ports), code)
    assert session.handle is None


def test_wrong_password_then_throttled() -> None:
    clock = FakeClock()
    net = Net(throttle=LoginThrottle(limit=3, window=60.0, clock=clock))
    alice = net.join("@alice")
    assert net.call(alice, "logout").ok
    session = Session("guess")
    for _ in range(3):
        failed(net.login(session, "@alice", password="wrong"), "WRONG_PASSWORD")
    failed(net.login(session, "@alice"), "THROTTLED")         # even the right one, for now
    assert session.handle is None
    clock.now += 61.0
    assert net.login(session, "@alice").ok


def test_already_online_and_a_lost_handle_may_log_in_again() -> None:
    net = Net()
    alice = net.join("@alice")
    failed(net.login(Session("second"), "@alice"), "ALREADY_ONLINE")
    net.core.disconnect(alice)                              # listed, marked lost
    again = Session("again")
    assert net.login(again, "@alice").ok
    assert net.core.online_handles() == ["@alice"]
    failed(net.login(Session("third"), "@alice"), "ALREADY_ONLINE")


def test_logging_in_one_handle_at_once_exactly_one_wins() -> None:
    threads = 6
    for _round in range(20):
        net = Net()
        assert net.call(net.join("@racer"), "logout").ok
        barrier = threading.Barrier(threads, timeout=JOIN_TIMEOUT)
        sessions = [Session(f"s{i}") for i in range(threads)]

        def login(i: int, net: Net = net, barrier: threading.Barrier = barrier,
                  sessions: list[Session] = sessions) -> Reply:
            barrier.wait()
            return net.login(sessions[i], "@racer")

        started = [in_thread(lambda i=i: login(i), f"login-{i}") for i in range(threads)]
        for thread, _ in started:
            thread.join(JOIN_TIMEOUT)
            assert not thread.is_alive()
        replies = [result[0] for _, result in started]
        assert sum(reply.ok for reply in replies) == 1, replies
        assert all(reply.code == "ALREADY_ONLINE" for reply in replies if not reply.ok)
        assert [s.handle for s in sessions].count("@racer") == 1


# ---- online, followers, following ------------------------------------------------------------

def test_online_marks_the_handles_you_follow() -> None:
    net = Net()
    alice, _bob, carol = net.join("@alice"), net.join("@Bob"), net.join("@carol")
    net.join("@dave")
    net.follow(alice, "@bob")
    net.core.disconnect(carol)                              # lost: not online any more
    reply = net.call(alice, "online")
    assert reply.data == {"count": 3, "online": [["@alice", False], ["@Bob", True],
                                                 ["@dave", False]]}
    anonymous = net.call(Session("anonymous"), "online")
    assert [row[1] for row in anonymous.data["online"]] == [False, False, False]


def test_followers_and_following() -> None:
    net = Net()
    alice, bob, carol = net.join("@alice"), net.join("@Bob"), net.join("@carol")
    net.follow(bob, "@alice")
    net.follow(carol, "@alice")
    net.follow(alice, "@carol")
    reply = net.call(alice, "followers")
    assert reply.data == {"handle": "@alice", "count": 2, "handles": ["@Bob", "@carol"]}
    reply = net.call(alice, "following", handle="@BOB")
    assert reply.data == {"handle": "@Bob", "count": 1, "handles": ["@alice"]}
    assert net.call(alice, "following").data["handles"] == ["@carol"]
    failed(net.call(alice, "followers", handle="@nobody"), "UNKNOWN_HANDLE")
    failed(net.call(alice, "following", handle="nobody"), "BAD_HANDLE")


# ---- feed, retweet, search, trending ---------------------------------------------------------

def tweet_and_end(net: Net, session: Session, text: str) -> int:
    reply = net.tweet(session, text)
    assert reply.ok, reply
    assert net.end(session, reply.data["tid"]).ok
    return reply.data["tid"]


def test_feed_is_own_and_followed_tweets_newest_first() -> None:
    net = Net()
    alice, bob, carol = net.join("@alice"), net.join("@bob"), net.join("@carol")
    net.follow(alice, "@bob")
    first = tweet_and_end(net, bob, "one")
    tweet_and_end(net, carol, "not followed")
    mine = tweet_and_end(net, alice, "mine")
    second = tweet_and_end(net, bob, "two")
    reply = net.call(alice, "feed")
    assert reply.ok
    assert [row[0] for row in reply.data["tweets"]] == [second, mine, first]
    assert reply.data["tweets"][0][1] == "@bob"
    assert reply.data["tweets"][0][3] == "two"
    assert [row[0] for row in net.call(alice, "feed", count=2).data["tweets"]] == [second, mine]


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
    reply = net.call(bob, "retweet", tid=original)
    assert reply.ok
    assert reply.data["text"] == "RT @alice: worth repeating"
    assert names(reply) == ["@carol"]                       # around the retweeter's own ring
    failed(net.call(bob, "retweet", tid=original), "TWEET_IN_PROGRESS")
    assert net.end(bob, reply.data["tid"]).ok
    # a retweet of a retweet repeats the original, not "RT @bob: RT @alice: ..."
    again = net.call(carol, "retweet", tid=reply.data["tid"])
    assert again.data["text"] == "RT @alice: worth repeating"
    failed(net.call(alice, "retweet", tid=9999), "UNKNOWN_TWEET")


def test_a_retweet_always_fits_in_a_ring_datagram() -> None:
    # The ring carries at most RING_TEXT_MAX characters: peers refuse anything longer, so a
    # longer retweet is dropped by every follower, none acks, and the author skips them all.
    # Here the original of a retweet is gone (its author exited), and the retweet of the
    # retweet nests a second "RT @x: " prefix.
    net = Net()
    author, middle, last = "@" + "a" * 15, "@" + "b" * 15, "@" + "c" * 15
    first, second, third = net.join(author), net.join(middle), net.join(last)
    original = tweet_and_end(net, first, "x" * limits.TWEET_MAX)
    retweet = net.call(second, "retweet", tid=original)
    assert retweet.ok
    assert net.end(second, retweet.data["tid"]).ok
    assert net.call(first, "exit", handle=author).ok
    assert net.call(first, "exit-complete", handle=author).ok
    reply = net.call(third, "retweet", tid=retweet.data["tid"])
    if reply.ok:
        text = reply.data["text"]
        assert check_text(text, most=limits.RING_TEXT_MAX) is None, (len(text), text[:40])
        hop = datagrams.TweetMsg(1, last, reply.data["tid"], text, last, 0, ())
        assert datagrams.decode(datagrams.encode(hop)) == hop
    else:
        assert reply.code in ("UNKNOWN_TWEET", "TOO_LONG")


def test_search_and_trending() -> None:
    net = Net()
    alice, bob = net.join("@alice"), net.join("@bob")
    first = tweet_and_end(net, alice, "#Python is fun #tests")
    tweet_and_end(net, bob, "no tags here, not even this: a#b")
    second = tweet_and_end(net, bob, "more #python")
    reply = net.call(alice, "search", tag="#PYTHON")
    assert [row[0] for row in reply.data["tweets"]] == [second, first]
    assert net.call(alice, "search", tag="#nothing").data == {"count": 0, "tweets": []}
    for tag in ("python", "#", "#a b", "#" + "x" * (limits.TAG_MAX + 1)):
        failed(net.call(alice, "search", tag=tag), "BAD_TAG")
    assert net.call(bob, "trending").data["tags"] == [["#python", 2], ["#tests", 1]]


# ---- MemoryStore -----------------------------------------------------------------------------

def test_memory_store_basics() -> None:
    store = MemoryStore()
    assert store.create("@Alice", "hash", 1.0)
    assert not store.create("@alice", "other", 2.0)
    assert store.create("@bob", "hash", 1.0)
    assert store.find("@ALICE") == "@Alice"
    assert store.password_hash("@alice") == "hash"
    assert store.find("@nobody") is None
    assert store.handles() == ["@Alice", "@bob"]
    assert store.follow("@bob", "@alice")
    assert not store.follow("@BOB", "@alice")
    assert store.follow("@alice", "@bob")
    assert store.followers("@alice") == ["@bob"]
    assert store.following("@bob") == ["@Alice"]
    assert store.unfollow("@bob", "@ALICE")
    assert not store.unfollow("@bob", "@alice")
    first, second = store.add_tweet("@bob", "one", 1.0), store.add_tweet("@alice", "two", 2.0)
    assert second > first
    store.delete("@alice")
    assert store.find("@alice") is None
    assert store.handles() == ["@bob"]
    assert store.followers("@bob") == []
    assert store.followers("@alice") == []
    assert store.tweet(second) is None
    assert store.add_tweet("@bob", "three", 3.0) > second      # ids are never reused


def test_by_name() -> None:
    assert by_name(["@b", "@C", "@a", "@Ab"]) == ["@a", "@Ab", "@b", "@C"]
