"""adapters/console.py without a terminal: how lines are dressed (time, colour), how many rows a
wrapped input line takes, what the console does when told about the prompt, and the trace it
keeps for ``diagram``.  user.py at a real terminal is tests/test_user_terminal.py."""

from __future__ import annotations

import io
import os
import subprocess
import types

import pytest
from conftest import DEFAULT_TIMEOUT, PYTHON, ROOT

from adapters.console import Console, ReadlineScreen, cells, dress, erase_rows, visible
from adapters.trace_file import TraceWriter


def test_how_lines_are_dressed_and_rows_erased() -> None:
    assert dress("[say] @bob: hi", "14:05", colour=False) == "14:05 [say] @bob: hi"
    assert dress("SUCCESS: done", "14:05", colour=False) == "SUCCESS: done"     # an answer
    assert dress("tweet #3 by @a via @b: x", None, colour=False) == "tweet #3 by @a via @b: x"
    coloured = dress("FAILURE BAD_TAG: @alice and @bob", None, colour=True, own="@Alice")
    assert coloured == ("\x1b[1;31mFAILURE BAD_TAG:\x1b[0m \x1b[1m\x1b[32m@alice\x1b[0m and "
                        "\x1b[36m@bob\x1b[0m")
    assert dress("[trace] x @a", None, colour=True) == "\x1b[2m[trace] x @a\x1b[0m"
    assert dress("[notice] @a is online", "09:00", colour=True).startswith(
        "\x1b[2m09:00\x1b[0m \x1b[33m[notice]\x1b[0m ")
    assert dress("mail me@host.org", None, colour=True) == "mail me@host.org"   # no handle
    assert cells("日本") == 4 and cells("e\u0301") == 1 and cells("abc") == 3
    assert visible("\001\x1b[1;32m\002@a\001\x1b[0m\002> ") == "@a> "
    assert erase_rows("x" * 10, 40) == "\r\x1b[J"
    assert erase_rows("x" * 40, 40) == "\r\x1b[J"           # the cursor waits at the last column
    assert erase_rows("x" * 81, 40) == "\r\x1b[2A\x1b[J"


def test_without_gnu_readline_the_rows_are_worked_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """libedit has no rl_clear_visible_line: the prompt and the text say how many rows to clear
    (the cursor taken to be at the end), and they are written again after the line."""
    screen = ReadlineScreen.__new__(ReadlineScreen)
    screen._gnu = None
    screen.readline = types.SimpleNamespace(get_line_buffer=lambda: "say " + "y" * 80)
    screen.prompt = "\001\x1b[1m\002@alice\001\x1b[0m\002> "
    monkeypatch.setattr("shutil.get_terminal_size", lambda: os.terminal_size((40, 24)))
    out = io.StringIO()
    screen.clear(out)
    assert out.getvalue() == "\r\x1b[2A\x1b[J"                 # 92 columns: three rows
    screen.redraw(out)
    assert out.getvalue().endswith("@alice> say " + "y" * 80)
    assert screen.active()


def test_a_listener_sees_every_line_and_the_own_handle_is_highlighted(
        capsys: pytest.CaptureFixture[str]) -> None:
    console = Console(interactive=False, quiet=False)
    seen: list[str] = []
    console.show_lines_to(seen.append)
    console.highlight("@alice")
    console.say("SUCCESS: @alice is online")
    assert console.output.flush(15)
    assert seen == ["SUCCESS: @alice is online"]
    assert capsys.readouterr().out == "SUCCESS: @alice is online\n"   # no terminal: plain


def test_the_lifeline_is_named_once_with_an_alias() -> None:
    stream = io.StringIO()
    console = Console(interactive=False, quiet=False, records=TraceWriter(stream, "user"))
    records = console.records
    records.rename("127.0.0.1:5000")            # as the tracker link names a new connection
    records.name_lifeline("@alice")
    records.name_lifeline("@alice")             # a second login: already a handle
    records.send("tracker", "logout")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and '"kind": "alias"' in lines[0] and '"to": "@alice"' in lines[0]
    assert '"at": "@alice"' in lines[1]


def test_the_last_commands_records_are_kept_for_diagram() -> None:
    console = Console(interactive=False, quiet=False)
    records = console.records
    records.send("tracker", "online")
    assert records.last == []                   # the command is still running
    records.command_started()
    assert [r.kind for r in records.last] == ["online"]
    records.command_started()                   # a command that sent nothing keeps them
    assert [r.kind for r in records.last] == ["online"]


# Which thread writes a line a script's Console says into a pipe: the saying thread, unless a
# terminal is at the other end (where only the writer thread may draw around the prompt).
WHO_WRITES = """
import sys, threading
from adapters import console
said = console.Console(False, True)
draw = said._draw
said.output._write = lambda text: draw(text + " by " + threading.current_thread().name)
said.say("one line")
said.output.flush()
"""


def test_a_script_s_line_goes_into_its_pipe_from_the_thread_that_says_it() -> None:
    done = subprocess.run([PYTHON, "-c", WHO_WRITES], cwd=ROOT, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=DEFAULT_TIMEOUT, check=True)
    assert done.stdout == "one line\n"             # written at once: not through _draw


def test_with_a_terminal_for_input_every_line_goes_through_the_writer_thread() -> None:
    main, terminal = os.openpty()
    try:
        done = subprocess.run([PYTHON, "-c", WHO_WRITES], cwd=ROOT, stdin=terminal,
                              capture_output=True, text=True, timeout=DEFAULT_TIMEOUT,
                              check=True)
    finally:
        os.close(main)
        os.close(terminal)
    assert done.stdout == "one line by console-writer\n"
