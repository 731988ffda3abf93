"""user.py's ring peer against real processes and a hostile LAN (SPEC §3.3, §3.5, §6).

The attacker is ``RawPeer``: three UDP sockets and keys of its own, speaking the datagram protocol
by hand.  It may even be a registered user; it is never the author of a ring it attacks.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import subprocess
import threading

import pytest
from conftest import (
    DEFAULT_TIMEOUT,
    FAST_PEER_ARGS,
    MANY_CONNECTIONS,
    PYTHON,
    ROOT,
    RawClient,
    RawPeer,
    Tweeter,
    User,
    password_of,
)

from protocol.datagrams import Ack, DirectMsg, SetupMsg, TweetMsg
from protocol.ring import Peer

TWEET_DONE = r"^tweet #(\d+) reached (\d+) followers?"


def ports_of(user: User) -> list[int]:
    match = user.expect(r"^ports: left=(\d+) middle=(\d+) right=(\d+)$", since=0)
    return [int(port) for port in match.groups()]


def tuple_of(session: RawClient, handle: str) -> Peer:
    """``handle``'s tuple as the tracker hands it out (a message's recipient, when online)."""
    return Peer.from_list(session.call("message", to=handle, text="hello")["peer"])


def test_a_setup_for_a_ring_of_someone_not_followed_is_dropped(net: Tweeter) -> None:
    """@zed is a registered user with real keys, but @victim does not follow it: its setup,
    sealed correctly for @victim, is still dropped and never acknowledged."""
    victim = net.users("@victim")["@victim"]
    zed = RawPeer("@zed")
    try:
        session = net.client()
        assert zed.register(session)["status"] == "SUCCESS"
        target = tuple_of(session, "@victim")
        zed.send("middle", target, target.middle, SetupMsg("@zed", 1, "@zed", 1, zed.me, zed.me))
        victim.expect(r"dropped setup for @zed from .*: not a handle I follow")
        with pytest.raises(TimeoutError):
            zed.receive("middle", timeout=0.5)
    finally:
        zed.close()


def test_forged_setups_and_tweets_are_never_shown_and_the_real_ring_goes_on(
        net: Tweeter) -> None:
    """A stranger claims to be @a: a setup pointing @b's right at itself, a tweet in @a's
    name, one on the wrong port, one for a ring @b is not in.  Nothing is shown or acked, the
    ring @b keeps is @a's, and @a's next tweet reaches @b."""
    users = net.users("@a", "@b", "@c")
    users["@b"].ok("follow @b @a")
    users["@c"].ok("follow @c @a")
    assert users["@a"].tweet("@a", "set the ring up")["reached"] == "2"
    stranger = RawPeer("@mallory")
    try:
        session = net.client()
        assert stranger.register(session)["status"] == "SUCCESS"
        b = tuple_of(session, "@b")
        signature = "A" * 86 + "=="
        forged = [
            ("middle", b.middle, SetupMsg("@a", 1, "@a", 99, stranger.me, stranger.me)),
            ("right", b.left, TweetMsg("@a", 2, "@a", 999, "URGENT: forged", signature, "@a")),
            ("right", b.left, TweetMsg("@zed", 3, "@zed", 1, "URGENT: forged", signature,
                                       "@zed")),
            ("middle", b.middle, TweetMsg("@a", 4, "@a", 998, "URGENT: forged", signature,
                                          "@a")),
        ]
        for role, port, message in forged:
            stranger.send(role, b, port, message)
        for expected in (r"dropped setup from .* claiming @a: not its author",
                         r"dropped tweet from .* claiming @a: not my left neighbour",
                         r"dropped tweet of @zed from .*: a ring I am not in",
                         r"dropped tweet on the middle port"):
            users["@b"].expect(expected, since=0)      # the sockets are read in any order
        for role in ("middle", "right"):
            with pytest.raises(TimeoutError):
                stranger.receive(role, timeout=0.3)
    finally:
        stranger.close()
    users["@b"].send("rings")
    users["@b"].expect(r"^ring @a: left @a, right @c$")     # the real ring is unchanged
    assert users["@a"].tweet("@a", "still fine")["reached"] == "2"
    users["@b"].expect(r"^tweet #\d+ by @a via @a: still fine$")
    assert not any("URGENT" in line for line in users["@b"].lines + users["@c"].lines)


def test_hostile_text_in_a_signed_tweet_and_a_message_is_shown_written_out(
        net: Tweeter) -> None:
    """A malicious author signs an escape sequence and a carriage return into its tweet, and
    sends one in a direct message: the victim shows them written out, never interpreted."""
    victim = net.users("@victim")["@victim"]
    evil = RawPeer("@evil")
    try:
        session = net.client()
        assert evil.register(session)["status"] == "SUCCESS"
        victim.ok("follow @victim @evil")
        tweet = session.call("tweet", handle="@evil", text="innocent")
        target = Peer.from_list(tweet["followers"][0])
        evil.set_up(target)                                             # acked: a good setup
        text = "\x1b[2J\x1b[31mred\rX\x07"
        evil.send("right", target, target.left, TweetMsg("@evil", 2, "@evil", tweet["tid"],
                                                         text, evil.sign(tweet["tid"], text),
                                                         "@evil"))
        line = victim.expect(r"^tweet #\d+ by @evil via @evil: ").string
        assert line.endswith(r": \x1b[2J\x1b[31mred\rX\x07")
        message = session.call("message", to="@victim", text="hi")     # the tracker names us
        evil.send("middle", target, target.middle,
                  DirectMsg("@evil", 3, message["message_id"], "\x1b]0;owned\x07\r\n"))
        line = victim.expect(r"^\[message\] @evil: ").string
        assert line == r"[message] @evil: \x1b]0;owned\x07\r\n"
        assert not any("\x1b" in line or "\r" in line for line in victim.lines)
    finally:
        evil.close()


def test_a_direct_message_in_another_name_is_never_shown(net: Tweeter) -> None:
    """@bob knows @alice (she wrote to him before); @mallory sends a message claiming to be
    her, from her address even: it is never shown as hers."""
    users = net.users("@alice", "@bob")
    users["@alice"].ok('message @bob "the real one"')
    users["@bob"].expect(r"^\[message\] @alice: the real one$")
    mallory = RawPeer("@mallory")
    try:
        session = net.client()
        assert mallory.register(session)["status"] == "SUCCESS"
        bob = tuple_of(session, "@bob")
        for number in range(1, 4):
            mallory.send("middle", bob, bob.middle,
                         DirectMsg("@alice", number, 1000 + number, "FORGED: send money"))
        users["@bob"].expect(r"dropped message from .* claiming @alice")
    finally:
        mallory.close()
    users["@alice"].ok('message @bob "still me"')
    users["@bob"].expect(r"^\[message\] @alice: still me$")
    assert not any("FORGED" in line for line in users["@bob"].lines)


def test_a_skipped_report_is_never_an_order(net: Tweeter) -> None:
    """An author (a raw client) names every follower skipped: nobody goes offline, and each
    gets the tweet from the tracker, exactly once."""
    users = net.users("@b", "@c")
    author = RawPeer("@liar")
    try:
        session = net.client()
        assert author.register(session)["status"] == "SUCCESS"
        for handle in ("@b", "@c"):
            users[handle].ok(f"follow {handle} @liar")
        tweet = session.call("tweet", handle="@liar", text="did you get this?")
        ended = session.call("end-tweet", handle="@liar", tid=tweet["tid"], reached=0,
                             skipped=["@b", "@c"])
        assert ended["status"] == "SUCCESS" and sorted(ended["relayed"]) == ["@b", "@c"]
        for handle in ("@b", "@c"):
            users[handle].expect(r"^tweet #\d+ by @liar via the tracker: did you get this\?$")
        online = session.call("online")
        assert [name for name, _ in online["online"]] == ["@b", "@c", "@liar"]
    finally:
        author.close()
    for handle in ("@b", "@c"):
        users[handle].ok("online")
        assert sum("did you get this" in line for line in users[handle].lines) == 1


def test_a_follower_that_alters_the_tweet_and_lies_about_its_neighbour_harms_nobody(
        net: Tweeter) -> None:
    """@cheat, a registered follower inside @a's ring (@b, @cheat, @d), acknowledges the tweet,
    passes on its own text under the author's signature, and sends the author a detour saying
    @d is silent.  @d never shows the altered text; every honest follower shows the real one
    exactly once; nobody is taken offline."""
    users = net.users("@a", "@b", "@d")
    cheat = RawPeer("@cheat")
    try:
        session = net.client()
        assert cheat.register(session)["status"] == "SUCCESS"
        for handle in ("@b", "@d"):
            users[handle].ok(f"follow {handle} @a")
        assert session.call("follow", follower="@cheat", followee="@a")["status"] == "SUCCESS"
        author = Peer.from_list(session.call("following")["peers"][0])
        played: list[str] = []

        def play() -> None:
            setup, sender = cheat.receive_from("middle")
            assert isinstance(setup, SetupMsg)
            cheat.send_raw("middle", sender, cheat.sealed(author, Ack("@cheat", setup.seq)))
            tweet, sender = cheat.receive_from("left")
            assert isinstance(tweet, TweetMsg)
            cheat.send_raw("left", sender, cheat.sealed(setup.left, Ack("@cheat", tweet.seq)))
            altered = TweetMsg("@cheat", 1, "@a", tweet.tid, "ALTERED by @cheat",
                               tweet.signature, "@cheat")
            cheat.send("right", setup.right, setup.right.left, altered)
            detour = TweetMsg("@cheat", 2, "@a", tweet.tid, tweet.text, tweet.signature,
                              "@cheat", dead=setup.right.handle)
            cheat.send("right", author, author.left, detour)
            played.append(setup.right.handle)

        player = threading.Thread(target=play, daemon=True)
        player.start()
        done = users["@a"].tweet("@a", "the real text")
        player.join(DEFAULT_TIMEOUT)
        assert played == ["@d"], "the cheat did not get its turn in the ring"
        assert done["tid"]
        users["@d"].expect(r"dropped tweet #\d+ of @a: not signed by its author")
        online = session.call("online")
        assert [name for name, _ in online["online"]] == ["@a", "@b", "@cheat", "@d"]
    finally:
        cheat.close()
    for handle in ("@b", "@d"):
        users[handle].ok("online")
        shown = [line for line in users[handle].lines if re.search(r"^tweet #\d+ by @a", line)]
        assert len(shown) == 1 and shown[0].endswith(": the real text"), shown
        assert not any("ALTERED" in line and "dropped" not in line
                       for line in users[handle].lines)


def test_a_datagram_of_an_earlier_login_is_dropped(net: Tweeter) -> None:
    """Recorded in one login of its author, replayed after the next: dropped."""
    follower = net.users("@b")["@b"]
    author = RawPeer("@r")
    try:
        session = net.client()
        assert author.register(session)["status"] == "SUCCESS"
        follower.ok("follow @b @r")
        tweet = session.call("tweet", handle="@r", text="first login")
        b = Peer.from_list(tweet["followers"][0])
        author.set_up(b)
        recorded = author.sealed(b, TweetMsg("@r", 2, "@r", tweet["tid"], "first login",
                                             author.sign(tweet["tid"], "first login"), "@r"))
        author.send_raw("right", (b.ip, b.left), recorded)
        follower.expect(r"^tweet #\d+ by @r via @r: first login$")
        author.receive("right")
        session.call("end-tweet", handle="@r", tid=tweet["tid"], reached=1, skipped=[])
        session.call("logout")
        author.rekey()                                    # a new login: new keys
        assert session.call("login", handle="@r", ip="127.0.0.1", ports=author.ports,
                            key=author.keys.public,
                            password=password_of("@r"))["status"] == "SUCCESS"
        follower.expect(r"^\[notice\] @r is online$")
        author.send_raw("right", (b.ip, b.left), recorded)     # the earlier login's datagram
        follower.expect(r"dropped tweet of @r from .*: a ring I am not in")
        # Set up again under the new keys, the ring is @b's again: the replay now fails its MAC.
        author.set_up(b)
        author.send_raw("right", (b.ip, b.left), recorded)
        follower.expect(r"dropped tweet from .* claiming @r: its MAC is wrong")
        with pytest.raises(TimeoutError):
            author.receive("right", timeout=0.5)
    finally:
        author.close()
    assert sum("first login" in line for line in follower.lines if "tweet #" in line) == 1


def test_a_follower_that_logs_in_again_at_the_same_ports_is_set_up_again(
        net: Tweeter) -> None:
    users = net.users("@a", "@b")
    users["@b"].ok("follow @b @a")
    assert users["@a"].tweet("@a", "before")["reached"] == "1"
    ports = " ".join(map(str, ports_of(users["@b"])))
    users["@b"].ok("logout")
    users["@b"].login("@b", where=f"127.0.0.1 {ports}")
    start = len(users["@a"].lines)
    done = users["@a"].tweet("@a", "after")
    assert done["reached"] == "1" and done["skipped"] is None
    users["@b"].expect(r"^tweet #\d+ by @a via @a: after$")       # by the ring, not relayed
    assert any(re.search(r"-> @b .* setup ring=@a", line) for line in users["@a"].lines[start:])


def test_users_on_several_hosts_register_with_the_address_the_tracker_sees(
        net: Tweeter) -> None:
    """Each user connects from its own address (127.0.0.2 to 127.0.0.5, bound before the
    connection): `register @h` alone binds its ring there, and the ring runs across them."""
    handles = ["@a", "@b", "@c", "@d"]
    users = {}
    for number, handle in enumerate(handles, start=2):
        users[handle] = net.user(handle, "--source", f"127.0.0.{number}")
        users[handle].send(f"register {handle}")
        users[handle].send(password_of(handle))
        reply = users[handle].ok(password_of(handle))
        assert f"registered at 127.0.0.{number} ports" in reply
    for handle in handles[1:]:
        users[handle].ok(f"follow {handle} @a")
    assert users["@a"].tweet("@a", "across hosts")["reached"] == "3"
    for handle, previous in (("@b", "@a"), ("@c", "@b"), ("@d", "@c")):
        users[handle].expect(rf"^tweet #\d+ by @a via {previous}: across hosts$")
    intruder = RawClient(net.port, source="127.0.0.6")
    try:
        reply = intruder.register("@e", [61001, 61002, 61003], ip="127.0.0.2")
        assert reply["code"] == "ADDRESS_MISMATCH"
    finally:
        intruder.close()


def test_register_refuses_an_address_of_another_host_and_repeated_ports(net: Tweeter) -> None:
    user = net.user("@a")
    user.fails("register @a 10.255.255.1 0 0 0", "ADDRESS_NOT_LOCAL")
    user.fails("register @a 127.0.0.1 61010 61010 0", "REPEATED_PORTS")
    user.register("@a")                     # nothing was left bound or sent


def test_a_flood_of_garbage_is_a_few_lines_on_the_terminal(net: Tweeter) -> None:
    users = net.users("@a", "@b")
    users["@b"].ok("follow @b @a")
    b = ports_of(users["@b"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
        for number in range(3000):
            flood.sendto(b"junk %d" % number, ("127.0.0.1", b[number % 3]))
    users["@b"].expect(r"more like it\)$")               # the summary of the flood
    assert users["@a"].tweet("@a", "after the flood")["reached"] == "1"
    dropped = [line for line in users["@b"].lines if "dropped" in line]
    assert 1 <= len(dropped) <= 36, dropped


def test_a_follower_whose_terminal_stops_reading_is_neither_skipped_nor_offline(
        net: Tweeter, tmp_path: os.PathLike) -> None:
    """@b's output is a pipe of 4 KiB that nobody reads: it fills, and @b goes on acking and
    passing tweets on, so no round skips it and it stays online."""
    assert net.tracker_proc is not None
    net.cluster.stop_all()
    net.tracker("--flood-burst", "100000", "--flood-rate", "100000", *MANY_CONNECTIONS)
    author = net.users("@a")["@a"]
    follower = subprocess.Popen(
        [PYTHON, "user.py", "127.0.0.1", str(net.port), *FAST_PEER_ARGS], cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert follower.stdout is not None and follower.stdin is not None
        fcntl.fcntl(follower.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
        follower.stdin.write(("register @b\n" + f"{password_of('@b')}\n" * 2
                              + "follow @b @a\n").encode())
        follower.stdin.flush()
        author.expect(r"^\[notice\] you were followed by @b$")
        chatty = net.client()
        assert chatty.register("@chatty", [61021, 61022, 61023])["status"] == "SUCCESS"
        for _ in range(300):                             # far more than the pipe holds
            chatty.call("say", text="filling the terminal of everyone online, @b's too")
        for number in range(5):
            done = author.tweet("@a", f"tweet {number}")
            assert done["reached"] == "1" and done["skipped"] is None, done
        author.send("online")
        author.expect(r"^  @b  \(following\)$|^  @b$")
        assert follower.poll() is None
    finally:
        follower.kill()
        follower.communicate(timeout=10)
