"""A Tweeter user: an interactive shell, a session with the tracker, and a peer in logical rings.

How data flows::

    terminal / pipe ──> UserShell (cmd.Cmd)          one command a line
                          │  TrackerLink.request()   TCP, JSON lines, reply matched by id
                          │                          (a reader thread takes replies and pushes)
                          └─ PeerNode                three UDP sockets, one selector thread
                               left   <── ring traffic from the left neighbour (tweets, detours)
                               middle <── ring control from authors (setup, teardown)
                               right  ──> ring traffic to the right neighbour (acks come back here)

A tweet: the shell asks the tracker (``tweet``), gets the online followers, lets
``protocol.ring`` plan which followers need a ``setup``, sends those on the middle port, then
sends the text from the right port to its right neighbour.  Each follower prints it and passes it
right; when it is back on the author's left port, the shell sends ``end-tweet`` by itself.  Every
datagram is acknowledged and sent again until it is; a follower that never answers is skipped by
a ``detour`` through the author (see ``protocol/PROTOCOL.md``).

Run: ``python3 user.py [tracker-ip [tracker-port]] [-q]``.  When standard input is not a
terminal the same commands are read one a line, with no prompt.
"""

from __future__ import annotations

import argparse
import cmd
import collections
import contextlib
import itertools
import math
import random
import selectors
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from protocol import datagrams, limits
from protocol.datagrams import (
    Ack,
    Datagram,
    DatagramError,
    DirectMsg,
    SetupMsg,
    TeardownMsg,
    TweetMsg,
)
from protocol.ring import FollowerRing, Membership, Peer, ring_order
from protocol.text import escape_for_terminal
from protocol.trace import TraceWriter
from protocol.validate import check_handle, check_ipv4, handle_key, is_handle
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


def clock_time(seconds: object) -> str:
    """Seconds since the epoch, from the tracker, as local date and time ("?" if not a number)."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "?"
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))
    except (OverflowError, OSError, ValueError):
        return "?"


class Console:
    """All output goes through here: one line at a time, and never through a half-typed command.

    When the user is at an interactive prompt, a line that arrives from the network is printed
    above the prompt, and the prompt with whatever the user had typed is drawn again.
    """

    def __init__(self, interactive: bool, quiet: bool,
                 records: TraceWriter | None = None) -> None:
        self.interactive, self.quiet = interactive, quiet
        self.records = records or TraceWriter(None, "user")   # --trace-file, if given
        self.prompt = ""
        self.at_prompt = False
        self._held: list[str] | None = None     # notices kept back while a command runs
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            if self.interactive and self.at_prompt:
                import readline
                typed = readline.get_line_buffer()
                sys.stdout.write(f"\r\x1b[K{text}\n{self.prompt}{typed}")
                sys.stdout.flush()
            else:
                print(text, flush=True)

    @property
    def tracing(self) -> bool:
        """Whether trace lines or trace records are wanted at all."""
        return not self.quiet or self.records.stream is not None

    def trace(self, text: str) -> None:
        if not self.quiet:
            self.say(f"[trace] {text}")

    def notice(self, text: str) -> None:
        """A line from the tracker that is no answer: shown now, or after the running command's
        own lines (a message kept for a login is pushed right behind the login's reply)."""
        with self._lock:
            if self._held is not None:
                self._held.append(text)
                return
        self.say(text)

    def hold(self) -> None:
        with self._lock:
            self._held = []

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held or [], None
        for text in held:
            self.say(text)


class TrackerLink:
    """The session with the tracker: requests wait for their reply; pushes go to a callback."""

    def __init__(self, host: str, port: int, console: Console,
                 on_push: Callable[[Push], None]) -> None:
        self.console, self.on_push = console, on_push
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.settimeout(None)
        local = self.sock.getsockname()
        console.records.owner = f"{local[0]}:{local[1]}"    # as the tracker names this session
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

    def request(self, cmd_name: str, **args: Any) -> Reply:
        if self.closed:
            return failure("NO_TRACKER", "the connection to the tracker is closed")
        request = Request(next(self._ids), cmd_name, args)
        shown = {key: ("***" if key == "password" else value) for key, value in args.items()}
        self.console.records.send("tracker", cmd_name, f"{cmd_name} {shown}")
        done, box = threading.Event(), []
        self._waiting[request.id] = (done, box)
        try:
            with self._send_lock:
                self.sock.sendall(encode_request(request))
        except OSError as error:
            self._waiting.pop(request.id, None)
            return failure("NO_TRACKER", f"cannot send to the tracker: {error}")
        if not done.wait(REQUEST_TIMEOUT) or not box:
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

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@dataclass(eq=False)
class _Outgoing:
    """A datagram waiting for its ack.  The selector thread sends it again at each deadline,
    and gives up after the last one: ``done`` is then set and ``on_fail`` runs."""

    to: str                     # the handle it was sent to (traces name the ack by it)
    address: tuple[str, int]    # where it was sent: only an ack from there counts
    role: str                   # the socket it goes out of
    message: Datagram           # what is sent again
    deadline: float             # when to send again, or give up
    resends_left: int
    on_fail: Callable[[], None] | None = None     # runs on the selector thread: must not block
    done: threading.Event = field(default_factory=threading.Event)
    acked: bool = False


@dataclass
class TweetResult:
    reached: int
    skipped: list[str]
    seconds: float
    completed: bool


def sender_name(message: Datagram) -> str:
    """The lifeline a datagram comes from, as the datagram itself names it."""
    if isinstance(message, (SetupMsg, TeardownMsg)):
        return message.ring
    if isinstance(message, TweetMsg):
        return message.prev
    if isinstance(message, DirectMsg):
        return message.sender
    return "?"


class PeerNode:
    """The three UDP sockets of one user and the rings it takes part in."""

    def __init__(self, console: Console, hop_timeout: float, hop_retries: int) -> None:
        self.console = console
        self.hop_timeout, self.hop_retries = hop_timeout, hop_retries
        self.me: Peer | None = None
        self.sockets: dict[str, socket.socket] = {}
        self.own_ring = FollowerRing()
        self.memberships: dict[str, Membership] = {}
        # (ring, tweet id) and ("message", id) already shown, oldest first, bounded
        self._seen: collections.OrderedDict[tuple[str, int], None] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._seq = itertools.count(random.randrange(1, 2**31))
        self._outgoing: dict[int, _Outgoing] = {}
        self._active_tweet: tuple[int, threading.Event, list[TweetMsg]] | None = None
        self.following: set[str] = set()     # keys of the authors whose rings it may join
        self._stop = threading.Event()
        self._selector_thread: threading.Thread | None = None
        self._wakeup: socket.socket | None = None     # written to when a new deadline is set

    # ---- life ------------------------------------------------------------------------------
    def bind(self, ip: str, ports: Sequence[int], handle: str) -> Peer:
        """Bind left, middle and right on ``ip`` (0 = any free port); raise OSError if taken."""
        bound: dict[str, socket.socket] = {}
        try:
            for role, port in zip(("left", "middle", "right"), ports, strict=True):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                bound[role] = sock
                sock.bind((ip, port))
        except OSError:
            for sock in bound.values():
                sock.close()
            raise
        self.sockets = bound
        ports = (bound[role].getsockname()[1] for role in ("left", "middle", "right"))
        self.me = Peer(handle, ip, *ports)
        if self.own_ring.author and self.own_ring.author.key != self.me.key:
            self.own_ring = FollowerRing()     # another handle: the old ring is not its own
        selector = selectors.DefaultSelector()
        for role, sock in bound.items():
            selector.register(sock, selectors.EVENT_READ, role)
        wake_reader, self._wakeup = socket.socketpair()
        wake_reader.setblocking(False)
        self._wakeup.setblocking(False)          # a full pipe already means "wake up"
        selector.register(wake_reader, selectors.EVENT_READ, "wakeup")
        self._stop = threading.Event()          # one selector thread per binding
        self._selector_thread = threading.Thread(target=self._serve, args=(selector, self._stop),
                                                 name="peer-selector", daemon=True)
        self._selector_thread.start()
        return self.me

    def close(self) -> None:
        """Stop receiving and release the ports.  The author's own ring is kept: a later
        login of the same handle plans its next setup from it (and `exit` tears it down)."""
        self._stop.set()
        self._wake()
        if self._selector_thread is not None:
            self._selector_thread.join(2.0)
            self._selector_thread = None
        with self._lock:
            waiting, self._outgoing = list(self._outgoing.values()), {}
        for outgoing in waiting:                # nobody will answer them now
            outgoing.done.set()
        for sock in self.sockets.values():
            sock.close()
        if self._wakeup is not None:
            self._wakeup.close()
            self._wakeup = None
        self.sockets = {}
        self.me = None
        self.memberships.clear()

    # ---- sending ---------------------------------------------------------------------------
    def _send(self, role: str, to: tuple[str, int], message: Datagram, label: str,
              handle: str) -> None:
        if self.console.tracing:                # nobody reads it otherwise: no work per hop
            summary = datagrams.summary(message)
            self.console.records.send(handle, summary.split()[0], summary)
            if not isinstance(message, Ack):
                self.console.trace(f"{self.handle} -> {label} {to[0]}:{to[1]} {summary}")
        try:
            self.sockets[role].sendto(datagrams.encode(message), to)
        except (OSError, KeyError) as error:
            self.console.trace(f"send to {to[0]}:{to[1]} failed: {error}")

    def post(self, role: str, to: Peer, port: int, build: Callable[[int], Datagram],
             on_fail: Callable[[], None] | None = None) -> _Outgoing:
        """Send a datagram now and keep it until its ack comes: the selector thread sends it
        again at each deadline and, after the last, sets ``done`` and calls ``on_fail``.
        Never blocks: any thread may post, the selector thread included."""
        message = build(next(self._seq))
        outgoing = _Outgoing(to.handle, (to.ip, port), role, message,
                             time.monotonic() + self.hop_timeout, self.hop_retries, on_fail)
        with self._lock:
            self._outgoing[message.seq] = outgoing     # type: ignore[union-attr]
        self._send(role, outgoing.address, message, to.handle, to.handle)
        self._wake()
        return outgoing

    def wait_for(self, posted: Sequence[_Outgoing]) -> list[bool]:
        """Block until each posted datagram was acknowledged or given up; which were acked."""
        patience = self.hop_timeout * (self.hop_retries + 2) + 1.0
        for outgoing in posted:
            outgoing.done.wait(patience)
        return [outgoing.acked for outgoing in posted]

    def send_reliably(self, role: str, to: Peer, port: int,
                      build: Callable[[int], Datagram]) -> bool:
        """Send until acknowledged; False if ``to`` never answered."""
        return self.wait_for([self.post(role, to, port, build)])[0]

    def _wake(self) -> None:
        """Make the selector thread look at its deadlines again."""
        with contextlib.suppress(OSError, AttributeError):
            self._wakeup.send(b"!")             # type: ignore[union-attr]

    def _next_deadline(self) -> float:
        with self._lock:
            return min((o.deadline for o in self._outgoing.values()), default=math.inf)

    def _resend_due(self) -> None:
        """Send again what is due; give up on what had its last chance (selector thread)."""
        now = time.monotonic()
        failed: list[_Outgoing] = []
        with self._lock:
            due = [o for o in self._outgoing.values() if o.deadline <= now]
            for outgoing in due:
                if outgoing.resends_left == 0:
                    del self._outgoing[outgoing.message.seq]   # type: ignore[union-attr]
                    failed.append(outgoing)
                else:
                    outgoing.resends_left -= 1
                    outgoing.deadline = now + self.hop_timeout
        for outgoing in due:
            if outgoing not in failed:
                attempt = self.hop_retries - outgoing.resends_left
                self._send(outgoing.role, outgoing.address, outgoing.message,
                           f"{outgoing.to} (again, {attempt})", outgoing.to)
        for outgoing in failed:
            self.console.trace(f"{outgoing.to} did not answer "
                               f"seq={outgoing.message.seq}")         # type: ignore[union-attr]
            outgoing.done.set()
            if outgoing.on_fail is not None:
                outgoing.on_fail()

    @property
    def handle(self) -> str:
        return self.me.handle if self.me else "?"

    # ---- receiving -------------------------------------------------------------------------
    def _serve(self, selector: selectors.BaseSelector, stop: threading.Event) -> None:
        """The selector thread: every datagram in, and every resend and give-up, happen here."""
        with selector:
            while not stop.is_set():
                wait = min(max(self._next_deadline() - time.monotonic(), 0.0), 0.5)
                try:
                    events = selector.select(timeout=wait)
                except (OSError, ValueError):
                    return
                for key, _mask in events:
                    if stop.is_set():
                        return
                    try:
                        data, sender = key.fileobj.recvfrom(  # type: ignore[union-attr]
                            limits.DATAGRAM_MAX + 1)
                    except OSError:
                        continue
                    if key.data != "wakeup":
                        self._receive(key.data, data, sender)
                self._resend_due()
            for key in list(selector.get_map().values()):
                if key.data == "wakeup":
                    key.fileobj.close()             # type: ignore[union-attr]

    def _receive(self, role: str, data: bytes, sender: tuple[str, int]) -> None:
        where = f"{sender[0]}:{sender[1]}"
        try:
            message = datagrams.decode(data)
        except DatagramError as error:
            self.console.trace(f"dropped datagram from {where} on {role}: {error}")
            return
        if isinstance(message, Ack):
            with self._lock:
                outgoing = self._outgoing.get(message.seq)
                if outgoing is None or outgoing.address != sender:
                    return                              # late, repeated, or not from there
                del self._outgoing[message.seq]
            self.console.records.recv(outgoing.to, "ack", datagrams.summary(message))
            outgoing.acked = True
            outgoing.done.set()
            return
        if self.console.tracing:
            summary = datagrams.summary(message)
            self.console.records.recv(self.name_of(sender, message), summary.split()[0], summary)
            self.console.trace(f"{self.handle} <- {where} {summary}")
        if isinstance(message, SetupMsg) and role == "middle":
            self._on_setup(message, sender)
        elif isinstance(message, TeardownMsg) and role == "middle":
            self._on_teardown(message, sender)
        elif isinstance(message, TweetMsg) and role == "left":
            self._on_tweet(message, sender)
        elif isinstance(message, DirectMsg) and role == "middle":
            self._ack("middle", message, sender)
            if self.first_time(("message", message.id)):
                self.console.say(f"[message] {message.sender}: {escape_for_terminal(message.text)}")
        else:
            self.console.trace(f"dropped {type(message).__name__} on the {role} port from {where}")

    def _ack(self, role: str, message: Datagram, sender: tuple[str, int]) -> None:
        assert not isinstance(message, Ack)
        self._send(role, sender, Ack(message.seq), "", self.name_of(sender, message))

    def name_of(self, address: tuple[str, int], message: Datagram) -> str:
        """Who sent from ``address``: known ring addresses first (after a detour a tweet comes
        from the author, not from the ``prev`` it names), else what the datagram says."""
        with self._lock:
            members = list(self.memberships.values())
        for member in members:
            for peer in (member.author, member.left):
                if address in ((peer.ip, peer.right), (peer.ip, peer.middle)):
                    return peer.handle
        for peer in self.own_ring.followers:
            if address == (peer.ip, peer.right):
                return peer.handle
        return sender_name(message)

    def _on_setup(self, message: SetupMsg, sender: tuple[str, int]) -> None:
        author = message.author
        if handle_key(author.handle) != handle_key(message.ring) \
                or sender != (author.ip, author.middle):
            self.console.trace(f"dropped setup for {message.ring}: not from its author")
            return
        if handle_key(message.ring) not in self.following:
            self.console.trace(f"dropped setup for {message.ring}: not a handle I follow")
            return
        with self._lock:
            self.memberships[handle_key(message.ring)] = Membership(
                author, message.left, message.right)
        self._ack("middle", message, sender)

    def _on_teardown(self, message: TeardownMsg, sender: tuple[str, int]) -> None:
        with self._lock:
            member = self.memberships.get(handle_key(message.ring))
            if member and sender != (member.author.ip, member.author.middle):
                self.console.trace(f"dropped teardown of {message.ring}: not from its author")
                return
            self.memberships.pop(handle_key(message.ring), None)
        self._ack("middle", message, sender)

    def _on_tweet(self, message: TweetMsg, sender: tuple[str, int]) -> None:
        if self.me and handle_key(message.ring) == self.me.key:
            self._on_own_tweet(message, sender)
            return
        with self._lock:
            member = self.memberships.get(handle_key(message.ring))
        allowed = member and sender in ((member.left.ip, member.left.right),
                                        (member.author.ip, member.author.right))
        if not member or not allowed or message.is_detour:
            self.console.trace(f"dropped tweet of {message.ring} from {sender[0]}:{sender[1]}:"
                               " not my left neighbour in a ring I belong to")
            return
        self._ack("left", message, sender)
        if not self.first_time((handle_key(message.ring), message.tid)):
            return                              # a resend whose first ack was lost
        self._forward(message, member)          # first, so the next hop starts sooner
        self.console.say(f"tweet #{message.tid} by {message.ring} via {message.prev}: "
                         f"{escape_for_terminal(message.text)}")

    def first_time(self, key: tuple[str, int]) -> bool:
        """True the first time ``key`` is seen: duplicates (resends) are shown once."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            while len(self._seen) > 4096:
                self._seen.popitem(last=False)
            return True

    def send_direct(self, to: Peer, message_id: int, text: str) -> bool:
        """A direct message to ``to``'s middle port; False if it never answered."""
        me = self.handle
        return self.send_reliably("middle", to, to.middle,
                                  lambda seq: DirectMsg(seq, message_id, me, text))

    def _forward(self, message: TweetMsg, member: Membership) -> None:
        """Pass a tweet to the right neighbour; if it never answers, send the tweet to the
        author as a detour around it (SPEC §3.3).  Never blocks."""
        onward = replace(message, prev=self.handle, hops=message.hops + 1)
        right, author = member.right, member.author

        def around_the_silent_neighbour() -> None:
            if handle_key(right.handle) == handle_key(author.handle):
                self.console.trace(f"the author {right.handle} is gone; the tweet ends here")
                return
            detour = replace(onward, dead=right.handle,
                             skipped=(*onward.skipped, right.handle)[:limits.SKIPPED_MAX])
            self.post("right", author, author.left, lambda seq: replace(detour, seq=seq),
                      on_fail=lambda: self.console.trace(
                          f"the author {author.handle} is gone; the tweet ends here"))

        self.post("right", right, right.left, lambda seq: replace(onward, seq=seq),
                  on_fail=around_the_silent_neighbour)

    # ---- the author's side -----------------------------------------------------------------
    def _on_own_tweet(self, message: TweetMsg, sender: tuple[str, int]) -> None:
        if not any(sender == (p.ip, p.right) for p in self.own_ring.followers):
            self.console.trace(f"dropped own tweet from {sender[0]}:{sender[1]}: not a member")
            return
        self._ack("left", message, sender)
        active = self._active_tweet
        if active is None or active[0] != message.tid or active[1].is_set():
            return                              # late or repeated: the round is over
        if message.is_detour and message.dead:
            if self.own_ring.member(message.dead) is None:
                self.console.trace(f"dropped detour around {message.dead}: not in my ring")
                return
            self._deliver(message, message.dead)
        else:
            active[2].append(message)
            active[1].set()

    def _deliver(self, message: TweetMsg, after: str) -> None:
        """Send the tweet to the follower after ``after``, or the next one if that one never
        answers; when none is left the round is over.  Never blocks."""
        nxt = self.own_ring.successor(after)
        if nxt is None:
            active = self._active_tweet
            if active and active[0] == message.tid:
                active[2].append(replace(message, dead=None))
                active[1].set()
            return
        hop = replace(message, dead=None)
        skipping = replace(message, skipped=(*message.skipped, nxt.handle)[:limits.SKIPPED_MAX])
        self.post("right", nxt, nxt.left, lambda seq: replace(hop, seq=seq),
                  on_fail=lambda: self._deliver(skipping, nxt.handle))

    def setup_ring(self, followers: Sequence[Peer]) -> list[str]:
        """Bring every follower's ring state up to date; return those that did not answer."""
        assert self.me is not None
        me, target = self.me, ring_order(followers)
        old_author, old = self.own_ring.author, self.own_ring.followers
        skipped: list[str] = []
        while True:
            plan = FollowerRing(old_author, list(old)).plan(me, target)
            results = self.wait_for([    # all setups in flight at once
                self.post("middle", s.member, s.member.middle,
                          lambda seq, s=s: SetupMsg(seq, me.handle, s.author, s.left, s.right))
                for s in plan.setups])
            failed = {s.member.key for s, ok in zip(plan.setups, results, strict=True) if not ok}
            for peer in plan.removed:   # leaving followers forget the ring; nobody waits
                if peer.handle not in skipped:
                    self.post("middle", peer, peer.middle,
                              lambda seq: TeardownMsg(seq, me.handle))
            if not failed:
                break
            skipped += [p.handle for p in target if p.key in failed]
            old_author, old = me, target
            target = [p for p in target if p.key not in failed]
        self.own_ring.store(me, target)
        return skipped

    def run_tweet(self, tid: int, text: str, followers: Sequence[Peer],
                  timeout: float) -> TweetResult:
        skipped = self.setup_ring(followers)
        done: threading.Event = threading.Event()
        returned: list[TweetMsg] = []
        self._active_tweet = (tid, done, returned)
        started = time.perf_counter()
        first = TweetMsg(0, self.handle, tid, text, self.handle, 0, ())
        self._deliver(first, self.handle)
        completed = done.wait(timeout)
        seconds = time.perf_counter() - started
        self._active_tweet = None
        if not completed or not returned:
            return TweetResult(0, skipped, seconds, False)
        back = returned[0]
        return TweetResult(back.hops, skipped + list(back.skipped), seconds, True)

    def teardown(self, peers: Sequence[Peer]) -> list[str]:
        """Tell ``peers`` to forget this user's ring; return those that did not answer."""
        me = self.handle
        acked = self.wait_for([self.post("middle", p, p.middle, lambda seq: TeardownMsg(seq, me))
                               for p in peers])
        return [p.handle for p, ok in zip(peers, acked, strict=True) if not ok]

    def author_moved(self, author: Peer) -> None:
        """An author of a ring this user is in came online at a new address: remember it, so
        that its teardown (and its relayed detours) are taken from there."""
        with self._lock:
            member = self.memberships.get(author.key)
            if member is None:
                return
            moved = {member.author: author}
            self.memberships[author.key] = Membership(
                author, moved.get(member.left, member.left), moved.get(member.right, member.right))

    def forget(self, author: str) -> None:
        with self._lock:
            self.memberships.pop(handle_key(author), None)


class UserShell(cmd.Cmd):
    intro = "Tweeter — type help for the commands, quit to leave."

    def __init__(self, connect: Callable[[], TrackerLink], node: PeerNode, console: Console,
                 args: argparse.Namespace) -> None:
        super().__init__()
        self.connect_link, self.node, self.console = connect, node, console
        self.link: TrackerLink | None = None
        self.tweet_timeout = args.tweet_timeout
        self.password_file: str | None = args.server_password_file
        self.handle: str | None = None
        self.known_handles: set[str] = set()
        self._stop_heartbeat = threading.Event()
        threading.Thread(target=self._heartbeat, args=(args.heartbeat,), name="heartbeat",
                         daemon=True).start()
        if console.interactive:
            self.prompt = "tweeter> "
        else:
            self.prompt, self.intro, self.use_rawinput = "", None, False
        console.prompt = self.prompt

    # ---- the tracker session ---------------------------------------------------------------
    def connect(self) -> bool:
        """Open the session: connect, read the welcome, give the server password if asked."""
        try:
            self.link = self.connect_link()
        except OSError as error:
            self.console.say(f"FAILURE NO_TRACKER: cannot reach the tracker: "
                             f"{error.strerror or error}")
            return False
        welcome = self.link.wait_welcome()
        if welcome is None:
            self.console.say("FAILURE NO_TRACKER: the tracker did not greet")
            return False
        if welcome.data.get("password_required"):
            return self.admit()
        return True

    def request(self, cmd_name: str, **args: Any) -> Reply:
        """Ask the tracker; if it had closed the session, open a new one first."""
        if self.link is None or self.link.closed:
            if self.handle:
                self.console.say(f"[notice] the tracker closed the session of {self.handle}; "
                                 "log in again")
                self.leave_rings()
            if not self.connect():
                return failure("NO_TRACKER", "the connection to the tracker is closed")
        assert self.link is not None
        return self.link.request(cmd_name, **args)

    def _heartbeat(self, interval: float) -> None:
        """While logged in, tell the tracker now and then that this session is alive."""
        while not self._stop_heartbeat.wait(interval):
            link = self.link
            if self.handle and link is not None and not link.closed:
                reply = link.request("heartbeat")
                if not reply.ok and reply.code != "NO_TRACKER":
                    self.show(reply)

    def close(self) -> None:
        self._stop_heartbeat.set()
        if self.link is not None:
            self.link.close()
        self.node.close()

    # ---- plumbing --------------------------------------------------------------------------
    def onecmd(self, line: str) -> bool:
        """Run one command.  Replies are checked where they are used; a reply too malformed
        for that (a tracker that is not Tweeter's, or a broken one) ends the command here
        with one line, never a traceback."""
        try:
            return bool(super().onecmd(line))
        except (KeyError, ValueError, TypeError, IndexError) as error:
            self.console.say(f"FAILURE BAD_REPLY: the tracker's answer was not understood "
                             f"({escape_for_terminal(type(error).__name__)})")
            return False

    def preloop(self) -> None:
        self.console.at_prompt = True

    def precmd(self, line: str) -> str:
        self.console.at_prompt = False
        self.console.hold()
        return line

    def postcmd(self, stop: bool, line: str) -> bool:
        self.console.release()
        self.console.at_prompt = not stop
        return stop

    def emptyline(self) -> bool:
        return False

    def default(self, line: str) -> bool:
        self.console.say(f"FAILURE UNKNOWN_COMMAND: {escape_for_terminal(line.split()[0])!s}"
                         " — type help")
        return False

    def words(self, arg: str) -> list[str] | None:
        try:
            return shlex.split(arg)
        except ValueError as error:
            self.console.say(f"FAILURE BAD_SYNTAX: {error}")
            return None

    def show(self, reply: Reply) -> Reply:
        text = escape_for_terminal(reply.message)
        self.console.say(f"SUCCESS: {text}" if reply.ok
                         else f"FAILURE {escape_for_terminal(str(reply.code))}: {text}")
        return reply

    def usage(self, form: str) -> bool:
        return self.fail("USAGE", form)

    def fail(self, code: str, message: str) -> bool:
        """A failure found here, before anything was sent."""
        self.console.say(f"FAILURE {code}: {message}")
        return False

    def completedefault(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        return sorted(h for h in self.known_handles if h.lower().startswith(text.lower()))

    # ---- commands --------------------------------------------------------------------------
    def admit(self) -> bool:
        """Give the tracker its server password: from the file, or asked (masked)."""
        if self.password_file:
            try:
                with open(self.password_file, encoding="utf-8") as handle:
                    password: str | None = handle.readline().rstrip("\n")
            except OSError as error:
                self.console.say(f"FAILURE NO_PASSWORD_FILE: {self.password_file}: "
                                 f"{error.strerror}")
                return False
        else:
            password = self.read_password("server password: ")
        assert self.link is not None
        return self.show(self.link.request("auth", password=password or "")).ok

    def read_password(self, prompt: str) -> str | None:
        """A password: masked on a terminal, the next input line otherwise (None at its end)."""
        if not self.console.interactive:
            line = sys.stdin.readline()
            return line.rstrip("\n") if line else None
        try:
            import stdiomask
            return stdiomask.getpass(prompt=prompt, mask="*")
        except ImportError:
            import getpass
            self.console.say("(stdiomask is not installed: the password is read unechoed)")
            return getpass.getpass(prompt)
        except EOFError:
            return None

    def _join(self, cmd_name: str, arg: str) -> bool:
        """register or login: bind the three UDP ports, ask the password, ask the tracker."""
        words = self.words(arg)
        if words is None:
            return False
        if len(words) not in (1, 5):
            return self.usage(f"{cmd_name} @handle [ipv4 left middle right]")
        if self.handle:
            return self.fail("ALREADY_LOGGED_IN", f"this session is already {self.handle}")
        ip, port_words = (words[1], words[2:]) if len(words) == 5 else ("127.0.0.1", ["0"] * 3)
        problem = check_handle(words[0]) or check_ipv4(ip)
        if problem:
            return self.fail(*problem)
        try:
            ports = [int(word) for word in port_words]
            if not all(0 <= port <= 65535 for port in ports):
                raise ValueError
        except ValueError:
            return self.fail("BAD_PORT", "ports are numbers from 0 to 65535")
        try:
            me = self.node.bind(ip, ports, words[0])
        except OSError as error:
            return self.fail("PORT_IN_USE", f"cannot bind {ip} {' '.join(port_words)}: "
                                            f"{error.strerror}; nothing was sent")
        password = self.read_password("password: ")
        if password is not None and cmd_name == "register" \
                and self.read_password("password again: ") != password:
            self.node.close()
            return self.fail("PASSWORD_MISMATCH", "the two passwords differ; nothing was sent")
        if not password:
            self.node.close()
            return self.fail("BAD_PASSWORD", "a password is needed; nothing was sent")
        reply = self.show(self.request(cmd_name, handle=words[0], ip=ip, password=password,
                                            ports=[me.left, me.middle, me.right]))
        if reply.ok:
            named = reply.data.get("handle")
            self.handle = named if is_handle(named) else words[0]
            self.known_handles.add(self.handle)
            self.node.me = replace(me, handle=self.handle)

            records = self.console.records
            if not is_handle(records.owner):        # this lifeline has a name now
                records.record("send", records.owner, self.handle, "alias")
            records.owner = self.handle
            self.console.say(f"ports: left={me.left} middle={me.middle} right={me.right}")
            follows = self.request("following") if cmd_name == "login" else None
            self.node.following = {handle_key(h) for h in (follows.data.get("handles", [])
                                                           if follows and follows.ok else [])
                                   if is_handle(h)}
        else:
            self.node.close()
        return False

    def do_register(self, arg: str) -> bool:
        """register @handle [ipv4 left middle right] — create an account and come online.
        Binds three UDP ports first (0 = any free port; `register @h` alone is 127.0.0.1 0 0 0),
        then asks for a password twice."""
        return self._join("register", arg)

    def do_login(self, arg: str) -> bool:
        """login @handle [ipv4 left middle right] — come online with an existing account,
        at a new address; says how many tweets are new since your last session."""
        return self._join("login", arg)

    def do_logout(self, arg: str) -> bool:
        """logout — go offline; your account, follows and tweets are kept."""
        if self.show(self.request("logout")).ok:
            self.leave_rings()
        return False

    def leave_rings(self) -> None:
        self.handle = None
        self.node.close()

    def do_query(self, arg: str) -> bool:
        """query handles — how many handles are registered, and which, alphabetically."""
        if arg.strip() != "handles":
            return self.usage("query handles")
        reply = self.show(self.request("query-handles"))
        if reply.ok:
            handles = reply.data.get("handles", [])
            self.known_handles.update(handles)
            self.console.say(f"{reply.data.get('count', 0)}: "
                             + escape_for_terminal(" ".join(handles)))
        return False

    def _pair(self, name: str, arg: str) -> bool:
        words = self.words(arg)
        if words is None:
            return False
        if len(words) != 2:
            return self.usage(f"{name} @follower @followee")
        reply = self.show(self.request(name, follower=words[0], followee=words[1]))
        if reply.ok and name == "follow":
            self.node.following.add(handle_key(words[1]))
            self.known_handles.add(words[1])
        elif reply.ok:
            self.node.following.discard(handle_key(words[1]))
            self.node.forget(words[1])     # a follower that left a ring keeps nothing of it
        return False

    def do_follow(self, arg: str) -> bool:
        """follow @i @j — @i (you) starts following @j."""
        return self._pair("follow", arg)

    def do_drop(self, arg: str) -> bool:
        """drop @i @j — @i (you) stops following @j."""
        return self._pair("drop", arg)

    def do_tweet(self, arg: str) -> bool:
        """tweet @handle "text" — send a tweet (1-140 characters) around your followers' ring."""
        words = self.words(arg)
        if words is None:
            return False
        if len(words) < 2:
            return self.usage('tweet @handle "text"')
        self.run_ring(self.request("tweet", handle=words[0], text=" ".join(words[1:])))
        return False

    def do_retweet(self, arg: str) -> bool:
        """retweet <id> — send "RT @author: text" of tweet <id> around your own ring."""
        if not arg.strip().isdecimal() or not arg.strip().isascii():
            return self.usage("retweet <id>")
        self.run_ring(self.request("retweet", tid=int(arg)))
        return False

    def run_ring(self, reply: Reply) -> None:
        """After SUCCESS to tweet or retweet: run the ring, then send end-tweet."""
        if not self.show(reply).ok:
            return
        tid, text = int(reply.data["tid"]), str(reply.data["text"])
        followers = [Peer.from_list(row) for row in reply.data.get("followers", [])]
        result = self.node.run_tweet(tid, text, followers, self.tweet_timeout)
        self.show(self.request("end-tweet", handle=self.handle, tid=tid,
                                    reached=result.reached, skipped=result.skipped))
        if not result.completed:
            self.console.say(f"tweet #{tid} did not come back within {self.tweet_timeout:g}s")
            return
        skipped = f"; skipped {' '.join(result.skipped)}" if result.skipped else ""
        self.console.say(f"tweet #{tid} reached {result.reached} followers "
                         f"in {result.seconds * 1000:.1f} ms{skipped}")

    def do_exit(self, arg: str) -> bool:
        """exit @handle — tear your ring down and delete your handle, then end."""
        words = self.words(arg)
        if words is None:
            return False
        if len(words) != 1:
            return self.usage("exit @handle")
        reply = self.show(self.request("exit", handle=words[0]))
        if not reply.ok:
            return False
        # Those this process set up, and those an earlier process of the handle may have.
        followers = {peer.key: peer for peer in self.node.own_ring.followers}
        for row in reply.data.get("followers", []):
            peer = Peer.from_list(row)
            followers.setdefault(peer.key, peer)
        followers = list(followers.values())
        silent = self.node.teardown(followers)
        if silent:
            self.console.say(f"teardown not acknowledged by {' '.join(silent)}")
        self.console.say(f"ring of {self.handle} torn down ({len(followers) - len(silent)} "
                         f"of {len(followers)} followers acknowledged)")
        if self.show(self.request("exit-complete", handle=words[0])).ok:
            self.console.say("bye")
            return True
        return False

    def do_online(self, arg: str) -> bool:
        """online — who is online now; the handles you follow are marked."""
        reply = self.show(self.request("online"))
        for name, followed in reply.data.get("online", []):
            self.known_handles.add(name)
            self.console.say(f"  {escape_for_terminal(name)}{'  (following)' if followed else ''}")
        return False

    def _handle_list(self, cmd_name: str, arg: str) -> bool:
        words = self.words(arg)
        if words is None:
            return False
        if len(words) > 1:
            return self.usage(f"{cmd_name} [@handle]")
        reply = self.show(self.request(cmd_name, **({"handle": words[0]} if words else {})))
        if reply.ok:
            self.known_handles.update(reply.data.get("handles", []))
            self.console.say("  " + escape_for_terminal(" ".join(reply.data.get("handles", []))))
        return False

    def do_followers(self, arg: str) -> bool:
        """followers [@handle] — who follows you (or @handle), alphabetically."""
        return self._handle_list("followers", arg)

    def do_following(self, arg: str) -> bool:
        """following [@handle] — whom you (or @handle) follow, alphabetically."""
        return self._handle_list("following", arg)

    def show_tweets(self, reply: Reply) -> None:
        for tid, author, created, text, _retweet_of in reply.data.get("tweets", []):
            self.console.say(f"  #{tid} {clock_time(created)} {escape_for_terminal(author)}: "
                             f"{escape_for_terminal(text)}")

    def do_feed(self, arg: str) -> bool:
        """feed [n] — the newest n (default 20) tweets by you and the handles you follow."""
        if arg.strip() and not (arg.strip().isdecimal() and arg.strip().isascii()):
            return self.usage("feed [n]")
        args = {"count": int(arg)} if arg.strip() else {}
        self.show_tweets(self.show(self.request("feed", **args)))
        return False

    def do_search(self, arg: str) -> bool:
        """search #tag — the tweets carrying #tag, newest first."""
        if len(arg.split()) != 1:
            return self.usage("search #tag")
        self.show_tweets(self.show(self.request("search", tag=arg.strip())))
        return False

    def do_trending(self, arg: str) -> bool:
        """trending — the five most used hashtags, with how often each was used."""
        reply = self.show(self.request("trending"))
        for tag, uses in reply.data.get("tags", []):
            self.console.say(f"  {escape_for_terminal(tag)} {uses}")
        return False

    def do_say(self, arg: str) -> bool:
        """say "text" — a chat-room line to everyone online now."""
        words = self.words(arg)
        if words is None:
            return False
        if not words:
            return self.usage('say "text"')
        self.show(self.request("say", text=" ".join(words)))
        return False

    def do_message(self, arg: str) -> bool:
        """message @handle "text" — a direct message, peer to peer; kept by the tracker when
        @handle is offline, and delivered at its next login."""
        words = self.words(arg)
        if words is None:
            return False
        if len(words) < 2:
            return self.usage('message @handle "text"')
        text = " ".join(words[1:])
        reply = self.show(self.request("message", to=words[0], text=text))
        if not reply.ok or "peer" not in reply.data:
            return False
        peer, message_id = Peer.from_list(reply.data["peer"]), int(reply.data["message_id"])
        if self.node.send_direct(peer, message_id, text):
            self.console.say(f"message #{message_id} delivered to {peer.handle}")
        else:
            self.show(self.request("message-undelivered", message_id=message_id))
        return False

    def do_block(self, arg: str) -> bool:
        """block @handle — @handle stops following you and cannot follow or message you."""
        if len(arg.split()) != 1:
            return self.usage("block @handle")
        self.show(self.request("block", handle=arg.strip()))
        return False

    def do_unblock(self, arg: str) -> bool:
        """unblock @handle — @handle may follow and message you again."""
        if len(arg.split()) != 1:
            return self.usage("unblock @handle")
        self.show(self.request("unblock", handle=arg.strip()))
        return False

    def on_push(self, push: Push) -> None:
        """A notice from the tracker, shown above the prompt; network text always escaped."""
        data = {key: escape_for_terminal(str(value)) for key, value in push.data.items()}
        if push.kind == "presence":
            if push.data.get("online") and "peer" in push.data:
                self.node.author_moved(Peer.from_list(push.data["peer"]))
            state = "is online" if push.data.get("online") else "went offline"
            self.console.notice(f"[notice] {data.get('handle')} {state}")
        elif push.kind == "offline":
            self.console.notice(f"[notice] the tracker took {self.handle} offline: "
                             f"{data.get('reason')}")
            self.leave_rings()
        elif push.kind == "followed":
            self.console.notice(f"[notice] you were followed by {data.get('by')}")
        elif push.kind == "say":
            self.console.notice(f"[say] {data.get('sender')}: {data.get('text')}")
        elif push.kind == "message":
            message_id = push.data.get("id")
            if isinstance(message_id, int) and not self.node.first_time(("message", message_id)):
                return          # it came peer to peer after all; show it once
            self.console.notice(f"[message] {data.get('sender')}: {data.get('text')} "
                             f"(kept by the tracker, sent {clock_time(push.data.get('created'))})")
        else:
            self.console.trace(f"unknown notice {escape_for_terminal(push.kind)}")

    def do_rings(self, arg: str) -> bool:
        """rings — the rings this user belongs to, as this user keeps them."""
        own = self.node.own_ring
        if own.followers:
            order = " -> ".join(p.handle for p in own.followers)
            self.console.say(f"own ring {self.handle}: {self.handle} -> {order} -> {self.handle}")
        else:
            self.console.say(f"own ring {self.handle}: no followers set up")
        for member in sorted(self.node.memberships.values(), key=lambda m: m.author.key):
            self.console.say(f"ring {member.author.handle}: left {member.left.handle}, "
                             f"right {member.right.handle}")
        return False

    def do_quit(self, arg: str) -> bool:
        """quit — log out and end (Ctrl-D does the same); nothing is deleted."""
        if self.handle and self.show(self.request("logout")).ok:
            self.leave_rings()
        return True

    def do_EOF(self, arg: str) -> bool:
        if self.console.interactive:
            print()
        return self.do_quit(arg)

    def complete_follow(self, text: str, *rest: Any) -> list[str]:
        return self.completedefault(text, *rest)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="user.py", description="A Tweeter user: shell, tracker session and ring peer.",
        epilog="example: python3 user.py 127.0.0.1 13000, then: register @alice")
    parser.add_argument("tracker_ip", nargs="?", default="127.0.0.1")
    parser.add_argument("tracker_port", nargs="?", type=int, default=limits.DEFAULT_TRACKER_PORT)
    parser.add_argument("-q", "--quiet", action="store_true", help="no trace lines")
    parser.add_argument("--hop-timeout", type=float, default=limits.HOP_TIMEOUT,
                        help="seconds before a datagram is sent again")
    parser.add_argument("--hop-retries", type=int, default=limits.HOP_RETRIES,
                        help="resends before a peer is given up as dead")
    parser.add_argument("--tweet-timeout", type=float, default=limits.TWEET_TIMEOUT,
                        help="seconds to wait for a tweet to come back")
    parser.add_argument("--heartbeat", type=float, default=limits.HEARTBEAT_INTERVAL,
                        help="seconds between heartbeats to the tracker while logged in")
    parser.add_argument("--trace-file", metavar="PATH",
                        help="append a JSON record of every message in and out (SPEC §7)")
    parser.add_argument("--server-password-file", metavar="PATH",
                        help="file whose first line is the tracker's password (else it is asked)")
    args = parser.parse_args(argv)
    if check_ipv4(args.tracker_ip):
        parser.error(f"{args.tracker_ip!r} is not an IPv4 address")
    if not 1 <= args.tracker_port <= 65535:
        parser.error(f"{args.tracker_port} is not a port (1-65535)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.trace_file:
        return run(args, TraceWriter(None, "user"))
    try:
        trace_stream = open(args.trace_file, "a", encoding="utf-8")  # noqa: SIM115 (with below)
    except OSError as error:
        print(f"user.py: cannot write the trace file {args.trace_file}: {error.strerror}",
              file=sys.stderr)
        return 1
    with trace_stream:
        return run(args, TraceWriter(trace_stream, "user"))


def run(args: argparse.Namespace, records: TraceWriter) -> int:
    """Connect, greet the tracker, and run the shell until the user leaves."""
    interactive = sys.stdin.isatty()
    with contextlib.suppress(AttributeError, ValueError):   # bytes that are not UTF-8 typed in
        sys.stdin.reconfigure(errors="replace")             # become U+FFFD, not a traceback
    if interactive:
        import readline  # line editing and history for cmd.Cmd
        readline.set_completer_delims(" \t\n\"'")   # "@alice" and "#tag" are whole words
    console = Console(interactive, args.quiet, records)
    node = PeerNode(console, args.hop_timeout, args.hop_retries)
    shell: UserShell | None = None

    def connect() -> TrackerLink:
        return TrackerLink(args.tracker_ip, args.tracker_port, console,
                           on_push=lambda push: shell.on_push(push) if shell else None)

    shell = UserShell(connect, node, console, args)
    if not shell.connect():
        shell.close()
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        shell.cmdloop()
    except KeyboardInterrupt:
        print()
        console.at_prompt = False       # no prompt to redraw: the process is ending
        shell.do_quit("")       # Ctrl-C ends like quit: logged out, nothing deleted
    finally:
        shell.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
