"""Writing trace records (SPEC §7): the writer every program uses, and the one way to open
``--trace-file``.

How a record reaches the file::

    a program ──TraceWriter.send/recv──> the clock's time + protocol.trace.trace_line
                                            │ one escaped JSON line
                                            └──write(line)──> the stream: the file itself, or
                                                              adapters.output.TraceFile (a
                                                              bounded queue before the file)

All four programs open ``--trace-file`` with :func:`open_trace_file` (append, UTF-8).  A path
that cannot be opened is a bad argument: the program prints :class:`TraceFileError`'s one line
and exits with its status, 2 in every program (SPEC §1).

This module is light on purpose: ``ttweetcl.py``, whose start-up is benchmarked, imports it when
it is given a trace file, so it imports nothing that starts threads or opens sockets.
"""

import sys
import time

from protocol.trace import trace_line

TYPE_CHECKING = False     # typing costs ttweetcl.py start-up; checkers know this name
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol, TextIO

    class LineStream(Protocol):
        """Where a ``TraceWriter`` puts its lines: one ``write`` call per whole line."""

        def write(self, text: str, /) -> Any: ...
        def flush(self) -> Any: ...

EXIT_BAD_TRACE_FILE = 2     # a bad argument (SPEC §1)


class TraceWriter:
    """Writes records for one program (``owner``) to a stream, one whole line per ``write``.

    With ``stream`` None nothing is written (and callers may skip the work of a summary).
    Several threads may record at once when the stream takes whole lines from any thread, as
    ``adapters.output.TraceFile`` does.  ``owner`` is the program's lifeline; it may be renamed
    once the program knows its name (:meth:`rename`).
    """

    def __init__(self, stream: "LineStream | None", owner: str,
                 clock: "Callable[[], float]" = time.time) -> None:
        self.stream, self.owner, self.clock = stream, owner, clock

    def record(self, direction: str, src: str, dst: str, kind: str, summary: str = "") -> None:
        if self.stream is None:
            return
        self.stream.write(trace_line(self.clock(), self.owner, direction, src, dst, kind,
                                     summary) + "\n")
        self.stream.flush()

    def send(self, dst: str, kind: str, summary: str = "") -> None:
        self.record("send", self.owner, dst, kind, summary)

    def recv(self, src: str, kind: str, summary: str = "") -> None:
        self.record("recv", src, self.owner, kind, summary)

    def rename(self, owner: str) -> None:
        """From now on this program's lifeline is ``owner`` (e.g. once its connection is
        made, as its peer names it)."""
        self.owner = owner


class TraceFileError(Exception):
    """``--trace-file`` names a file this program cannot append to."""

    status = EXIT_BAD_TRACE_FILE

    def report(self, program: str) -> int:
        """Say so in one line on standard error; the program's exit status."""
        print(f"{program}: error: {self}", file=sys.stderr)
        return self.status


def open_trace_file(path: str) -> "TextIO":
    """``path`` opened to append trace lines to (the caller closes it, or the process's end
    does); :class:`TraceFileError` if it cannot be."""
    try:
        return open(path, "a", encoding="utf-8")
    except OSError as error:
        raise TraceFileError(f"cannot write the trace file {path}: "
                             f"{error.strerror or error}") from None
