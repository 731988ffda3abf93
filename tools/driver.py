"""Drive real Tweeter processes through pipes, synchronised on their output (demo and bench).

``Proc`` runs one program (``python3 <args>``) with stdin and stdout as pipes; a reader thread
collects every line it prints (stderr merged), stamped with a global arrival number so that the
output of many processes can be shown in the order it came.  ``expect`` waits, with a timeout,
for the next line that matches a pattern.  Nothing here sleeps to wait for something.

Used by ``tools/demo.py`` and ``tools/bench.py`` (run as scripts, so this folder is on
``sys.path``); standard library only.
"""

from __future__ import annotations

import contextlib
import itertools
import os
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

_arrival = itertools.count()        # global order of lines across all processes
_arrival_lock = threading.Lock()


class Timeout(Exception):
    """A process did not print what was expected in time (or ended first)."""


class Proc:
    """One running program whose output is read line by line in the background."""

    def __init__(self, name: str, args: list[str], cwd: Path | str = ROOT,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        full_env.update(env or {})
        self.popen = subprocess.Popen(
            [PYTHON, *args], cwd=cwd, env=full_env, text=True, encoding="utf-8",
            errors="backslashreplace", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, bufsize=1)
        self.lines: list[tuple[int, float, str]] = []      # (arrival, monotonic time, text)
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
                self.lines.append((order, stamp, line.rstrip("\n")))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    # ---- output ----------------------------------------------------------------------------
    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """Wait for the next line (after earlier matches) that matches ``pattern``."""
        return self.expect_stamped(pattern, timeout)[0]

    def expect_stamped(self, pattern: str, timeout: float = TIMEOUT
                       ) -> tuple[re.Match[str], float]:
        """As ``expect``, with the ``time.monotonic()`` at which the line was read."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(self.cursor, len(self.lines)):
                    match = regex.search(self.lines[index][2])
                    if match:
                        self.cursor = index + 1
                        return match, self.lines[index][1]
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "it ended" if self._eof else f"nothing within {timeout:g}s"
                    tail = "\n".join(f"    {text}" for _, _, text in self.lines[-15:])
                    raise Timeout(f"{self.name}: no line matching {pattern!r} ({why}); "
                                  f"its last lines:\n{tail}")
                self._changed.wait(remaining)

    def take_unshown(self) -> list[tuple[int, str]]:
        """The lines not handed out before, as (arrival number, text)."""
        with self._changed:
            fresh = self.lines[self.shown:]
            self.shown = len(self.lines)
        return [(order, text) for order, _, text in fresh]

    def text(self) -> str:
        with self._changed:
            return "\n".join(text for _, _, text in self.lines)

    def wait_eof(self, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout(f"{self.name}: its output did not end within {timeout:g}s")
                self._changed.wait(remaining)

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


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port the kernel says is free now on 127.0.0.1 (for programs that cannot take 0)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    proc = Proc(name, ["tracker.py", "0", "--host", "127.0.0.1", *db, *extra])
    port = int(proc.expect(r"listening on [\d.]+:(\d+)", timeout).group(1))
    return proc, port
