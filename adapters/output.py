"""Output that never blocks service (SPEC §6): bounded queues in front of writers.

A reader that stops reading — a terminal after Ctrl-S, a pager left unscrolled, a pipe nobody
reads, a disk that stalls, a user whose program no longer reads its socket — makes ``write``
block.  Nothing that serves others may wait for that, so every line and every frame is put in a
bounded queue, and whoever put it goes on at once.

Lines (a terminal, a pipe, a trace file) go through an :class:`OutputQueue`::

    any thread ──put(line)──> [ bounded queue ] ──> writer thread ──write──> terminal / file
                     │ full: the line is dropped and counted
                     │ ────> "[N lines were dropped: the output was not read]" once the
                     │       writer catches up
                     └ nothing waiting, and a pipe that takes the line whole at once
                       (pipe_writer): written by the thread that put it ──write──> pipe

:class:`TraceFile` is an ``OutputQueue`` in front of a trace file (JSON lines, SPEC §7); its drop
notice is a trace record, so the file stays readable by ``protocol.diagram``.

:class:`Summariser` keeps a flood of lines of one kind (datagrams dropped from one address,
connections refused to one address) from becoming a flood on the terminal: the first line of a
kind in each period is shown, the rest are counted and said in one line when the period is over.
:class:`FloodLines` is the same for many threads, in front of an output.

Frames to the tracker's connections go through one :class:`SendQueue` per connection, bounded in
bytes, and the tracker's one :class:`Sender` thread::

    any thread ──put(frame)──> [ its SendQueue ] ──send, never waiting──> socket
                                      │   what the socket did not take waits
                                      └──> Sender thread (one selector for all connections)
                                           sends it when the socket is writable
    over the limit: the waiting frames are dropped, on_exceeded() is called once; the
    connection then says why (put_last) and is closed (SPEC §6, IRC's "SendQ exceeded")

No thread ever waits for a socket: the thread that puts a frame into an empty queue sends what
the kernel takes at once (``MSG_DONTWAIT``); whatever is left, and every frame put while some
wait already, is sent by the ``Sender`` when the socket is writable.  The queue's lock makes one
sender at a time, so the frames of one connection leave in the order they were put, and a user
who stops reading costs only its own queue.  Sending at once from any thread, not only the
connection's own, spares a push (another user's thread puts it) two thread hand-offs.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable
from typing import TextIO

from protocol.trace import TraceRecord

OUTPUT_QUEUE_MAX = 1000     # lines waiting for a terminal before new ones are dropped
TRACE_QUEUE_MAX = 10_000    # records waiting for a trace file before new ones are dropped
SUMMARY_PERIOD = 1.0        # seconds: at most one line of a kind, then a count


def _dropped_lines(count: int) -> str:
    return (f"[{count} {'line was' if count == 1 else 'lines were'} dropped: "
            "the output was not read]")


class OutputQueue:
    """Lines for one output, written in order, by one daemon thread or at once.

    ``put`` never blocks.  ``write`` runs on the writer thread, so it may block as long as the
    terminal likes; ``idle`` (if given) runs there whenever the queue has run empty (a file is
    flushed then, once for a whole burst).  ``flush`` waits (with a timeout) until what was put
    is written: the programs call it before they exit.

    ``write_now(line)``, if given, writes the line only if the output takes it whole at once,
    and says whether it did (see :func:`pipe_writer`).  When no line is waiting or being written,
    ``put`` tries it first: the order is the same, and a line the output took costs no hand-off
    to the writer thread (its wake-up and sleep: a follower in a ring went from 3.2 to 1.6 context
    switches a tweet).  A line it did not take goes first in the queue.
    """

    def __init__(self, write: Callable[[str], None], limit: int = OUTPUT_QUEUE_MAX,
                 name: str = "output", idle: Callable[[], None] | None = None,
                 dropped_note: Callable[[int], str] = _dropped_lines,
                 write_now: Callable[[str], bool] | None = None) -> None:
        self._write, self._idle, self._dropped_note = write, idle, dropped_note
        self._write_now, self._limit = write_now, limit
        # Lines to write, and Events to set once everything before them is written (flush).
        self._waiting: collections.deque[str | threading.Event] = collections.deque()
        self._writing = False           # a line is being written, by the writer or by a put
        self._dropped = 0
        self._changed = threading.Condition()     # guards the three above
        threading.Thread(target=self._run, name=f"{name}-writer", daemon=True).start()

    def put(self, line: str) -> bool:
        """Write a line at once, or queue it (see the class); False (and counted) if the
        queue is full."""
        with self._changed:
            if len(self._waiting) >= self._limit:
                self._dropped += 1
                return False
            if self._writing or self._waiting or self._write_now is None:
                self._waiting.append(line)
                if not self._writing:       # else whoever writes wakes the writer after
                    self._changed.notify()
                return True
            self._writing = True
        written = False
        try:
            written = self._write_now(line)
        except OSError:                     # the reader has gone: lost, as the writer's would be
            written = True
        except ValueError:                  # left to the writer thread, which says nothing
            pass
        finally:
            with self._changed:
                if not written:             # first, before the lines put meanwhile
                    self._waiting.appendleft(line)
            self._written()
        return True

    @property
    def dropped(self) -> int:
        """Lines dropped and not yet said."""
        with self._changed:
            return self._dropped

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until every queued line is written; False if the output stayed blocked."""
        done = threading.Event()
        with self._changed:
            self._waiting.append(done)      # not a line: never refused
            self._changed.notify()
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting and not self._writing)
                line = self._waiting.popleft()
                self._writing = True
            try:
                if isinstance(line, threading.Event):
                    self._caught_up()
                    line.set()
                    continue
                self._emit(line)
                with self._changed:
                    caught_up = not self._waiting
                if caught_up:
                    self._caught_up()
            finally:
                self._written()

    def _written(self) -> None:
        with self._changed:
            self._writing = False
            if self._waiting:               # lines put meanwhile wait for the writer thread
                self._changed.notify()

    def _caught_up(self) -> None:
        """The queue ran empty: say what was dropped meanwhile, let the output settle."""
        with self._changed:
            dropped, self._dropped = self._dropped, 0
        if dropped:
            self._emit(self._dropped_note(dropped))
        if self._idle is not None:
            with contextlib.suppress(OSError, ValueError):
                self._idle()

    def _emit(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):   # a closed terminal, pipe or file
            self._write(line)


def pipe_writer(stream: TextIO, end: str = "\n") -> Callable[[str], bool] | None:
    """For a stream that is a pipe (on Linux): ``write_now(line)``, which writes ``line + end``
    only if the pipe takes it whole at once, and says whether it did.  None for anything else (a
    terminal, a file, a socket) and where the pipe cannot be opened again.

    It writes through a second open file description of the same pipe (``/proc/self/fd``), made
    non-blocking: a pipe that is full answers EAGAIN, however it filled (our stderr may share it,
    so may a neighbour in a pipeline), and a write of at most ``PIPE_BUF`` bytes goes in whole or
    not at all (POSIX).  The stream's own descriptor stays blocking: the shell and the writer
    thread share it, and nobody else may find it non-blocking.  The second descriptor stays open
    as long as the process (as standard output does).
    """
    try:
        fd = stream.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
        stream.flush()
        private = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (AttributeError, OSError, ValueError):   # no descriptor, closed, no /proc, no reader
        return None
    encoding, errors = stream.encoding, stream.errors or "strict"

    def write_now(line: str) -> bool:
        data = (line + end).encode(encoding, errors)    # UnicodeError: the writer thread's
        if len(data) > select.PIPE_BUF:
            return False                # it could go in part-way: the writer thread's job
        try:
            os.write(private, data)
        except BlockingIOError:
            return False
        return True
    return write_now


class TraceFile:
    """A trace file behind an :class:`OutputQueue`: recording never waits for the disk.

    Hand it to ``adapters.trace_file.TraceWriter`` as its stream.  ``write`` takes whole lines from
    any thread; the writer thread writes them in order and flushes the file whenever it has
    caught up, so ``flush`` has nothing to wait for.  Records dropped because the file could not
    keep up are counted, and said in the file by a record of kind ``dropped``.
    """

    def __init__(self, stream: TextIO, owner: str, limit: int = TRACE_QUEUE_MAX) -> None:
        self.stream, self.owner = stream, owner
        self._queue = OutputQueue(self._write, limit, name="trace-file", idle=stream.flush,
                                  dropped_note=self._dropped_record)

    def write(self, text: str) -> None:
        self._queue.put(text.removesuffix("\n"))

    def flush(self) -> None:
        """Nothing to do: the writer thread flushes the file as soon as it has caught up."""

    def drain(self, timeout: float = 2.0) -> bool:
        """Wait until every record is in the file (programs call it before they exit)."""
        return self._queue.flush(timeout)

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")

    def _dropped_record(self, count: int) -> str:
        return TraceRecord(time.time(), self.owner, "send", self.owner, self.owner, "dropped",
                           f"{count} trace records were dropped: the file was not written "
                           "fast enough").to_json()


class Summariser:
    """At most one line per kind and period; the rest are counted and summarised.

    ``line(kind, text, now)`` returns what to print now: the text itself (the first of its kind in
    this period), a summary of the previous period's surplus followed by the text, or nothing.
    ``pending(now)`` returns the summaries of periods that are over (call it now and then).
    Not thread-safe: its user holds a lock around it.
    """

    def __init__(self, period: float = SUMMARY_PERIOD, kinds_max: int = 1024) -> None:
        self.period, self.kinds_max = period, kinds_max
        self._kinds: dict[str, tuple[float, int, str]] = {}   # kind -> (start, suppressed, last)

    def line(self, kind: str, text: str, now: float) -> list[str]:
        out = []
        entry = self._kinds.get(kind)
        if entry is not None and now - entry[0] < self.period:
            self._kinds[kind] = (entry[0], entry[1] + 1, text)
            return []
        if entry is not None and entry[1]:
            out.append(self._summary(kind, entry))
        if entry is None and len(self._kinds) >= self.kinds_max:
            out.extend(self.pending(now, everything=True))
        self._kinds[kind] = (now, 0, text)
        out.append(text)
        return out

    def pending(self, now: float, everything: bool = False) -> list[str]:
        out = []
        for kind, entry in list(self._kinds.items()):
            if everything or now - entry[0] >= self.period:
                if entry[1]:
                    out.append(self._summary(kind, entry))
                del self._kinds[kind]
        return out

    @staticmethod
    def _summary(kind: str, entry: tuple[float, int, str]) -> str:
        count, last = entry[1], entry[2]
        return f"{last} (and {count - 1} more like it)" if count > 1 else last


class FloodLines:
    """A :class:`Summariser` for many threads: each line goes to ``emit`` now, or is counted and
    said later in a summary; ``tick`` (call it now and then) says the counts of periods that
    are over.  The monotonic clock is read here, and ``emit`` is called outside the lock."""

    def __init__(self, emit: Callable[[str], None], period: float = SUMMARY_PERIOD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._emit, self._clock = emit, clock
        self._summaries = Summariser(period)
        self._lock = threading.Lock()

    def line(self, kind: str, text: str) -> None:
        """``text``, one of the lines of ``kind`` that may come in floods."""
        with self._lock:
            lines = self._summaries.line(kind, text, self._clock())
        for line in lines:
            self._emit(line)

    def tick(self) -> None:
        with self._lock:
            lines = self._summaries.pending(self._clock())
        for line in lines:
            self._emit(line)


# ---- frames to sockets ------------------------------------------------------------------------
class SendQueue:
    """The frames waiting for one connection: at most ``limit`` bytes of them.

    ``put`` may be called from any thread and never waits.  Called with nothing waiting, it sends
    at once what the socket takes; whatever is left, and every frame put behind it, is sent by
    the ``Sender``.  A frame is
    always taken into an empty queue, whatever its size; beyond that, a frame that would make the
    waiting bytes pass ``limit`` is refused: every whole frame waiting is dropped (a frame partly
    sent is finished, so the reader never sees half a line), and ``on_exceeded`` is called once.
    The connection then puts its last frame (``put_last``: the reason, past the limit) and
    closes the queue (``close``), which gives those bytes ``linger`` seconds to leave.
    """

    def __init__(self, sock: socket.socket, sender: Sender, limit: int,
                 on_exceeded: Callable[[int], None] = lambda waiting: None) -> None:
        self.sock, self.sender, self.limit, self.on_exceeded = sock, sender, limit, on_exceeded
        self.fd = sock.fileno()             # the Sender's key: fixed for the queue's whole life
        self._lock = threading.Lock()
        self._frames: collections.deque[bytes] = collections.deque()
        self._offset = 0                    # bytes of the first frame already sent
        self._waiting = 0                   # bytes not yet sent, of all the frames
        self.exceeded = False               # refused a frame: only put_last is taken now
        self._last_taken = False
        self._broken = False                # the socket failed: nothing more can be sent
        self.closing = False
        self.deadline = 0.0                 # when a closing queue gives up its last bytes
        self._released = False              # the Sender will not touch the socket again
        self.released = threading.Event()   # ... and has dropped it from its selector
        self._on_empty: Callable[[], None] | None = None    # when_empty's callback, waiting

    @property
    def waiting(self) -> int:
        """Bytes put and not yet sent."""
        with self._lock:
            return self._waiting

    @property
    def _shut(self) -> bool:
        """Closing, over its limit or broken: takes no more frames, tells no ``when_empty``
        (the lock is held)."""
        return self.closing or self.exceeded or self._broken

    def put(self, frame: bytes) -> bool:
        """Queue a frame (sending what the socket takes now if nothing waits before it);
        False if refused."""
        with self._lock:
            if self._shut:
                return False
            waiting = self._waiting
            overflow = waiting > 0 and waiting + len(frame) > self.limit
            if overflow:
                self.exceeded = True
                self._drop_whole_frames()
            else:
                self._frames.append(frame)
                self._waiting += len(frame)
                if len(self._frames) == 1:
                    self._send_what_fits()
                    if not self._frames:
                        return True             # all of it left at once: the usual case
        if overflow:                            # told outside the lock: it may put_last
            self.on_exceeded(waiting)
            return False
        self.sender.notify(self)
        return True

    def when_empty(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once every frame put so far has been sent: now, on this thread,
        if none waits; else on the thread that sends the last of them (the ``Sender``), so it
        must not wait for anything.  Never, if the queue is dropped or closed first.  One
        callback at a time: a second replaces the first."""
        with self._lock:
            if self._shut:
                return
            if self._frames:
                self._on_empty = callback
                return
        callback()

    def put_last(self, frame: bytes) -> None:
        """The connection's last frame (why it closes): taken once, whatever the limit."""
        with self._lock:
            if self.closing or self._last_taken or self._broken:
                return
            self._last_taken = self.exceeded = True     # nothing else is taken after it
            self._frames.append(frame)
            self._waiting += len(frame)
        self.sender.notify(self)

    def close(self, linger: float) -> None:
        """No more frames: give the waiting ones ``linger`` seconds, then let the socket go.

        Returns once the ``Sender`` has dropped the socket, so that the caller may close it
        (an fd closed while the Sender still watched it could be reused by a new connection).
        """
        with self._lock:
            self.closing = True
            self.deadline = time.monotonic() + linger
        self.sender.notify(self)
        self.released.wait(linger + 1.0)

    # ---- the Sender's side (and put's, for a frame into an empty queue) ------------------------
    def pump(self) -> bool:
        """Send what the socket takes now; True when the Sender is done with this queue (empty,
        or closing and past its deadline, or broken)."""
        with self._lock:
            if self._released:
                return True
            self._send_what_fits()
            if self.closing and self._frames and time.monotonic() >= self.deadline:
                self._frames.clear()
                self._waiting = 0
            if self.closing and not self._frames:
                self._released = True
            done = not self._frames
            emptied = None
            if done and not self._shut:
                emptied, self._on_empty = self._on_empty, None
        if emptied is not None:                 # told outside the lock: it may put again
            emptied()
        return done

    def _send_what_fits(self) -> None:
        """Send without waiting until the socket's buffer is full (the lock is held)."""
        while self._frames and not self._broken:
            head = self._frames[0]
            try:
                sent = self.sock.send(memoryview(head)[self._offset:], socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:                 # reset, broken pipe, closed: nobody to send to
                self._broken = True
                self._frames.clear()
                self._waiting = 0
                return
            self._offset += sent
            self._waiting -= sent
            if self._offset == len(head):
                self._frames.popleft()
                self._offset = 0

    def _drop_whole_frames(self) -> None:
        """Forget every frame not yet begun (the lock is held)."""
        keep = self._frames[0] if self._frames and self._offset else None
        self._frames.clear()
        self._waiting = 0
        if keep is not None:
            self._frames.append(keep)
            self._waiting = len(keep) - self._offset


class Sender:
    """One thread that sends, for every connection, what its own thread could not send at once.

    It watches the sockets whose queues have bytes waiting (one selector for all of them) and
    sends to each, without waiting, whenever it is writable.  It also keeps the deadline of every
    closing queue.  Only this thread touches the selector; other threads ``notify`` it.
    """

    def __init__(self, name: str = "sender") -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_in, self._wake_out = socket.socketpair()
        for end in (self._wake_in, self._wake_out):
            end.setblocking(False)
        self._selector.register(self._wake_in, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._todo: dict[SendQueue, None] = {}      # queues to look at, in order, once each
        self._watched: dict[int, SendQueue] = {}    # fd -> queue with bytes waiting
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def notify(self, send_queue: SendQueue) -> None:
        """Look at this queue soon (it has bytes waiting, or is closing)."""
        with self._lock:
            first = not self._todo
            self._todo[send_queue] = None
        if first:
            # Full: a wake-up is pending already.  Closed: the Sender has stopped (the program
            # is ending), and nothing will be sent anyway.
            with contextlib.suppress(OSError):
                self._wake_out.send(b"\0")

    def stop(self, timeout: float = 2.0) -> None:
        with self._lock:
            self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_out.send(b"\0")
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while True:
                for key, _ in self._selector.select(self._timeout()):
                    if key.data is None:
                        with contextlib.suppress(BlockingIOError):
                            self._wake_in.recv(4096)
                    else:
                        self._service(key.data)
                with self._lock:
                    if self._stopping:
                        return
                    todo, self._todo = list(self._todo), {}
                for send_queue in todo:
                    self._service(send_queue)
                now = time.monotonic()
                for send_queue in list(self._watched.values()):
                    if send_queue.closing and now >= send_queue.deadline:
                        self._service(send_queue)
        finally:
            self._selector.close()
            self._wake_in.close()
            self._wake_out.close()

    def _timeout(self) -> float | None:
        """Until the nearest deadline of a closing queue (None: none is closing)."""
        deadlines = [q.deadline for q in self._watched.values() if q.closing]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _service(self, send_queue: SendQueue) -> None:
        done = send_queue.pump()
        fd = send_queue.fd
        stale = self._watched.get(fd)
        if stale is not None and stale is not send_queue:
            # The fd was closed and reused while still watched (its owner stopped waiting
            # for the release): that old queue is gone, whatever it held.
            self._forget(fd)
            stale.released.set()
        watched = fd in self._watched
        if not done and not watched:
            try:
                self._selector.register(fd, selectors.EVENT_WRITE, send_queue)
                self._watched[fd] = send_queue
            except (OSError, ValueError):   # closed under our feet: nothing to send to
                done = True
        elif done and watched:
            self._forget(fd)
        if done and send_queue.closing:
            send_queue.released.set()

    def _forget(self, fd: int) -> None:
        self._selector.unregister(fd)
        del self._watched[fd]
