"""adapters/cli.py: the argument types every program's command line shares, and what a bad
argument looks like in each program (one line on stderr after the usage, exit status 2)."""

from __future__ import annotations

import argparse
import re
import subprocess

import pytest
from conftest import PYTHON, ROOT

from adapters import cli


@pytest.mark.parametrize(("convert", "text", "value"), [
    (cli.port(), "13000", 13000), (cli.port(0), "0", 0), (cli.count, "7", 7),
    (cli.seconds, "0.5", 0.5), (cli.rate, "1e3", 1000.0),
])
def test_good_words_become_values(convert, text: str, value: float) -> None:
    assert convert(text) == value


@pytest.mark.parametrize(("convert", "text", "sentence"), [
    (cli.port(), "0", "'0' is not a port (1-65535)"),
    (cli.port(0), "65536", "'65536' is not a port (0-65535)"),
    (cli.port(), "+80", "'+80' is not a port (1-65535)"),
    (cli.count, "0", "'0' is not a whole number from 1"),
    (cli.count, "1.5", "'1.5' is not a whole number from 1"),
    (cli.seconds, "nan", "'nan' is not a positive number of seconds"),
    (cli.seconds, "-1", "'-1' is not a positive number of seconds"),
    (cli.rate, "inf", "'inf' is not a positive number"),
])
def test_bad_words_are_refused_with_one_sentence(convert, text: str, sentence: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=f"^{re.escape(sentence)}$"):
        convert(text)


def test_bounds_of_whole_and_finite_numbers() -> None:
    assert cli.whole_number("30", 30, 40) == 30 and cli.whole_number("41", 30, 40) is None
    assert cli.whole_number("٣") is None                  # ASCII digits only
    assert cli.finite_number("-2.5") == -2.5 and cli.finite_number("-2.5", positive=True) is None


@pytest.mark.parametrize(("args", "line"), [
    (["tracker.py", "70000"], "tracker.py: error: argument port: '70000' is not a port (0-65535)"),
    (["user.py", "127.0.0.1", "0"],
     "user.py: error: argument tracker_port: '0' is not a port (1-65535)"),
    (["ttweetsrv.py", "http"],
     "ttweetsrv.py: error: argument port: 'http' is not a port (1-65535)"),
    (["tracker.py", "--idle-timeout", "-3"],
     "tracker.py: error: argument --idle-timeout: '-3' is not a positive number of seconds"),
])
def test_each_program_says_what_is_wrong_in_one_line(args: list[str], line: str) -> None:
    done = subprocess.run([PYTHON, *args], cwd=ROOT, capture_output=True, text=True, timeout=15,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1] == line
    assert "Traceback" not in done.stderr
