"""The user's session with the tracker: one TCP connection, JSON lines (PROTOCOL.md §1).

How frames flow::

    request(cmd, **args) ──encode_request──> socket ──> the tracker
    the tracker ──> socket ──> reader thread: load_object
                                 ├ a reply: handed to the request waiting for its id, which reads
                                 │  it with messages.answer_from_wire(cmd, …) ──> an Answer
                                 ├ a push: messages.notice_from_wire(…) ──> on_push(Notice)
                                 └ the tracker's last word before it closes (FAILURE, "re": null):
                                    kept as ``farewell`` for on_close

``request`` sends a request and waits for the reply with the same id, typed
(``protocol.messages``).  A reply that is not what the protocol says is a ``ProtocolError``,
caught here, at the edge, and answered as ``FAILURE BAD_REPLY``: the shell never meets a
malformed reply, and no other exception is taken for the tracker's fault.  A push that is not
one is dropped with a trace line.  When the tracker ends the connection (it stopped, or timed
the session out), the reader sees the end at once and tells ``on_close``, with the tracker's last
word if it said why.

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
from protocol.messages import (
    NOTICES,
    Answer,
    Failure,
    Notice,
    WelcomePush,
    answer_from_wire,
    notice_from_wire,
)
from protocol.text import escape_for_terminal
from protocol.validate import is_whole_number
from protocol.wire import FAILURE, ProtocolError, Request, encode_request, load_object

REQUEST_TIMEOUT = limits.EXIT_WAIT_TIMEOUT + 10
# Why the tracker closes a connection, sent with "re": null just before it does: kept for
# on_close rather than shown as they come.
FAREWELLS = {"REGISTER_TIMEOUT", "IDLE_TIMEOUT", "SERVER_FULL", "TOO_LARGE", "SENDQ_EXCEEDED",
             "TOO_MANY_CONNECTIONS", "CONNECTING_TOO_FAST"}


def no_tracker(why: str) -> Failure:
    """The answer to a request the tracker could not be asked, or did not answer."""
    return Failure(code="NO_TRACKER", message=why)


class _Waiting:
    """A request waiting for its reply: the reader puts the frame here and wakes it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.frame: dict[str, Any] | None = None


class TrackerLink:
    """The session with the tracker: requests wait for their typed reply; pushes go to a
    callback."""

    def __init__(self, host: str, port: int, console: Console,
                 on_push: Callable[[Notice], None],
                 on_close: Callable[[Failure | None], None] | None = None,
                 source: str | None = None) -> None:
        """Connect to the tracker at ``host:port``, from the local address ``source`` if given
        (a host with several addresses; the peer's address is this connection's)."""
        self.console, self.on_push, self.on_close = console, on_push, on_close
        self.farewell: Failure | None = None    # the tracker's reason for closing, if it gave one
        self._closing = False                   # closed by this side: nobody needs telling
        self.sock = socket.create_connection((host, port), timeout=5,
                                             source_address=(source, 0) if source else None)
        self.sock.settimeout(None)
        local = self.sock.getsockname()
        console.records.rename(f"{local[0]}:{local[1]}")    # as the tracker names this session
        self.reader = self.sock.makefile("rb")
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._waiting: dict[int, _Waiting] = {}
        self._closed = threading.Event()
        self._welcomed = threading.Event()
        self.welcome: WelcomePush | None = None
        threading.Thread(target=self._read, name="tracker-reader", daemon=True).start()

    def wait_welcome(self, timeout: float = 10.0) -> WelcomePush | None:
        """The tracker's first frame (it says whether a server password is needed)."""
        self._welcomed.wait(timeout)
        return self.welcome

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def local_address(self) -> str:
        """This end's IPv4 address, as the tracker sees it (a peer's address must be it)."""
        return str(self.sock.getsockname()[0])

    def request(self, cmd_name: str, /, *, wait: float = REQUEST_TIMEOUT, **args: Any) -> Answer:
        """Send ``cmd_name`` with ``args`` and wait (at most ``wait`` seconds) for its reply."""
        if self.closed:
            return no_tracker("the connection to the tracker is closed")
        request = Request(next(self._ids), cmd_name, args)
        frame = encode_request(request)
        if len(frame) > limits.FRAME_MAX:
            return Failure(code="TOO_LONG",
                           message=f"that {cmd_name} would be {len(frame)} bytes, over the "
                                   f"tracker's {limits.FRAME_MAX}; nothing was sent")
        shown = {key: ("***" if key == "password" else value) for key, value in args.items()}
        self.console.records.send("tracker", cmd_name, f"{cmd_name} {shown}")
        waiting = _Waiting()
        self._waiting[request.id] = waiting
        try:
            with self._send_lock:
                self.sock.sendall(frame)
        except OSError as error:
            self._waiting.pop(request.id, None)
            return no_tracker(f"cannot send to the tracker: {error}")
        if not waiting.done.wait(wait) or waiting.frame is None:
            self._waiting.pop(request.id, None)
            return no_tracker("the tracker did not answer")
        try:
            return answer_from_wire(cmd_name, waiting.frame)
        except ProtocolError as error:
            return Failure(code="BAD_REPLY", message="the tracker's answer was not understood "
                                                     f"({error.message})")

    # ---- the reader thread -------------------------------------------------------------------
    def _read(self) -> None:
        try:
            while True:
                line = self.reader.readline(limits.SERVER_FRAME_MAX + 1)
                if not line:
                    break
                try:
                    obj = load_object(line, limits.SERVER_FRAME_MAX)
                except ProtocolError as error:
                    self.console.trace(f"dropped a bad frame from the tracker: {error.message}")
                    continue
                self.console.records.recv("tracker", self._kind(obj),
                                          line.decode("utf-8", "replace")[:200])
                if "push" in obj:
                    self._push(obj)
                else:
                    self._reply(obj)
        except OSError:
            pass                            # the connection broke: same as closed
        finally:
            self._closed.set()
            self._welcomed.set()
            for waiting in list(self._waiting.values()):
                waiting.done.set()
            if self.on_close is not None and not self._closing:
                self.on_close(self.farewell)

    @staticmethod
    def _kind(obj: dict[str, Any]) -> str:
        """What a frame is, for the trace: ``push:<kind>``, ``SUCCESS`` or ``FAILURE CODE``."""
        if "push" in obj:
            return f"push:{obj['push']}"
        status = str(obj.get("status"))
        return f"{status} {obj.get('code')}" if status == FAILURE else status

    def _push(self, obj: dict[str, Any]) -> None:
        kind = obj["push"]
        if not isinstance(kind, str) or kind not in NOTICES:
            self.console.trace(f"unknown notice {escape_for_terminal(str(kind))}")
            return
        try:
            notice = notice_from_wire(obj)
        except ProtocolError as error:
            self.console.trace(f"dropped a malformed {kind!r} notice: {error.message}")
            return
        if isinstance(notice, WelcomePush) and not self._welcomed.is_set():
            self.welcome = notice
            self._welcomed.set()
            return
        self.on_push(notice)

    def _reply(self, obj: dict[str, Any]) -> None:
        re = obj.get("re")
        if re is None:                      # an answer to nothing: why the tracker closes, or
            try:                            # a frame of ours it could not read
                failure = Failure.from_wire(obj)
            except ProtocolError as error:
                self.console.trace(f"dropped a bad frame from the tracker: {error.message}")
                return
            if failure.code in FAREWELLS:
                self.farewell = failure     # the connection ends next: on_close says why
            else:
                self.console.notice(f"FAILURE {escape_for_terminal(failure.code)}: "
                                    f"{escape_for_terminal(failure.message)}")
            return
        waiting = self._waiting.pop(re, None) if is_whole_number(re) else None
        if waiting is not None:             # else nobody waits for it (any more)
            waiting.frame = obj
            waiting.done.set()

    def close(self) -> None:
        self._closing = True
        self._closed.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
