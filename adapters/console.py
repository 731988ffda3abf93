"""The terminal side of user.py: every line it prints goes through :class:`Console`.

One line at a time, never through a half-typed command: a line that arrives from the network
while the user is typing is printed above the prompt, and the prompt with what was typed is
drawn again.
"""

from __future__ import annotations

import sys
import threading
import time

from adapters.output import OutputQueue, Summariser
from protocol.trace import TraceWriter


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
    above the prompt, and the prompt with whatever the user had typed is drawn again.  Lines go
    through an :class:`OutputQueue`: a terminal that stops reading never holds up the thread
    that prints (the ring's selector thread acks and forwards whatever the terminal does).
    """

    def __init__(self, interactive: bool, quiet: bool,
                 records: TraceWriter | None = None) -> None:
        self.interactive, self.quiet = interactive, quiet
        self.records = records or TraceWriter(None, "user")   # --trace-file, if given
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
        return not self.quiet or self.records.stream is not None

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
