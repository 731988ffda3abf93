"""Shared fixtures: real processes on 127.0.0.1, driven through pipes, synchronised on output.

``Proc`` (the project's one process driver, ``tools/driver.py``) wraps one program.  A reader
thread collects every line it prints (stderr merged into stdout); ``expect`` waits, with a
timeout, for the next line matching a pattern, and fails the test (an ``AssertionError``) with
the program's output when none comes.  ``RawClient`` is a tracker session spoken by hand (the
project's one raw wire client, ``tools/wire_client.py``); ``RawPeer`` a ring peer spoken by hand.
Nothing here sleeps to wait for something: every wait is on output, a socket or a process, and
each has a timeout.

    test ──Tweeter.tracker()/user()──> Proc ──stdin──> tracker.py / user.py ──stdout──> expect()
         ──Tweeter.client()──> RawClient ──TCP──> tracker.py
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))     # tools/, protocol/, …

from protocol import auth, datagrams, limits
from protocol.auth import SessionKeys
from protocol.ring import Peer

# PYTHON, ROOT and free_port are imported here for the tests (``from conftest import ...``).
from tools import driver
from tools.driver import PYTHON as PYTHON
from tools.driver import ROOT as ROOT
from tools.driver import SAMPLE_KEY as SAMPLE_KEY
from tools.driver import TIMEOUT as DEFAULT_TIMEOUT
from tools.driver import free_port as free_port
from tools.wire_client import WireClient

# Peer timeouts shrunk for tests so that a dead peer is given up on quickly.
FAST_PEER_ARGS = ["--hop-timeout", "0.1", "--give-up", "0.5"]
# For a test that opens hundreds of connections from 127.0.0.1, many at once: the tracker's
# per-address limits (SPEC §6) raised out of its way.
MANY_CONNECTIONS = ["--max-per-address", "1000", "--connect-burst", "1000"]
# Every user of a test registers from 127.0.0.1, as a whole site behind one address would: a
# test tracker lets that address register as many handles as the test needs (tests of the
# limit itself give their own value).
LOCAL_SITE = ["--registrations-per-address", "100000"]


def terminal_env(home: Path, colour: bool = False) -> dict[str, str]:
    """The environment of a ``user.py`` in a pseudo-terminal: a home of its own (the command
    history is kept there), a known terminal type, and no colour unless it is what is tested."""
    env = {key: value for key, value in os.environ.items() if key != "NO_COLOR"}
    env.update(HOME=str(home), TERM="xterm-256color", PYTHONIOENCODING="utf-8")
    if not colour:
        env["NO_COLOR"] = "1"
    return env

# A line of a ttweet session log, and the header that opens each session in it.
REPORT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[(client|server)\] \[(GENERAL|CONNECTION|ERROR)\] "
    r"\S.*$")
HEADER_LINE = re.compile(r"^==== \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} new session: .* ====$")


class Proc(driver.Proc):
    """One running program whose output is read line by line in the background; a failed
    wait quotes its whole output."""

    failure_tail = None


class Cluster:
    """Processes started by one test, stopped at its end."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def start(self, args: list[str], name: str, env: dict[str, str] | None = None,
              cwd: Path | str = ROOT) -> Proc:
        proc = Proc(args, name, env, cwd)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    group = Cluster()
    try:
        yield group
    finally:
        group.stop_all()


# ---- Tweeter: a tracker, users, and a raw wire client ---------------------------------------
REPLY_LINE = r"^(SUCCESS|FAILURE)"


def password_of(handle: str) -> str:
    """The password tests use for a handle unless they choose one."""
    return f"pw-{handle.lower()}-secret"


class User(Proc):
    """A ``user.py`` process driven through its standard input."""

    def run(self, line: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Type a command and return the SUCCESS/FAILURE line that answers it."""
        self.send(line)
        return self.expect(REPLY_LINE, timeout).string

    def ok(self, line: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        reply = self.run(line, timeout)
        assert reply.startswith("SUCCESS"), f"{self.name}: {line!r} -> {reply}\n{self.text()}"
        return reply

    def fails(self, line: str, code: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        reply = self.run(line, timeout)
        assert reply.startswith(f"FAILURE {code}:"), f"{self.name}: {line!r} -> {reply}"
        return reply

    def register(self, handle: str, password: str | None = None, where: str = "") -> None:
        """Register, typing the password twice (by default one made from the handle)."""
        password = password or password_of(handle)
        self.send(f"register {handle} {where}".rstrip())
        self.send(password)
        self.ok(password)
        self.expect(r"^ports: left=")

    def login(self, handle: str, password: str | None = None, where: str = "") -> str:
        """Log in; return the SUCCESS line (it says how many tweets are new)."""
        self.send(f"login {handle} {where}".rstrip())
        reply = self.ok(password or password_of(handle))
        self.expect(r"^ports: left=")
        return reply

    def tweet(self, handle: str, text: str) -> re.Match[str]:
        """Tweet and wait for the round to finish; the match has reached and time."""
        self.ok(f'tweet {handle} "{text}"')
        return self.expect(r"^tweet #(?P<tid>\d+) reached (?P<reached>\d+) followers?"
                           r" in [\d.]+ ms(?:; skipped (?P<skipped>.*))?$")


class RawClient(WireClient):
    """A bare TCP session with the tracker (``tools/wire_client.py``) whose ``register`` uses
    the test password of the handle unless given one."""

    def register(self, handle: str, ports: list[int], password: str | None = None,
                 key: str = SAMPLE_KEY, ip: str = "127.0.0.1") -> dict:
        return super().register(handle, ports, password or password_of(handle), key, ip)


class Tweeter:
    """One test's tracker and users."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.port = 0
        self.tracker_proc: Proc | None = None
        self.clients: list[RawClient] = []

    def tracker(self, *extra: str) -> Proc:
        """Start a tracker on a free port (a throw-away database unless ``--db`` is given)."""
        db = [] if "--db" in extra else ["--db", ":memory:"]
        site = [] if LOCAL_SITE[0] in extra else LOCAL_SITE
        self.tracker_proc = self.cluster.start(["tracker.py", "0", *db, *site, *extra],
                                               "tracker")
        self.port = int(self.tracker_proc.expect(r"listening on [\d.]+:(\d+)").group(1))
        return self.tracker_proc

    def user(self, name: str, *extra: str) -> User:
        proc = User(["user.py", "127.0.0.1", str(self.port), *FAST_PEER_ARGS, *extra], name)
        self.cluster.procs.append(proc)
        return proc

    def users(self, *handles: str) -> dict[str, User]:
        """Start and register one user per handle; keys are the handles."""
        started = {handle: self.user(handle) for handle in handles}
        for handle, proc in started.items():
            proc.register(handle)
        return started

    def client(self) -> RawClient:
        client = RawClient(self.port)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def net(cluster: Cluster) -> Iterator[Tweeter]:
    """A running tracker on a free port, ready for users."""
    tweeter = Tweeter(cluster)
    tweeter.tracker()
    try:
        yield tweeter
    finally:
        tweeter.close()


class RawPeer:
    """A peer spoken by hand: three UDP sockets, keys of its own, and sealed datagrams.

    For tests that play a hostile or misbehaving peer with real keys (``protocol.auth``): it can
    send any datagram, correctly sealed for its receiver (``send``) or not (``send_raw``).
    """

    def __init__(self, handle: str, ip: str = "127.0.0.1") -> None:
        self.keys = SessionKeys.generate()
        self.sockets = {role: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        for role in ("left", "middle", "right")}
        for sock in self.sockets.values():
            sock.bind((ip, 0))
            sock.settimeout(DEFAULT_TIMEOUT)
        self.me = Peer(handle, ip, *(self.sockets[r].getsockname()[1]
                                     for r in ("left", "middle", "right")), self.keys.public)

    @property
    def ports(self) -> list[int]:
        return [self.me.left, self.me.middle, self.me.right]

    def register(self, client: RawClient) -> dict:
        return client.register(self.me.handle, self.ports, key=self.keys.public, ip=self.me.ip)

    def sign(self, tid: int, text: str) -> str:
        statement = auth.tweet_statement(self.keys.public, self.me.handle, tid, text)
        return base64.b64encode(self.keys.sign(statement)).decode()

    def rekey(self) -> None:
        """New keys, as a new login makes (same sockets)."""
        self.keys = SessionKeys.generate()
        self.me = Peer(self.me.handle, self.me.ip, *self.ports, self.keys.public)

    def sealed(self, to: Peer, message: datagrams.Datagram) -> bytes:
        """``message`` as sent to ``to``: sealed with the secret this peer shares with it."""
        body = datagrams.body_of(message)
        return datagrams.encode(body, auth.mac(self.keys.pair_key(to.public_key), body))

    def send(self, role: str, to: Peer, port: int, message: datagrams.Datagram) -> None:
        """``message`` from ``role`` to ``to``'s ``port``, sealed for it."""
        self.send_raw(role, (to.ip, port), self.sealed(to, message))

    def set_up(self, follower: Peer, seq: int = 1, version: int = 1) -> None:
        """As the author of a ring of one: a setup making ``follower`` this peer's only follower
        (both its neighbours are this peer), and its ack."""
        handle = self.me.handle
        self.send("middle", follower, follower.middle,
                  datagrams.SetupMsg(handle, seq, handle, version, self.me, self.me))
        ack = self.receive("middle")
        assert isinstance(ack, datagrams.Ack) and ack.seq == seq, ack

    def send_raw(self, role: str, address: tuple[str, int], data: bytes) -> None:
        self.sockets[role].sendto(data, address)

    def receive(self, role: str, timeout: float = DEFAULT_TIMEOUT) -> datagrams.Datagram:
        """The next datagram on ``role`` (TimeoutError if none comes in ``timeout``)."""
        return self.receive_from(role, timeout)[0]

    def receive_from(self, role: str, timeout: float = DEFAULT_TIMEOUT
                     ) -> tuple[datagrams.Datagram, tuple[str, int]]:
        """The next datagram on ``role`` and the address it came from (to acknowledge it)."""
        self.sockets[role].settimeout(timeout)
        data, sender = self.sockets[role].recvfrom(limits.DATAGRAM_MAX + 1)
        return datagrams.decode(data).message, sender

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()


# ---- the suite leaves the working tree as it found it (issue: no test writes into the checkout)
def working_tree_status() -> str | None:
    """``git status --porcelain`` of the checkout, or None where there is no git checkout."""
    try:
        done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                              capture_output=True, text=True, timeout=DEFAULT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[TREE_BEFORE] = working_tree_status()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before, after = session.config.stash.get(TREE_BEFORE, None), working_tree_status()
    if before is None or after is None or after == before:
        return
    changed = sorted(set(after.splitlines()) - set(before.splitlines()))
    sys.stderr.write("\nthe tests changed the working tree (git status):\n"
                     + "".join(f"  {line}\n" for line in changed))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


TREE_BEFORE = pytest.StashKey[str | None]()
