"""Faults, floods and hostile input (SPEC §3.3, §6): every program keeps serving, nothing is lost.

Tracker-side checks read the tracker's own /proc entries: its thread count, open descriptors and
resident memory.
"""

from __future__ import annotations

import bisect
import json
import os
import random
import select
import signal
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conftest import (
    DEFAULT_TIMEOUT,
    MANY_CONNECTIONS,
    SAMPLE_KEY,
    Cluster,
    RawClient,
    Tweeter,
    User,
    password_of,
)

# How long the soak runs, from the moment its sessions are registered: short in `make test`,
# long in `make soak`.  What it must have checked grows with it (DECIDED_PER_SECOND).
SOAK_SECONDS = float(os.environ.get("TWEETER_SOAK_SECONDS", "5"))
REGISTERING_TIMEOUT = 120.0     # seconds for the soak's hundred registrations (scrypt each)
# Logins wait their turn for the password hash (one per core at a time) behind every other
# session's: a soak session waits this long for a reply.
LOGIN_WAIT = 60.0
# (tweet, follower) pairs the soak must have decided, per second of it: a sixteenth of what a
# loaded two-core machine decides (about 8000), so that the check fails only when the soak
# checked next to nothing.
DECIDED_PER_SECOND = 500

COMMAND_SHAPES: dict[str, dict[str, object]] = {
    "register": {"handle": "@fuzz", "ip": "127.0.0.1", "ports": [1, 2, 3], "password": "x",
                 "key": SAMPLE_KEY},
    "login": {"handle": "@fuzz", "ip": "127.0.0.1", "ports": [1, 2, 3], "password": "x",
              "key": SAMPLE_KEY},
    "follow": {"follower": "@fuzz", "followee": "@a"}, "drop": {"follower": "@f", "followee": "@a"},
    "tweet": {"handle": "@fuzz", "text": "hi"}, "end-tweet": {"handle": "@f", "tid": 1,
                                                             "reached": 0, "skipped": []},
    "exit": {"handle": "@f"}, "feed": {"count": 3}, "retweet": {"tid": 1},
    "search": {"tag": "#x"}, "say": {"text": "x"}, "message": {"to": "@a", "text": "x"},
    "block": {"handle": "@a"}, "query-handles": {}, "online": {}, "trending": {},
}
ODD_VALUES: list[object] = [None, True, -1, 0, 2**63, 1.5, "", "@", "@" + "x" * 40, "\x00",
                            "\x1b[2J", "\ud800", [], [1, [2, [3]]], {}, {"a": {"b": {}}},
                            "x" * 3000]


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} for {pid}")


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settle(measure, target: int, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Wait (bounded) until ``measure()`` is back to ``target``; return its last value."""
    deadline = time.monotonic() + timeout
    while (value := measure()) != target and time.monotonic() < deadline:
        time.sleep(0.05)        # polling /proc, bounded by the deadline
    return value


def fuzz_frame(rng: random.Random) -> bytes:
    """One random or mutated frame, newline-terminated, under the frame limit."""
    choice = rng.random()
    if choice < 0.25:
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        return body.replace(b"\n", b" ") + b"\n"
    cmd = rng.choice(list(COMMAND_SHAPES))
    obj: dict[str, object] = {"id": rng.randrange(10**6), "cmd": cmd, **COMMAND_SHAPES[cmd]}
    for _ in range(rng.randrange(1, 3)):
        key = rng.choice([*obj, "extra", "from"])
        obj[key] = rng.choice(ODD_VALUES)
    data = json.dumps(obj).encode()
    if choice > 0.85 and data:
        position = rng.randrange(len(data))
        data = data[:position] + bytes([rng.randrange(256)]) + data[position + 1:]
    return data[:4000].replace(b"\n", b" ") + b"\n"


def fuzz_datagram(rng: random.Random, victim: int) -> bytes:
    choice = rng.random()
    if choice < 0.3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 600)))
    peer = ["@a", "127.0.0.1", victim, victim, victim, SAMPLE_KEY]
    shapes: list[dict[str, object]] = [
        {"kind": "setup", "seq": 1, "ring": "@a", "author": peer, "left": peer, "right": peer},
        {"kind": "teardown", "seq": 2, "ring": "@a"},
        {"kind": "tweet", "seq": 3, "ring": "@a", "tid": 1, "text": "x", "prev": "@a",
         "hops": 0, "skipped": []},
        {"kind": "detour", "seq": 4, "ring": "@a", "tid": 1, "text": "x", "prev": "@a",
         "hops": 0, "skipped": [], "dead": "@b"},
        {"kind": "message", "seq": 5, "id": 1, "sender": "@a", "text": "x\x1b"},
        {"kind": "ack", "seq": 6}]
    obj = dict(rng.choice(shapes))
    for _ in range(rng.randrange(0, 3)):
        obj[rng.choice([*obj, "zzz"])] = rng.choice(ODD_VALUES)
    return json.dumps(obj).encode()[:3000]


def user_ports(user: User) -> list[int]:
    match = user.expect(r"^ports: left=(\d+) middle=(\d+) right=(\d+)$", since=0)
    return [int(port) for port in match.groups()]


def test_live_fuzz_leaves_everything_serving(net: Tweeter, cluster: Cluster) -> None:
    users = net.users("@a", "@b")
    users["@b"].ok("follow @b @a")
    tracker = net.tracker_proc
    assert tracker is not None
    pid = tracker.popen.pid
    baseline = proc_status(pid, "Threads")

    errors: list[BaseException] = []

    def fuzz_tracker(seed: int) -> None:
        rng = random.Random(seed)
        client = RawClient(net.port)
        try:
            for _ in range(1000):
                frame = fuzz_frame(rng)
                client.send_raw(frame)
                reply = client.read()
                assert reply.get("status") in ("SUCCESS", "FAILURE"), (frame, reply)
        except BaseException as error:          # reported by the test, not lost in a thread
            errors.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=fuzz_tracker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    rng = random.Random(99)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for user in users.values():
            for port in user_ports(user):
                for _ in range(500):
                    sender.sendto(fuzz_datagram(rng, port), ("127.0.0.1", port))
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive()
    assert not errors, errors
    assert settle(lambda: proc_status(pid, "Threads"), baseline) == baseline

    # Everyone still serves a normal session: a new follower, a tweet around the ring.
    newcomer = net.user("@c")
    newcomer.register("@c")
    newcomer.ok("follow @c @a")
    assert users["@a"].tweet("@a", "after the storm")["reached"] == "2"
    users["@b"].expect(r"^tweet #\d+ by @a via @a: after the storm$")
    newcomer.expect(r"^tweet #\d+ by @a via @b: after the storm$")
    users["@b"].expect(r"dropped datagram from", since=0)       # the junk was traced
    for proc in (tracker, *users.values(), newcomer):
        proc.assert_no_traceback()


def test_a_16_mib_line_is_refused_and_memory_stays_flat(net: Tweeter) -> None:
    tracker = net.tracker_proc
    assert tracker is not None
    pid = tracker.popen.pid
    net.client().call("query-handles")          # warm up: one connection served
    before = proc_status(pid, "VmRSS")
    client = net.client()
    chunk = b"x" * (1 << 20)

    def flood() -> None:
        try:
            for _ in range(16):
                client.sock.sendall(chunk)
        except OSError:
            pass                                # the tracker closed: it read enough

    sender = threading.Thread(target=flood)
    sender.start()
    reply = client.read()
    assert (reply["status"], reply["code"]) == ("FAILURE", "TOO_LARGE")
    sender.join(DEFAULT_TIMEOUT)
    assert not sender.is_alive()
    try:
        closed = client.closed_by_peer()
    except ConnectionResetError:            # closed with our bytes unread: a reset says so too
        closed = True
    assert closed
    after = proc_status(pid, "VmRSS")
    assert after - before < 4 * 1024, f"RSS grew from {before} kB to {after} kB"
    assert net.client().call("query-handles")["status"] == "SUCCESS"


def test_idle_connections_are_closed_while_a_session_keeps_working(cluster: Cluster) -> None:
    net = Tweeter(cluster)
    net.tracker("--register-timeout", "1.5", "-q", *MANY_CONNECTIONS)
    worker = net.user("@worker")
    worker.register("@worker")
    idle = [net.client() for _ in range(200)]
    deadline = time.monotonic() + DEFAULT_TIMEOUT
    while not readable(idle[-1].sock):          # the normal session works throughout
        worker.ok("query handles")
        assert time.monotonic() < deadline, "the idle connections were never closed"
    for client in idle:
        reply = client.read()
        assert (reply["status"], reply["code"]) == ("FAILURE", "REGISTER_TIMEOUT"), reply
        assert client.closed_by_peer()
        client.close()
    worker.ok("online")
    worker.expect(r"^  @worker$")


def readable(sock: socket.socket, timeout: float = 0.2) -> bool:
    """Whether the tracker sent something on ``sock`` within ``timeout``."""
    return bool(select.select([sock], [], [], timeout)[0])


def test_a_silent_session_goes_offline_but_heartbeats_keep_one_online(cluster: Cluster) -> None:
    net = Tweeter(cluster)
    net.tracker("--idle-timeout", "1", "-q")
    alive = net.user("@alive", "--heartbeat", "0.2")
    alive.register("@alive")
    silent = net.client()
    silent.register("@silent", [61001, 61002, 61003])
    alive.ok("follow @alive @silent")
    reply = silent.read()                        # nothing sent: the tracker gives up on it
    assert (reply["status"], reply["code"]) == ("FAILURE", "IDLE_TIMEOUT")
    assert silent.closed_by_peer()
    alive.expect(r"^\[notice\] @silent went offline$")
    alive.ok("online")                           # alive for longer than the idle timeout
    alive.expect(r"^  @alive$")
    again = net.client()
    assert again.call("login", handle="@silent", ip="127.0.0.1", ports=[61001, 61002, 61003],
                      key=SAMPLE_KEY, password=password_of("@silent"))["status"] == "SUCCESS"


def test_a_flooding_session_is_throttled_while_another_is_served(net: Tweeter) -> None:
    flooder, polite = net.client(), net.client()
    burst = b"".join(json.dumps({"id": i, "cmd": "query-handles"}).encode() + b"\n"
                     for i in range(200))
    flooder.send_raw(burst)
    replies = [flooder.read() for _ in range(200)]
    throttled = [r for r in replies if r.get("code") == "THROTTLED"]
    served = [r for r in replies if r["status"] == "SUCCESS"]
    assert throttled and 20 <= len(served) < 200
    for _ in range(10):
        assert polite.call("query-handles")["status"] == "SUCCESS"


@dataclass
class Op:
    session: str
    kind: str
    target: str | None
    sent: float
    answered: float
    ok: bool
    data: dict = field(default_factory=dict)


@dataclass
class History:
    """Some ops of one session, in order.  A session's ops are sequential, so they are in the
    order they were sent and answered alike: what was answered before a given moment is a
    prefix, found by bisection (a long soak has tens of thousands of ops)."""

    ops: list[Op] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)

    def add(self, op: Op) -> None:
        self.ops.append(op)
        self.answered.append(op.answered)

    def before(self, tweet: Op, meaning: Callable[[Op], bool | None]) -> bool | None:
        """What the last op answered before ``tweet`` was sent says (``meaning``: True, False,
        or None for nothing); None too when an op overlaps the tweet (undecided)."""
        known = bisect.bisect_left(self.answered, tweet.sent)
        if known < len(self.ops) and self.ops[known].sent < tweet.answered:
            return None
        for index in range(known - 1, -1, -1):          # the newest first
            said = meaning(self.ops[index])
            if said is not None:
                return said
        return None


def follow_state(op: Op) -> bool | None:
    """Whether a follow or drop left its session following the target (None: it says not)."""
    if op.ok or op.data.get("code") in ("ALREADY_FOLLOWING", "NOT_FOLLOWING"):
        return op.kind == "follow"
    return None


def online_state(op: Op) -> bool | None:
    """Whether a register, login or logout left its session online (None: it says not)."""
    if not op.ok:
        return None
    return op.kind != "logout"


def test_soak_graph_and_tweets_match_the_replies(cluster: Cluster) -> None:
    net = Tweeter(cluster)
    net.tracker("-q", "--flood-burst", "1000000", *MANY_CONNECTIONS)
    tracker = net.tracker_proc
    assert tracker is not None
    pid = tracker.popen.pid
    base_threads, base_fds = proc_status(pid, "Threads"), open_descriptors(pid)
    letters = "abcdefghij"
    handles = [f"@soak{x}{y}" for x in letters for y in letters]      # 100 sessions
    ops: list[Op] = []
    lock = threading.Lock()
    # The soak's seconds count from the moment every session is registered (scrypt, one hash
    # per core at a time, takes the first seconds), so that the knob is the soak itself.
    deadline: list[float] = []
    registered = threading.Barrier(len(handles), action=lambda: deadline.append(
        time.monotonic() + SOAK_SECONDS))

    def session(index: int) -> None:
        me, rng = handles[index], random.Random(index)
        # Each session follows and drops among its next ten handles: every pair then has a
        # known state early, so the tweets can be checked from the first seconds on.
        neighbours = [handles[(index + k) % len(handles)] for k in range(1, 11)]
        ports = [62000 + 3 * index + k for k in range(3)]
        client = RawClient(net.port, timeout=LOGIN_WAIT)
        online = False

        def do(kind: str, target: str | None, **args: object) -> dict:
            sent = time.monotonic()
            reply = client.call(kind, **args)
            with lock:
                ops.append(Op(me, kind, target, sent, time.monotonic(),
                              reply["status"] == "SUCCESS", reply))
            return reply

        try:
            online = do("register", None, handle=me, ip="127.0.0.1", ports=ports,
                        key=SAMPLE_KEY, password=password_of(me))["status"] == "SUCCESS"
            registered.wait(REGISTERING_TIMEOUT)
            while time.monotonic() < deadline[0]:
                choice = rng.random()
                if not online:
                    online = do("login", None, handle=me, ip="127.0.0.1", ports=ports,
                                key=SAMPLE_KEY, password=password_of(me))["status"] == "SUCCESS"
                elif choice < 0.35:
                    other = rng.choice(neighbours)
                    do("follow", other, follower=me, followee=other)
                elif choice < 0.55:
                    other = rng.choice(neighbours)
                    do("drop", other, follower=me, followee=other)
                elif choice < 0.998:     # logouts are rare: every login costs a scrypt hash, and
                    # logins that come faster than the hashes queue for seconds (which leaves
                    # little to check: an op in flight makes its session's state undecided)
                    reply = do("tweet", None, handle=me, text=f"soak {me}")
                    if reply["status"] == "SUCCESS":
                        client.call("end-tweet", handle=me, tid=reply["tid"], reached=0,
                                    skipped=[])
                else:
                    do("logout", None)
                    online = False
        finally:
            client.close()

    threads = [threading.Thread(target=session, args=(i,)) for i in range(len(handles))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(REGISTERING_TIMEOUT + SOAK_SECONDS + 60)
        assert not thread.is_alive()
    assert settle(lambda: proc_status(pid, "Threads"), base_threads) == base_threads
    assert settle(lambda: open_descriptors(pid), base_fds) == base_fds

    # The follower graph in the tracker equals the one the SUCCESS replies imply.
    expected: set[tuple[str, str]] = set()
    for op in sorted(ops, key=lambda op: op.sent):     # each pair's ops are sequential
        if op.kind == "follow" and (op.ok or op.data.get("code") == "ALREADY_FOLLOWING"):
            expected.add((op.session, op.target))       # type: ignore[arg-type]
        elif op.kind == "drop" and (op.ok or op.data.get("code") == "NOT_FOLLOWING"):
            expected.discard((op.session, op.target))   # type: ignore[arg-type]
    checker = net.client()
    checker.register("@checker", [61001, 61002, 61003])
    stored = {(follower, handle) for handle in handles
              for follower in checker.call("followers", handle=handle)["handles"]}
    assert stored == expected

    # Every tweet went to exactly the followers that were, beyond doubt, online and following
    # for its whole request (ops whose timing overlaps the tweet prove nothing either way).
    presence: dict[str, History] = defaultdict(History)
    following: dict[str, dict[str, History]] = defaultdict(lambda: defaultdict(History))
    for op in ops:                                      # in the order they were answered
        if op.kind in ("register", "login", "logout"):
            presence[op.session].add(op)
        elif op.kind in ("follow", "drop"):
            following[op.target][op.session].add(op)    # type: ignore[index]
    checked = 0
    for tweet in (op for op in ops if op.kind == "tweet" and op.ok):
        got = {row[0] for row in tweet.data["followers"]}
        for other, follows_ops in following[tweet.session].items():
            follows = follows_ops.before(tweet, follow_state)
            online = presence[other].before(tweet, online_state)
            if other == tweet.session or follows is None or online is None:
                continue
            checked += 1
            assert (other in got) == (follows and online), (tweet, other, follows, online)
    wanted = DECIDED_PER_SECOND * SOAK_SECONDS
    assert checked >= wanted, f"only {checked} decided cases in {SOAK_SECONDS:g}s, not {wanted:g}"
    tracker.assert_no_traceback()
    failed = [line for line in tracker.lines if "!! connection" in line]
    assert not failed, failed


def test_a_tweet_whose_author_dies_mid_ring_is_ended(net: Tweeter) -> None:
    author = net.user("@a", "--hop-timeout", "5")       # slow retries: the ring hangs
    author.register("@a")
    follower = net.users("@b")["@b"]
    follower.ok("follow @b @a")
    follower.kill(signal.SIGSTOP)                        # it will never ack
    author.ok('tweet @a "into the void"')
    author.kill(signal.SIGKILL)                          # dies while its ring is running
    assert net.tracker_proc is not None
    net.tracker_proc.expect(r"tweet #\d+ of @a ended: its author's connection closed")
    follower.kill(signal.SIGKILL)
    again = net.user("@a-again")
    again.login("@a")
    reply = again.ok('tweet @a "back again"')
    assert "goes to" in reply
    again.expect(r"^tweet #\d+ reached 0 followers")     # @b was skipped, then offline


