"""A Tweeter user: an interactive shell, a session with the tracker, and a peer in logical rings.

How data flows::

    terminal / pipe ──> UserShell (cmd.Cmd)          one command a line
                          │  TrackerLink.request()   TCP, JSON lines, reply matched by id and
                          │                          typed (protocol.messages: TweetReply, …);
                          │                          a reader thread takes replies, and pushes
                          │                          for on_push (PresencePush, SayPush, …)
                          └─ PeerNode                three UDP sockets, one selector thread,
                               │                     around the ring's state machine:
                               └─ protocol.peer.RingPeer  every rule of the ring, no I/O
                               left   <── ring traffic from the left neighbour (tweets, detours)
                               middle <── ring control from authors (setup, teardown), messages
                               right  ──> ring traffic to the right neighbour (acks come back here)
    every line printed ──> Console (adapters/console.py): one writer thread, above the prompt

A login makes fresh keys (``protocol.auth``): the tracker hands their public half out with this
user's tuple, and every datagram carries a MAC only its two ends can make.  A tweet: the shell asks
the tracker (``tweet``), gets the online followers (with their keys) and starts the round in the
peer, which sends the setups the planner asks for, then the signed text to the first follower.
Each follower passes it on and shows it; when it is home on the author's left port the peer says
how the round went, and the shell sends ``end-tweet`` with the followers it cannot vouch for —
the tracker sends those the tweet itself.  Every datagram is sent again, after a round-trip
estimate, until it is acknowledged (see ``protocol/PROTOCOL.md`` §3–§4).

Each command reads the typed reply it expects (``isinstance(reply, TweetReply)``): a reply that
is not what the protocol says reaches it as ``FAILURE BAD_REPLY``, decided once, by the link.
The shell catches nothing else, so that a bug in it is a bug, not a "tracker fault".

Run: ``python3 user.py [tracker-ip [tracker-port]] [-q]``.  At a terminal: a prompt naming the
handle, line editing, Tab completion, history kept in ``~/.tweeter_history``, colour, and the time
before incoming lines.  When standard input is not a terminal the same commands are read one a
line, with no prompt, and every line is printed plain, as scripts and tests expect.
"""

from __future__ import annotations

import argparse
import cmd
import contextlib
import errno
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from adapters import cli
from adapters.console import HANDLE_WORD, Console, History, clock_time, wants_colour
from adapters.peer_node import PeerNode
from adapters.trace_file import TraceFileError, TraceWriter, open_trace_file
from adapters.tracker_link import REQUEST_TIMEOUT, TrackerLink, no_tracker
from protocol import limits
from protocol.address import parse_port
from protocol.auth import SessionKeys
from protocol.diagram import build, render_text, text_width_needed
from protocol.messages import (
    Answer,
    ExitReply,
    Failure,
    FollowedPush,
    FollowReply,
    ListReply,
    LoginReply,
    MessagePush,
    MessageReply,
    Notice,
    OnlineReply,
    PeerPush,
    PresencePush,
    QueryHandlesReply,
    RegisterReply,
    SayPush,
    TrendingReply,
    TweetPush,
    TweetReply,
    TweetsReply,
)
from protocol.peer import PeerConfig
from protocol.ring import Peer
from protocol.store import Tweet
from protocol.text import as_typed
from protocol.validate import (
    check_handle,
    check_ipv4,
    check_text,
    handle_key,
    hashtags,
    is_handle,
)
from protocol.wire import Request, encode_request

INTRO = "Tweeter — type help for the commands, Tab to complete, quit to leave."
HISTORY_FILE = ".tweeter_history"       # in the home folder
HANDLES_FRESH = 30.0    # seconds a `query handles` done for completion is reused
KNOWN_MAX = 10_000      # handles and hashtags remembered for completion
PAGE_PAUSE = 0.2        # seconds before asking again for a page refused as THROTTLED
PAGED = (QueryHandlesReply, ListReply, TweetsReply)     # replies that come in pages

# The commands in the order `help` lists them; other spellings people type.
COMMANDS = ("register", "login", "logout", "quit", "exit", "query", "online", "follow", "drop",
            "followers", "following", "tweet", "retweet", "feed", "search", "trending", "say",
            "message", "block", "unblock", "rings", "help")
ALIASES = {"msg": "message"}
AnswerT = TypeVar("AnswerT", bound=Answer)


def plural(count: int, noun: str) -> str:
    """``1 follower``, ``2 followers``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def split_first(arg: str) -> tuple[str, str]:
    """The first word of ``arg`` and the rest of it exactly as typed (inner spaces kept)."""
    parts = arg.strip().split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1] if len(parts) == 2 else ""


def typed_text(text: str) -> str:
    """The text of a tweet, ``say`` or message: the rest of the line, as typed.

    Quotes are optional: one quoted string (``"…"`` or ``'…'`` with no such quote inside) stands
    for what it holds, so ``say "hi there"`` and ``say hi there`` say the same.  Nothing else is
    interpreted: apostrophes and backslashes stay as typed (``say it's C:\\Users``).
    """
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'" \
            and text[0] not in text[1:-1]:
        return text[1:-1]
    return text


def frame_fits(cmd_name: str, **args: Any) -> bool:
    """Whether a request fits in one tracker frame (the longest id counted)."""
    return len(encode_request(Request(2**53 - 1, cmd_name, args))) <= limits.FRAME_MAX

MIN_WIDTH = 40                  # columns the diagram command draws in, whatever the terminal


def page_items(reply: Answer) -> tuple[Any, ...]:
    """What one page of a list holds: tweets for feed and search, handles for the others."""
    if isinstance(reply, TweetsReply):
        return reply.tweets
    if isinstance(reply, QueryHandlesReply | ListReply):
        return reply.handles
    return ()


class UserShell(cmd.Cmd):
    intro = None            # said by loop(), through the console

    def __init__(self, connect: Callable[[], TrackerLink], node: PeerNode, console: Console,
                 args: argparse.Namespace) -> None:
        super().__init__()
        self.connect_link, self.node, self.console = connect, node, console
        self.link: TrackerLink | None = None
        self.password_file: str | None = args.server_password_file
        self.handle: str | None = None
        # Words for completion, by key (handles are case-insensitive): learnt from every line.
        self.known_handles: dict[str, str] = {}
        self.known_tags: set[str] = set()
        self.follows: dict[str, str] = {}           # the handles this user follows, by key
        self._handles_asked = -HANDLES_FRESH
        self.interrupted_line: str | None = None    # what was typed when Ctrl-C came
        if console.interactive:         # completion is for people; pipes need no vocabulary
            console.show_lines_to(self.learn)
        self._stop_heartbeat = threading.Event()
        self._receipts: list[int] = []          # direct messages shown, not yet told
        self._receipts_lock = threading.Lock()
        self.busy = False                       # a command is running
        threading.Thread(target=self._heartbeat, args=(args.heartbeat,), name="heartbeat",
                         daemon=True).start()
        if not console.interactive:
            self.use_rawinput = False
        self.prompt = self.make_prompt()

    def make_prompt(self) -> str:
        """``@alice> `` once logged in, ``tweeter> `` before; nothing when reading a pipe.  The
        colour codes sit between \\001 and \\002, so that readline knows they take no room."""
        if not self.console.interactive:
            return ""
        name = self.handle or "tweeter"
        if self.console.colour:
            return f"\001\x1b[1;32m\002{name}\001\x1b[0m\002> "
        return f"{name}> "

    # ---- the tracker session ---------------------------------------------------------------
    def connect(self) -> Failure | None:
        """Open the session: connect, read the welcome, give the server password if asked.
        None when it is open; else the failure that says why not."""
        try:
            self.link = self.connect_link()
        except OSError as error:
            return no_tracker(f"cannot reach the tracker: {error.strerror or error}")
        welcome = self.link.wait_welcome()
        if welcome is None:
            return self.link.farewell or no_tracker("the tracker did not greet")
        if welcome.password_required:
            return self.admit()
        return None

    def ensure_connected(self) -> Failure | None:
        """A session that the tracker (or the network) ended is replaced by a new one, not
        logged in; its rings are left.  The failure if the tracker cannot be reached."""
        if self.link is not None and not self.link.closed:
            return None
        if self.handle:
            self.leave_rings()          # announced when it happened (on_link_closed)
        return self.connect()

    def request(self, cmd_name: str, **args: Any) -> Answer:
        """Ask the tracker; if it had closed the session, open a new one first."""
        problem = self.ensure_connected()
        if problem is not None:
            return problem
        assert self.link is not None
        reply = self.link.request(cmd_name, **args)
        if isinstance(reply, Failure) and reply.code == "NO_TRACKER" and self.link.closed \
                and not self.handle and self.link.farewell is not None \
                and self.link.farewell.code == "REGISTER_TIMEOUT":
            # The tracker closed the unused connection as this request left (a password
            # typed slowly): it was not served, so it goes once more on a new session.
            problem = self.connect()
            reply = problem or self.link.request(cmd_name, **args)
        return reply

    def text_request(self, cmd_name: str, what: str, text: str, **fields: Any) -> Answer:
        """Ask the tracker about a typed text.  One too long for any frame (a paste) fails here
        with the reason the tracker gives for a long text: sent, the frame would end the session.
        Any other text is for the tracker to judge."""
        if len(text) > limits.TWEET_MAX and not frame_fits(cmd_name, **fields, text=text):
            code, message = check_text(text, what) or ("TOO_LONG", f"that {what} is too long")
            return Failure(code=code, message=f"{message}; nothing was sent")
        return self.request(cmd_name, **fields, text=text)     # in the wire's field order

    def on_link_closed(self, farewell: Failure | None) -> None:
        """The tracker ended the session (called on the link's reader thread): someone logged
        in is told at once.  The rings are left at the next command, on the main thread."""
        me = self.handle
        why = as_typed(farewell.message) if farewell is not None else None
        if me and why:
            self.console.notice(f"[notice] the tracker ended the session of {me} ({why}); "
                                "log in again")
        elif me:
            self.console.notice(f"[notice] lost the tracker: {me} is offline; "
                                "log in again once it is back")
        else:
            self.console.trace(f"the tracker closed the session ({why or 'it went away'}); "
                               "the next command opens a new one")

    def receipt(self, message_id: int) -> None:
        """A direct message was shown: the tracker keeps it until told (``send_receipts``).
        Any thread; never blocks."""
        with self._receipts_lock:
            self._receipts.append(message_id)

    def send_receipts(self) -> None:
        """Tell the tracker which direct messages were shown.  At known moments — after each
        command, before a logout, with the heartbeat when idle — so that they never cross a
        command's own requests."""
        with self._receipts_lock:
            receipts, self._receipts = self._receipts, []
        link = self.link
        for message_id in receipts:
            if link is not None and not link.closed:
                link.request("message-received", message_id=message_id)

    def _heartbeat(self, interval: float) -> None:
        """While logged in, tell the tracker now and then that this session is alive.  Its
        answers are never shown: nobody asked, and a lost tracker is announced by the link."""
        while not self._stop_heartbeat.wait(interval):
            link = self.link
            if self.handle and link is not None and not link.closed:
                if not self.busy:
                    self.send_receipts()
                reply = link.request("heartbeat")
                if isinstance(reply, Failure):
                    self.console.trace(f"heartbeat: {reply.code}: {reply.message}")

    def close(self) -> None:
        self._stop_heartbeat.set()
        if self.link is not None:
            self.link.close()
        self.node.close()

    # ---- the loop, and what the terminal shows -----------------------------------------------
    def loop(self) -> None:
        """Read commands until quit, exit or the end of the input.  At a terminal, Ctrl-C drops
        a half-typed line; at an empty prompt, or while a command runs, it logs out and ends
        as quit does."""
        if self.console.interactive:
            self.console.say(INTRO)
        while True:
            self.interrupted_line = None
            try:
                self.cmdloop()
                return
            except KeyboardInterrupt:
                self.console.prompt_gone()
                self.console.release()
                self.console.say("^C" if self.console.interactive else "")
                if self.interrupted_line and self.interrupted_line.strip():
                    continue            # the line is dropped; a fresh prompt
                self.do_quit("")        # logged out, nothing deleted
                return

    def on_interrupt(self, signum: int, frame: object) -> None:
        """SIGINT (Ctrl-C): note what was typed, while readline still holds it."""
        if self.console.reading:
            import readline
            self.interrupted_line = readline.get_line_buffer()
        raise KeyboardInterrupt

    def preloop(self) -> None:
        self.console.prompt_coming(self.prompt)

    def parseline(self, line: str) -> tuple[str | None, str | None, str]:
        """As cmd.Cmd's, and ``/help``, ``/quit`` … (a leading slash, as in chat clients) and
        the aliases (``msg``) name their commands."""
        line = line.strip()
        if line.startswith("/"):
            line = line[1:]
        name, arg, line = super().parseline(line)
        if name in ALIASES:
            name = ALIASES[name]
            line = f"{name} {arg}"
        return name, arg, line

    def precmd(self, line: str) -> str:
        self.busy = True
        self.console.prompt_gone()
        self.console.hold()
        self.console.records.command_started()
        if self.handle and (self.link is None or self.link.closed):
            self.leave_rings()          # the tracker went away; the notice said so then
        return line

    def postcmd(self, stop: bool, line: str) -> bool:
        self.console.release()
        self.send_receipts()
        self.busy = False
        self.console.highlight(self.handle)
        self.prompt = self.make_prompt()
        if not stop:
            self.console.prompt_coming(self.prompt)
        return stop

    def emptyline(self) -> bool:
        return False

    def default(self, line: str) -> bool:
        self.console.say(f"FAILURE UNKNOWN_COMMAND: {as_typed(line.split()[0])} — type help")
        return False

    def show(self, reply: AnswerT) -> AnswerT:
        """Say a reply: ``SUCCESS: …`` or ``FAILURE CODE: …``.  A reply the tracker did not
        understand reached us as ``FAILURE BAD_REPLY`` (``adapters.tracker_link``)."""
        text = as_typed(reply.message)
        self.console.say(f"FAILURE {as_typed(reply.code)}: {text}"
                         if isinstance(reply, Failure) else f"SUCCESS: {text}")
        return reply

    def usage(self, form: str) -> bool:
        return self.fail("USAGE", form)

    def fail(self, code: str, message: str) -> bool:
        """A failure found here, before anything was sent."""
        self.console.say(f"FAILURE {code}: {message}")
        return False

    def not_logged_in(self) -> bool:
        return self.fail("NOT_LOGGED_IN", "log in first (register or login)")

    def ask(self, question: str) -> str:
        """A question at the terminal (the answer is not kept in the history); "" when
        Ctrl-C or Ctrl-D answers it."""
        import readline
        self.console.prompt_coming(question)
        readline.set_auto_history(False)
        try:
            return input(question)
        except (EOFError, KeyboardInterrupt):
            self.console.say("")
            return ""
        finally:
            readline.set_auto_history(True)
            self.console.prompt_gone()

    # ---- completion and help ---------------------------------------------------------------
    def learn(self, line: str) -> None:
        """Remember the handles and hashtags of a line printed, for completion."""
        if line.startswith("FAILURE") or len(self.known_handles) > KNOWN_MAX:
            return                      # a refused handle is no handle to offer
        for handle in HANDLE_WORD.findall(line):
            self.known_handles.setdefault(handle_key(handle), handle)
        if len(self.known_tags) < KNOWN_MAX:
            self.known_tags.update(f"#{tag}" for tag in hashtags(line))

    def refresh_handles(self) -> None:
        """Ask for every handle (`query handles`), at most every 30 s, when completion needs
        the handles one could follow."""
        link = self.link
        if link is None or link.closed or time.monotonic() - self._handles_asked < HANDLES_FRESH:
            return
        self._handles_asked = time.monotonic()
        reply = link.request("query-handles", wait=2.0)
        if isinstance(reply, QueryHandlesReply):
            for handle in reply.handles:
                self.known_handles.setdefault(handle_key(handle), handle)

    @staticmethod
    def matching(text: str, words: list[str]) -> list[str]:
        """The words that start with ``text`` (any case), each with the space that follows."""
        return sorted({f"{word} " for word in words if word.lower().startswith(text.lower())})

    def others(self, leave_out: dict[str, str] | None = None) -> list[str]:
        """Known handles but your own (and those in ``leave_out``)."""
        mine = handle_key(self.handle) if self.handle else None
        known = list(self.known_handles.items())      # a copy: other threads add to it
        return [handle for key, handle in known if key != mine and key not in (leave_out or {})]

    def completenames(self, text: str, *ignored: Any) -> list[str]:
        slash = "/" if text.startswith("/") else ""
        return [f"{slash}{name}" for name in self.matching(text[len(slash):],
                                                            [*COMMANDS, *ALIASES])]

    def completedefault(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        """Handles, or hashtags for a word that starts with #."""
        if text.startswith("#"):
            return self.matching(text, sorted(self.known_tags))
        return self.matching(text, list(self.known_handles.values()))

    def argument_index(self, line: str, begidx: int) -> int:
        """Which argument of the command is being completed (0 is the first)."""
        return len(line[:begidx].split()) - 1

    def complete_follow(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        """You (the course form), then the handles you do not follow yet."""
        self.refresh_handles()
        followable = self.others(self.follows)
        mine = [self.handle] if self.handle and self.argument_index(line, begidx) == 0 else []
        return self.matching(text, mine + followable)

    def complete_drop(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        mine = [self.handle] if self.handle and self.argument_index(line, begidx) == 0 else []
        return self.matching(text, mine + list(self.follows.values()))

    def complete_tweet(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        if self.handle and self.argument_index(line, begidx) == 0 and text.startswith("@"):
            return self.matching(text, [self.handle, *self.others()])
        return self.completedefault(text, line, begidx, endidx)

    def complete_message(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        if self.argument_index(line, begidx) == 0:
            return self.matching(text, self.others())
        return self.completedefault(text, line, begidx, endidx)

    def complete_search(self, text: str, *ignored: Any) -> list[str]:
        return self.matching(text, sorted(self.known_tags))

    def complete_exit(self, text: str, *ignored: Any) -> list[str]:
        return self.matching(text, [self.handle] if self.handle else [])

    def complete_help(self, text: str, *ignored: Any) -> list[str]:
        return self.matching(text, list(COMMANDS))

    def complete_block(self, text: str, *ignored: Any) -> list[str]:
        return self.matching(text, self.others())

    complete_unblock = complete_block
    complete_say = completedefault

    def do_help(self, arg: str) -> bool:
        """help [command] — this list, or more about one command"""
        name = ALIASES.get(arg.strip().lstrip("/"), arg.strip().lstrip("/"))
        if name:
            if name not in COMMANDS:
                return self.fail("UNKNOWN_COMMAND", f"{as_typed(name)} — type help")
            for line in (getattr(self, f"do_{name}").__doc__ or "").splitlines():
                self.console.say(line.strip())
            return False
        summaries = [(getattr(self, f"do_{name}").__doc__ or name).splitlines()[0].split(" — ")
                     for name in COMMANDS]
        width = max(len(form) for form, *_ in summaries)
        self.console.say("Commands (help <command> tells more; /help and /quit work too):")
        for form, *summary in summaries:
            self.console.say(f"  {form:<{width}}  {' — '.join(summary)}")
        return False

    # ---- commands --------------------------------------------------------------------------
    def admit(self) -> Failure | None:
        """Give the tracker its server password: from the file, or asked (masked).  None when
        admitted, else the failure."""
        if self.password_file:
            try:
                with open(self.password_file, encoding="utf-8") as handle:
                    password: str | None = handle.readline().rstrip("\n")
            except OSError as error:
                return Failure(code="NO_PASSWORD_FILE",
                               message=f"{self.password_file}: {error.strerror}")
        else:
            password = self.read_password("server password: ")
        if password is None:
            return Failure(code="CANCELLED", message="no server password given; nothing was sent")
        assert self.link is not None
        reply = self.link.request("auth", password=password)
        if isinstance(reply, Failure):
            return reply
        self.show(reply)
        return None

    def read_password(self, prompt: str) -> str | None:
        """A password: masked on a terminal, the next input line otherwise.  None when the
        person cancelled (Ctrl-C, Ctrl-D) or the input ended."""
        if not sys.stdin.isatty():
            line = sys.stdin.readline()
            return line.rstrip("\n") if line else None
        return self.console.read_password(prompt)

    def _join(self, cmd_name: str, arg: str) -> bool:
        """register or login: bind the three UDP ports, ask the password, ask the tracker."""
        words = arg.split()
        if len(words) not in (1, 5):
            return self.usage(f"{cmd_name} @you [ipv4 left middle right]")
        if self.handle:
            return self.fail("ALREADY_LOGGED_IN", f"this session is already {self.handle}")
        if len(words) == 5:
            ip, port_words = words[1], words[2:]
        else:               # the address the tracker sees this session at (SPEC §3)
            if self.link is None or self.link.closed:
                self.connect()
            if self.link is None or self.link.closed:
                return self.fail("NO_TRACKER", "the connection to the tracker is closed")
            ip, port_words = self.link.local_address, ["0"] * 3
        problem = check_handle(words[0]) or check_ipv4(ip)
        if problem:
            return self.fail(*problem)
        parsed = [parse_port(word, lowest=0) for word in port_words]
        ports = [port for port in parsed if port is not None]
        if len(ports) != len(parsed):
            return self.fail("BAD_PORT", "ports are numbers from 0 to 65535")
        unreachable = self.ensure_connected()     # say so before asking for a password
        if unreachable is not None:
            self.show(unreachable)
            return False
        chosen = [port for port in ports if port]
        if len(set(chosen)) != len(chosen):
            return self.fail("REPEATED_PORTS", "left, middle and right must be three different "
                                               "ports; nothing was sent")
        try:
            left, middle, right = self.node.bind(ip, ports)
        except OSError as error:
            if error.errno == errno.EADDRNOTAVAIL:
                return self.fail("ADDRESS_NOT_LOCAL", f"{ip} is not an address of this host; "
                                                      "nothing was sent")
            return self.fail("PORT_IN_USE", f"cannot bind {ip} {' '.join(port_words)}: "
                                            f"{error.strerror}; nothing was sent")
        password = self.read_password("password: ")
        if password is not None and cmd_name == "register":
            again = self.read_password("password again: ")
            if again is not None and again != password:
                self.node.close()
                return self.fail("PASSWORD_MISMATCH", "the two passwords differ; nothing was sent")
            password = again
        if password is None:
            self.node.close()
            return self.fail("CANCELLED", f"{cmd_name} cancelled; nothing was sent")
        if not password:
            self.node.close()
            return self.fail("BAD_PASSWORD", "a password is needed; nothing was sent")
        keys = SessionKeys.generate()      # every login is a new epoch (SPEC §3)
        reply = self.show(self.request(cmd_name, handle=words[0], ip=ip, password=password,
                                       ports=[left, middle, right], key=keys.public))
        if not isinstance(reply, RegisterReply | LoginReply):
            self.node.close()
            return False
        self.handle = reply.handle                  # as registered
        self.learn(self.handle)
        self.console.records.name_lifeline(self.handle)
        listed = [page for page in self.pages("following") if isinstance(page, ListReply)] \
            if cmd_name == "login" else []
        following = [handle for page in listed for handle in page.handles]
        online = [peer for page in listed for peer in page.peers or ()]
        self.follows = {handle_key(h): h for h in following}
        blocked = reply.blocked if isinstance(reply, LoginReply) else ()
        self.node.start(Peer(self.handle, ip, left, middle, right, keys.public), keys,
                        following, online, blocked)
        self.console.say(f"ports: left={left} middle={middle} right={right}")   # ready now
        return False

    def do_register(self, arg: str) -> bool:
        """register @you [ip L M R] — create an account and come online
        Binds three UDP ports first, left, middle and right (0 = any free port;
        `register @you` alone is 127.0.0.1 0 0 0), then asks for a password twice
        (Ctrl-C cancels)."""
        return self._join("register", arg)

    def do_login(self, arg: str) -> bool:
        """login @you [ip L M R] — come online with your account, at a new address
        Ports as for register.  Says how many tweets are new since your last session."""
        return self._join("login", arg)

    def do_logout(self, arg: str) -> bool:
        """logout — go offline; account, follows and tweets are kept"""
        self.send_receipts()
        if self.show(self.request("logout")).ok:
            self.leave_rings()
        return False

    def leave_rings(self) -> None:
        self.handle = None
        self.follows = {}
        self.node.close()

    def pages(self, cmd_name: str, want: int | None = None, **args: Any) -> list[Answer]:
        """The replies to a list the tracker answers in pages (PROTOCOL.md §1.2): each
        ``next`` asks for the page after it, until the last page, a failure, or ``want``
        items.  A page refused by flood control is asked for again after a pause."""
        cursor = "before" if cmd_name in ("feed", "search") else "after"
        replies = [self.request(cmd_name, **args)]
        found = len(page_items(replies[0]))
        deadline = time.monotonic() + REQUEST_TIMEOUT
        while isinstance(replies[-1], PAGED) and (want is None or found < want):
            after = replies[-1].next
            if after is None or after == args.get(cursor):
                break
            args[cursor] = after
            reply = self.request(cmd_name, **args)
            if isinstance(reply, Failure) and reply.code == "THROTTLED" \
                    and time.monotonic() < deadline:
                time.sleep(PAGE_PAUSE)          # a long list: at the pace flood control allows
                continue
            replies.append(reply)
            found += len(page_items(reply))
        return replies

    def list_pages(self, cmd_name: str, want: int | None = None,
                   **args: Any) -> tuple[Answer, list[Any]]:
        """Ask for a whole list: the first reply, shown, and the items of every page."""
        replies = self.pages(cmd_name, want, **args)
        self.show(replies[0])
        for late in replies[1:]:
            if isinstance(late, Failure):
                self.show(late)
        found = [item for reply in replies for item in page_items(reply)]
        return replies[0], found[:want]

    def do_query(self, arg: str) -> bool:
        """query handles — how many handles are registered, and which"""
        if arg.strip() != "handles":
            return self.usage("query handles")
        reply, handles = self.list_pages("query-handles")
        if isinstance(reply, QueryHandlesReply):
            self.console.say(f"{reply.count}: " + as_typed(" ".join(handles)))
        return False

    def _pair(self, name: str, arg: str) -> bool:
        """follow or drop: ``@you @handle``, or ``@handle`` alone for yourself."""
        words = arg.split()
        if len(words) == 1:
            if not self.handle:
                return self.not_logged_in()
            words = [self.handle, words[0]]
        if len(words) != 2:
            return self.usage(f"{name} [@you] @handle")
        reply = self.show(self.request(name, follower=words[0], followee=words[1]))
        if isinstance(reply, FollowReply):
            self.node.follow(words[1], reply.peer)      # its tuple, when it is online
            self.follows[handle_key(words[1])] = words[1]
        elif reply.ok:
            self.node.unfollow(words[1])   # a follower that left a ring keeps nothing of it
            self.follows.pop(handle_key(words[1]), None)
        return False

    def do_follow(self, arg: str) -> bool:
        """follow [@you] @handle — start following @handle"""
        return self._pair("follow", arg)

    def do_drop(self, arg: str) -> bool:
        """drop [@you] @handle — stop following @handle"""
        return self._pair("drop", arg)

    def actor_and_text(self, arg: str) -> tuple[str | None, str]:
        """``@you text`` (the course form: a handle first, then text) or just ``text``."""
        first, rest = split_first(arg)
        if is_handle(first) and rest:
            return first, typed_text(rest)
        return self.handle, typed_text(arg)

    def do_tweet(self, arg: str) -> bool:
        """tweet [@you] text — a tweet (1-140 characters) to your followers' ring
        The text is the rest of the line, quotes optional: tweet it's done, or
        tweet @you "it's done".  A tweet that starts with a handle needs quotes:
        tweet "@bob was right"."""
        if not arg.strip():
            return self.usage("tweet [@you] text")
        actor, text = self.actor_and_text(arg)
        if actor is None:
            return self.not_logged_in()
        self.run_ring(self.text_request("tweet", "tweet", text, handle=actor))
        return False

    def do_retweet(self, arg: str) -> bool:
        """retweet <id> — tweet "RT @author: text" of tweet <id>"""
        number = arg.strip().removeprefix("#")
        if not number.isdecimal() or not number.isascii():
            return self.usage("retweet <id>")
        self.run_ring(self.request("retweet", tid=int(number)))
        return False

    def run_ring(self, reply: Answer) -> None:
        """After SUCCESS to tweet or retweet: run the ring, then send end-tweet."""
        self.show(reply)
        if not isinstance(reply, TweetReply):
            return
        tid = reply.tid
        result = self.node.run_tweet(tid, reply.text, reply.followers)
        self.show(self.request("end-tweet", handle=self.handle, tid=tid,
                               reached=result.reached, skipped=result.skipped))
        if not result.completed:
            self.console.say(f"tweet #{tid} did not come back in time; the tracker relays it "
                             "to the followers not heard from")
            return
        skipped = f"; skipped {' '.join(result.skipped)}" if result.skipped else ""
        self.console.say(f"tweet #{tid} reached {plural(result.reached, 'follower')} "
                         f"in {result.seconds * 1000:.1f} ms{skipped}")

    def do_exit(self, arg: str) -> bool:
        """exit [@you] — delete your account for good, then leave
        Deletes your handle, account and follows, after tearing your ring down.
        At a terminal it asks first; to leave and keep everything, use quit."""
        words = arg.split()
        if len(words) > 1:
            return self.usage("exit [@you]")
        handle = words[0] if words else self.handle
        if handle is None:
            return self.not_logged_in()
        mine = self.handle is not None and handle_key(handle) == handle_key(self.handle)
        if self.console.interactive and mine:
            answer = self.ask(f"Delete {handle} for good (account, follows, tweets)? "
                              "quit only logs out. [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                self.console.say(f"exit cancelled: {handle} is kept")
                return False
        reply = self.show(self.request("exit", handle=handle))
        if not isinstance(reply, ExitReply):
            return False
        # Those this process set up, and those an earlier process of the handle may have.
        followers = {peer.key: peer for peer in self.node.rings()[0]}
        for peer in reply.followers:
            followers.setdefault(peer.key, peer)
        followers = list(followers.values())
        silent = self.node.teardown(followers)
        if silent:
            self.console.say(f"teardown not acknowledged by {' '.join(silent)}")
        self.console.say(f"ring of {self.handle} torn down ({len(followers) - len(silent)} "
                         f"of {len(followers)} followers acknowledged)")
        if self.show(self.request("exit-complete", handle=handle)).ok:
            self.console.say("bye")
            return True
        return False

    def do_online(self, arg: str) -> bool:
        """online — who is online now; those you follow are marked"""
        reply = self.show(self.request("online"))
        if isinstance(reply, OnlineReply):
            for name, followed in reply.online:
                self.console.say(f"  {as_typed(name)}{'  (following)' if followed else ''}")
        return False

    def _handle_list(self, cmd_name: str, arg: str) -> bool:
        words = arg.split()
        if len(words) > 1:
            return self.usage(f"{cmd_name} [@handle]")
        reply, handles = self.list_pages(cmd_name, **({"handle": words[0]} if words else {}))
        if isinstance(reply, ListReply):
            self.console.say("  " + as_typed(" ".join(handles)))
        return False

    def do_followers(self, arg: str) -> bool:
        """followers [@handle] — who follows you (or @handle)"""
        return self._handle_list("followers", arg)

    def do_following(self, arg: str) -> bool:
        """following [@handle] — whom you (or @handle) follow"""
        return self._handle_list("following", arg)

    def show_tweets(self, tweets: list[Tweet]) -> None:
        for tweet in tweets:
            self.console.say(f"  #{tweet.id} {clock_time(tweet.created)} "
                             f"{as_typed(tweet.author)}: {as_typed(tweet.text)}")

    def do_feed(self, arg: str) -> bool:
        """feed [n] — your feed: the newest n tweets (default 20)
        Tweets and retweets by you and those you follow, newest first."""
        if arg.strip() and not (arg.strip().isdecimal() and arg.strip().isascii()):
            return self.usage("feed [n]")
        args = {"count": int(arg)} if arg.strip() else {}
        self.show_tweets(self.list_pages("feed", args.get("count", limits.FEED_DEFAULT),
                                         **args)[1])
        return False

    def do_search(self, arg: str) -> bool:
        """search #tag — the tweets carrying #tag, newest first"""
        if len(arg.split()) != 1:
            return self.usage("search #tag")
        self.show_tweets(self.list_pages("search", limits.FEED_MAX, tag=arg.strip())[1])
        return False

    def do_trending(self, arg: str) -> bool:
        """trending — the five most used hashtags, with their counts"""
        reply = self.show(self.request("trending"))
        if isinstance(reply, TrendingReply):
            for tag, uses in reply.tags:
                self.console.say(f"  {as_typed(tag)} {uses}")
        return False

    def do_say(self, arg: str) -> bool:
        """say text — a chat line to everyone online (quotes optional)"""
        if not arg.strip():
            return self.usage("say text")
        text = typed_text(arg)
        reply = self.show(self.text_request("say", "say", text))
        if reply.ok and self.console.interactive and self.handle:
            self.console.say(f"[say] {self.handle}: {as_typed(text)}")   # as the others see it
        return False

    def do_message(self, arg: str) -> bool:
        """message @handle text — a direct message, peer to peer (msg for short)
        Quotes are optional.  Kept by the tracker when @handle is offline, and
        delivered at its next login."""
        to, rest = split_first(arg)
        if not rest:
            return self.usage("message @handle text")
        text = typed_text(rest)
        reply = self.show(self.text_request("message", "message", text, to=to))
        if not isinstance(reply, MessageReply) or reply.peer is None:
            return False                # failed, or kept by the tracker: @handle is offline
        peer, message_id = reply.peer, reply.message_id
        if self.node.send_direct(peer, message_id, text):
            self.console.say(f"message #{message_id} delivered to {peer.handle}")
        else:
            self.show(self.request("message-undelivered", message_id=message_id))
        return False

    def do_block(self, arg: str) -> bool:
        """block @handle — @handle may no longer follow or message you"""
        if len(arg.split()) != 1:
            return self.usage("block @handle")
        if self.show(self.request("block", handle=arg.strip())).ok:
            self.node.block(arg.strip())
        return False

    def do_unblock(self, arg: str) -> bool:
        """unblock @handle — @handle may follow and message you again"""
        if len(arg.split()) != 1:
            return self.usage("unblock @handle")
        if self.show(self.request("unblock", handle=arg.strip())).ok:
            self.node.unblock(arg.strip())
        return False

    def on_push(self, push: Notice) -> None:
        """A notice from the tracker (on the link's reader thread), shown above the prompt;
        network text always escaped."""
        if isinstance(push, PresencePush):
            if push.online and push.peer is not None:
                self.node.know(push.peer)
            state = "is online" if push.online else "went offline"
            self.console.notice(f"[notice] {push.handle} {state}")
        elif isinstance(push, FollowedPush):
            self.console.notice(f"[notice] you were followed by {push.by}")
        elif isinstance(push, SayPush):
            self.console.notice(f"[say] {push.sender}: {as_typed(push.text)}")
        elif isinstance(push, MessagePush):     # kept or relayed by the tracker: shown once
            self.node.message_from_tracker(push.sender, push.id, push.text, push.created)
        elif isinstance(push, TweetPush):       # relayed by the tracker: the ring missed us
            self.node.tweet_from_tracker(push.author, push.tid, push.text)
        elif isinstance(push, PeerPush):        # a handle about to send us a direct message
            self.node.know(push.peer)
        else:                                   # a welcome again: nothing to say
            self.console.trace(f"unexpected notice {push.kind}")

    def do_rings(self, arg: str) -> bool:
        """rings — the rings you are in, with your neighbours"""
        if not self.handle:
            self.console.say("no rings: not logged in")
            return False
        own, memberships = self.node.rings()
        if own:
            order = " -> ".join(p.handle for p in own)
            self.console.say(f"own ring {self.handle}: {self.handle} -> {order} -> {self.handle}")
        else:
            self.console.say(f"own ring {self.handle}: no followers set up")
        for member in sorted(memberships, key=lambda m: m.author.key):
            self.console.say(f"ring {member.author.handle}: left {member.left.handle}, "
                             f"right {member.right.handle}")
        return False

    def do_diagram(self, arg: str) -> bool:
        """diagram [ascii] — the time-space diagram of the last command that sent or received
        something (and what came after it), from this user's own trace."""
        records = self.console.records.last
        if not records:
            keeping = self.console.records.keep
            self.console.say("no messages to draw yet" if keeping else
                             "no messages kept: run user.py in a terminal, without -q, or "
                             "with --trace-file")
            return False
        owner = self.handle or self.console.records.owner
        run = build(records, order=("tracker", owner))
        # Too many lifelines for the terminal: wider lines (it wraps them) beat no diagram.
        width = max(shutil.get_terminal_size().columns, MIN_WIDTH, text_width_needed(run))
        text = render_text(run, width, ascii_only=arg.strip() == "ascii")
        self.console.say(text.rstrip("\n"))     # one entry: the output queue drops none of it
        return False

    def do_quit(self, arg: str) -> bool:
        """quit — log out and leave; nothing is deleted
        Ctrl-D does the same, and so does Ctrl-C at an empty prompt."""
        self.send_receipts()
        if self.handle and self.show(self.request("logout")).ok:
            self.leave_rings()
        return True

    def do_EOF(self, arg: str) -> bool:
        if self.console.interactive:
            self.console.say("")
        return self.do_quit(arg)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="user.py", description="A Tweeter user: shell, tracker session and ring peer.",
        epilog="example: python3 user.py 127.0.0.1 13000, then: register @alice")
    parser.add_argument("tracker_ip", nargs="?", default="127.0.0.1")
    parser.add_argument("tracker_port", nargs="?", type=cli.port(),
                        default=limits.DEFAULT_TRACKER_PORT)
    parser.add_argument("-q", "--quiet", action="store_true", help="no trace lines")
    parser.add_argument("--hop-timeout", type=cli.seconds, default=limits.RTO_MIN,
                        help="the least seconds before a datagram is sent again (resends "
                             "follow the measured round trip, doubled at each one)")
    parser.add_argument("--give-up", type=cli.seconds, default=limits.GIVE_UP,
                        help="seconds without an answer before a peer is given up")
    parser.add_argument("--heartbeat", type=cli.seconds, default=limits.HEARTBEAT_INTERVAL,
                        help="seconds between heartbeats to the tracker while logged in")
    parser.add_argument("--trace-file", metavar="PATH",
                        help="append a JSON record of every message in and out (SPEC §7)")
    parser.add_argument("--server-password-file", metavar="PATH",
                        help="file whose first line is the tracker's password (else it is asked)")
    parser.add_argument("--source", metavar="ADDR",
                        help="this host's address to connect from, when it has several (the "
                             "ring's ports are bound on it too)")
    args = parser.parse_args(argv)
    if args.source is not None and check_ipv4(args.source):
        parser.error(f"{args.source!r} is not an IPv4 address")
    if check_ipv4(args.tracker_ip):
        parser.error(f"{args.tracker_ip!r} is not an IPv4 address")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.trace_file:
        return run(args, TraceWriter(None, "user"))
    try:
        trace_stream = open_trace_file(args.trace_file)
    except TraceFileError as error:
        return error.report("user.py")
    with trace_stream:
        return run(args, TraceWriter(trace_stream, "user"))


def run(args: argparse.Namespace, records: TraceWriter) -> int:
    """Connect, greet the tracker, and run the shell until the user leaves."""
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    with contextlib.suppress(AttributeError, ValueError):   # bytes that are not UTF-8 typed in
        sys.stdin.reconfigure(errors="replace")             # become U+FFFD, not a traceback
    console = Console(interactive, args.quiet, records, colour=interactive and wants_colour())
    history: History | None = None
    if interactive:
        import readline  # line editing and history for cmd.Cmd
        readline.set_completer_delims(" \t\n\"'")   # "@alice" and "#tag" are whole words
        readline.set_pre_input_hook(console.prompt_shown)
        history = History(os.path.join(os.path.expanduser("~"), HISTORY_FILE))
        history.load()
    config = PeerConfig(rto_initial=max(limits.RTO_INITIAL, args.hop_timeout),
                        rto_min=args.hop_timeout, rto_max=max(limits.RTO_MAX, args.hop_timeout),
                        give_up=args.give_up, trace=console.tracing)
    node = PeerNode(console, config, on_message=lambda message_id: shell.receipt(message_id))
    shell: UserShell | None = None

    def connect() -> TrackerLink:
        return TrackerLink(args.tracker_ip, args.tracker_port, console,
                           on_push=lambda push: shell.on_push(push) if shell else None,
                           on_close=lambda why: shell.on_link_closed(why) if shell else None,
                           source=args.source)

    shell = UserShell(connect, node, console, args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        problem = shell.connect()
        if problem is not None:
            shell.show(problem)
            return 1
        if interactive:
            signal.signal(signal.SIGINT, shell.on_interrupt)
        shell.loop()
    except KeyboardInterrupt:
        pass                        # Ctrl-C while connecting, or again while quitting: end now
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)    # the session closes undisturbed
        shell.close()
        if history is not None:
            history.save()
        console.output.flush()      # the last lines (e.g. "bye") reach the terminal
    return 0


if __name__ == "__main__":
    sys.exit(main())
