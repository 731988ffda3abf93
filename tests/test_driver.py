"""tools/driver.py, the one process driver: lines are waited for with a timeout, a failed wait
quotes the output, and ``run`` runs a program to its end."""

from __future__ import annotations

import pytest

from tools.driver import Proc, Timeout, run

ECHO = "import sys\nfor line in sys.stdin:\n    print(line.strip().upper(), flush=True)\n"


def test_expect_waits_for_the_next_matching_line() -> None:
    proc = Proc(["-c", ECHO], "echo")
    try:
        proc.send("one")
        proc.send("two")
        assert proc.expect(r"^TWO$").group() == "TWO"
        assert proc.expect(r"^ONE$", since=0).group() == "ONE"    # a look back
        proc.close_stdin()
        assert proc.wait() == 0
        assert proc.text() == "ONE\nTWO"
    finally:
        proc.stop()


def test_a_wait_that_fails_says_why_and_quotes_the_output() -> None:
    proc = Proc(["-c", "print('hello')"], "hello")
    try:
        with pytest.raises(Timeout, match=r"no line matching 'bye' \(it ended\).*\n    hello"):
            proc.expect("bye", timeout=5)
    finally:
        proc.stop()


def test_run_keeps_the_exit_status_and_both_streams() -> None:
    done = run(["-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"])
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert run(["-c", "print(input())"], input="typed\n").stdout == "typed\n"
    with pytest.raises(Timeout, match="did not end within"):
        run(["-c", "import time; time.sleep(30)"], timeout=0.5)
