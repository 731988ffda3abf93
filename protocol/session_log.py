"""Lines of the ttweet session log (``Sample.txt``): how they look, without writing them.

A report line names its time (local, to the millisecond), its side and its category::

    2026-11-21 05:40:01.123 [server] [GENERAL] listening on port 13000

Sides are ``client`` and ``server``; categories ``GENERAL`` (what happened), ``CONNECTION``
(a connection opened, or ended early) and ``ERROR`` (something was refused or failed).  The text
has its control characters escaped (:func:`protocol.text.escape_for_terminal`), so one report is
always exactly one line, whatever a peer sent.  A server start opens a session section with a
header line, set off by a blank line when the log already has something in it::

    ==== 2026-11-21 05:40:01.100 new session: ttweet server on port 13000 ====

How a report becomes a line::

    (side, category, text, when) ──report_line──> "<local time> [side] [CATEGORY] text\n"

The time is given (this module reads no clock).  The programs (``ttweetsrv.py``,
``adapters/ttweet_client.py``) append each line with one ``os.write`` to a file opened with
``O_APPEND``: the kernel then places every line whole at the end, so concurrent writers never
tear a line.
"""

import time

from protocol.text import escape_for_terminal

CLIENT = "client"
SERVER = "server"

GENERAL = "GENERAL"
CONNECTION = "CONNECTION"
ERROR = "ERROR"


def timestamp(when: float) -> str:
    """``when`` (seconds since the epoch) as local ``YYYY-MM-DD HH:MM:SS.mmm``."""
    whole = int(when)
    millis = min(int((when - whole) * 1000), 999)
    # A conversion to local time, not a reading of the clock: ``time`` is a light import, and
    # ttweetcl.py's start-up is benchmarked (``datetime`` would cost it milliseconds).
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(whole)) + f".{millis:03d}"


def report_line(side: str, category: str, text: str, when: float) -> str:
    """One log line of ``side`` at ``when`` (seconds since the epoch), newline included."""
    return f"{timestamp(when)} [{side}] [{category}] {escape_for_terminal(text)}\n"


def session_header(text: str, when: float, after_earlier: bool = False) -> str:
    """The line that opens a session section; ``after_earlier`` puts a blank line before it."""
    stamp = timestamp(when)
    blank = "\n" if after_earlier else ""
    return f"{blank}==== {stamp} new session: {escape_for_terminal(text)} ====\n"
