"""The SPEC §9 figures, each beside a baseline measured in the same run (``make bench``).

    python3 tools/bench.py            # the full run: about three minutes on 2 cores
    python3 tools/bench.py --quick    # small sizes and few repeats: what the test runs

It prints one table.  Each row is a figure of the product, the baseline it is compared with, their
ratio, the target, and whether the target is met:

1. tracker: requests/s of 1, 5 and 50 concurrent sessions doing ``query-handles``/``follow``/
   ``drop`` over the raw wire protocol (closed loop, one request in flight per session), against
   a bare ``socketserver.ThreadingTCPServer`` line echo driven by the same clients with the same
   bytes; the throughput with 50 sessions against that with 5 (a convoy shows as a fall); and the
   CPU time per request of both servers (user + system time from ``/proc/PID/stat`` over the
   measured seconds, divided by the replies).  Flood control is switched off for these rows (its
   default, 10 commands a second per session, would measure the policy, not the tracker).
2. ring: median whole tweet (from typing ``tweet`` into the author's ``user.py`` to its printed
   ``tweet #N reached K followers`` line: both tracker round trips included) with 10 and 50
   follower ``user.py`` processes, against a bare UDP ring of as many small processes doing the
   same hop protocol: JSON datagram, ack, forward, measured the same way (stdin to stdout).
   The same whole tweet also against the same ``user.py`` ring without authentication
   (``tools/bench_unsigned_user.py``: keys that make and check nothing), tweets of the two
   rings alternating.  Flood control is off here too: the tweets go back to back.
3. scale: a tracker on a database with 100 000 stored tweets; 1000 sessions register (50 at a
   time) and stay online.  Registration rate against the bare ``PasswordHasher`` rate with one
   thread per core; tracker RSS (``VmRSS``) with the 1000 online against a bare threading echo
   server holding 1000 connections; median ``feed`` round trip against the same query run
   directly on the database (``SqliteStore.feed``).
4. ttweet: median wall time of ``ttweetcl.py -d`` against ``python3 -c pass``.
5. fairness: the worst heartbeat round trip of a logged-in session while 3 sessions never read
   and 60 others ``say`` 10 times a second each (every say is pushed to every other session),
   against the same heartbeats on the idle tracker just before.
6. stores: a database filled directly (SQL into ``adapters.sqlite_store``'s schema) with
   100 000 accounts, 250 000 tweets carrying 1 000 000 hashtag rows, and 10 000 messages kept
   for @reader.  Median round trips of ``trending`` and of the first page of ``query-handles``
   against a ``heartbeat`` of the same session; a login of @reader, to its reply and to the
   last kept message pushed after it (in pages), against a login with none kept; and the worst
   heartbeat of another session while those pages go out.

Every process runs on 127.0.0.1 with ports the kernel picks; every wait has a timeout.  The clients
of rows 1 and 3 run inside this process (one selector thread, raw wire sessions of
``tools.wire_client``); rings are real processes (``tools.driver``).  Helper roles of this same
file (``--role echo-server``, ``--role ring-node``) are the baselines' servers.

    each section ──starts──> the product and its baseline ──measures both the same way──> a Row
    the Rows ──print_table──> figure, baseline, ratio, target, met?
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import resource
import selectors
import socket
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))     # protocol/, tools/, …

from tools.driver import (
    PYTHON,
    ROOT,
    SAMPLE_KEY,
    Proc,
    Timeout,
    free_port,
    start_tracker,
)
from tools.wire_client import WireClient, encode, is_reply

# Flood control off: of commands per session, and of connections and registrations per address
# (every client of the benchmark connects from 127.0.0.1).
NO_FLOOD = ["--flood-burst", "1000000000", "--flood-rate", "1000000000",
            "--max-per-address", "1000000", "--connect-burst", "1000000",
            "--registrations-per-address", "1000000"]
LONG_IDLE = ["--idle-timeout", "3600", "--register-timeout", "3600"]
IO_TIMEOUT = 60.0           # seconds any one wait of the benchmark may take


@dataclass(frozen=True)
class Sizes:
    load_sessions: tuple[int, ...]      # the last is the "many sessions" figure
    load_seconds: float
    load_repeats: int
    rings: tuple[int, ...]
    tweets: int
    scale_sessions: int
    scale_tweets: int
    scale_authors: int
    feeds: int
    hashes: int
    ttweet_runs: int


FULL = Sizes(load_sessions=(1, 5, 50), load_seconds=2.0, load_repeats=3, rings=(10, 50), tweets=15,
             scale_sessions=1000, scale_tweets=100_000, scale_authors=1000, feeds=300,
             hashes=48, ttweet_runs=15)
QUICK = Sizes(load_sessions=(1, 10), load_seconds=0.4, load_repeats=1, rings=(3, 5), tweets=3,
              scale_sessions=30, scale_tweets=2000, scale_authors=50, feeds=30, hashes=6,
              ttweet_runs=3)
REGISTER_IN_FLIGHT = 50     # registrations the scale clients keep going at once


@dataclass(frozen=True)
class Row:
    figure: str
    value: float
    unit: str
    baseline_name: str
    baseline: float
    higher_is_better: bool
    target: float           # on the ratio, unless absolute is set
    absolute: float | None = None   # a target on the value itself (RSS, feed)
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("inf")

    @property
    def met(self) -> bool:
        measured = self.value if self.absolute is not None else self.ratio
        limit = self.absolute if self.absolute is not None else self.target
        return measured >= limit if self.higher_is_better else measured <= limit

    def target_text(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        if self.absolute is not None:
            return f"{sign} {self.absolute:g} {self.unit}"
        return f"ratio {sign} {self.target:g}"


def say(text: str) -> None:
    print(text, flush=True)


def fmt(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.2f} {unit}"


def print_table(rows: Sequence[Row]) -> None:
    header = ("figure", "measured", "baseline (same run)", "ratio", "target", "")
    table = [header] + [(r.figure, fmt(r.value, r.unit),
                         f"{r.baseline_name}: {fmt(r.baseline, r.unit)}", f"{r.ratio:.2f}x",
                         r.target_text(), "met" if r.met else "MISSED") for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    say("")
    for index, line in enumerate(table):
        say("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
            .rstrip())
        if index == 0:
            say("  ".join("-" * width for width in widths))
    notes = [f"  [{r.figure}] {r.note}" for r in rows if r.note]
    if notes:
        say("\nnotes:")
        for note in notes:
            say(note)


# ---- helper roles: the baselines' servers --------------------------------------------------------
def echo_server() -> int:
    """A bare threading line echo: the tracker's I/O pattern without the tracker."""

    class Echo(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while line := self.rfile.readline(4097):
                self.wfile.write(line)

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True
        request_queue_size = 128

    with Server(("127.0.0.1", 0), Echo) as server:
        print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return 0


def ring_node() -> int:
    """One member of the bare UDP ring: JSON datagrams, each hop acknowledged, resent after
    0.25 s (as user.py).  The author (told so on stdin) starts a round per ``go N`` line and
    prints ``back N`` when the token is home; followers ack, then forward to their right."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    me = sock.getsockname()
    print(f"port {me[1]}", flush=True)
    words = sys.stdin.readline().split()            # "right PORT author|follower NAME"
    right, is_author, name = ("127.0.0.1", int(words[1])), words[2] == "author", words[3]
    print("ready", flush=True)
    seq = itertools.count(random.randrange(1, 2**31))
    seen: set[int] = set()
    pending: list = []              # [seq, data, deadline, tries] of the one unacknowledged hop

    def send_hop(message: dict) -> None:
        number = next(seq)
        data = json.dumps({**message, "seq": number}).encode()
        sock.sendto(data, right)
        pending[:] = [number, data, time.monotonic() + 0.25, 0]

    def pump(done: Callable[[], bool]) -> None:
        while not done():
            if pending:
                sock.settimeout(max(pending[2] - time.monotonic(), 0.0))
            else:
                sock.settimeout(None)
            try:
                data, sender = sock.recvfrom(2048)
            except TimeoutError:
                if pending[3] >= 4:
                    pending.clear()                 # the neighbour is gone: give up the hop
                else:
                    sock.sendto(pending[1], right)
                    pending[2], pending[3] = time.monotonic() + 0.25, pending[3] + 1
                continue
            message = json.loads(data)
            if message.get("kind") == "ack":
                if pending and message.get("seq") == pending[0]:
                    pending.clear()
                continue
            sock.sendto(json.dumps({"kind": "ack", "seq": message["seq"]}).encode(), sender)
            if message["tid"] in seen:
                continue
            seen.add(message["tid"])
            if not is_author:
                send_hop({**message, "prev": name, "hops": message["hops"] + 1})

    if not is_author:
        pump(lambda: False)
        return 0
    for line in sys.stdin:
        tid = int(line.split()[1])
        send_hop({"kind": "tweet", "ring": name, "tid": tid, "text": f"bench {tid}",
                  "prev": name, "hops": 0, "skipped": []})
        pump(lambda tid=tid: tid in seen and not pending)
        print(f"back {tid}", flush=True)
    return 0


# ---- small tools ---------------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def raise_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        limit = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def start_echo() -> tuple[Proc, int]:
    proc = Proc([str(Path(__file__).resolve()), "--role", "echo-server"], "echo")
    return proc, int(proc.expect(r"listening on [\d.]+:(\d+)", IO_TIMEOUT).group(1))


def letters(number: int, width: int = 3) -> str:
    """``number`` in base 26 as lower-case letters (handles may hold letters only)."""
    out = ""
    for _ in range(width):
        number, digit = divmod(number, 26)
        out = chr(97 + digit) + out
    return out


class Client(WireClient):
    """One raw wire session (or echo connection) of the benchmark, numbered ``index``, driven
    by the selector loops below (``received_lines``)."""

    def __init__(self, port: int, index: int) -> None:
        super().__init__(port, welcome=False, nodelay=True, timeout=IO_TIMEOUT)
        self.index, self.sent = index, 0
        self.started = 0.0


def await_replies(clients: Sequence[Client], want: Callable[[Client], bool],
                  on_reply: Callable[[Client, bytes], None], timeout: float = IO_TIMEOUT) -> None:
    """Read every client until ``want(client)`` is False for all of them, calling ``on_reply``
    for each reply line (pushes are skipped)."""
    with selectors.DefaultSelector() as selector:
        for client in clients:
            if want(client):
                selector.register(client.sock, selectors.EVENT_READ, client)
        deadline = time.monotonic() + timeout
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(f"{len(selector.get_map())} sessions got no reply in {timeout:g}s")
            for key, _ in selector.select(remaining):
                client = key.data
                for line in client.received_lines():
                    if is_reply(line):
                        on_reply(client, line)
                if not want(client):
                    selector.unregister(client.sock)


def register_all(port: int, handles: Sequence[str], in_flight: int,
                 timeout: float = IO_TIMEOUT * 5) -> tuple[list[Client], float]:
    """Register every handle on its own connection, ``in_flight`` at a time; the clients
    (still online) and the seconds it took."""
    clients: list[Client] = []
    todo = iter(enumerate(handles))
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:

        def start_next() -> None:
            item = next(todo, None)
            if item is None:
                return
            index, handle = item
            client = Client(port, index)
            udp = [20000 + 3 * index + k for k in range(3)]      # only registered, never bound
            client.sock.sendall(encode({"id": 1, "cmd": "register", "handle": handle,
                                       "ip": "127.0.0.1", "ports": udp, "key": SAMPLE_KEY,
                                       "password": f"pw-{handle}"}))
            clients.append(client)
            selector.register(client.sock, selectors.EVENT_READ, client)

        for _ in range(in_flight):
            start_next()
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(f"registrations still running after {timeout:g}s")
            for key, _ in selector.select(remaining):
                client = key.data
                for line in client.received_lines():
                    if not is_reply(line):
                        continue
                    if b'"SUCCESS"' not in line:
                        raise RuntimeError(f"a registration failed: {line[:200]!r}")
                    selector.unregister(client.sock)
                    start_next()
    return clients, time.perf_counter() - started


# ---- 1. tracker throughput -----------------------------------------------------------------------
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/PID/stat``, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK     # utime, stime


@dataclass(frozen=True)
class Load:
    """One closed-loop run: replies a second, FAILURE replies, server CPU µs per reply."""

    rate: float
    failures: int
    cpu_us: float


def closed_loop(port: int, pid: int, count: int, seconds: float,
                prepare: Callable[[list[Client]], None],
                request: Callable[[Client], bytes], warmup: float = 0.3) -> Load:
    """``count`` sessions, each sending its next request as soon as the last is answered, for
    ``seconds`` after a warm-up; the server's CPU time is read at both ends of the window."""
    clients = [Client(port, index) for index in range(count)]
    try:
        prepare(clients)
        replies, failures = 0, 0
        cpu_start = cpu_end = 0.0
        with selectors.DefaultSelector() as selector:
            for client in clients:
                selector.register(client.sock, selectors.EVENT_READ, client)
                client.sock.sendall(request(client))
            start = time.monotonic() + warmup
            end = start + seconds
            measuring = False
            while (now := time.monotonic()) < end:
                if not measuring and now >= start:
                    measuring, cpu_start = True, cpu_seconds(pid)
                for key, _ in selector.select(min(end, start if not measuring else end) - now):
                    client = key.data
                    for line in client.received_lines():
                        if not is_reply(line):
                            continue
                        if measuring:
                            replies += 1
                            failures += b'"FAILURE"' in line
                        client.sock.sendall(request(client))
            cpu_end = cpu_seconds(pid)
        return Load(replies / seconds, failures, (cpu_end - cpu_start) * 1e6 / max(replies, 1))
    finally:
        for client in clients:
            client.close()


def load_handle(index: int) -> str:
    return "@load" + letters(index)


def load_requests(count: int) -> Callable[[Client], bytes]:
    """query-handles, follow, drop, over and over; session i follows and drops session i+1
    (a lone session follows and drops session 1, registered by an earlier round)."""

    def request(client: Client) -> bytes:
        client.sent += 1
        me, other = load_handle(client.index), load_handle((client.index + 1) % max(count, 2))
        step = client.sent % 3
        if step == 1:
            return encode({"id": client.sent, "cmd": "query-handles"})
        cmd = "follow" if step == 2 else "drop"
        return encode({"id": client.sent, "cmd": cmd, "follower": me, "followee": other})

    return request


def bench_tracker(sizes: Sizes, workdir: Path) -> list[Row]:
    counts = sorted(sizes.load_sessions, reverse=True)  # the most first: they register all
    say(f"[1] tracker: {', '.join(map(str, sorted(counts)))} sessions doing query-handles/"
        f"follow/drop for {sizes.load_seconds:g}s x {sizes.load_repeats}, each run followed "
        "by the same load on a line echo; server CPU time from /proc")
    tracker, port = start_tracker("-q", "--db", str(workdir / "load.db"), *NO_FLOOD, *LONG_IDLE)
    echo, echo_port = start_echo()
    registered: list[bool] = []

    def prepare(n: int) -> Callable[[list[Client]], None]:
        def register(clients: list[Client]) -> None:
            """Register (first round) or log in again (later rounds), then drop the follow a
            previous round may have left, so that every follow and drop of the round
            succeeds."""
            cmd = "login" if registered else "register"
            for client in clients:
                client.sock.sendall(encode({"id": 0, "cmd": cmd,
                                           "handle": load_handle(client.index),
                                           "ip": "127.0.0.1", "ports": [1, 2, 3],
                                           "key": SAMPLE_KEY, "password": f"pw-{client.index}"}))
            answered: set[int] = set()

            def on_reply(client: Client, line: bytes) -> None:
                if b'"SUCCESS"' not in line:
                    raise RuntimeError(f"session {client.index} could not {cmd}: "
                                       f"{line[:200]!r}")
                answered.add(client.index)

            await_replies(clients, lambda c: c.index not in answered, on_reply)
            registered.append(True)
            for client in clients:
                client.sock.sendall(encode({"id": 0, "cmd": "drop", "follower":
                                           load_handle(client.index), "followee":
                                           load_handle((client.index + 1) % max(n, 2))}))
            dropped: set[int] = set()
            await_replies(clients, lambda c: c.index not in dropped,
                          lambda c, line: dropped.add(c.index))
        return register

    runs: dict[int, list[Load]] = {n: [] for n in counts}
    echoes: dict[int, list[Load]] = {n: [] for n in counts}
    try:
        for _ in range(sizes.load_repeats):
            for n in counts:
                runs[n].append(closed_loop(port, tracker.pid, n, sizes.load_seconds,
                                           prepare(n), load_requests(n)))
                echoes[n].append(closed_loop(echo_port, echo.pid, n, sizes.load_seconds,
                                             lambda c: None, load_requests(n)))
    finally:
        tracker.stop()
        echo.stop()

    def rate(loads: list[Load]) -> float:
        return median([load.rate for load in loads])

    def cpu(loads: list[Load]) -> float:
        return median([load.cpu_us for load in loads])

    for n in sorted(counts):
        say(f"    {n:>2} sessions: tracker {', '.join(f'{r.rate:,.0f}' for r in runs[n])} req/s"
            f" ({cpu(runs[n]):.0f} CPU µs a request); echo "
            f"{', '.join(f'{r.rate:,.0f}' for r in echoes[n])} req/s "
            f"({cpu(echoes[n]):.0f} CPU µs)")
    failures = sum(load.failures for loads in runs.values() for load in loads)
    note = "flood control off (--flood-burst/--flood-rate)"
    if failures:
        note += f"; {failures} FAILURE replies"
    one, many = min(counts), max(counts)
    rows = [Row(f"tracker requests/s, {n} session{'s' if n > 1 else ''}", rate(runs[n]),
                "req/s", "line echo", rate(echoes[n]), True,
                0.8 if n == one else 0.4, note=note if n == many else "")
            for n in sorted(counts)]
    if len(counts) > 2:
        middle = sorted(counts)[-2]
        rows.append(Row(f"tracker requests/s, {many} against {middle} sessions", rate(runs[many]),
                        "req/s", f"tracker, {middle} sessions", rate(runs[middle]), True, 0.9,
                        note="a convoy on the core's lock or the GIL shows as a fall"))
    for n in (one, many):
        rows.append(Row(f"tracker CPU per request, {n} session{'s' if n > 1 else ''}",
                        cpu(runs[n]), "µs", "line echo", cpu(echoes[n]), False, 0.0,
                        absolute=50.0, note="user + system time of the server process, "
                                            "/proc/PID/stat"))
    return rows


# ---- 2. the ring ---------------------------------------------------------------------------------
# The same user.py without authentication (keys that make and check nothing): issue 11's
# "whole tweet with authentication against the same ring without it".  A bench-only launcher.
UNSIGNED_USER = "tools/bench_unsigned_user.py"


def start_users(port: int, handles: Sequence[str], follow: str | None,
                program: str = "user.py") -> list[Proc]:
    """user.py processes, registered (and following ``follow``), started in parallel."""
    users = [Proc([program, "127.0.0.1", str(port), "-q"], h) for h in handles]
    for user, handle in zip(users, handles, strict=True):
        user.send(f"register {handle}")
        user.send(f"pw-{handle}")
        user.send(f"pw-{handle}")
    for user, handle in zip(users, handles, strict=True):
        user.expect(rf"^SUCCESS: {handle} registered", IO_TIMEOUT)
        if follow:
            user.send(f"follow {handle} {follow}")
    if follow:
        for user in users:
            user.expect(r"^SUCCESS: .* now follows", IO_TIMEOUT)
    return users


def start_user_ring(port: int, size: int, program: str = "user.py",
                    prefix: str = "r") -> tuple[Proc, str, list[Proc]]:
    """An author and ``size`` followers, all ``program`` (user.py) processes: (author, its
    handle, all)."""
    author_handle = f"@{prefix}ing" + letters(size)
    followers = [f"@{prefix}{letters(size)}f{letters(i)}" for i in range(size)]
    users = start_users(port, [author_handle], None, program)
    try:
        users += start_users(port, followers, author_handle, program)
    except BaseException:
        users[0].stop()
        raise
    return users[0], author_handle, users


def user_tweet(author: Proc, handle: str, size: int, number: int) -> tuple[float, float]:
    """One tweet: seconds from typing it to the printed result, and the ring ms printed."""
    started = time.monotonic()
    author.send(f'tweet {handle} "bench tweet {number}"')
    match, stamp = author.expect_stamped(
        r"^tweet #\d+ reached (\d+) followers in ([\d.]+) ms", IO_TIMEOUT)
    if int(match.group(1)) != size:
        raise RuntimeError(f"a tweet reached {match.group(1)} of {size} followers")
    return stamp - started, float(match.group(2))


def start_bare_ring(size: int) -> list[Proc]:
    """The bare UDP ring: an author node and ``size`` follower nodes, linked and ready."""
    nodes = [Proc([str(Path(__file__).resolve()), "--role", "ring-node"], f"node{i}")
             for i in range(size + 1)]
    try:
        ports = [int(node.expect(r"^port (\d+)", IO_TIMEOUT).group(1)) for node in nodes]
        for i, node in enumerate(nodes):
            role = "author" if i == 0 else "follower"
            node.send(f"right {ports[(i + 1) % len(nodes)]} {role} @n{i}")
        for node in nodes:
            node.expect(r"^ready$", IO_TIMEOUT)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def bare_round(author: Proc, number: int) -> float:
    """One round of the bare ring, measured like a tweet: stdin to stdout (seconds)."""
    started = time.monotonic()
    author.send(f"go {number}")
    _, stamp = author.expect_stamped(rf"^back {number}$", IO_TIMEOUT)
    return stamp - started


def bench_rings(sizes: Sizes, workdir: Path) -> list[Row]:
    """Tweets, tweets of the same ring without authentication, and bare rounds alternate, so
    that whatever else the machine does hits all three."""
    rows = []
    tracker, port = start_tracker("-q", "--db", str(workdir / "ring.db"), *LONG_IDLE, *NO_FLOOD)
    try:
        for size in sizes.rings:
            say(f"[2] ring of {size} followers: {sizes.tweets} tweets through user.py, each "
                "followed by one through the same ring without authentication and a round of "
                "the bare UDP ring")
            author, handle, users = start_user_ring(port, size)
            nodes: list[Proc] = []
            try:
                plain_author, plain_handle, plain = start_user_ring(port, size, UNSIGNED_USER,
                                                                    "u")
                users += plain
                nodes = start_bare_ring(size)
                whole, inner, unsigned, unsigned_inner, bare = [], [], [], [], []
                for number in range(sizes.tweets + 1):  # the first sets the rings up: not counted
                    tweet_time, ring_ms = user_tweet(author, handle, size, number)
                    plain_time, plain_ms = user_tweet(plain_author, plain_handle, size, number)
                    round_time = bare_round(nodes[0], number)
                    if number:
                        whole.append(tweet_time)
                        inner.append(ring_ms)
                        unsigned.append(plain_time)
                        unsigned_inner.append(plain_ms)
                        bare.append(round_time)
                for user in users:
                    user.send("quit")
                for user in users:
                    user.wait(IO_TIMEOUT)
            finally:
                for proc in users + nodes:
                    proc.stop()
            say(f"    user.py whole tweet median {median(whole) * 1000:.1f} ms (ring part as "
                f"printed by user.py {median(inner):.1f} ms); without authentication "
                f"{median(unsigned) * 1000:.1f} ms (ring part {median(unsigned_inner):.1f} ms); "
                f"bare ring {median(bare) * 1000:.1f} ms")
            rows.append(Row(f"whole tweet, {size} followers (median)", median(whole) * 1000,
                            "ms", "bare UDP ring", median(bare) * 1000, False, 2.0,
                            note=f"ring part alone, as user.py prints it: {median(inner):.1f} ms;"
                                 " flood control off (tweets back to back)"))
            rows.append(Row(f"authenticated tweet, {size} followers (median)",
                            median(whole) * 1000, "ms", "no authentication",
                            median(unsigned) * 1000, False, 1.3,
                            note="the same user.py ring with keys that make and check nothing "
                                 f"({UNSIGNED_USER}); ring part alone {median(inner):.1f} "
                                 f"against {median(unsigned_inner):.1f} ms"))
    finally:
        tracker.stop()
    return rows


# ---- 3. scale ------------------------------------------------------------------------------------
def hash_rate(count: int) -> float:
    """Hashes a second of the tracker's PasswordHasher, one thread per core."""
    from protocol.accounts import PasswordHasher

    hasher, threads = PasswordHasher(), os.cpu_count() or 1
    per_thread = max(1, count // threads)

    def work() -> None:
        for _ in range(per_thread):
            hasher.hash("a password")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(IO_TIMEOUT * 5)
    return per_thread * threads / (time.perf_counter() - started)


def populate(path: Path, sizes: Sizes) -> None:
    """A database with ``scale_authors`` accounts and ``scale_tweets`` tweets, written with
    adapters.sqlite_store.SqliteStore itself; @reader follows a tenth of the authors."""
    from adapters.sqlite_store import SqliteStore
    from protocol.accounts import PasswordHasher

    store = SqliteStore(str(path))
    password = PasswordHasher().hash("pw-@reader")
    now = time.time()
    authors = ["@author" + letters(i) for i in range(sizes.scale_authors)]
    for handle in [*authors, "@reader"]:
        store.create(handle, password, now)
    for handle in authors[:: 10]:
        store.follow("@reader", handle)
    rng = random.Random(7)
    for number in range(sizes.scale_tweets):
        tag = f" #topic{number % 50}" if number % 4 == 0 else ""
        store.add_tweet(rng.choice(authors), f"stored tweet {number}{tag}",
                        now - sizes.scale_tweets + number)
    store.close()


def bench_scale(sizes: Sizes, workdir: Path) -> list[Row]:
    n = sizes.scale_sessions
    raise_open_files(2 * n + 256)
    say(f"[3] scale: hash rate; {sizes.scale_tweets:,} tweets stored; {n} sessions register "
        f"({REGISTER_IN_FLIGHT} at a time) and stay online; RSS; feed")
    hashes = hash_rate(sizes.hashes)
    db = workdir / "scale.db"
    started = time.perf_counter()
    populate(db, sizes)
    say(f"    database filled in {time.perf_counter() - started:.1f}s; bare hash rate "
        f"{hashes:.1f}/s with {os.cpu_count()} threads (measured again after the registrations)")

    tracker, port = start_tracker("-q", "--db", str(db), *LONG_IDLE, *NO_FLOOD)
    clients: list[Client] = []
    try:
        handles = ["@session" + letters(i) for i in range(n)]
        clients, seconds = register_all(port, handles, min(REGISTER_IN_FLIGHT, n))
        rate = n / seconds
        rss, peak = rss_mib(tracker.pid), rss_mib(tracker.pid, "VmHWM")
        hashes = median([hashes, hash_rate(sizes.hashes)])     # before and after: drift evens out
        say(f"    {n} registered in {seconds:.1f}s ({rate:.1f}/s); tracker RSS {rss:.1f} MiB "
            f"(peak {peak:.1f} MiB)")
        feed_times = timed_feeds(port, sizes.feeds)
    finally:
        for client in clients:
            client.close()
        tracker.stop()
    direct = direct_feeds(db, sizes.feeds)      # the tracker holds its database while it runs
    say(f"    feed median {median(feed_times) * 1000:.2f} ms through the tracker, "
        f"{median(direct) * 1000:.3f} ms as a direct query")

    echo, echo_port = start_echo()
    echoes: list[Client] = []
    try:
        echoes = [Client(echo_port, i) for i in range(n)]
        for client in echoes:
            client.sock.sendall(b'{"hello":"echo"}\n')
        await_replies(echoes, lambda c: c.sent == 0,
                      lambda c, line: setattr(c, "sent", 1))
        echo_rss = rss_mib(echo.pid)
    finally:
        for client in echoes:
            client.close()
        echo.stop()
    return [
        Row(f"registrations/s, {n} sessions", rate, "/s", "bare scrypt hash", hashes, True, 0.8,
            note=f"{REGISTER_IN_FLIGHT} registrations in flight; the hash baseline runs one "
                 f"thread per core ({os.cpu_count()}), the mean of a run before and one after"),
        Row(f"tracker RSS, {n} sessions online", rss, "MiB", f"echo, {n} connections",
            echo_rss, False, 0.0, absolute=100.0,
            note=f"peak (VmHWM) during the registrations: {peak:.0f} MiB"),
        Row(f"feed median, {sizes.scale_tweets:,} tweets", median(feed_times) * 1000, "ms",
            "same query in-process", median(direct) * 1000, False, 0.0, absolute=5.0,
            note=f"{n} sessions online; @reader follows {sizes.scale_authors // 10} of "
                 f"{sizes.scale_authors} authors; feed of 20, one after the other (flood "
                 "control off: it allows 10 a second)"),
    ]


def timed_feeds(port: int, count: int) -> list[float]:
    """Round trips of ``feed`` from a logged-in session, one after the other (seconds)."""
    client = Client(port, -1)
    try:
        client.sock.sendall(encode({"id": 1, "cmd": "login", "handle": "@reader",
                                   "ip": "127.0.0.1", "ports": [1, 2, 3], "key": SAMPLE_KEY,
                                   "password": "pw-@reader"}))
        replies: list[bytes] = []

        def next_reply() -> bytes:
            replies.clear()
            await_replies([client], lambda c: not replies, lambda c, line: replies.append(line))
            return replies[0]

        if b'"SUCCESS"' not in (line := next_reply()):
            raise RuntimeError(f"@reader could not log in: {line[:200]!r}")
        times = []
        for number in range(count):
            started = time.perf_counter()
            client.sock.sendall(encode({"id": number + 2, "cmd": "feed"}))
            line = next_reply()
            times.append(time.perf_counter() - started)
            if b'"SUCCESS"' not in line or line.count(b'"stored tweet') != 20:
                raise RuntimeError(f"feed did not answer 20 tweets: {line[:200]!r}")
        return times
    finally:
        client.close()


def direct_feeds(db: Path, count: int) -> list[float]:
    from adapters.sqlite_store import SqliteStore

    store = SqliteStore(str(db))
    times = []
    try:
        # The authors of @reader's feed, as the tracker's read model holds them in memory.
        authors = ["@reader", *(row[0] for row in store.db.execute(
            "SELECT followee FROM follows WHERE follower = '@reader'"))]
        for _ in range(count):
            started = time.perf_counter()
            store.feed(authors, 20)
            times.append(time.perf_counter() - started)
    finally:
        store.close()
    return times


# ---- 4. ttweet -----------------------------------------------------------------------------------
def bench_ttweet(sizes: Sizes, workdir: Path) -> Row:
    """Both programs run with their bytecode cached, as after a first run on a normal install
    (in a private PYTHONPYCACHEPREFIX, whatever PYTHONDONTWRITEBYTECODE says); then, for the
    note, with the project's modules compiled on every run (PYTHONDONTWRITEBYTECODE=1)."""
    say(f"[4] ttweet: ttweetcl.py -d and python3 -c pass, {sizes.ttweet_runs} runs each")
    log = workdir / "ttweet-log.txt"
    cached = {key: value for key, value in os.environ.items()
              if key not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    cached["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    uncached = {key: value for key, value in cached.items() if key != "PYTHONPYCACHEPREFIX"}
    uncached["PYTHONDONTWRITEBYTECODE"] = "1"       # the standard library's own cache only
    port = free_port()
    server = Proc(["ttweetsrv.py", str(port), "--log", str(log)], "ttweetsrv")
    download = [PYTHON, "ttweetcl.py", "-d", "127.0.0.1", str(port), "--log", str(log)]
    expected = "Received Message: benchmark"
    try:
        server.expect(r"listening on port", IO_TIMEOUT)
        run([PYTHON, "ttweetcl.py", "-u", "127.0.0.1", str(port), "benchmark message",
             "--log", str(log)], env=cached)
        run([PYTHON, "-c", "pass"], env=cached)         # fills the bytecode cache
        client, bare, client_cold, bare_cold = [], [], [], []
        for _ in range(sizes.ttweet_runs):      # interleaved, so drift hits both alike
            client.append(run(download, expect=expected, env=cached))
            bare.append(run([PYTHON, "-c", "pass"], env=cached))
        for _ in range(max(3, sizes.ttweet_runs // 3)):
            client_cold.append(run(download, expect=expected, env=uncached))
            bare_cold.append(run([PYTHON, "-c", "pass"], env=uncached))
    finally:
        server.stop()
    say(f"    ttweetcl.py -d {median(client) * 1000:.1f} ms, python3 -c pass "
        f"{median(bare) * 1000:.1f} ms (project not byte-compiled: "
        f"{median(client_cold) * 1000:.1f} and {median(bare_cold) * 1000:.1f} ms)")
    return Row("ttweetcl.py -d wall time", median(client) * 1000, "ms", "python3 -c pass",
               median(bare) * 1000, False, 1.25,
               note=f"bytecode cached; compiling the project's modules on every run "
                    f"(PYTHONDONTWRITEBYTECODE=1): {median(client_cold) * 1000:.1f} ms against "
                    f"{median(bare_cold) * 1000:.1f} ms "
                    f"({median(client_cold) / median(bare_cold):.2f}x)")


def run(command: list[str], expect: str | None = None,
        env: dict[str, str] | None = None) -> float:
    """Run a program to its end; its wall time in seconds."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=IO_TIMEOUT,
                          check=False, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or (expect and expect not in done.stdout):
        raise RuntimeError(f"{' '.join(command[1:3])} failed: {done.stdout}{done.stderr}")
    return seconds


# ---- 5. fairness --------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadSizes:
    chatty: int             # sessions that say, each SAY_RATE times a second
    slow: int               # sessions that never read what they are sent
    seconds: float          # how long the heartbeats are measured, idle and under load


LOAD_FULL = LoadSizes(chatty=60, slow=3, seconds=5.0)
LOAD_QUICK = LoadSizes(chatty=10, slow=3, seconds=0.5)
SAY_RATE = 10.0             # says a second per chatty session: flood control's default rate
HEARTBEAT_GAP = 0.02        # seconds between one heartbeat's reply and the next heartbeat


def heartbeats(client: Client, seconds: float) -> list[float]:
    """Heartbeat round trips of one logged-in session, one after the other (seconds); the
    pushes it receives meanwhile are read and skipped, as user.py does."""
    times: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        client.sent += 1
        started = time.perf_counter()
        client.sock.sendall(encode({"id": client.sent, "cmd": "heartbeat"}))
        while not any(is_reply(line) for line in client.received_lines()):
            pass
        times.append(time.perf_counter() - started)
        time.sleep(HEARTBEAT_GAP)       # pacing the probe, not waiting for an event
    return times


def chatter(clients: Sequence[Client], stop: threading.Event, said: list[int]) -> None:
    """Each client says something SAY_RATE times a second (its next say once the last is
    answered and its time has come), reading and skipping every push, until ``stop``."""
    text = "fairness " * 15                        # 135 characters: a long say
    due = {client.index: time.monotonic() + random.random() / SAY_RATE for client in clients}
    waiting: set[int] = set()
    with selectors.DefaultSelector() as selector:
        for client in clients:
            selector.register(client.sock, selectors.EVENT_READ, client)
        while not stop.is_set():
            now = time.monotonic()
            for client in clients:
                if client.index not in waiting and due[client.index] <= now:
                    client.sent += 1
                    client.sock.sendall(encode({"id": client.sent, "cmd": "say", "text": text}))
                    waiting.add(client.index)
                    due[client.index] = max(now, due[client.index] + 1 / SAY_RATE)
            pending = [due[c.index] for c in clients if c.index not in waiting]
            timeout = max(0.0, min(pending) - time.monotonic()) if pending else 0.05
            for key, _ in selector.select(min(timeout, 0.05)):
                client = key.data
                for line in client.received_lines():
                    if is_reply(line):
                        waiting.discard(client.index)
                        said[0] += 1


def bench_fairness(quick: bool, workdir: Path) -> Row:
    """Heartbeat latency of a legitimate session while sessions that never read are sent a
    flood of says by chatty ones (SPEC §6, §9), beside the same heartbeat on an idle tracker."""
    sizes = LOAD_QUICK if quick else LOAD_FULL
    say(f"[5] fairness: heartbeats, idle, then while {sizes.slow} sessions never read and "
        f"{sizes.chatty} others say {SAY_RATE:g} times a second each ({sizes.seconds:g}s each)")
    tracker, port = start_tracker("-q", *LONG_IDLE, *NO_FLOOD)
    clients: list[Client] = []
    try:
        handles = ["@fair" + letters(i) for i in range(sizes.chatty + sizes.slow + 1)]
        clients, _ = register_all(port, handles, REGISTER_IN_FLIGHT)
        legit, slow, chatty = clients[0], clients[1:sizes.slow + 1], clients[sizes.slow + 1:]
        legit.sent = 1
        idle = heartbeats(legit, sizes.seconds)
        stop, said, failed = threading.Event(), [0], []

        def run_load() -> None:
            try:
                chatter(chatty, stop, said)
            except (OSError, ConnectionError) as error:    # reported below
                failed.append(error)

        load = threading.Thread(target=run_load, daemon=True)
        load.start()
        try:
            loaded = heartbeats(legit, sizes.seconds)
        finally:
            stop.set()
            load.join(IO_TIMEOUT)
        if failed:
            raise RuntimeError(f"a chatty session failed: {failed[0]}")
        closed = sum(1 for client in slow if reader_was_closed(client))
    finally:
        for client in clients:
            client.close()
        tracker.stop()
    worst, idle_worst = max(loaded) * 1000, max(idle) * 1000
    say(f"    heartbeat under load: median {median(loaded) * 1000:.2f} ms, worst {worst:.1f} ms "
        f"({len(loaded)} heartbeats, {said[0] / sizes.seconds:,.0f} says/s); idle: median "
        f"{median(idle) * 1000:.2f} ms, worst {idle_worst:.1f} ms")
    return Row(f"heartbeat, {sizes.slow} non-reading + {sizes.chatty} chatty sessions (worst)",
               worst, "ms", "idle tracker (worst)", idle_worst, False, 0.0, absolute=1000.0,
               note=f"median {median(loaded) * 1000:.2f} ms under load, {median(idle) * 1000:.2f}"
                    f" ms idle; {said[0] / sizes.seconds:,.0f} says/s, each pushed to every "
                    f"other session; {closed} of {sizes.slow} non-readers closed with "
                    "SENDQ_EXCEEDED meanwhile")


def reader_was_closed(client: Client) -> bool:
    """Whether the tracker closed this never-reading session (reading it now: to its end)."""
    client.sock.settimeout(1.0)
    try:
        while client.sock.recv(1 << 16):
            pass
    except TimeoutError:
        return False                    # still open: the tracker is still holding its frames
    except OSError:
        return True
    return True


# ---- 6. stores ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoreSizes:
    accounts: int
    tweets: int             # each carries TAGS_PER_TWEET hashtags
    tags: int               # distinct hashtags, used as a Zipf law says
    kept: int               # direct messages kept for @reader
    probes: int             # round trips measured of each kind
    logins: int             # logins measured of each kind


STORES_FULL = StoreSizes(accounts=100_000, tweets=250_000, tags=20_000, kept=10_000, probes=200,
                         logins=3)
STORES_QUICK = StoreSizes(accounts=2_000, tweets=5_000, tags=500, kept=500, probes=30, logins=1)
TAGS_PER_TWEET = 4
STORE_PASSWORD = "pw-of-the-store"


def fill_store(path: Path, sizes: StoreSizes) -> None:
    """Accounts, tagged tweets and kept messages, straight into the tracker's schema with SQL
    in one transaction (the tracker would refuse to keep so many messages for one user)."""
    from adapters.sqlite_store import SqliteStore
    from protocol.accounts import PasswordHasher

    store = SqliteStore(str(path))
    db, now = store.db, time.time()
    stored = PasswordHasher().hash(STORE_PASSWORD)
    handles = ["@store" + letters(i, 4) for i in range(sizes.accounts)]
    rng = random.Random(12)
    tags = [f"tag{k}" for k in range(sizes.tags)]
    weights = list(itertools.accumulate(1 / (k + 1) for k in range(sizes.tags)))

    def tweet_tags() -> list[str]:
        chosen: dict[str, None] = {}
        while len(chosen) < TAGS_PER_TWEET:
            chosen.update(dict.fromkeys(rng.choices(tags, cum_weights=weights, k=TAGS_PER_TWEET)))
        return list(chosen)[:TAGS_PER_TWEET]

    tweets = [(number + 1, rng.choice(handles), tweet_tags()) for number in range(sizes.tweets)]
    db.execute("BEGIN")
    db.executemany("INSERT INTO accounts (key, handle, password_hash, created) VALUES (?, ?, ?, ?)",
                   ((h, h, stored, now)
                    for h in [*handles, "@reader", "@quiet", "@probe", "@watcher"]))
    db.executemany("INSERT INTO tweets (id, author, text, created) VALUES (?, ?, ?, ?)",
                   ((tid, author, f"stored tweet {tid} " + " ".join(f"#{t}" for t in chosen),
                     now - sizes.tweets + tid) for tid, author, chosen in tweets))
    db.executemany("INSERT INTO hashtags (tag, tweet_id) VALUES (?, ?)",
                   ((tag, tid) for tid, _author, chosen in tweets for tag in chosen))
    db.executemany("INSERT INTO messages (sender, recipient, text, created) VALUES (?, ?, ?, ?)",
                   ((handles[number % 50], "@reader", f"kept message {number}", now + number)
                    for number in range(sizes.kept)))
    db.execute("COMMIT")
    store.close()


def next_reply(client: Client) -> bytes:
    """The next reply line of ``client`` (pushes are skipped: none is expected)."""
    while True:
        line = client.next_line()
        if not line:
            raise ConnectionError("the tracker closed the connection")
        if is_reply(line):
            return line


def round_trip(client: Client, request: dict) -> tuple[float, bytes]:
    client.sent += 1
    started = time.perf_counter()
    client.sock.sendall(encode({"id": client.sent, **request}))
    line = next_reply(client)
    return time.perf_counter() - started, line


def login_request(handle: str) -> dict:
    return {"cmd": "login", "handle": handle, "ip": "127.0.0.1", "ports": [1, 2, 3],
            "key": SAMPLE_KEY, "password": STORE_PASSWORD}


def heartbeats_until(client: Client, stop: threading.Event, times: list[float]) -> None:
    """Heartbeat round trips of ``client``, HEARTBEAT_GAP apart, until ``stop``."""
    while not stop.wait(HEARTBEAT_GAP):
        times.append(round_trip(client, {"cmd": "heartbeat"})[0])


def timed_login(client: Client, handle: str, kept: int) -> tuple[float, float]:
    """Seconds from sending a login to its reply, and to the last of the ``kept`` messages
    pushed after it; then the session logs out again (the messages stay kept: no receipts)."""
    client.sent += 1
    started = time.perf_counter()
    client.sock.sendall(encode({"id": client.sent, **login_request(handle)}))
    replied, pushed = 0.0, 0
    while not replied or pushed < kept:
        line = client.next_line()
        if not line:
            raise ConnectionError(f"the tracker closed {handle}'s connection")
        if is_reply(line):
            if b'"SUCCESS"' not in line:
                raise RuntimeError(f"{handle} could not log in: {line[:200]!r}")
            replied = time.perf_counter() - started
        elif line.startswith(b'{"push":"message"'):
            pushed += 1
    last = time.perf_counter() - started
    if b'"SUCCESS"' not in round_trip(client, {"cmd": "logout"})[1]:
        raise RuntimeError(f"{handle} could not log out")
    return replied, last


def bench_stores(quick: bool, workdir: Path) -> list[Row]:
    """trending, the first page of query-handles and a login with many kept messages on a big
    store (SPEC §6, §9: nothing walks a whole table under the core's lock)."""
    from protocol import limits

    sizes = STORES_QUICK if quick else STORES_FULL
    rows_of_tags = sizes.tweets * TAGS_PER_TWEET
    say(f"[6] stores: {sizes.accounts:,} accounts, {rows_of_tags:,} hashtag rows "
        f"({sizes.tags:,} tags), {sizes.kept:,} messages kept for @reader")
    db = workdir / "stores.db"
    started = time.perf_counter()
    fill_store(db, sizes)
    say(f"    database filled in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    tracker, port = start_tracker("-q", "--db", str(db), *LONG_IDLE, *NO_FLOOD,
                                  timeout=IO_TIMEOUT * 5)
    loaded = time.perf_counter() - started
    clients: list[Client] = []
    try:
        probe, watcher, reader = clients = [Client(port, i) for i in range(3)]
        for client, handle in ((probe, "@probe"), (watcher, "@watcher")):
            line = round_trip(client, login_request(handle))[1]
            if b'"SUCCESS"' not in line:
                raise RuntimeError(f"{handle} could not log in: {line[:200]!r}")
        # probe asks; watcher sends heartbeats while the pages of @reader's login go out
        beats, trends, pages = [], [], []
        for _ in range(sizes.probes):               # interleaved: drift hits all alike
            beats.append(round_trip(probe, {"cmd": "heartbeat"})[0])
            seconds, line = round_trip(probe, {"cmd": "trending"})
            trends.append(seconds)
            seconds, page = round_trip(probe, {"cmd": "query-handles"})
            pages.append(seconds)
        if b'"#tag0"' not in line:
            raise RuntimeError(f"trending did not put #tag0 first: {line[:200]!r}")
        listed = json.loads(page)
        if listed.get("count") != sizes.accounts + 4 or len(listed.get("handles", [])) != 1000:
            raise RuntimeError(f"query-handles did not answer a page: {page[:200]!r}")

        # Both logins while another session sends heartbeats: the same load on each, and the
        # worst heartbeat says whether the pages held anyone up.
        quiet_logins, kept_replies, kept_lasts, watched = [], [], [], []
        stop = threading.Event()
        watching = threading.Thread(target=heartbeats_until, args=(watcher, stop, watched),
                                    daemon=True)
        watching.start()
        try:
            for _ in range(sizes.logins):
                quiet_logins.append(timed_login(reader, "@quiet", 0)[0])
                replied, last = timed_login(reader, "@reader", sizes.kept)
                kept_replies.append(replied)
                kept_lasts.append(last)
        finally:
            stop.set()
            watching.join(IO_TIMEOUT)
        rss = rss_mib(tracker.pid)
    finally:
        for client in clients:
            client.close()
        tracker.stop()
    beat = median(beats) * 1000
    say(f"    tracker loaded the store in {loaded:.1f}s, RSS {rss:.0f} MiB; heartbeat "
        f"{beat:.2f} ms, trending {median(trends) * 1000:.2f} ms, query-handles "
        f"{median(pages) * 1000:.2f} ms; login {median(quiet_logins) * 1000:.1f} ms with none "
        f"kept, {median(kept_replies) * 1000:.1f} ms with {sizes.kept:,} (last page at "
        f"{median(kept_lasts) * 1000:.0f} ms)")
    note = (f"{sizes.probes} round trips of each, interleaved, on one session; the "
            f"tracker loaded the store in {loaded:.1f}s and held it in {rss:.0f} MiB")
    return [
        Row(f"trending, {rows_of_tags:,} hashtag rows", median(trends) * 1000, "ms",
            "heartbeat", beat, False, 0.0, absolute=5.0,
            note=f"{sizes.tags:,} distinct tags (Zipf); {note}"),
        Row(f"query handles first page, {sizes.accounts:,} accounts", median(pages) * 1000,
            "ms", "heartbeat", beat, False, 0.0, absolute=5.0,
            note=f"1000 handles a page (about 17 KB); {note}"),
        Row(f"login reply, {sizes.kept:,} kept messages", median(kept_replies) * 1000, "ms",
            "login, none kept", median(quiet_logins) * 1000, False, 1.5,
            note=f"median of {sizes.logins}; the reply comes before any kept message"),
        Row(f"login to the last kept message, {sizes.kept:,}", median(kept_lasts) * 1000, "ms",
            "login, none kept", median(quiet_logins) * 1000, False, 0.0, absolute=2000.0,
            note=f"pushed {limits.KEPT_PAGE} at a time, each page once the last has left; "
                 f"another session's heartbeats meanwhile ({HEARTBEAT_GAP * 1000:.0f} ms apart): "
                 f"worst {max(watched, default=0.0) * 1000:.1f} ms, median "
                 f"{median(watched) * 1000:.2f} ms"),
    ]


SECTIONS = ("tracker", "ring", "scale", "ttweet", "fairness", "stores")


# ---- main ----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/bench.py", description="The SPEC §9 figures, each beside a baseline "
                                           "measured in the same run.",
        epilog="example: python3 tools/bench.py --quick")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repeats (well under a minute)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=SECTIONS,
                        help="run only these sections (default: all)")
    parser.add_argument("--role", choices=("echo-server", "ring-node"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "echo-server":
        return echo_server()
    if args.role == "ring-node":
        return ring_node()
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    say(f"Tweeter benchmark ({'quick' if args.quick else 'full'}): {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="tweeter-bench-") as folder:
        workdir = Path(folder)
        try:
            if "tracker" in args.only:
                rows += bench_tracker(sizes, workdir)
            if "ring" in args.only:
                rows += bench_rings(sizes, workdir)
            if "scale" in args.only:
                rows += bench_scale(sizes, workdir)
            if "ttweet" in args.only:
                rows.append(bench_ttweet(sizes, workdir))
            if "fairness" in args.only:
                rows.append(bench_fairness(args.quick, workdir))
            if "stores" in args.only:
                rows += bench_stores(args.quick, workdir)
        except (Timeout, RuntimeError, OSError) as error:
            print_table(rows)
            print(f"\nbench FAILED: {error}", file=sys.stderr, flush=True)
            return 1
    print_table(rows)
    met = sum(row.met for row in rows)
    say(f"\n{met} of {len(rows)} targets met; took {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
