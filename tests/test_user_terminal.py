"""user.py at a real terminal: a pseudo-terminal driven by pexpect, the screen rendered by pyte.

Each test types as a person would (Enter is a carriage return, as a terminal sends it) and
asserts on what the screen shows, rows and cursor, as a terminal emulator would draw it.  Other
users are ordinary piped ``user.py`` processes.  Every wait is on output, with a timeout.
"""

from __future__ import annotations

import re
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pyte
import pytest
from conftest import (
    DEFAULT_TIMEOUT,
    FAST_PEER_ARGS,
    PYTHON,
    ROOT,
    Cluster,
    Tweeter,
    User,
    free_port,
    password_of,
    terminal_env,
)

from protocol.text import as_typed, escape_for_terminal
from user import plural, split_first, typed_text

STAMP = r"\d\d:\d\d "          # the time before an incoming line


class Terminal:
    """One ``user.py`` in a pseudo-terminal of ``rows`` × ``columns``, and its screen."""

    def __init__(self, port: int, home: Path, rows: int = 30, columns: int = 80,
                 colour: bool = False, extra: tuple[str, ...] = ()) -> None:
        self.child = pexpect.spawn(
            PYTHON, ["user.py", "127.0.0.1", str(port), "-q", *FAST_PEER_ARGS, *extra],
            cwd=str(ROOT), env=terminal_env(home, colour), encoding="utf-8",
            dimensions=(rows, columns), timeout=DEFAULT_TIMEOUT)
        self.screen = pyte.Screen(columns, rows)
        self.stream = pyte.Stream(self.screen)
        self.written = ""           # every character the program wrote, escape codes included

    # ---- reading the screen ----------------------------------------------------------------
    def rows(self) -> list[str]:
        return [row.rstrip() for row in self.screen.display]

    def text(self) -> str:
        return "\n".join(f"  |{row}" for row in self.rows())

    @property
    def cursor(self) -> tuple[int, int]:
        """(column, row) of the cursor."""
        return self.screen.cursor.x, self.screen.cursor.y

    def cursor_row(self) -> str:
        return self.rows()[self.screen.cursor.y]

    def _read(self, timeout: float) -> bool:
        """Feed what the program wrote within ``timeout`` to the screen; False at its end."""
        try:
            data = self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            return True
        except pexpect.EOF:
            return False
        self.written += data
        self.stream.feed(data)
        return True

    def wait_until(self, done: Callable[[], bool], what: str,
                   timeout: float = DEFAULT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (not self._read(min(remaining, 0.2)) and not done()):
                why = "it ended" if not self.child.isalive() else f"nothing within {timeout:g}s"
                raise AssertionError(f"the screen never showed {what} ({why}):\n{self.text()}")

    def shows(self, pattern: str, timeout: float = DEFAULT_TIMEOUT) -> re.Match[str]:
        """Wait until a row of the screen matches ``pattern``; the match."""
        regex = re.compile(pattern)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            found[:] = [m for row in self.rows() if (m := regex.search(row))]
            return bool(found)
        self.wait_until(seen, repr(pattern), timeout)
        return found[-1]

    def at_prompt(self, prompt: str, typed: str = "") -> None:
        """Wait until the cursor's row is ``prompt`` + ``typed``, the cursor after them."""
        self.wait_until(lambda: self.cursor_row() == (prompt + typed).rstrip()
                        and self.cursor[0] == len(prompt + typed),
                        f"the prompt {prompt + typed!r} with the cursor at its end")

    # ---- typing ----------------------------------------------------------------------------
    def type(self, keys: str) -> None:
        self.child.send(keys)

    def enter(self, line: str = "") -> None:
        self.child.send(line + "\r")        # Enter, as a terminal sends it

    def register(self, handle: str) -> None:
        self.at_prompt("tweeter> ")
        self.enter(f"register {handle}")
        for prompt in ("password: ", "password again: "):
            self.at_prompt(prompt)
            self.enter(password_of(handle))
        self.shows(rf"^SUCCESS: {handle} registered")
        self.at_prompt(f"{handle}> ")

    def wait_end(self) -> int:
        self.wait_until(lambda: not self.child.isalive() and not self._read(0.1), "the end")
        self.child.close()
        return int(self.child.exitstatus if self.child.exitstatus is not None else -1)

    def close(self) -> None:
        self.child.close(force=True)


@pytest.fixture
def terminals(tmp_path: Path):
    """Open terminals, closed at the end of the test."""
    opened: list[Terminal] = []

    def open_terminal(port: int, **options: object) -> Terminal:
        terminal = Terminal(port, tmp_path, **options)  # type: ignore[arg-type]
        opened.append(terminal)
        return terminal
    yield open_terminal
    for terminal in opened:
        terminal.close()


def line_then_input(terminal: Terminal, above: str, input_row: str) -> bool:
    """Whether the cursor's row is ``input_row`` and the row above it matches ``above``."""
    rows, y = terminal.rows(), terminal.cursor[1]
    return y > 0 and re.match(above, rows[y - 1]) is not None and rows[y] == input_row


def prompts_without_text(terminal: Terminal, prompt: str) -> int:
    """Rows that hold nothing but the prompt: more than the cursor's one is a double prompt."""
    return sum(1 for row in terminal.rows() if row == prompt.rstrip())


# ---- the line being typed survives what arrives ------------------------------------------
def test_a_line_arriving_keeps_the_cursor_inside_the_half_typed_line(net: Tweeter,
                                                                    terminals) -> None:
    bob = net.users("@bob")["@bob"]
    alice: Terminal = terminals(net.port)
    alice.register("@alice")
    alice.type("say hello world")
    alice.type("\x1b[D" * 5 + "big ")            # five times Left, then a word in the middle
    alice.wait_until(lambda: alice.cursor_row() == "@alice> say hello big world"
                     and alice.cursor[0] == len("@alice> say hello big "), "the edited line")
    bob.ok("say ping")
    alice.wait_until(lambda: line_then_input(alice, rf"^{STAMP}\[say\] @bob: ping$",
                                             "@alice> say hello big world")
                     and alice.cursor[0] == len("@alice> say hello big "),
                     "the say above the line, the cursor where it was")
    alice.type("X")                             # readline and the screen agree on the cursor
    alice.wait_until(lambda: alice.cursor_row() == "@alice> say hello big Xworld",
                     "the letter typed where the cursor is")
    alice.enter()
    bob.expect(r"^\[say\] @alice: hello big Xworld$")
    alice.shows(rf"^{STAMP}\[say\] @alice: hello big Xworld$")       # your own say, echoed
    alice.at_prompt("@alice> ")
    assert prompts_without_text(alice, "@alice> ") == 1, alice.text()


def test_a_wrapped_line_is_redrawn_without_a_stale_copy(net: Tweeter, terminals) -> None:
    bob = net.users("@bob")["@bob"]
    alice: Terminal = terminals(net.port, columns=40)
    alice.register("@alice")
    typed = "say " + "abcdefghij" * 7                     # 78 characters: three rows of 40
    alice.type(typed)
    alice.wait_until(lambda: "".join(alice.rows()).count("abcdefghij") == 7, "the long line")
    for number in range(3):
        bob.ok(f"say ping {number}")

        def redrawn(number: int = number) -> bool:
            rows = alice.rows()
            below = [i for i, row in enumerate(rows) if f"ping {number}" in row]
            start = below[0] + 1 if below else 0
            return bool(below) and "".join(rows[start:start + 3]) == "@alice> " + typed \
                and alice.cursor == (len("@alice> " + typed) - 80, start + 2)
        alice.wait_until(redrawn, f"ping {number} above the three rows of the line")
        rows = alice.rows()
        assert "".join(rows).count("abcdefghij") == 7, alice.text()      # no stale row
        assert sum(1 for row in rows if row.startswith("@alice> say abc")) == 1, alice.text()
    alice.enter()
    bob.expect(r"^\[say\] @alice: (abcdefghij){7}$")


def test_a_reverse_search_stays_a_search_when_a_line_arrives(net: Tweeter, terminals) -> None:
    bob = net.users("@bob")["@bob"]
    alice: Terminal = terminals(net.port)
    alice.register("@alice")
    alice.enter("say first words")
    alice.at_prompt("@alice> ")
    alice.enter("online")
    alice.at_prompt("@alice> ")
    alice.type("\x12fir")                                   # Ctrl-R, then "fir"
    searching = "(reverse-i-search)`fir': say first words"
    alice.wait_until(lambda: alice.cursor_row() == searching, "the search")
    bob.ok("say ping")
    alice.wait_until(lambda: line_then_input(alice, rf"^{STAMP}\[say\] @bob: ping$",
                                             searching),
                     "the say above the search, still searching")
    alice.enter()                                           # the line found is the one run
    bob.expect(r"^\[say\] @alice: first words$")


def test_replies_come_before_the_next_prompt_and_notices_above_it(net: Tweeter,
                                                                 terminals) -> None:
    users = net.users("@bob", "@carol")
    alice: Terminal = terminals(net.port)
    alice.register("@alice")
    for handle in ("@bob", "@carol"):
        users[handle].ok(f"follow {handle} @alice")
        alice.shows(rf"^{STAMP}\[notice\] you were followed by {handle}$")
    for times in range(1, 4):
        alice.enter("followers")
        alice.wait_until(lambda n=times: alice.rows().count("  @bob @carol") == n
                         and alice.cursor_row() == "@alice>", "the list, then the prompt")
        rows = alice.rows()
        assert rows[alice.cursor[1] - 1] == "  @bob @carol", alice.text()
    assert prompts_without_text(alice, "@alice> ") == 1, alice.text()


# ---- Ctrl-C and Ctrl-D -----------------------------------------------------------------------
def test_ctrl_c_and_ctrl_d_cancel_a_password_and_send_nothing(net: Tweeter, terminals) -> None:
    alice: Terminal = terminals(net.port)
    alice.at_prompt("tweeter> ")
    alice.enter("register @alice")
    alice.at_prompt("password: ")
    alice.type("half\x03")                                  # Ctrl-C
    alice.shows(r"^FAILURE CANCELLED: register cancelled; nothing was sent$")
    alice.at_prompt("tweeter> ")
    alice.enter("register @alice")
    alice.at_prompt("password: ")
    alice.enter("secret")
    alice.at_prompt("password again: ")
    alice.type("sec\x04")                                   # Ctrl-D
    alice.wait_until(lambda: alice.rows().count(
        "FAILURE CANCELLED: register cancelled; nothing was sent") == 2, "a second cancel")
    alice.enter("login @alice")
    alice.at_prompt("password: ")
    alice.type("\x03")
    alice.shows(r"^FAILURE CANCELLED: login cancelled; nothing was sent$")
    assert net.tracker_proc is not None
    assert '"cmd":"register"' not in net.tracker_proc.text().replace(" ", "")
    assert '"cmd":"login"' not in net.tracker_proc.text().replace(" ", "")
    assert "half" not in alice.written and "secret" not in alice.written
    alice.register("@alice")                                # nothing was left bound or half done
    alice.enter("logout")
    alice.at_prompt("tweeter> ")
    alice.enter("login @alice")
    alice.at_prompt("password: ")
    secret = password_of("@alice")
    alice.type(secret[:3] + "\x1b[D\x1b[A" + secret[3:] + "x\x7f")   # arrows; a backspace
    alice.at_prompt("password: ", "*" * len(secret))
    alice.enter()
    alice.shows(r"^SUCCESS: @alice logged in")


def test_ctrl_c_drops_a_half_typed_line_and_quits_at_an_empty_prompt(net: Tweeter,
                                                                    terminals) -> None:
    alice: Terminal = terminals(net.port)
    alice.register("@alice")
    alice.type("tweet not finished")
    alice.at_prompt("@alice> ", "tweet not finished")
    alice.type("\x03")
    alice.shows(r"^@alice> tweet not finished\^C$")
    alice.at_prompt("@alice> ")
    alice.enter("online")                                   # still here, still logged in
    alice.shows(r"^  @alice$")
    alice.at_prompt("@alice> ")
    assert "not finished" not in net.tracker_proc.text()   # type: ignore[union-attr]
    alice.type("\x03")
    alice.shows(r"^SUCCESS: @alice logged out")
    assert alice.wait_end() == 0
    assert net.tracker_proc is not None
    net.tracker_proc.expect(r'"cmd": ?"logout"')


# ---- losing the tracker ------------------------------------------------------------------
def test_losing_the_tracker_is_said_at_once_and_login_works_after_a_restart(
        cluster: Cluster, terminals, tmp_path: Path) -> None:
    port = free_port()                      # the same port twice, so not port 0
    db = str(tmp_path / "tracker.db")
    tracker = cluster.start(["tracker.py", str(port), "--db", db], "tracker")
    tracker.expect(r"listening on")
    alice: Terminal = terminals(port, extra=("--heartbeat", "0.2"))
    alice.register("@alice")
    alice.type("half typed")
    tracker.kill(signal.SIGKILL)                            # nothing typed from here on
    alice.shows(rf"^{STAMP}\[notice\] lost the tracker: @alice is offline; log in again once "
                r"it is back$")
    alice.at_prompt("@alice> ", "half typed")
    again = cluster.start(["tracker.py", str(port), "--db", db], "tracker again")
    again.expect(r"listening on")
    alice.type("\x15")                                      # Ctrl-U: the line is cleared
    alice.enter("login @alice")
    alice.at_prompt("password: ")
    alice.enter(password_of("@alice"))
    alice.shows(r"^SUCCESS: @alice logged in")
    alice.at_prompt("@alice> ")
    screen = "\n".join(alice.rows())
    assert "heartbeat" not in screen and "FAILURE" not in screen, alice.text()


def test_an_unused_connection_closed_by_the_tracker_is_not_shown(cluster: Cluster,
                                                                terminals) -> None:
    net = Tweeter(cluster)
    tracker = net.tracker("--register-timeout", "1")
    alice: Terminal = terminals(net.port)
    alice.at_prompt("tweeter> ")
    tracker.expect(r"REGISTER_TIMEOUT")                     # the tracker gave up on it
    alice.register("@alice")                                # a new session, at once
    alice.enter("online")
    alice.shows(r"^  @alice$")
    alice.at_prompt("@alice> ")
    assert "REGISTER_TIMEOUT" not in alice.written and "FAILURE" not in alice.written


# ---- text as typed ---------------------------------------------------------------------------
def test_a_long_paste_fails_here_and_the_session_stays(net: Tweeter, terminals) -> None:
    alice: Terminal = terminals(net.port, rows=40, columns=120)
    alice.register("@alice")
    paste = "x" * 5000
    alice.type("say \x1b[200~")                     # a bracketed paste, as terminals send it
    for start in range(0, len(paste), 500):
        alice.type(paste[start:start + 500])
    alice.type("\x1b[201~\r")
    alice.shows(r"^FAILURE TOO_LONG: a say has at most 140 characters, this one has 5000; "
                r"nothing was sent$")
    alice.at_prompt("@alice> ")
    alice.enter("online")
    alice.shows(r"^  @alice$")
    assert net.tracker_proc is not None
    assert "TOO_LARGE" not in net.tracker_proc.text()


def test_apostrophes_and_backslashes_round_trip_exactly(net: Tweeter, terminals) -> None:
    users = net.users("@bob", "@carol")
    bob, carol = users["@bob"], users["@carol"]
    alice: Terminal = terminals(net.port)
    alice.register("@alice")
    carol.ok("logout")
    texts = ["it's me", r"¯\_(ツ)_/¯", r"C:\Users\alice", r'"quoted" and \"escaped\"',
             "it's 'single' \\n not a newline"]
    for text in texts:
        alice.enter(f"say {text}")
        bob.expect(rf"^\[say\] @alice: {re.escape(text)}$")
        alice.shows(rf"^{STAMP}\[say\] @alice: {re.escape(text)}$")
        alice.at_prompt("@alice> ")
    alice.enter('say "it\'s in quotes"')                       # one quoted string: unquoted
    bob.expect(r"^\[say\] @alice: it's in quotes$")
    alice.enter(r"tweet C:\new\table it's")
    alice.shows(r"^tweet #1 reached 0 followers in ")
    alice.enter(r"message @carol don't \o/")
    alice.shows(r"^SUCCESS: message #\d+ kept for")
    alice.enter("feed")
    alice.shows(r"^  #1 \S+ \S+ @alice: C:\\new\\table it's$")
    carol.login("@carol")
    carol.expect(r"^\[message\] @alice: don't \\o/ \(kept by the tracker")


def test_text_parsing_and_display_rules() -> None:
    assert typed_text("  it's me ") == "it's me"
    assert typed_text('"hello world"') == "hello world"
    assert typed_text("'say \"hi\"'") == 'say "hi"'
    assert typed_text('"a" and "b"') == '"a" and "b"'          # two strings: as typed
    assert typed_text('"unclosed') == '"unclosed'
    assert typed_text('""') == ""
    assert typed_text(r"C:\Users") == r"C:\Users"
    assert split_first("@bob   two  words ") == ("@bob", "two  words")
    assert split_first("") == ("", "")
    assert as_typed(r"¯\_(ツ)_/¯") == r"¯\_(ツ)_/¯"
    assert as_typed("a\x1b[2Jb\\") == "a\\x1b[2Jb\\"               # controls still visible
    assert as_typed("line\nbreak\u202e") == "line\\nbreak\\u202e"
    assert escape_for_terminal("a\\b") == "a\\\\b"                 # logs stay unambiguous
    assert [plural(n, "follower") for n in (0, 1, 2)] == ["0 followers", "1 follower",
                                                          "2 followers"]


# ---- what people expect ----------------------------------------------------------------------
def test_colour_on_a_terminal_and_none_with_no_color(net: Tweeter, terminals) -> None:
    bob = net.users("@bob")["@bob"]
    alice: Terminal = terminals(net.port, colour=True)
    alice.register("@alice")
    alice.enter("follow @nobody")
    alice.shows(r"^FAILURE UNKNOWN_HANDLE:")
    alice.type("half")
    bob.ok("follow @bob @alice")
    alice.shows(rf"^{STAMP}\[notice\] you were followed by @bob$")
    alice.at_prompt("@alice> ", "half")             # the coloured prompt redrawn, same width
    rows = alice.rows()

    def colour_at(text: str, offset: int = 0) -> str:
        y = next(i for i, row in enumerate(rows) if text in row)
        return alice.screen.buffer[y][rows[y].index(text) + offset].fg
    assert colour_at("SUCCESS: @alice registered") == "green"
    assert colour_at("FAILURE UNKNOWN_HANDLE") == "red"
    assert colour_at("[notice]") == "brown"                 # pyte's name for SGR 33
    assert colour_at("@bob", 0) == "cyan"
    assert alice.screen.buffer[alice.cursor[1]][0].fg == "green"        # the prompt's handle
    plain: Terminal = terminals(net.port)                   # NO_COLOR=1
    plain.register("@plain")
    plain.enter("follow @nobody")
    plain.shows(r"^FAILURE UNKNOWN_HANDLE:")
    assert not re.search(r"\x1b\[[0-9;]*m", plain.written)


def test_history_is_kept_between_runs_in_the_home_folder(net: Tweeter, terminals,
                                                         tmp_path: Path) -> None:
    first: Terminal = terminals(net.port)
    first.at_prompt("tweeter> ")
    first.enter("query handles")
    first.shows(r"^0:$")
    first.at_prompt("tweeter> ")
    first.enter("quit")
    assert first.wait_end() == 0
    saved = tmp_path / ".tweeter_history"
    assert "query handles" in saved.read_text(encoding="utf-8")
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    second: Terminal = terminals(net.port)
    second.at_prompt("tweeter> ")
    second.type("\x1b[A\x1b[A")                                # Up twice: quit, then query
    second.at_prompt("tweeter> ", "query handles")


def test_completion_adds_a_space_and_knows_handles_and_hashtags(net: Tweeter,
                                                                terminals) -> None:
    users = net.users("@bob", "@carol")
    alice: Terminal = terminals(net.port)
    alice.register("@alice")
    alice.enter("follow carol")                                # not a handle: refused
    alice.at_prompt("@alice> ")
    alice.type("que\t")
    alice.at_prompt("@alice> ", "query ")                      # a space after the command
    alice.type("\x15fol\t")
    alice.at_prompt("@alice> ", "follow")                      # follow, followers, following
    alice.type(" @alice @\t\t")                                # twice Tab: the choices
    alice.shows(r"^@bob\s+@carol\s*$")
    alice.at_prompt("@alice> ", "follow @alice @")
    alice.type("c\t")
    alice.at_prompt("@alice> ", "follow @alice @carol ")
    alice.enter()
    alice.shows(r"^SUCCESS: @alice now follows @carol")
    alice.type("follow @alice \t")                             # one handle left to follow
    alice.at_prompt("@alice> ", "follow @alice @bob ")
    alice.type("\x15")
    users["@carol"].tweet("@carol", "learning #Python today")
    alice.shows(r"^\d\d:\d\d tweet #\d+ by @carol via @carol: learning #Python today$")
    alice.type("search #py\t")
    alice.at_prompt("@alice> ", "search #python ")
    alice.type("\x15/he\t")
    alice.at_prompt("@alice> ", "/help ")


def test_exit_asks_before_deleting_an_account(net: Tweeter, terminals) -> None:
    bob = net.users("@bob")["@bob"]
    alice: Terminal = terminals(net.port)
    alice.register("@alice")
    alice.enter("exit")
    question = "Delete @alice for good (account, follows, tweets)? quit only logs out. [y/N] "
    alice.at_prompt(question)
    alice.enter("n")
    alice.shows(r"^exit cancelled: @alice is kept$")
    alice.at_prompt("@alice> ")
    alice.enter("exit")
    alice.at_prompt(question)
    alice.type("\x03")                                         # Ctrl-C answers no
    alice.wait_until(lambda: alice.rows().count("exit cancelled: @alice is kept") == 2,
                     "a second cancel")
    bob.ok("query handles")
    bob.expect(r"^2: @alice @bob$")
    alice.enter("exit")
    alice.at_prompt(question)
    alice.enter("y")
    alice.shows(r"^bye$")
    assert alice.wait_end() == 0
    bob.ok("query handles")
    bob.expect(r"^1: @bob$")


def test_help_is_one_line_a_command_and_slash_commands_work(net: Tweeter) -> None:
    user: User = net.user("@a")
    user.send("help")
    user.expect(r"^Commands ")
    listed = [user.expect(r"^  (\S+)").group(1) for _ in range(22)]
    assert listed[:5] == ["register", "login", "logout", "quit", "exit"]
    assert "EOF" not in listed and len(set(listed)) == 22
    user.send("/help follow")
    user.expect(r"^follow \[@you\] @handle — start following @handle")
    user.fails("help nothing", "UNKNOWN_COMMAND")
    user.send("rings")
    user.expect(r"^no rings: not logged in$")
    user.register("@a")
    user.send("/quit")
    assert user.wait() == 0
    assert "EOF" not in user.text() and "Undocumented" not in user.text()
