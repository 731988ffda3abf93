"""The terminal side of user.py: every line it prints goes through :class:`Console`.

How a line reaches the screen::

    any thread ──say(text)──> OutputQueue ──> writer thread: _draw(text)
                                                │ on a terminal: the time before an incoming
                                                │ line, colour unless NO_COLOR is set
                                                │ the input line on screen?  clear its rows,
                                                │ write the line above it, draw the prompt and
                                                └ what was typed again, cursor where it was
    (a script's pipe that takes the line at once, and nothing waiting: written by the thread
     that says it, as _draw would write it)

The writer must know what the last rows of the screen hold, so the main thread (the one that
reads commands) tells it: :data:`PLAIN` (nothing: lines are written as they come),
:data:`COMING` (readline is about to draw the prompt: the writer waits for it),
:data:`READING` (readline shows the prompt and the line being typed) or :data:`MASKED` (a
password prompt with one star per key).  When standard output is not a terminal (scripts,
tests, ``tools/demo.py``) every line is written exactly as it was said: no time, no colour.

Also here: masked password entry that Ctrl-C and Ctrl-D cancel (:meth:`Console.read_password`)
and the command history kept between runs (:class:`History`).

The trace records of the session go through :class:`CommandTrace`, which writes the
``--trace-file`` and keeps the last command's records for the ``diagram`` command.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from typing import TextIO

from adapters.output import FloodLines, OutputQueue, pipe_writer
from adapters.trace_file import TraceWriter
from protocol.trace import TraceRecord
from protocol.validate import is_handle

KEPT_RECORDS = 2000         # at most this many records of the last command kept, for `diagram`

# What the last rows of the terminal show (see the module's docstring).
PLAIN, COMING, READING, MASKED = "plain", "coming", "reading", "masked"
PROMPT_WAIT = 1.0       # seconds the writer waits for readline to draw a prompt it was promised

# Lines that arrive rather than answer: they get the time on a terminal.
INCOMING = re.compile(r"^(?:tweet #\d+ by |\[(?:notice|say|message)\] )")
HANDLE_WORD = re.compile(r"(?<![\w@])@[A-Za-z]{1,15}(?![A-Za-z])")

# ANSI colours (SGR), for a terminal that did not ask for none.
RESET, BOLD, DIM = "\x1b[0m", "\x1b[1m", "\x1b[2m"
GREEN, RED, YELLOW, MAGENTA, CYAN = "\x1b[32m", "\x1b[1;31m", "\x1b[33m", "\x1b[35m", "\x1b[36m"
TAG_COLOURS = {"[notice]": YELLOW, "[say]": MAGENTA, "[message]": BOLD + CYAN}
LINE_HEAD = re.compile(r"SUCCESS\b|FAILURE [A-Z_]+:|\[(?:notice|say|message)\]|tweet #\d+")


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
        super().__init__(writer.stream, writer.owner, writer.clock)
        self.keep = keep
        self._kept: list[TraceRecord] = []
        self.last: list[TraceRecord] = []       # the last command's records, once another began
        self._kept_lock = threading.Lock()

    def record(self, direction: str, src: str, dst: str, kind: str, summary: str = "") -> None:
        if self.keep:
            entry = TraceRecord(self.clock(), self.owner, direction, src, dst, kind, summary)
            with self._kept_lock:
                if len(self._kept) < KEPT_RECORDS:
                    self._kept.append(entry)
        super().record(direction, src, dst, kind, summary)

    def name_lifeline(self, handle: str) -> None:
        """This user is ``handle`` now: records name it so from here on.  The first time, an
        ``alias`` record tells ``protocol.diagram`` that the lifeline the tracker knew by this
        connection's address is this handle."""
        if not is_handle(self.owner):
            self.record("send", self.owner, handle, "alias")
        self.rename(handle)

    def command_started(self) -> None:
        """What was kept so far becomes the last command's, unless nothing was."""
        with self._kept_lock:
            if self._kept:
                self.last, self._kept = self._kept, []


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:                  # closed
        return False


def wants_colour(stream: object = sys.stdout) -> bool:
    """Colour only for a terminal, and not when the user asked for none (https://no-color.org)."""
    return _is_terminal(stream) and not os.environ.get("NO_COLOR") \
        and os.environ.get("TERM") != "dumb"


def dress(text: str, stamp: str | None, colour: bool, own: str | None = None) -> str:
    """A line as a terminal shows it: ``stamp`` (e.g. "14:05") before an incoming line, and
    colours: SUCCESS green, FAILURE red, notices, says and messages by their tag, your own
    handle green and other handles cyan, trace lines dim."""
    incoming = INCOMING.match(text) is not None
    if colour:
        text = _coloured(text, own)
    if stamp and incoming:
        text = f"{DIM}{stamp}{RESET} {text}" if colour else f"{stamp} {text}"
    return text


def _coloured(text: str, own: str | None) -> str:
    if text.startswith("[trace]"):
        return f"{DIM}{text}{RESET}"
    head = LINE_HEAD.match(text)
    lead = ""
    if head:
        word = head.group()
        shade = (GREEN if word == "SUCCESS" else RED if word.startswith("FAILURE")
                 else TAG_COLOURS.get(word, BOLD))
        lead, text = f"{shade}{word}{RESET}", text[head.end():]

    def handle(match: re.Match[str]) -> str:
        mine = own is not None and match.group().lower() == own.lower()
        return f"{BOLD + GREEN if mine else CYAN}{match.group()}{RESET}"
    return lead + HANDLE_WORD.sub(handle, text)


def cells(text: str) -> int:
    """How many terminal columns ``text`` takes (wide East Asian letters two, accents none)."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def visible(prompt: str) -> str:
    """A readline prompt without its invisible parts (colours between \\001 and \\002)."""
    return re.sub(r"\001[^\002]*\002", "", prompt)


def erase_rows(shown: str, columns: int) -> str:
    """Escape codes that erase ``shown`` (cursor at its end), leaving the cursor where it began.

    A terminal wraps a long input line over several rows; all of them are cleared."""
    above = max(cells(shown) - 1, 0) // max(columns, 1)
    return "\r" + (f"\x1b[{above}A" if above else "") + "\x1b[J"


class ReadlineScreen:
    """The rows where readline shows its prompt and the line being typed.

    GNU readline can clear those rows (``rl_clear_visible_line``: every row of a wrapped line,
    whatever the cursor's place) and draw them again from scratch (``rl_forced_update_display``:
    the prompt, the text, the cursor where it was, a Ctrl-R search as a search).  Python's
    readline module does not offer these two calls, so they are reached through ctypes in the
    library it is linked with.  With another library (libedit on macOS) the rows are worked out
    from the prompt and the text, the cursor assumed at the end of the line.

    Readline is not thread-safe: these calls come from the writer thread while the main thread
    sits in readline's select() waiting for a key.  They are made only in :data:`READING`, and
    only while readline still holds a line (``active``); a key handled in the very microseconds
    of a redraw could still mix the two, which is the price of printing while someone types.
    """

    RL_STATE_CALLBACK = 0x0080000     # readline is between showing a prompt and taking the line

    def __init__(self) -> None:
        import readline
        self.readline = readline
        self.prompt = ""
        self._gnu = None
        try:
            import ctypes
            library = ctypes.CDLL(readline.__file__)      # its symbols and its library's
            self._clear, self._redraw = (library.rl_clear_visible_line,
                                         library.rl_forced_update_display)
            self._state = ctypes.c_ulong.in_dll(library, "rl_readline_state")
            self._fflush = ctypes.CDLL(None).fflush      # readline writes through C's stdio
            self._gnu = library
        except (ImportError, OSError, AttributeError, ValueError):
            pass

    def active(self) -> bool:
        """Whether readline is still taking a line (GNU only; else the caller's word counts)."""
        return self._gnu is None or bool(self._state.value & self.RL_STATE_CALLBACK)

    def clear(self, out: TextIO) -> None:
        if self._gnu is not None:
            self._clear()
            self._fflush(None)
        else:
            shown = visible(self.prompt) + self.readline.get_line_buffer()
            out.write(erase_rows(shown, shutil.get_terminal_size().columns))

    def redraw(self, out: TextIO) -> None:
        if self._gnu is not None:
            out.flush()
            self._redraw()
        else:
            out.write(visible(self.prompt) + self.readline.get_line_buffer())


class Console:
    """All output goes through here: one line at a time, and never through a half-typed command.

    Lines go through an :class:`OutputQueue`: a terminal that stops reading never holds up the
    thread that prints (the ring's selector thread acks and forwards whatever the terminal
    does).  ``interactive`` means a person at a terminal: the prompt is redrawn around incoming
    lines, those get the time, and with ``colour`` every line is coloured.
    """

    def __init__(self, interactive: bool, quiet: bool, records: TraceWriter | None = None,
                 colour: bool = False, clock: Callable[[], float] = time.time) -> None:
        self.interactive, self.quiet, self.colour, self.clock = interactive, quiet, colour, clock
        # --trace-file, if given; the last command's records are kept for `diagram` unless
        # nobody could look (no terminal, no trace wanted): ring hops then cost no trace work.
        writer = records or TraceWriter(None, "user")
        self.records = CommandTrace(writer, interactive or not quiet or writer.stream is not None)
        self.own_handle: str | None = None      # shown in its own colour
        self.on_line: Callable[[str], None] | None = None      # sees every line said
        self.screen = ReadlineScreen() if interactive else None
        self._mode = PLAIN
        self._masked = ""                        # a password prompt and its stars
        self._screen_lock = threading.Condition()
        self._held: list[str] | None = None     # notices kept back while a command runs
        self._lock = threading.Lock()
        # With a terminal at either end every line goes through the writer thread's _draw: it
        # redraws the prompt, or the masked password being typed, around the line.  Into a pipe
        # from a script (tools/demo.py, tests), _draw only writes the line, so a line the pipe
        # takes at once is written by the thread that says it (adapters.output.pipe_writer).
        write_now = None if interactive or _is_terminal(sys.stdin) else pipe_writer(sys.stdout)
        self.output = OutputQueue(self._draw, name="console", write_now=write_now)
        self._floods = FloodLines(self.output.put)

    def show_lines_to(self, reader: Callable[[str], None]) -> None:
        """Let ``reader`` see every line said from now on (the shell learns words to complete
        from them); it is called on the thread that says the line."""
        self.on_line = reader

    def highlight(self, handle: str | None) -> None:
        """Colour ``handle`` as this user's own in the lines to come (None: nobody's)."""
        self.own_handle = handle

    # ---- saying ----------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if self.on_line is not None:
            self.on_line(text)
        self.output.put(text)

    def _draw(self, text: str) -> None:
        """Write one line (the writer thread only), above the input line if one is shown."""
        if self.interactive:
            stamp = time.strftime("%H:%M", time.localtime(self.clock()))
            text = dress(text, stamp, self.colour, self.own_handle)
        out = sys.stdout
        with self._screen_lock:
            if self._mode == COMING and not self._screen_lock.wait_for(
                    lambda: self._mode != COMING, PROMPT_WAIT):
                self._mode = PLAIN          # the prompt never came (input ended): plain lines
            if self._mode == READING and self.screen is not None and self.screen.active():
                self.screen.clear(out)
                out.write(text + "\n")
                self.screen.redraw(out)
            elif self._mode == MASKED:      # raw mode: a newline must bring its own return
                out.write(erase_rows(self._masked, shutil.get_terminal_size().columns)
                          + text + "\r\n" + self._masked)
            else:
                out.write(text + "\n")
            out.flush()

    @property
    def tracing(self) -> bool:
        """Whether trace lines or trace records are wanted at all."""
        return not self.quiet or self.records.stream is not None or self.records.keep

    def trace(self, text: str, kind: str | None = None) -> None:
        """A trace line; lines of one ``kind`` (e.g. drops from one address) are summarised."""
        if self.quiet:
            return
        if kind is None:
            self.output.put(f"[trace] {text}")
            return
        self._floods.line(kind, f"[trace] {text}")

    def tick(self) -> None:
        """Say the summaries of periods that are over (called now and then)."""
        self._floods.tick()

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

    # ---- what the input rows show (the main thread tells the writer) -----------------------
    def _set_mode(self, mode: str) -> None:
        if not self.interactive:
            return
        with self._screen_lock:
            self._mode = mode
            self._screen_lock.notify_all()

    def prompt_coming(self, prompt: str) -> None:
        """Everything said so far is on screen and ``input(prompt)`` is next: lines that come
        meanwhile wait until readline has drawn the prompt, then go above it."""
        if not self.interactive:
            return
        self.output.flush()
        if self.screen is not None:
            self.screen.prompt = prompt
        self._set_mode(COMING)

    def prompt_shown(self) -> None:
        """Readline drew the prompt (its pre-input hook)."""
        self._set_mode(READING)

    def prompt_gone(self) -> None:
        """Readline returned the line (or was interrupted): lines go out as they come."""
        self._set_mode(PLAIN)

    @property
    def reading(self) -> bool:
        return self._mode == READING

    # ---- passwords -------------------------------------------------------------------------
    def read_password(self, prompt: str) -> str | None:
        """A password typed at the terminal, masked with one star per key (``stdiomask``);
        None when Ctrl-C or Ctrl-D cancels it.  Backspace and Ctrl-U edit it."""
        self.output.flush()
        try:
            import stdiomask
        except ImportError:
            return self._read_password_unechoed(prompt)
        import termios
        import tty
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
        typed: list[str] = []
        cancelled = False
        self._show_masked(prompt, "")
        try:
            # Echo off between keys too (stdiomask's getch is raw only while it reads one), so
            # fast typing never shows a letter; Ctrl-C then arrives as a key, or as SIGINT.
            tty.setcbreak(fd)
            while True:
                key = stdiomask.getch()
                if key in ("\r", "\n"):
                    break
                if key in ("", "\x03", "\x04"):         # end of input, Ctrl-C, Ctrl-D
                    cancelled = True
                    break
                if key == "\x1b":                       # an arrow or function key:
                    self._skip_escape_sequence(stdiomask.getch)    # not part of a password
                elif key in ("\x7f", "\b"):
                    if typed:
                        typed.pop()
                        self._show_masked(prompt, "*" * len(typed))
                elif key == "\x15":                     # Ctrl-U: start again
                    typed.clear()
                    self._show_masked(prompt, "")
                elif key.isprintable():
                    typed.append(key)
                    self._show_masked(prompt, "*" * len(typed))
        except KeyboardInterrupt:
            cancelled = True
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            self._end_masked("^C" if cancelled else "")
        return None if cancelled else "".join(typed)

    @staticmethod
    def _skip_escape_sequence(getch: Callable[[], str]) -> None:
        """Read the rest of a key's escape sequence (ESC [ A, ESC O P, ESC [ 1 5 ~)."""
        if getch() not in ("[", "O"):
            return
        while True:
            key = getch()
            if not key or key.isalpha() or key == "~":
                return

    def _read_password_unechoed(self, prompt: str) -> str | None:
        """Without stdiomask (SPEC §4): the standard library's unechoed entry."""
        import getpass
        self.say("(stdiomask is not installed: the password is read unechoed)")
        self.output.flush()
        try:
            return getpass.getpass(prompt)
        except (EOFError, KeyboardInterrupt):
            self.say("^C")
            return None

    def _show_masked(self, prompt: str, stars: str) -> None:
        with self._screen_lock:
            erase = erase_rows(self._masked, shutil.get_terminal_size().columns) \
                if self._mode == MASKED else ""
            self._masked = prompt + stars
            self._mode = MASKED
            sys.stdout.write(erase + self._masked)
            sys.stdout.flush()

    def _end_masked(self, last: str) -> None:
        with self._screen_lock:
            self._mode = PLAIN
            sys.stdout.write(last + "\n")
            sys.stdout.flush()


class History:
    """The commands typed at the terminal, kept between runs in a file (``~/.tweeter_history``).

    Loaded at start; at the end only this run's new lines are appended, so two sessions at once
    both keep theirs.  The file keeps the last ``limit`` lines and only its owner may read it
    (a direct message typed is in it; passwords never are: they are not read by readline).
    """

    def __init__(self, path: str, limit: int = 1000) -> None:
        import readline
        self.readline, self.path, self.limit = readline, path, limit
        self.start = 0

    def load(self) -> None:
        with contextlib.suppress(OSError):
            self.readline.read_history_file(self.path)
            if self.readline.get_current_history_length() > self.limit:
                self.readline.set_history_length(self.limit)
                self.readline.write_history_file(self.path)     # trimmed to the limit
        self.readline.set_history_length(self.limit)
        self.start = self.readline.get_current_history_length()

    def save(self) -> None:
        new = self.readline.get_current_history_length() - self.start
        if new <= 0:
            return
        with contextlib.suppress(OSError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            self.readline.append_history_file(min(new, self.limit), self.path)
            self.start += new
