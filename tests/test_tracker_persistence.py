"""The tracker's memory: SQLite survives SIGKILL; passwords are hashed and throttled."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

from conftest import SAMPLE_KEY, Cluster, RawClient, Tweeter, password_of


def restart(tweeter: Tweeter, db: Path, *extra: str) -> None:
    """SIGKILL the tracker and start a new one on the same database."""
    assert tweeter.tracker_proc is not None
    tweeter.tracker_proc.kill(signal.SIGKILL)
    tweeter.tracker("--db", str(db), *extra)


def test_follows_and_feed_survive_a_killed_tracker(cluster: Cluster, tmp_path: Path) -> None:
    db = tmp_path / "tracker.db"
    net = Tweeter(cluster)
    net.tracker("--db", str(db))
    users = net.users("@alice", "@bob")
    users["@bob"].ok("follow @bob @alice")
    users["@bob"].ok("logout")
    users["@bob"].send("quit")
    assert users["@bob"].wait() == 0
    users["@alice"].ok('tweet @alice "posted while bob was away #news"')
    users["@alice"].expect(r"^tweet #\d+ reached 0 followers")

    restart(net, db)
    bob = net.user("@bob-again")
    assert "1 new tweets since the last session" in bob.login("@bob")
    bob.ok("following")
    bob.expect(r"^  @alice$")
    bob.ok("feed")
    bob.expect(r"^  #\d+ [\d-]+ [\d:]+ @alice: posted while bob was away #news$")
    bob.send("login @bob")
    bob.fails(password_of("@bob"), "ALREADY_LOGGED_IN")


def test_every_confirmed_change_survives_kill_9_under_load(cluster: Cluster,
                                                           tmp_path: Path) -> None:
    db = tmp_path / "load.db"
    net = Tweeter(cluster)
    no_flood_control = ("--flood-burst", "1000000")     # a load test, not a flood test
    net.tracker("--db", str(db), "-q", *no_flood_control)
    handles = [f"@load{letter}" for letter in "abcdefghijklmnopqrst"]
    confirmed_follows: set[tuple[str, str]] = set()
    tried_follows: set[tuple[str, str]] = set()
    confirmed_tweets: set[int] = set()
    lock = threading.Lock()
    enough = threading.Event()

    def session(index: int, client: RawClient) -> None:
        me, rng = handles[index], random.Random(index)
        try:
            assert client.register(me, [61200 + 3 * index + k for k in range(3)])["status"] \
                == "SUCCESS"
            for step in range(200):
                if step % 3 == 2 and len(confirmed_tweets) < 150:   # search shows 200
                    reply = client.call("tweet", handle=me, text=f"#load {me} {step}")
                    if reply["status"] == "SUCCESS":
                        with lock:
                            confirmed_tweets.add(reply["tid"])
                        client.call("end-tweet", handle=me, tid=reply["tid"], reached=0,
                                    skipped=[])
                else:
                    other = rng.choice([h for h in handles if h != me])
                    with lock:
                        tried_follows.add((me, other))
                    if client.call("follow", follower=me, followee=other)["status"] == "SUCCESS":
                        with lock:
                            confirmed_follows.add((me, other))
                with lock:
                    if len(confirmed_follows) + len(confirmed_tweets) >= 250:
                        enough.set()
        except (AssertionError, OSError, ValueError):
            pass            # the tracker was killed under us: what was confirmed must be there

    clients = [net.client() for _ in handles]
    threads = [threading.Thread(target=session, args=(i, c)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    assert enough.wait(60), "the load never got going"
    restart(net, db, *no_flood_control)     # mid-run: the sessions are still sending
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)

    checker = net.client()
    assert checker.register("@checker", [61300, 61301, 61302])["status"] == "SUCCESS"
    stored_follows = set()
    for handle in handles:
        reply = checker.call("following", handle=handle)
        if reply.get("code") == "UNKNOWN_HANDLE":
            continue                    # its registration had not been answered yet
        stored_follows |= {(handle, other) for other in reply["handles"]}
        checker.call("follow", follower="@checker", followee=handle)
    assert confirmed_follows <= stored_follows <= tried_follows
    assert len(stored_follows) >= len(confirmed_follows) > 0
    by_tag = {row[0] for row in checker.call("search", tag="#load")["tweets"]}
    by_feed = {row[0] for row in checker.call("feed", count=200)["tweets"]}
    assert confirmed_tweets <= by_tag
    assert by_tag == by_feed            # no tweet without its hashtag, nor the other way


def test_wrong_password_then_throttled_until_the_wait_passes(cluster: Cluster,
                                                             tmp_path: Path) -> None:
    db = tmp_path / "throttle.db"
    net = Tweeter(cluster)
    net.tracker("--db", str(db), "--login-backoff", "0.5")
    owner = net.client()
    owner.register("@alice", [61001, 61002, 61003], password="the right one")
    owner.call("logout")
    intruder = net.client()

    def login(password: str) -> dict:
        return intruder.call("login", handle="@alice", ip="127.0.0.1",
                             ports=[61004, 61005, 61006], key=SAMPLE_KEY, password=password)

    reply = login("a guess")
    assert (reply["status"], reply["code"]) == ("FAILURE", "WRONG_PASSWORD")
    assert login("the right one")["code"] == "THROTTLED"    # from here, for this handle: wait
    assert login("a guess")["code"] == "THROTTLED"
    deadline = time.monotonic() + 15
    while (reply := login("the right one")).get("code") == "THROTTLED":
        assert time.monotonic() < deadline, "still throttled long after the wait"
        threading.Event().wait(0.1)     # the awaited condition is the passing of the wait
    assert reply["status"] == "SUCCESS", reply
    assert login("x")["code"] == "ALREADY_LOGGED_IN"
    unknown = net.client().call("login", handle="@nobody", ip="127.0.0.1",
                                ports=[1, 2, 3], key=SAMPLE_KEY, password="x")
    assert unknown["code"] == "UNKNOWN_HANDLE"
    online = net.client()
    online.register("@bob", [61007, 61008, 61009])
    again = net.client().call("login", handle="@bob", ip="127.0.0.1", ports=[4, 5, 6],
                              key=SAMPLE_KEY, password=password_of("@bob"))
    assert again["code"] == "ALREADY_ONLINE"

    assert net.tracker_proc is not None
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("throttle.db*"))
    for secret in (b"the right one", b"a guess", password_of("@bob").encode()):
        assert secret not in stored
        assert secret.decode() not in net.tracker_proc.text()
    assert b"scrypt$16384$8$1$" in stored
