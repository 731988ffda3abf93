"""Shared fixtures: real processes on 127.0.0.1, driven through pipes, synchronised on output.

``Proc`` wraps one program.  A reader thread collects every line it prints (stderr merged into
stdout); ``expect`` waits, with a timeout, for the next line matching a pattern.  Nothing here
sleeps to wait for something: every wait is on output, a socket or a process, and each has a
timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEFAULT_TIMEOUT = 15.0

# Peer timeouts shrunk for tests so that a dead peer is given up on quickly.
FAST_PEER_ARGS = ["--hop-timeout", "0.1", "--hop-retries", "3"]


class Proc:
    """One running program whose output is read line by line in the background."""

    def __init__(self, args: list[str], name: str, env: dict[str, str] | None = None,
                 cwd: Path | str = ROOT) -> None:
        self.name = name
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        full_env.update(env or {})
        self.popen = subprocess.Popen(
            [PYTHON, *args], cwd=cwd, env=full_env, text=True, encoding="utf-8",
            errors="backslashreplace", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, bufsize=1)
        self.lines: list[str] = []
        self.cursor = 0
        self._changed = threading.Condition()
        self._eof = False
        threading.Thread(target=self._read, name=f"read-{name}", daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    # -- output ----------------------------------------------------------------------------
    def expect(self, pattern: str, timeout: float = DEFAULT_TIMEOUT,
               since: int | None = None) -> re.Match[str]:
        """Wait for the next line matching ``pattern``: after earlier matches, or from line
        index ``since`` when given (a look back that leaves later expectations where they were).
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                first = self.cursor if since is None else since
                for index in range(first, len(self.lines)):
                    match = regex.search(self.lines[index])
                    if match:
                        self.cursor = max(self.cursor, index + 1)
                        return match
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "exited" if self._eof else f"nothing after {timeout}s"
                    raise AssertionError(
                        f"{self.name}: no line matching {pattern!r} ({why}).\n"
                        f"--- output of {self.name} ---\n" + self.text())
                self._changed.wait(remaining)

    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_eof(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.name}: output did not end\n{self.text()}")
                self._changed.wait(remaining)

    # -- input and life ----------------------------------------------------------------------
    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def close_stdin(self) -> None:
        if self.popen.stdin and not self.popen.stdin.closed:
            self.popen.stdin.close()

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        code = self.popen.wait(timeout)
        self.wait_eof(timeout)
        return code

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` and wait until it took effect: the process ended, or (SIGSTOP) every
        thread of it is stopped."""
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(sig)
        if sig == signal.SIGSTOP:
            self.wait_state("T")
        elif sig != signal.SIGCONT:
            self.popen.wait(DEFAULT_TIMEOUT)

    def wait_state(self, state: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until every thread's state in /proc is ``state`` (e.g. "T": stopped)."""
        deadline = time.monotonic() + timeout
        tasks = Path(f"/proc/{self.popen.pid}/task")
        while True:
            states = set()
            for task in tasks.iterdir():
                with contextlib.suppress(OSError):
                    states.add((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            if states == {state}:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: state {states}, not {state}")
            time.sleep(0.005)   # polling the kernel's view, bounded by the deadline

    def stop(self) -> None:
        """End the process however it is doing; used by fixtures at teardown."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.close_stdin()

    def assert_no_traceback(self) -> None:
        assert "Traceback" not in self.text(), f"{self.name} printed a traceback:\n{self.text()}"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port the kernel says is free now (for programs that cannot take port 0)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on port {port}") from None
            time.sleep(0.02)  # polling a socket, not waiting blindly: bounded by the deadline


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
        return self.expect(r"^tweet #(?P<tid>\d+) reached (?P<reached>\d+) followers"
                           r" in [\d.]+ ms(?:; skipped (?P<skipped>.*))?$")


class RawClient:
    """A bare TCP session with the tracker that speaks the wire protocol directly.

    ``read`` returns the next reply; pushes that arrive meanwhile are kept in ``pushes`` (the
    first is always the tracker's ``welcome``).
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEFAULT_TIMEOUT)
        self.reader = self.sock.makefile("rb")
        self.next_id = 1
        self.pushes: list[dict] = []
        self.welcome = self.read_push()
        assert self.welcome["push"] == "welcome", self.welcome

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _frame(self) -> dict:
        line = self.reader.readline()
        assert line, "the tracker closed the connection"
        return json.loads(line)

    def read(self) -> dict:
        """The next reply; pushes on the way are kept in ``pushes``."""
        while "push" in (frame := self._frame()):
            self.pushes.append(frame)
        return frame

    def read_push(self) -> dict:
        """The next push (one already received first)."""
        if self.pushes:
            return self.pushes.pop(0)
        frame = self._frame()
        assert "push" in frame, f"a reply where a push was expected: {frame}"
        return frame

    def register(self, handle: str, ports: list[int], password: str | None = None) -> dict:
        return self.call("register", handle=handle, ip="127.0.0.1", ports=ports,
                         password=password or password_of(handle))

    def call(self, cmd: str, **args: object) -> dict:
        self.send_raw((json.dumps({"id": self.next_id, "cmd": cmd, **args}) + "\n").encode())
        self.next_id += 1
        return self.read()

    def closed_by_peer(self) -> bool:
        """True once the tracker has closed its side (reads EOF within the timeout)."""
        return self.reader.readline() == b""

    def close(self) -> None:
        self.reader.close()     # the file object holds the socket open until it is closed too
        self.sock.close()


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
        self.tracker_proc = self.cluster.start(["tracker.py", "0", *db, *extra], "tracker")
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
