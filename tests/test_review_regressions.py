"""Regression tests for defects found in review: each failed before its fix.

The tracker's moved to the files of the modules they test (test_tracker_core.py,
test_tracker.py); these are user.py's and its peer's.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from conftest import SAMPLE_KEY, Tweeter


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
