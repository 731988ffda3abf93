"""Drive real Tweeter processes through pipes, synchronised on their output.

``Proc`` runs one program (``python3 <args>``) with stdin and stdout as pipes; a reader thread
collects every line it prints (stderr merged).  ``lines`` holds the text of each line; beside it
``stamps`` holds a global arrival number (so that the output of many processes can be shown in
the order it came) and the ``time.monotonic()`` at which it was read.  ``expect`` waits, with a
timeout, for the next line that matches a pattern.  Nothing here sleeps to wait for something.

    Proc(args) ──stdin──> the program ──stdout+stderr──> reader thread ──> lines ──> expect()
    run(args)  ──> the program, run to its end ──> its exit status, stdout and stderr

``run`` is for programs that do one thing and end (``ttweetcl.py``, a bad command line).

The one process driver of the project: used by ``tools/demo.py``, ``tools/bench.py`` and
``tools/sample.py`` and by the tests (``tests/conftest.py``); standard library only.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TIMEOUT = 15.0                      # default seconds for any one wait
# A well-formed public `key` (protocol.auth) for raw wire sessions that never speak UDP.
SAMPLE_KEY = ("A21HLSsBsA8pce/2GX5gMe3gzY5o3Zy1NoXM8CbmU8sw"
              "NYBy1jZYgNGu6jKa35EhODhR7SGijjt16WXQ0s0WYlQ=")

_arrival = itertools.count()        # global order of lines across all processes
_arrival_lock = threading.Lock()


class Timeout(AssertionError):
    """A process did not print (or do) what was expected in time, or ended first.

    An ``AssertionError``, so that in a test it fails the test with the output that explains it.
    """


def environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a program: its output unbuffered and in UTF-8, and
    ``env`` on top."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8", **(env or {})}


def run(args: list[str], timeout: float = TIMEOUT, env: dict[str, str] | None = None,
        cwd: Path | str = ROOT, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python3 args`` to its end, its standard input ``input`` (else empty), its output
    kept as text; ``Timeout`` if it runs longer than ``timeout``."""
    try:
        return subprocess.run([PYTHON, *args], cwd=cwd, env=environment(env), input=input,
                              stdin=subprocess.DEVNULL if input is None else None,
                              capture_output=True, text=True, encoding="utf-8",
                              errors="backslashreplace", timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise Timeout(f"{' '.join(args[:2])}: did not end within {timeout:g}s") from None


class Proc:
    """One running program whose output is read line by line in the background."""

    #: How many of the last lines a failed wait quotes (None: all of them).
    failure_tail: int | None = 15

    def __init__(self, args: list[str], name: str, env: dict[str, str] | None = None,
                 cwd: Path | str = ROOT) -> None:
        self.name = name
        self.popen = subprocess.Popen(
            [PYTHON, *args], cwd=cwd, env=environment(env), text=True, encoding="utf-8",
            errors="backslashreplace", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, bufsize=1)
        self.lines: list[str] = []                  # the text of every line, in order
        self.stamps: list[tuple[int, float]] = []   # beside each: (arrival, monotonic time)
        self.cursor = 0         # where the next expect starts looking
        self.shown = 0          # lines already handed out by take_unshown
        self._changed = threading.Condition()
        self._eof = False
        threading.Thread(target=self._read, name=f"read-{name}", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            stamp = time.monotonic()
            with _arrival_lock:
                order = next(_arrival)
            with self._changed:
                self.stamps.append((order, stamp))
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    # ---- output ----------------------------------------------------------------------------
    def expect(self, pattern: str, timeout: float = TIMEOUT,
               since: int | None = None) -> re.Match[str]:
        """Wait for the next line matching ``pattern``: after earlier matches, or from line
        index ``since`` when given (a look back that leaves later expectations where they were).
        """
        return self.expect_stamped(pattern, timeout, since)[0]

    def expect_stamped(self, pattern: str, timeout: float = TIMEOUT, since: int | None = None
                       ) -> tuple[re.Match[str], float]:
        """As ``expect``, with the ``time.monotonic()`` at which the line was read."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                first = self.cursor if since is None else since
                for index in range(first, len(self.lines)):
                    match = regex.search(self.lines[index])
                    if match:
                        self.cursor = max(self.cursor, index + 1)
                        return match, self.stamps[index][1]
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "it ended" if self._eof else f"nothing within {timeout:g}s"
                    raise Timeout(f"{self.name}: no line matching {pattern!r} ({why})"
                                  + self._output())
                self._changed.wait(remaining)

    def _output(self) -> str:
        """The lines a failure quotes, introduced (the caller holds ``_changed``)."""
        tail = self.lines if self.failure_tail is None else self.lines[-self.failure_tail:]
        which = "output" if len(tail) == len(self.lines) else "last lines"
        return f"; its {which}:\n" + "\n".join(f"    {text}" for text in tail)

    def take_unshown(self) -> list[tuple[int, str]]:
        """The lines not handed out before, as (arrival number, text)."""
        with self._changed:
            fresh = zip(self.stamps[self.shown:], self.lines[self.shown:], strict=True)
            self.shown = len(self.lines)
            return [(order, text) for (order, _), text in fresh]

    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_eof(self, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout(f"{self.name}: its output did not end within {timeout:g}s"
                                  + self._output())
                self._changed.wait(remaining)

    def assert_no_traceback(self) -> None:
        text = self.text()
        assert "Traceback" not in text, f"{self.name} printed a traceback:\n{text}"

    # ---- input and life ------------------------------------------------------------------------
    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def close_stdin(self) -> None:
        if self.popen.stdin and not self.popen.stdin.closed:
            with contextlib.suppress(OSError):      # it had gone already: nothing to flush
                self.popen.stdin.close()

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to end and its output to be read; its exit status."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Timeout(f"{self.name}: did not end within {timeout:g}s") from None
        self.wait_eof(timeout)
        return code

    def interrupt(self, timeout: float = TIMEOUT) -> int:
        """Ctrl-C (SIGINT), then wait for the end."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` and wait until it took effect: the process ended, or (SIGSTOP) every
        thread of it is stopped."""
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(sig)
        if sig == signal.SIGSTOP:
            self.wait_state("T")
        elif sig != signal.SIGCONT:
            self.popen.wait(TIMEOUT)

    def wait_state(self, state: str, timeout: float = TIMEOUT) -> None:
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
                raise Timeout(f"{self.name}: state {states}, not {state}")
            time.sleep(0.005)   # polling the kernel's view, bounded by the deadline

    def stop(self) -> None:
        """End the process however it is doing (used when cleaning up)."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.close_stdin()


# Above the kernel's ephemeral range (32768-60999 on Linux): a port found free here is never
# taken a moment later by some process's outgoing connection, as one from port 0 can be.
FIXED_PORTS = range(61000, 65536)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free now on 127.0.0.1, above the ephemeral range (for programs that cannot take 0).
    Tried at random, so that tests running at once rarely try the same one."""
    for port in random.SystemRandom().sample(FIXED_PORTS, 200):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free port above the ephemeral range")


def wait_for_port(port: int, timeout: float = TIMEOUT) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise Timeout(f"nothing listens on port {port} after {timeout:g}s") from None
            time.sleep(0.02)    # polling a socket, bounded by the deadline


def start_tracker(*extra: str, name: str = "tracker", timeout: float = TIMEOUT
                  ) -> tuple[Proc, int]:
    """``tracker.py`` on a free port of 127.0.0.1 (``--db :memory:`` unless ``--db`` is given);
    returns the process and its port once it listens."""
    db = [] if "--db" in extra else ["--db", ":memory:"]
    proc = Proc(["tracker.py", "0", "--host", "127.0.0.1", *db, *extra], name)
    port = int(proc.expect(r"listening on [\d.]+:(\d+)", timeout).group(1))
    return proc, port
