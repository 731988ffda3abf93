"""The user's session with the tracker: one TCP connection, JSON lines (protocol/wire.py).

``TrackerLink.request`` sends a request and waits for the reply with the same id; a reader thread
takes every frame from the tracker, wakes the request it answers, and hands pushes to a callback.
When the tracker ends the connection (it stopped, or timed the session out), the reader sees
the end at once and tells ``on_close``, with the tracker's last word if it said why.

A request that would make a frame over ``FRAME_MAX`` bytes is never sent: the tracker would
answer ``TOO_LARGE`` and close the session.  It fails here instead, and the session stays.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Callable
from typing import Any

from adapters.console import Console
from protocol import limits
from protocol.text import escape_for_terminal
from protocol.wire import (
    ProtocolError,
    Push,
    Reply,
    Request,
    decode_server_frame,
    encode_request,
    failure,
)

REPLY_MAX = 1 << 20                 # bytes in one line from the tracker (lists can be long)
REQUEST_TIMEOUT = limits.EXIT_WAIT_TIMEOUT + 10
# Why the tracker closes a connection, sent with "re": null just before it does: kept for
# on_close rather than shown as they come.
FAREWELLS = {"REGISTER_TIMEOUT", "IDLE_TIMEOUT", "SERVER_FULL", "TOO_LARGE", "SENDQ_EXCEEDED",
             "TOO_MANY_CONNECTIONS", "CONNECTING_TOO_FAST"}


class TrackerLink:
    """The session with the tracker: requests wait for their reply; pushes go to a callback."""

    def __init__(self, host: str, port: int, console: Console,
                 on_push: Callable[[Push], None],
                 on_close: Callable[[Reply | None], None] | None = None,
                 source: str | None = None) -> None:
        """Connect to the tracker at ``host:port``, from the local address ``source`` if given
        (a host with several addresses; the peer's address is this connection's)."""
        self.console, self.on_push, self.on_close = console, on_push, on_close
        self.farewell: Reply | None = None      # the tracker's reason for closing, if it gave one
        self._closing = False                   # closed by this side: nobody needs telling
        self.sock = socket.create_connection((host, port), timeout=5,
                                             source_address=(source, 0) if source else None)
        self.sock.settimeout(None)
        local = self.sock.getsockname()
        console.records.rename(f"{local[0]}:{local[1]}")    # as the tracker names this session
        self.reader = self.sock.makefile("rb")
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._waiting: dict[int, tuple[threading.Event, list[Reply]]] = {}
        self._closed = threading.Event()
        self._welcomed = threading.Event()
        self.welcome: Push | None = None
        threading.Thread(target=self._read, name="tracker-reader", daemon=True).start()

    def wait_welcome(self, timeout: float = 10.0) -> Push | None:
        """The tracker's first frame (it says whether a server password is needed)."""
        self._welcomed.wait(timeout)
        return self.welcome

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def post(self, cmd_name: str, **args: Any) -> None:
        """Send a request whose reply nobody waits for (never blocks for long: the kernel's
        send buffer takes a frame this size)."""
        if self.closed:
            return
        request = Request(next(self._ids), cmd_name, args)
        self.console.records.send("tracker", cmd_name, f"{cmd_name} {args}")
        try:
            with self._send_lock:
                self.sock.sendall(encode_request(request))
        except OSError:
            pass                            # the reader sees the end and says so

    @property
    def local_address(self) -> str:
        """This end's IPv4 address, as the tracker sees it (a peer's address must be it)."""
        return str(self.sock.getsockname()[0])

    def request(self, cmd_name: str, /, *, wait: float = REQUEST_TIMEOUT, **args: Any) -> Reply:
        """Send ``cmd_name`` with ``args`` and wait (at most ``wait`` seconds) for its reply."""
        if self.closed:
            return failure("NO_TRACKER", "the connection to the tracker is closed")
        request = Request(next(self._ids), cmd_name, args)
        frame = encode_request(request)
        if len(frame) > limits.FRAME_MAX:
            return failure("TOO_LONG", f"that {cmd_name} would be {len(frame)} bytes, over the "
                                       f"tracker's {limits.FRAME_MAX}; nothing was sent")
        shown = {key: ("***" if key == "password" else value) for key, value in args.items()}
        self.console.records.send("tracker", cmd_name, f"{cmd_name} {shown}")
        done, box = threading.Event(), []
        self._waiting[request.id] = (done, box)
        try:
            with self._send_lock:
                self.sock.sendall(frame)
        except OSError as error:
            self._waiting.pop(request.id, None)
            return failure("NO_TRACKER", f"cannot send to the tracker: {error}")
        if not done.wait(wait) or not box:
            self._waiting.pop(request.id, None)
            return failure("NO_TRACKER", "the tracker did not answer")
        return box[0]

    def _read(self) -> None:
        try:
            while True:
                line = self.reader.readline(REPLY_MAX + 1)
                if not line:
                    break
                try:
                    frame = decode_server_frame(line)
                except ProtocolError as error:
                    self.console.trace(f"dropped a bad frame from the tracker: {error.message}")
                    continue
                kind = (f"push:{frame.kind}" if isinstance(frame, Push) else
                        frame.status if frame.ok else f"{frame.status} {frame.code}")
                self.console.records.recv("tracker", kind, line.decode("utf-8", "replace")[:200])
                if isinstance(frame, Push):
                    if frame.kind == "welcome" and not self._welcomed.is_set():
                        self.welcome = frame
                        self._welcomed.set()
                        continue
                    try:
                        self.on_push(frame)
                    except (TypeError, ValueError, KeyError) as error:
                        self.console.trace(f"dropped a malformed {frame.kind!r} notice: {error}")
                    continue
                if frame.re is None and frame.code in FAREWELLS:
                    self.farewell = frame   # the connection ends next: on_close says why
                    continue
                if frame.re is None:        # an answer to a frame it could not read
                    self.console.notice(f"FAILURE {escape_for_terminal(str(frame.code))}: "
                                        f"{escape_for_terminal(frame.message)}")
                    continue
                done, box = self._waiting.pop(frame.re, (None, None))
                if done is not None and box is not None:
                    box.append(frame)
                    done.set()
        except OSError:
            pass                            # the connection broke: same as closed
        finally:
            self._closed.set()
            self._welcomed.set()
            for done, _box in list(self._waiting.values()):
                done.set()
            if self.on_close is not None and not self._closing:
                self.on_close(self.farewell)

    def close(self) -> None:
        self._closing = True
        self._closed.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
