"""Integration tests of tracker.py: a real process, spoken to over TCP with the raw wire format."""

from __future__ import annotations

import json
import subprocess
import threading

from conftest import (
    MANY_CONNECTIONS,
    PYTHON,
    ROOT,
    SAMPLE_KEY,
    Cluster,
    RawClient,
    Tweeter,
)

import tracker

PORTS = [61001, 61002, 61003]


def register(client: RawClient, handle: str, ports: list[int] | None = None) -> dict:
    return client.register(handle, ports or PORTS)


def test_every_message_is_traced_in_and_out(net: Tweeter) -> None:
    client = net.client()
    reply = register(client, "@alice")
    assert reply == {"re": 1, "status": "SUCCESS", "handle": "@alice",
                     "message": "@alice registered at 127.0.0.1 ports 61001 61002 61003"}
    assert net.tracker_proc is not None
    net.tracker_proc.expect(r'\[tracker\] <- 127\.0\.0\.1:\d+ \{"id": 1, "cmd": "register"')
    net.tracker_proc.expect(r'\[tracker\] -> @alice 127\.0\.0\.1:\d+ \{"re":1,"status":"SUCCESS"')


def test_quiet_tracker_prints_no_trace(cluster) -> None:
    quiet = Tweeter(cluster)
    proc = quiet.tracker("-q")
    client = quiet.client()
    assert register(client, "@alice")["status"] == "SUCCESS"
    client.call("query-handles")
    client.close()
    proc.stop()
    proc.wait_eof()
    assert "<-" not in proc.text() and "->" not in proc.text()


def test_register_failures_and_duplicate_is_case_insensitive(net: Tweeter) -> None:
    first, second = net.client(), net.client()
    assert register(first, "@Alice")["status"] == "SUCCESS"
    dup = register(second, "@alice")
    assert (dup["status"], dup["code"]) == ("FAILURE", "DUPLICATE_HANDLE")
    assert dup["message"] == "@Alice is already registered"
    assert register(second, "@al1ce")["code"] == "BAD_HANDLE"
    assert register(second, "@" + "x" * 16)["code"] == "BAD_HANDLE"
    assert second.call("register", handle="@bob", ip="300.1.1.1", ports=PORTS,
                       key=SAMPLE_KEY, password="x")["code"] \
        == "BAD_ADDRESS"
    assert second.call("register", handle="@bob", ip="127.0.0.1", ports=[1, 2, 70000],
                       key=SAMPLE_KEY, password="x")["code"] \
        == "BAD_PORT"
    assert register(first, "@other")["code"] == "ALREADY_LOGGED_IN"


def test_query_handles_is_alphabetical_and_allowed_before_register(net: Tweeter) -> None:
    probe = net.client()
    empty = probe.call("query-handles")
    assert (empty["count"], empty["handles"]) == (0, [])
    for handle in ("@carol", "@Bob", "@alice"):
        assert register(net.client(), handle)["status"] == "SUCCESS"
    reply = probe.call("query-handles")
    assert (reply["count"], reply["handles"]) == (3, ["@alice", "@Bob", "@carol"])


def test_unregistered_session_may_only_register_and_query(net: Tweeter) -> None:
    client = net.client()
    for cmd, args in [("follow", {"follower": "@a", "followee": "@b"}),
                      ("drop", {"follower": "@a", "followee": "@b"}),
                      ("tweet", {"handle": "@a", "text": "hi"}),
                      ("exit", {"handle": "@a"})]:
        assert client.call(cmd, **args)["code"] == "NOT_LOGGED_IN"


def test_follow_and_drop_codes(net: Tweeter) -> None:
    alice, bob = net.client(), net.client()
    register(alice, "@alice")
    register(bob, "@bob", [61004, 61005, 61006])
    assert bob.call("follow", follower="@bob", followee="@nobody")["code"] == "UNKNOWN_HANDLE"
    assert bob.call("follow", follower="@bob", followee="@BOB")["code"] == "SELF_FOLLOW"
    assert bob.call("follow", follower="@bob", followee="@alice")["status"] == "SUCCESS"
    assert bob.call("follow", follower="@bob", followee="@alice")["code"] == "ALREADY_FOLLOWING"
    tweet = alice.call("tweet", handle="@alice", text="hello")
    assert tweet["followers"] == [["@bob", "127.0.0.1", 61004, 61005, 61006, SAMPLE_KEY]]
    assert alice.call("end-tweet", handle="@alice", tid=tweet["tid"], reached=1,
                      skipped=[])["status"] == "SUCCESS"
    assert bob.call("drop", follower="@bob", followee="@alice")["status"] == "SUCCESS"
    assert bob.call("drop", follower="@bob", followee="@alice")["code"] == "NOT_FOLLOWING"
    assert bob.call("drop", follower="@bob", followee="@nobody")["code"] == "UNKNOWN_HANDLE"


def test_tweet_and_end_tweet_codes(net: Tweeter) -> None:
    alice = net.client()
    register(alice, "@alice")
    assert alice.call("tweet", handle="@alice", text="")["code"] == "EMPTY_TEXT"
    assert alice.call("tweet", handle="@alice", text="x" * 141)["code"] == "TOO_LONG"
    assert alice.call("tweet", handle="@alice", text="a\x1b[2Jb")["code"] == "CONTROL_CHARACTERS"
    assert alice.call("end-tweet", handle="@alice", tid=1, reached=0,
                      skipped=[])["code"] == "NO_TWEET_IN_PROGRESS"
    first = alice.call("tweet", handle="@alice", text="x" * 140)
    assert (first["status"], first["count"], first["followers"]) == ("SUCCESS", 0, [])
    assert alice.call("tweet", handle="@alice", text="again")["code"] == "TWEET_IN_PROGRESS"
    assert alice.call("end-tweet", handle="@alice", tid=first["tid"], reached=0,
                      skipped=[])["status"] == "SUCCESS"
    assert alice.call("tweet", handle="@alice", text="again")["status"] == "SUCCESS"


def test_not_your_handle_changes_nothing(net: Tweeter) -> None:
    alice, bob, carol = net.client(), net.client(), net.client()
    register(alice, "@alice")
    register(bob, "@bob", [61004, 61005, 61006])
    register(carol, "@carol", [61007, 61008, 61009])
    assert bob.call("follow", follower="@bob", followee="@alice")["status"] == "SUCCESS"
    for cmd, args in [("follow", {"follower": "@alice", "followee": "@carol"}),
                      ("drop", {"follower": "@alice", "followee": "@carol"}),
                      ("drop", {"follower": "@bob", "followee": "@alice"}),
                      ("tweet", {"handle": "@alice", "text": "forged"}),
                      ("exit", {"handle": "@alice"})]:
        reply = carol.call(cmd, **args)
        assert (reply["status"], reply["code"]) == ("FAILURE", "NOT_YOUR_HANDLE"), (cmd, reply)
    # Nothing changed: @alice is registered, still has @bob as follower, and no tweet ran.
    assert carol.call("query-handles")["handles"] == ["@alice", "@bob", "@carol"]
    tweet = alice.call("tweet", handle="@alice", text="mine")
    assert tweet["status"] == "SUCCESS" and [row[0] for row in tweet["followers"]] == ["@bob"]
    carol_tweet = carol.call("tweet", handle="@carol", text="no followers")
    assert carol_tweet["count"] == 0


def race_to_register(clients: list[RawClient], handle: str) -> list[dict]:
    """Every client registers ``handle`` at the same moment; return the replies."""
    barrier = threading.Barrier(len(clients), timeout=10)
    replies: list[dict] = []

    def attempt(client: RawClient, index: int) -> None:
        barrier.wait()
        replies.append(register(client, handle, [61010 + 3 * index + k for k in range(3)]))

    threads = [threading.Thread(target=attempt, args=(c, i)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return replies


def test_concurrent_registration_of_one_handle_has_exactly_one_winner(cluster: Cluster) -> None:
    net = Tweeter(cluster)
    net.tracker(*MANY_CONNECTIONS)                # 40 connections from 127.0.0.1 at once
    for letter in "abcdefghijklmnopqrst":
        handle = f"@race{letter}"
        replies = race_to_register([net.client(), net.client()], handle)
        statuses = sorted(reply["status"] for reply in replies)
        assert statuses == ["FAILURE", "SUCCESS"], (handle, replies)
        assert [r["code"] for r in replies if r["status"] == "FAILURE"] == ["DUPLICATE_HANDLE"]


def test_malformed_frames_get_a_reason_and_the_session_goes_on(net: Tweeter) -> None:
    client = net.client()
    client.send_raw(b"\xff\xfe garbage\n")
    assert client.read()["code"] == "BAD_FRAME"
    client.send_raw(b"[1, 2, 3]\n")
    assert client.read()["code"] == "BAD_FRAME"
    client.send_raw(b'{"id": 1, "cmd": "fly"}\n')
    assert client.read()["code"] == "UNKNOWN_COMMAND"
    client.send_raw(b'{"id": 2, "cmd": "query-handles", "extra": 1}\n')
    assert client.read()["code"] == "BAD_REQUEST"
    client.send_raw(b'{"id": 3, "cmd": "register", "handle": "@a", "ip": "127.0.0.1", '
                    b'"ports": "1 2 3", "password": "x"}\n')
    assert client.read()["code"] == "BAD_REQUEST"
    assert client.call("query-handles")["status"] == "SUCCESS"


def test_oversized_frame_is_refused_and_connection_closed(net: Tweeter) -> None:
    big = net.client()
    big.send_raw(b'{"id": 1, "cmd": "' + b"x" * 10_000)
    reply = big.read()
    assert (reply["status"], reply["code"]) == ("FAILURE", "TOO_LARGE")
    assert big.closed_by_peer()
    assert net.client().call("query-handles")["status"] == "SUCCESS"


def test_tweet_of_a_vanished_author_is_ended(net: Tweeter) -> None:
    author, follower = net.client(), net.client()
    register(author, "@alice")
    register(follower, "@bob", [61004, 61005, 61006])
    follower.call("follow", follower="@bob", followee="@alice")
    assert author.call("tweet", handle="@alice", text="going away")["status"] == "SUCCESS"
    author.close()
    assert net.tracker_proc is not None
    net.tracker_proc.expect(r"tweet #1 of @alice ended: its author's connection closed")
    # @bob was involved in that tweet; its exit no longer has anything to wait for.
    assert follower.call("exit", handle="@bob")["status"] == "SUCCESS"


def test_exit_then_exit_complete_deletes_the_handle(net: Tweeter) -> None:
    alice, bob = net.client(), net.client()
    register(alice, "@alice")
    register(bob, "@bob", [61004, 61005, 61006])
    bob.call("follow", follower="@bob", followee="@alice")
    alice.call("follow", follower="@alice", followee="@bob")
    assert alice.call("exit-complete", handle="@alice")["code"] == "EXIT_NOT_STARTED"
    assert alice.call("exit", handle="@alice")["status"] == "SUCCESS"
    assert alice.call("query-handles")["code"] == "EXITING"
    assert alice.call("exit-complete", handle="@alice")["status"] == "SUCCESS"
    assert bob.call("query-handles")["handles"] == ["@bob"]
    assert bob.call("tweet", handle="@bob", text="anyone?")["count"] == 0
    again = net.client()
    assert register(again, "@ALICE")["status"] == "SUCCESS"
    assert again.call("follow", follower="@ALICE", followee="@bob")["status"] == "SUCCESS"


def test_command_line_errors_exit_2_without_traceback() -> None:
    for args in (["70000"], ["--nope"], ["abc"]):
        done = subprocess.run([PYTHON, "tracker.py", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=15)
        assert done.returncode == 2, args
        assert "usage: tracker.py" in done.stderr and "Traceback" not in done.stderr
    helped = subprocess.run([PYTHON, "tracker.py", "-h"], cwd=ROOT, capture_output=True,
                            text=True, timeout=15)
    assert helped.returncode == 0 and "example: python3 tracker.py 13000" in helped.stdout


def test_the_tracker_console_never_shows_raw_escape_sequences(net: Tweeter) -> None:
    client = net.client()
    client.send_raw(b'\x1b]0;PWNED\x07\x1b[2J hello\n')
    assert client.read()["code"] == "BAD_FRAME"
    client.send_raw(json.dumps({"id": 1, "cmd": "say", "text": "\x9b31m"}).encode() + b"\n")
    client.read()
    assert net.tracker_proc is not None
    net.tracker_proc.expect(r"PWNED", since=0)
    assert not any(ch in net.tracker_proc.text() for ch in "\x1b\x07\x9b")


def test_exit_waits_for_a_running_tweet_while_the_connection_is_served(net: Tweeter) -> None:
    author, follower = net.client(), net.client()
    register(author, "@alice")
    register(follower, "@bob", [61004, 61005, 61006])
    follower.call("follow", follower="@bob", followee="@alice")
    tweet = author.call("tweet", handle="@alice", text="hold on")
    follower.send_raw(b'{"id": 100, "cmd": "exit", "handle": "@bob"}\n')
    beat = follower.call("heartbeat")           # answered first: exit waits, the session not
    assert (beat["re"], beat["status"]) == (follower.next_id - 1, "SUCCESS")
    assert follower.call("exit-complete", handle="@bob")["code"] == "EXITING"
    assert author.call("end-tweet", handle="@alice", tid=tweet["tid"], reached=1,
                       skipped=[])["status"] == "SUCCESS"
    granted = follower.read()
    assert (granted["re"], granted["status"]) == (100, "SUCCESS")
    assert follower.call("exit-complete", handle="@bob")["status"] == "SUCCESS"


def test_a_peer_address_must_be_the_sessions_own(net: Tweeter) -> None:
    here = net.client()                                 # comes from 127.0.0.1
    reply = here.call("register", handle="@alice", ip="127.0.0.2", ports=PORTS,
                      key=SAMPLE_KEY, password="pw")
    assert (reply["code"], reply["message"]) == (
        "ADDRESS_MISMATCH",
        "the tracker sees this session at 127.0.0.1: a peer's address must be its own")
    for ip in ("0.0.0.0", "224.0.0.1", "255.255.255.255"):
        assert here.call("register", handle="@alice", ip=ip, ports=PORTS, key=SAMPLE_KEY,
                         password="pw")["code"] == "BAD_ADDRESS"
    assert here.call("register", handle="@alice", ip="127.0.0.1", ports=[5, 5, 6],
                     key=SAMPLE_KEY, password="pw")["code"] == "REPEATED_PORTS"
    there = RawClient(net.port, source="127.0.0.2")   # another host, to the tracker
    try:
        reply = there.call("register", handle="@alice", ip="127.0.0.2", ports=PORTS,
                           key=SAMPLE_KEY, password="pw")
        assert reply["status"] == "SUCCESS", reply
    finally:
        there.close()


def test_a_skipped_follower_that_is_alive_gets_the_tweet_from_the_tracker(net: Tweeter) -> None:
    author, live, gone = net.client(), net.client(), net.client()
    register(author, "@alice")
    register(live, "@bob", [61004, 61005, 61006])
    register(gone, "@carl", [61007, 61008, 61009])
    for client, me in ((live, "@bob"), (gone, "@carl")):
        assert client.call("follow", follower=me, followee="@alice")["status"] == "SUCCESS"
    gone.close()
    assert net.tracker_proc is not None
    net.tracker_proc.expect(r"@carl lost its connection")
    tweet = author.call("tweet", handle="@alice", text="whatever the ring says")
    assert [row[0] for row in tweet["followers"]] == ["@bob", "@carl"]
    end = author.call("end-tweet", handle="@alice", tid=tweet["tid"], reached=0,
                      skipped=["@bob", "@carl"])
    assert (end["skipped"], end["relayed"]) == (["@bob", "@carl"], ["@bob"])
    pushed = live.read_push()
    while pushed["push"] != "tweet":
        pushed = live.read_push()
    assert (pushed["author"], pushed["tid"], pushed["text"]) == (
        "@alice", tweet["tid"], "whatever the ring says")
    again = author.call("tweet", handle="@alice", text="next")
    assert [row[0] for row in again["followers"]] == ["@bob"]   # @carl offline, @bob not


def test_a_direct_message_is_kept_until_the_recipient_confirms_it(net: Tweeter) -> None:
    alice, bob = net.client(), net.client()
    register(alice, "@alice")
    register(bob, "@bob", [61004, 61005, 61006])
    sent = alice.call("message", to="@bob", text="psst")
    assert sent["peer"][0] == "@bob"
    peer = bob.read_push()
    assert (peer["push"], peer["peer"][0]) == ("peer", "@alice")
    assert alice.call("message-undelivered", message_id=sent["message_id"])["status"] \
        == "SUCCESS"
    relayed = bob.read_push()
    assert (relayed["push"], relayed["id"], relayed["text"]) == ("message", sent["message_id"],
                                                                 "psst")
    assert bob.call("message-received", message_id=sent["message_id"])["status"] == "SUCCESS"
    assert alice.call("message-received", message_id=sent["message_id"])["code"] \
        == "UNKNOWN_MESSAGE"



# ---- GroupCommit, alone: a fake store whose COMMIT the test holds open -------------------------

class HeldStore:
    """A store whose ``commit`` waits until the test lets it finish."""

    def __init__(self) -> None:
        self.changes = self.committed = 0
        self.entered, self.release = threading.Event(), threading.Event()

    def commit(self) -> None:
        self.entered.set()
        assert self.release.wait(10)
        self.committed = self.changes


def test_group_commit_sends_in_order_and_no_reply_overtakes_a_waiting_one() -> None:
    store, sent = HeldStore(), []
    commits = tracker.GroupCommit(store, lambda decided: sent.append(decided.out[0][1]),
                                  lambda error: None)
    store.changes = 1
    first = threading.Thread(target=commits.deliver,
                             args=(tracker.Decided([(None, "follow SUCCESS")], 1, []),))
    first.start()
    assert store.entered.wait(10)           # the first reply's COMMIT is running ...
    store.committed = 1                     # ... (and, say, has just made it durable)
    # A reply that needs no COMMIT must still wait behind it, not overtake it.
    commits.deliver(tracker.Decided([(None, "query SUCCESS")], 1, []))
    assert sent == []
    store.release.set()
    first.join(10)
    commits.flush(10)                       # returns once every waiting reply has left
    assert sent == ["follow SUCCESS", "query SUCCESS"]
    commits.deliver(tracker.Decided([(None, "heartbeat SUCCESS")], 1, []))
    commits.flush(10)
    assert sent == ["follow SUCCESS", "query SUCCESS", "heartbeat SUCCESS"]
