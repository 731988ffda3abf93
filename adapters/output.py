"""Output that never blocks service (SPEC §6): a bounded queue in front of one writer thread.

A terminal that stops reading (Ctrl-S, a pager left unscrolled, a stalled SSH session, a pipe
that nobody reads) makes ``write`` block.  Nothing that serves others may wait for that, so every
program puts its lines in an :class:`OutputQueue` and goes on at once::

    handler threads ──put(line)──> [ bounded queue ] ──> writer thread ──write──> terminal / pipe
                          │ full: the line is dropped and counted
                          └────────> "[N lines were dropped: the output was not read]" once the
                                     writer catches up

:class:`Summariser` keeps a flood of lines of one kind (datagrams dropped from one address) from
becoming a flood on the terminal: the first line of a kind in each period is shown, the rest are
counted and said in one line when the period is over.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable

OUTPUT_QUEUE_MAX = 1000     # lines waiting for a terminal before new ones are dropped
SUMMARY_PERIOD = 1.0        # seconds: at most one line of a kind, then a count


class OutputQueue:
    """Lines for one output, written in order by one daemon thread.

    ``put`` never blocks.  ``write`` runs only on the writer thread, so it may block as long as
    the terminal likes.  ``flush`` waits (with a timeout) until what was put is written: the
    programs call it before they exit.
    """

    def __init__(self, write: Callable[[str], None], limit: int = OUTPUT_QUEUE_MAX,
                 name: str = "output") -> None:
        self._write = write
        # A line to write, or an Event to set once everything before it is written (flush).
        self._lines: queue.Queue[str | threading.Event] = queue.Queue(limit)
        self._dropped = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name=f"{name}-writer", daemon=True).start()

    def put(self, line: str) -> bool:
        """Queue a line; False (and counted) if the queue is full."""
        try:
            self._lines.put_nowait(line)
            return True
        except queue.Full:
            with self._lock:
                self._dropped += 1
            return False

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until every queued line is written; False if the output stayed blocked."""
        done = threading.Event()
        try:
            self._lines.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            line = self._lines.get()
            if isinstance(line, threading.Event):
                line.set()
                continue
            self._emit(line)
            with self._lock:
                dropped, self._dropped = self._dropped, 0
            if dropped and self._lines.empty():
                self._emit(f"[{dropped} {'line was' if dropped == 1 else 'lines were'} "
                           "dropped: the output was not read]")
            elif dropped:
                with self._lock:
                    self._dropped += dropped   # said once the writer has caught up

    def _emit(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):   # a closed terminal or pipe
            self._write(line)


class Summariser:
    """At most one line per kind and period; the rest are counted and summarised.

    ``line(kind, text, now)`` returns what to print now: the text itself (the first of its kind in
    this period), a summary of the previous period's surplus followed by the text, or nothing.
    ``pending(now)`` returns the summaries of periods that are over (call it now and then).
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
