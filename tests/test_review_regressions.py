"""Regression tests for defects found in review: each failed before its fix."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from conftest import SAMPLE_KEY, Tweeter, password_of

from protocol.accounts import LoginThrottle, PasswordHasher
from protocol.tracker_core import Session, TrackerCore
from protocol.wire import Request

CHEAP = PasswordHasher(n=2**4)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def call(core: TrackerCore, session: Session, cmd: str, **args: object):
    return core.execute(session, Request(1, cmd, args))


def join(core: TrackerCore, handle: str, base: int) -> Session:
    session = Session(handle)
    reply = call(core, session, "register", handle=handle, ip="127.0.0.1",
                 ports=[base, base + 1, base + 2], key=SAMPLE_KEY, password=password_of(handle))
    assert reply.ok, reply
    return session


def test_a_live_skipped_follower_goes_offline_cleanly_and_is_told() -> None:
    core = TrackerCore(hasher=CHEAP)
    star, fan = join(core, "@star", 100), join(core, "@fan", 200)
    assert call(core, fan, "follow", follower="@fan", followee="@star").ok
    tweet = call(core, star, "tweet", handle="@star", text="hi")
    core.take_pushes()
    assert call(core, star, "end-tweet", handle="@star", tid=tweet.data["tid"], reached=0,
                skipped=["@fan"]).ok
    pushes = core.take_pushes()
    assert [(s.name, p.kind) for s, p in pushes] == [("@fan", "offline")]
    assert fan.handle is None and not fan.exiting
    assert core.expired(fan) is None                 # not closed as if it never logged in
    again = call(core, fan, "login", handle="@fan", ip="127.0.0.1", ports=[300, 301, 302],
                 key=SAMPLE_KEY, password=password_of("@fan"))
    assert again.ok


def test_a_skipped_follower_in_the_middle_of_exit_finishes_its_exit() -> None:
    core = TrackerCore(hasher=CHEAP, exit_wait=5)
    star, fan = join(core, "@star", 100), join(core, "@fan", 200)
    call(core, fan, "follow", follower="@fan", followee="@star")
    tweet = call(core, star, "tweet", handle="@star", text="hi")
    result: list = []
    waiter = threading.Thread(target=lambda: result.append(
        call(core, fan, "exit", handle="@fan")))
    waiter.start()
    assert call(core, star, "end-tweet", handle="@star", tid=tweet.data["tid"], reached=0,
                skipped=["@fan"]).ok
    waiter.join(10)
    assert result and result[0].ok
    assert call(core, fan, "exit-complete", handle="@fan").ok
    assert core.store.find("@fan") is None


def test_logout_restarts_the_registration_clock() -> None:
    clock = Clock()
    core = TrackerCore(hasher=CHEAP, clock=clock, register_timeout=30)
    session = join(core, "@a", 100)
    clock.now += 100                                  # an old connection
    call(core, session, "logout")
    assert core.expired(session) is None              # it may log in again in time
    clock.now += 31
    assert core.expired(session) == "REGISTER_TIMEOUT"


def test_parallel_wrong_logins_cannot_outrun_the_throttle() -> None:
    core = TrackerCore(hasher=PasswordHasher(n=2**10), throttle=LoginThrottle(limit=5))
    owner = join(core, "@a", 100)
    call(core, owner, "logout")
    barrier = threading.Barrier(30, timeout=10)
    codes: list[str] = []

    def guess(index: int) -> None:
        barrier.wait()
        reply = call(core, Session(f"guess{index}"), "login", handle="@a", ip="127.0.0.1",
                     ports=[1, 2, 3], key=SAMPLE_KEY, password="wrong")
        codes.append(reply.code or "")

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert codes.count("WRONG_PASSWORD") <= 5 and codes.count("THROTTLED") >= 25


def test_heartbeat_is_allowed_while_exiting() -> None:
    core = TrackerCore(hasher=CHEAP)
    session = join(core, "@a", 100)
    assert call(core, session, "exit", handle="@a").ok
    assert call(core, session, "heartbeat").ok


def test_the_tracker_console_never_shows_raw_escape_sequences(net: Tweeter) -> None:
    client = net.client()
    client.send_raw(b'\x1b]0;PWNED\x07\x1b[2J hello\n')
    assert client.read()["code"] == "BAD_FRAME"
    client.send_raw(json.dumps({"id": 1, "cmd": "say", "text": "\x9b31m"}).encode() + b"\n")
    client.read()
    assert net.tracker_proc is not None
    net.tracker_proc.expect(r"PWNED", since=0)
    assert not any(ch in net.tracker_proc.text() for ch in "\x1b\x07\x9b")


def test_user_py_refuses_odd_digits_and_huge_ids(net: Tweeter) -> None:
    user = net.users("@a")["@a"]
    user.fails("retweet ²", "USAGE")
    user.fails("feed ³", "USAGE")
    user.fails("retweet 99999999999999999999", "BAD_REQUEST")
    user.ok("query handles")                           # the session is still fine
    user.assert_no_traceback()


def test_exit_in_a_new_process_tears_down_the_ring_an_earlier_one_set_up(net: Tweeter) -> None:
    users = net.users("@alice", "@bob")
    users["@bob"].ok("follow @bob @alice")
    users["@alice"].tweet("@alice", "set up")
    users["@alice"].send("quit")
    assert users["@alice"].wait() == 0
    again = net.user("@alice-again")
    again.login("@alice")
    again.ok("exit @alice")
    again.expect(r"^ring of @alice torn down \(1 of 1 followers acknowledged\)$")
    users["@bob"].expect(r"teardown ring=@alice")
    users["@bob"].send("rings")
    users["@bob"].ok("query handles")
    assert not any(line.startswith("ring @alice") for line in users["@bob"].lines)


def test_logout_and_login_do_not_pile_up_threads(net: Tweeter) -> None:
    user = net.users("@a")["@a"]

    def threads() -> int:
        status = Path(f"/proc/{user.popen.pid}/status").read_text()
        return int(next(line for line in status.splitlines()
                        if line.startswith("Threads:")).split()[1])

    user.ok("logout")
    user.login("@a")
    first = threads()
    for _ in range(5):
        user.ok("logout")
        user.login("@a")
    assert threads() == first


def test_a_setup_for_a_ring_of_someone_not_followed_is_dropped(net: Tweeter) -> None:
    victim = net.users("@victim")["@victim"]
    ports = [int(p) for p in victim.expect(r"^ports: left=(\d+) middle=(\d+) right=(\d+)$",
                                           since=0).groups()]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as liar:
        liar.bind(("127.0.0.1", 0))
        liar.settimeout(0.5)
        me = ["@zed", "127.0.0.1", 1, liar.getsockname()[1], 3, SAMPLE_KEY]
        setup = {"kind": "setup", "seq": 1, "ring": "@zed", "author": me, "left": me,
                 "right": me}
        liar.sendto(json.dumps(setup).encode(), ("127.0.0.1", ports[1]))
        victim.expect(r"dropped setup for @zed: not a handle I follow")
        try:
            liar.recv(100)
            raise AssertionError("the forged setup was acknowledged")
        except TimeoutError:
            pass
