"""The terminal side of user.py: every line it prints goes through :class:`Console`.

One line at a time, never through a half-typed command: a line that arrives from the network
while the user is typing is printed above the prompt, and the prompt with what was typed is
drawn again.  The trace records of the session go through :class:`CommandTrace`, which writes
the ``--trace-file`` and keeps the last command's records for the ``diagram`` command.
"""

from __future__ import annotations

import sys
import threading
import time

from adapters.output import OutputQueue, Summariser
from protocol.trace import TraceRecord, TraceWriter

KEPT_RECORDS = 2000         # at most this many records of the last command kept, for `diagram`


def clock_time(seconds: object) -> str:
    """Seconds since the epoch, from the tracker, as local date and time ("?" if not a number)."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "?"
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))
    except (OverflowError, OSError, ValueError):
        return "?"


class CommandTrace(TraceWriter):
    """user.py's trace: written to ``--trace-file`` as any ``TraceWriter`` does and, when
    ``keep``, also kept in memory since the start of the last command that sent or received
    something (at most ``KEPT_RECORDS``): the ``diagram`` command draws those."""

    def __init__(self, writer: TraceWriter, keep: bool) -> None:
        super().__init__(writer.stream, writer.owner)
        self.keep = keep
        self._kept: list[TraceRecord] = []
        self.last: list[TraceRecord] = []       # the last command's records, once another began
        self._kept_lock = threading.Lock()

    def record(self, direction: str, src: str, dst: str, kind: str, summary: str = "") -> None:
        if self.keep:
            entry = TraceRecord(time.time(), self.owner, direction, src, dst, kind, summary)
            with self._kept_lock:
                if len(self._kept) < KEPT_RECORDS:
                    self._kept.append(entry)
        super().record(direction, src, dst, kind, summary)

    def command_started(self) -> None:
        """What was kept so far becomes the last command's, unless nothing was."""
        with self._kept_lock:
            if self._kept:
                self.last, self._kept = self._kept, []


class Console:
    """All output goes through here: one line at a time, and never through a half-typed command.

    When the user is at an interactive prompt, a line that arrives from the network is printed
    above the prompt, and the prompt with whatever the user had typed is drawn again.  Lines go
    through an :class:`OutputQueue`: a terminal that stops reading never holds up the thread
    that prints (the ring's selector thread acks and forwards whatever the terminal does).
    """

    def __init__(self, interactive: bool, quiet: bool,
                 records: TraceWriter | None = None) -> None:
        self.interactive, self.quiet = interactive, quiet
        # --trace-file, if given; the last command's records are kept for `diagram` unless
        # nobody could look (no terminal, no trace wanted): ring hops then cost no trace work.
        writer = records or TraceWriter(None, "user")
        self.records = CommandTrace(writer, interactive or not quiet or writer.stream is not None)
        self.prompt = ""
        self.at_prompt = False
        self._held: list[str] | None = None     # notices kept back while a command runs
        self._lock = threading.Lock()
        self._summaries = Summariser()
        self.output = OutputQueue(self._draw, name="console")

    def say(self, text: str) -> None:
        self.output.put(text)

    def _draw(self, text: str) -> None:
        """Write one line (the writer thread only)."""
        if self.interactive and self.at_prompt:
            import readline
            typed = readline.get_line_buffer()
            sys.stdout.write(f"\r\x1b[K{text}\n{self.prompt}{typed}")
        else:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()

    @property
    def tracing(self) -> bool:
        """Whether trace lines or trace records are wanted at all."""
        return not self.quiet or self.records.stream is not None or self.records.keep

    def trace(self, text: str, kind: str | None = None) -> None:
        """A trace line; lines of one ``kind`` (e.g. drops from one address) are summarised."""
        if self.quiet:
            return
        if kind is None:
            self.say(f"[trace] {text}")
            return
        with self._lock:
            lines = self._summaries.line(kind, f"[trace] {text}", time.monotonic())
        for line in lines:
            self.say(line)

    def tick(self) -> None:
        """Say the summaries of periods that are over (called now and then)."""
        with self._lock:
            lines = self._summaries.pending(time.monotonic())
        for line in lines:
            self.say(line)

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
