"""A tracker session spoken by hand, frame by frame (PROTOCOL.md §1): the one raw wire client of
the tests, the demo and the benchmark.

How frames flow::

    request(cmd, **args) ──numbered, one JSON line──> send_raw ──> the tracker
    the tracker ──> next_line ──next_frame──> a reply: read() returns it
                                              a push:  kept in .pushes (read_push() takes them)

:class:`WireSession` is the protocol side and leaves the transport open: :class:`WireClient` is a
TCP socket of its own (the tests; the benchmark, which drives many of them from one selector
with ``received_lines``), and ``tools/demo.py`` runs one through a relay process, so that with
``--hosts`` it speaks from a host of its own.  Nothing is checked here: a test sends what it
likes (``send_raw``) and judges what comes back.  Every read has a timeout.

Requests are encoded as ``user.py`` encodes them: compact JSON, one line.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from tools.driver import SAMPLE_KEY, TIMEOUT

Frame = dict[str, Any]


def encode(obj: Frame) -> bytes:
    """One frame: compact JSON and a newline."""
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def is_reply(line: bytes) -> bool:
    """Whether a line from the tracker is a reply rather than a push (without parsing it: the
    benchmark reads thousands a second)."""
    return not line.startswith(b'{"push"')


class WireSession:
    """Numbered requests out, replies told from pushes on the way back.

    A subclass supplies the transport: ``send_raw`` (bytes to the tracker) and ``next_line``
    (the next line from it, ``b""`` once it has closed).
    """

    def __init__(self) -> None:
        self.next_id = 1
        self.pushes: list[Frame] = []       # received while a reply was awaited, not yet read

    # ---- the transport ---------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        raise NotImplementedError

    def next_line(self) -> bytes:
        raise NotImplementedError

    # ---- frames ----------------------------------------------------------------------------
    def request(self, cmd: str, **args: Any) -> int:
        """Send request ``cmd`` with ``args`` under the next id, without waiting; the id."""
        request_id = self.next_id
        self.next_id += 1
        self.send_raw(encode({"id": request_id, "cmd": cmd, **args}))
        return request_id

    def call(self, cmd: str, **args: Any) -> Frame:
        """Send a request and return the next reply."""
        self.request(cmd, **args)
        return self.read()

    def next_frame(self) -> Frame:
        """The next frame, reply or push, whichever it is."""
        line = self.next_line()
        assert line, "the tracker closed the connection"
        frame: Frame = json.loads(line)
        return frame

    def read(self) -> Frame:
        """The next reply; pushes on the way are kept in ``pushes``."""
        while "push" in (frame := self.next_frame()):
            self.pushes.append(frame)
        return frame

    def read_push(self) -> Frame:
        """The next push (one kept earlier first)."""
        if self.pushes:
            return self.pushes.pop(0)
        frame = self.next_frame()
        assert "push" in frame, f"a reply where a push was expected: {frame}"
        return frame

    def register(self, handle: str, ports: list[int], password: str, key: str = SAMPLE_KEY,
                 ip: str = "127.0.0.1") -> Frame:
        """Register ``handle`` at ``ip`` with these UDP ports (never bound unless the caller
        binds them) and ``key`` (by default one that is well formed and nobody's)."""
        return self.call("register", handle=handle, ip=ip, ports=ports, key=key,
                         password=password)


class WireClient(WireSession):
    """A wire session over a TCP socket of its own.

    ``source`` is the local address to connect from (any of 127.0.0.0/8 works on Linux: another
    "host" for the tracker's per-address limits); ``receive_buffer`` shrinks the socket's receive
    buffer (a reader that stops reading then fills it quickly).  With ``welcome`` the tracker's
    first frame, its ``welcome`` push, is read and kept in ``welcome``; without it that frame is
    left for the caller (a refused connection gets a FAILURE instead).  ``nodelay`` sends each
    frame at once (the benchmark's round trips).
    """

    def __init__(self, port: int, host: str = "127.0.0.1", source: str | None = None,
                 receive_buffer: int | None = None, welcome: bool = True,
                 nodelay: bool = False, timeout: float = TIMEOUT) -> None:
        super().__init__()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if receive_buffer is not None:      # before connecting: the window is agreed then
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            if nodelay:
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.settimeout(timeout)
            if source is not None:
                self.sock.bind((source, 0))
            self.sock.connect((host, port))
        except OSError:
            self.sock.close()
            raise
        self._buffer = b""                  # received, not yet handed out as lines
        self.welcome: Frame | None = None
        if welcome:
            self.welcome = self.read_push()
            assert self.welcome["push"] == "welcome", self.welcome

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next_line(self) -> bytes:
        """The next line, newline included; what is left (maybe ``b""``) once the tracker
        has closed; TimeoutError if nothing more comes within the socket's timeout."""
        while b"\n" not in self._buffer:
            data = self.sock.recv(1 << 16)
            if not data:
                rest, self._buffer = self._buffer, b""
                return rest
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line + b"\n"

    def received_lines(self) -> list[bytes]:
        """Read once (for a selector loop that found the socket readable) and return the whole
        lines received so far, pushes included, without their newlines."""
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the other end closed the connection")
        *complete, self._buffer = (self._buffer + data).split(b"\n")
        return complete

    def closed_by_peer(self) -> bool:
        """True once the tracker has closed its side (reads to its end within the timeout)."""
        return self.next_line() == b""

    def close(self) -> None:
        self.sock.close()
