"""protocol/session_log.py: the lines of the ttweet session log, given their time."""

from __future__ import annotations

import time

from conftest import HEADER_LINE, REPORT_LINE

from protocol import session_log


def test_report_lines_name_time_side_and_category() -> None:
    line = session_log.report_line(session_log.SERVER, session_log.CONNECTION,
                                   "127.0.0.1:5000 connected", when=1_700_000_000.25)
    assert line.endswith("\n") and line.count("\n") == 1
    assert REPORT_LINE.match(line.rstrip("\n"))
    assert ".250 [server] [CONNECTION] 127.0.0.1:5000 connected" in line


def test_a_report_is_one_line_whatever_the_text() -> None:
    line = session_log.report_line(session_log.CLIENT, session_log.GENERAL,
                                   "Received Message: a\nb\r\x1b[2Jc", when=0.0)
    assert line.count("\n") == 1
    assert line.rstrip("\n").endswith("Received Message: a\\nb\\r\\x1b[2Jc")


def test_session_header_opens_a_section() -> None:
    when = 1_700_000_000.0
    first = session_log.session_header("ttweet server on port 5000", when=when)
    later = session_log.session_header("ttweet server on port 5000", when=when,
                                       after_earlier=True)
    assert HEADER_LINE.match(first.rstrip("\n")) and first.count("\n") == 1
    assert later == "\n" + first        # set off from the previous session by a blank line


def test_a_time_is_shown_local_to_the_millisecond() -> None:
    when = 1_700_000_000.9999
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_700_000_000))
    assert session_log.timestamp(when) == f"{local}.999"      # never rounded up to .1000
    assert session_log.timestamp(1_700_000_000.0) == f"{local}.000"
