"""A Tweeter user: an interactive shell, a session with the tracker, and a peer in logical rings.

How data flows::

    terminal / pipe ──> UserShell (cmd.Cmd)          one command a line
                          │  TrackerLink.request()   TCP, JSON lines, reply matched by id
                          │                          (a reader thread takes replies and pushes)
                          └─ PeerNode                three UDP sockets, one selector thread
                               left   <── ring traffic from the left neighbour (tweets, detours)
                               middle <── ring control from authors (setup, teardown)
                               right  ──> ring traffic to the right neighbour (acks come back here)

A tweet: the shell asks the tracker (``tweet``), gets the online followers, lets
``protocol.ring`` plan which followers need a ``setup``, sends those on the middle port, then
sends the text from the right port to its right neighbour.  Each follower prints it and passes it
right; when it is back on the author's left port, the shell sends ``end-tweet`` by itself.  Every
datagram is acknowledged and sent again until it is; a follower that never answers is skipped by
a ``detour`` through the author (see ``protocol/PROTOCOL.md``).

Run: ``python3 user.py [tracker-ip [tracker-port]] [-q]``.  When standard input is not a
terminal the same commands are read one a line, with no prompt.
"""

from __future__ import annotations

import argparse
import cmd
import contextlib
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from adapters.console import Console, clock_time
from adapters.peer_node import PeerNode
from adapters.tracker_link import TrackerLink
from protocol import limits
from protocol.auth import SessionKeys
from protocol.diagram import build, render_text, text_width_needed
from protocol.peer import PeerConfig
from protocol.ring import Peer
from protocol.text import escape_for_terminal
from protocol.trace import TraceWriter
from protocol.validate import check_handle, check_ipv4, is_handle
from protocol.wire import Push, Reply, failure

MIN_WIDTH = 40                  # columns the diagram command draws in, whatever the terminal


class UserShell(cmd.Cmd):
    intro = "Tweeter — type help for the commands, quit to leave."

    def __init__(self, connect: Callable[[], TrackerLink], node: PeerNode, console: Console,
                 args: argparse.Namespace) -> None:
        super().__init__()
        self.connect_link, self.node, self.console = connect, node, console
        self.link: TrackerLink | None = None
        self.tweet_timeout = args.tweet_timeout
        self.password_file: str | None = args.server_password_file
        self.handle: str | None = None
        self.known_handles: set[str] = set()
        self._stop_heartbeat = threading.Event()
        threading.Thread(target=self._heartbeat, args=(args.heartbeat,), name="heartbeat",
                         daemon=True).start()
        if console.interactive:
            self.prompt = "tweeter> "
        else:
            self.prompt, self.intro, self.use_rawinput = "", None, False
        console.prompt = self.prompt

    # ---- the tracker session ---------------------------------------------------------------
    def connect(self) -> bool:
        """Open the session: connect, read the welcome, give the server password if asked."""
        try:
            self.link = self.connect_link()
        except OSError as error:
            self.console.say(f"FAILURE NO_TRACKER: cannot reach the tracker: "
                             f"{error.strerror or error}")
            return False
        welcome = self.link.wait_welcome()
        if welcome is None:
            self.console.say("FAILURE NO_TRACKER: the tracker did not greet")
            return False
        if welcome.data.get("password_required"):
            return self.admit()
        return True

    def request(self, cmd_name: str, **args: Any) -> Reply:
        """Ask the tracker; if it had closed the session, open a new one first."""
        if self.link is None or self.link.closed:
            if self.handle:
                self.console.say(f"[notice] the tracker closed the session of {self.handle}; "
                                 "log in again")
                self.leave_rings()
            if not self.connect():
                return failure("NO_TRACKER", "the connection to the tracker is closed")
        assert self.link is not None
        return self.link.request(cmd_name, **args)

    def _heartbeat(self, interval: float) -> None:
        """While logged in, tell the tracker now and then that this session is alive."""
        while not self._stop_heartbeat.wait(interval):
            link = self.link
            if self.handle and link is not None and not link.closed:
                reply = link.request("heartbeat")
                if not reply.ok and reply.code != "NO_TRACKER":
                    self.show(reply)

    def close(self) -> None:
        self._stop_heartbeat.set()
        if self.link is not None:
            self.link.close()
        self.node.close()

    # ---- plumbing --------------------------------------------------------------------------
    def onecmd(self, line: str) -> bool:
        """Run one command.  Replies are checked where they are used; a reply too malformed
        for that (a tracker that is not Tweeter's, or a broken one) ends the command here
        with one line, never a traceback."""
        try:
            return bool(super().onecmd(line))
        except (KeyError, ValueError, TypeError, IndexError) as error:
            self.console.say(f"FAILURE BAD_REPLY: the tracker's answer was not understood "
                             f"({escape_for_terminal(type(error).__name__)})")
            return False

    def preloop(self) -> None:
        self.console.at_prompt = True

    def precmd(self, line: str) -> str:
        self.console.at_prompt = False
        self.console.hold()
        self.console.records.command_started()
        return line

    def postcmd(self, stop: bool, line: str) -> bool:
        self.console.release()
        self.console.at_prompt = not stop
        return stop

    def emptyline(self) -> bool:
        return False

    def default(self, line: str) -> bool:
        self.console.say(f"FAILURE UNKNOWN_COMMAND: {escape_for_terminal(line.split()[0])!s}"
                         " — type help")
        return False

    def words(self, arg: str) -> list[str] | None:
        try:
            return shlex.split(arg)
        except ValueError as error:
            self.console.say(f"FAILURE BAD_SYNTAX: {error}")
            return None

    def show(self, reply: Reply) -> Reply:
        text = escape_for_terminal(reply.message)
        self.console.say(f"SUCCESS: {text}" if reply.ok
                         else f"FAILURE {escape_for_terminal(str(reply.code))}: {text}")
        return reply

    def usage(self, form: str) -> bool:
        return self.fail("USAGE", form)

    def fail(self, code: str, message: str) -> bool:
        """A failure found here, before anything was sent."""
        self.console.say(f"FAILURE {code}: {message}")
        return False

    def completedefault(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        return sorted(h for h in self.known_handles if h.lower().startswith(text.lower()))

    # ---- commands --------------------------------------------------------------------------
    def admit(self) -> bool:
        """Give the tracker its server password: from the file, or asked (masked)."""
        if self.password_file:
            try:
                with open(self.password_file, encoding="utf-8") as handle:
                    password: str | None = handle.readline().rstrip("\n")
            except OSError as error:
                self.console.say(f"FAILURE NO_PASSWORD_FILE: {self.password_file}: "
                                 f"{error.strerror}")
                return False
        else:
            password = self.read_password("server password: ")
        assert self.link is not None
        return self.show(self.link.request("auth", password=password or "")).ok

    def read_password(self, prompt: str) -> str | None:
        """A password: masked on a terminal, the next input line otherwise (None at its end)."""
        if not self.console.interactive:
            line = sys.stdin.readline()
            return line.rstrip("\n") if line else None
        try:
            import stdiomask
            return stdiomask.getpass(prompt=prompt, mask="*")
        except ImportError:
            import getpass
            self.console.say("(stdiomask is not installed: the password is read unechoed)")
            return getpass.getpass(prompt)
        except EOFError:
            return None

    def _join(self, cmd_name: str, arg: str) -> bool:
        """register or login: bind the three UDP ports, ask the password, ask the tracker."""
        words = self.words(arg)
        if words is None:
            return False
        if len(words) not in (1, 5):
            return self.usage(f"{cmd_name} @handle [ipv4 left middle right]")
        if self.handle:
            return self.fail("ALREADY_LOGGED_IN", f"this session is already {self.handle}")
        ip, port_words = (words[1], words[2:]) if len(words) == 5 else ("127.0.0.1", ["0"] * 3)
        problem = check_handle(words[0]) or check_ipv4(ip)
        if problem:
            return self.fail(*problem)
        try:
            ports = [int(word) for word in port_words]
            if not all(0 <= port <= 65535 for port in ports):
                raise ValueError
        except ValueError:
            return self.fail("BAD_PORT", "ports are numbers from 0 to 65535")
        try:
            left, middle, right = self.node.bind(ip, ports)
        except OSError as error:
            return self.fail("PORT_IN_USE", f"cannot bind {ip} {' '.join(port_words)}: "
                                            f"{error.strerror}; nothing was sent")
        password = self.read_password("password: ")
        if password is not None and cmd_name == "register" \
                and self.read_password("password again: ") != password:
            self.node.close()
            return self.fail("PASSWORD_MISMATCH", "the two passwords differ; nothing was sent")
        if not password:
            self.node.close()
            return self.fail("BAD_PASSWORD", "a password is needed; nothing was sent")
        keys = SessionKeys.generate()      # every login is a new epoch (SPEC §3)
        reply = self.show(self.request(cmd_name, handle=words[0], ip=ip, password=password,
                                       ports=[left, middle, right], key=keys.public))
        if not reply.ok:
            self.node.close()
            return False
        named = reply.data.get("handle")
        self.handle = named if is_handle(named) else words[0]
        self.known_handles.add(self.handle)
        records = self.console.records
        if not is_handle(records.owner):        # this lifeline has a name now
            records.record("send", records.owner, self.handle, "alias")
        records.owner = self.handle
        self.console.say(f"ports: left={left} middle={middle} right={right}")
        follows = self.request("following") if cmd_name == "login" else None
        following = [h for h in (follows.data.get("handles", []) if follows and follows.ok
                                 else []) if is_handle(h)]
        self.node.start(Peer(self.handle, ip, left, middle, right, keys.public), following)
        return False

    def do_register(self, arg: str) -> bool:
        """register @handle [ipv4 left middle right] — create an account and come online.
        Binds three UDP ports first (0 = any free port; `register @h` alone is 127.0.0.1 0 0 0),
        then asks for a password twice."""
        return self._join("register", arg)

    def do_login(self, arg: str) -> bool:
        """login @handle [ipv4 left middle right] — come online with an existing account,
        at a new address; says how many tweets are new since your last session."""
        return self._join("login", arg)

    def do_logout(self, arg: str) -> bool:
        """logout — go offline; your account, follows and tweets are kept."""
        if self.show(self.request("logout")).ok:
            self.leave_rings()
        return False

    def leave_rings(self) -> None:
        self.handle = None
        self.node.close()

    def do_query(self, arg: str) -> bool:
        """query handles — how many handles are registered, and which, alphabetically."""
        if arg.strip() != "handles":
            return self.usage("query handles")
        reply = self.show(self.request("query-handles"))
        if reply.ok:
            handles = reply.data.get("handles", [])
            self.known_handles.update(handles)
            self.console.say(f"{reply.data.get('count', 0)}: "
                             + escape_for_terminal(" ".join(handles)))
        return False

    def _pair(self, name: str, arg: str) -> bool:
        words = self.words(arg)
        if words is None:
            return False
        if len(words) != 2:
            return self.usage(f"{name} @follower @followee")
        reply = self.show(self.request(name, follower=words[0], followee=words[1]))
        if reply.ok and name == "follow":
            self.node.follow(words[1])
            self.known_handles.add(words[1])
        elif reply.ok:
            self.node.unfollow(words[1])   # a follower that left a ring keeps nothing of it
        return False

    def do_follow(self, arg: str) -> bool:
        """follow @i @j — @i (you) starts following @j."""
        return self._pair("follow", arg)

    def do_drop(self, arg: str) -> bool:
        """drop @i @j — @i (you) stops following @j."""
        return self._pair("drop", arg)

    def do_tweet(self, arg: str) -> bool:
        """tweet @handle "text" — send a tweet (1-140 characters) around your followers' ring."""
        words = self.words(arg)
        if words is None:
            return False
        if len(words) < 2:
            return self.usage('tweet @handle "text"')
        self.run_ring(self.request("tweet", handle=words[0], text=" ".join(words[1:])))
        return False

    def do_retweet(self, arg: str) -> bool:
        """retweet <id> — send "RT @author: text" of tweet <id> around your own ring."""
        if not arg.strip().isdecimal() or not arg.strip().isascii():
            return self.usage("retweet <id>")
        self.run_ring(self.request("retweet", tid=int(arg)))
        return False

    def run_ring(self, reply: Reply) -> None:
        """After SUCCESS to tweet or retweet: run the ring, then send end-tweet."""
        if not self.show(reply).ok:
            return
        tid, text = int(reply.data["tid"]), str(reply.data["text"])
        followers = [Peer.from_list(row) for row in reply.data.get("followers", [])]
        result = self.node.run_tweet(tid, text, followers)
        self.show(self.request("end-tweet", handle=self.handle, tid=tid,
                                    reached=result.reached, skipped=result.skipped))
        if not result.completed:
            self.console.say(f"tweet #{tid} did not come back within {self.tweet_timeout:g}s")
            return
        skipped = f"; skipped {' '.join(result.skipped)}" if result.skipped else ""
        self.console.say(f"tweet #{tid} reached {result.reached} followers "
                         f"in {result.seconds * 1000:.1f} ms{skipped}")

    def do_exit(self, arg: str) -> bool:
        """exit @handle — tear your ring down and delete your handle, then end."""
        words = self.words(arg)
        if words is None:
            return False
        if len(words) != 1:
            return self.usage("exit @handle")
        reply = self.show(self.request("exit", handle=words[0]))
        if not reply.ok:
            return False
        # Those this process set up, and those an earlier process of the handle may have.
        followers = {peer.key: peer for peer in self.node.rings()[0]}
        for row in reply.data.get("followers", []):
            peer = Peer.from_list(row)
            followers.setdefault(peer.key, peer)
        followers = list(followers.values())
        silent = self.node.teardown(followers)
        if silent:
            self.console.say(f"teardown not acknowledged by {' '.join(silent)}")
        self.console.say(f"ring of {self.handle} torn down ({len(followers) - len(silent)} "
                         f"of {len(followers)} followers acknowledged)")
        if self.show(self.request("exit-complete", handle=words[0])).ok:
            self.console.say("bye")
            return True
        return False

    def do_online(self, arg: str) -> bool:
        """online — who is online now; the handles you follow are marked."""
        reply = self.show(self.request("online"))
        for name, followed in reply.data.get("online", []):
            self.known_handles.add(name)
            self.console.say(f"  {escape_for_terminal(name)}{'  (following)' if followed else ''}")
        return False

    def _handle_list(self, cmd_name: str, arg: str) -> bool:
        words = self.words(arg)
        if words is None:
            return False
        if len(words) > 1:
            return self.usage(f"{cmd_name} [@handle]")
        reply = self.show(self.request(cmd_name, **({"handle": words[0]} if words else {})))
        if reply.ok:
            self.known_handles.update(reply.data.get("handles", []))
            self.console.say("  " + escape_for_terminal(" ".join(reply.data.get("handles", []))))
        return False

    def do_followers(self, arg: str) -> bool:
        """followers [@handle] — who follows you (or @handle), alphabetically."""
        return self._handle_list("followers", arg)

    def do_following(self, arg: str) -> bool:
        """following [@handle] — whom you (or @handle) follow, alphabetically."""
        return self._handle_list("following", arg)

    def show_tweets(self, reply: Reply) -> None:
        for tid, author, created, text, _retweet_of in reply.data.get("tweets", []):
            self.console.say(f"  #{tid} {clock_time(created)} {escape_for_terminal(author)}: "
                             f"{escape_for_terminal(text)}")

    def do_feed(self, arg: str) -> bool:
        """feed [n] — the newest n (default 20) tweets by you and the handles you follow."""
        if arg.strip() and not (arg.strip().isdecimal() and arg.strip().isascii()):
            return self.usage("feed [n]")
        args = {"count": int(arg)} if arg.strip() else {}
        self.show_tweets(self.show(self.request("feed", **args)))
        return False

    def do_search(self, arg: str) -> bool:
        """search #tag — the tweets carrying #tag, newest first."""
        if len(arg.split()) != 1:
            return self.usage("search #tag")
        self.show_tweets(self.show(self.request("search", tag=arg.strip())))
        return False

    def do_trending(self, arg: str) -> bool:
        """trending — the five most used hashtags, with how often each was used."""
        reply = self.show(self.request("trending"))
        for tag, uses in reply.data.get("tags", []):
            self.console.say(f"  {escape_for_terminal(tag)} {uses}")
        return False

    def do_say(self, arg: str) -> bool:
        """say "text" — a chat-room line to everyone online now."""
        words = self.words(arg)
        if words is None:
            return False
        if not words:
            return self.usage('say "text"')
        self.show(self.request("say", text=" ".join(words)))
        return False

    def do_message(self, arg: str) -> bool:
        """message @handle "text" — a direct message, peer to peer; kept by the tracker when
        @handle is offline, and delivered at its next login."""
        words = self.words(arg)
        if words is None:
            return False
        if len(words) < 2:
            return self.usage('message @handle "text"')
        text = " ".join(words[1:])
        reply = self.show(self.request("message", to=words[0], text=text))
        if not reply.ok or "peer" not in reply.data:
            return False
        peer, message_id = Peer.from_list(reply.data["peer"]), int(reply.data["message_id"])
        if self.node.send_direct(peer, message_id, text):
            self.console.say(f"message #{message_id} delivered to {peer.handle}")
        else:
            self.show(self.request("message-undelivered", message_id=message_id))
        return False

    def do_block(self, arg: str) -> bool:
        """block @handle — @handle stops following you and cannot follow or message you."""
        if len(arg.split()) != 1:
            return self.usage("block @handle")
        self.show(self.request("block", handle=arg.strip()))
        return False

    def do_unblock(self, arg: str) -> bool:
        """unblock @handle — @handle may follow and message you again."""
        if len(arg.split()) != 1:
            return self.usage("unblock @handle")
        self.show(self.request("unblock", handle=arg.strip()))
        return False

    def on_push(self, push: Push) -> None:
        """A notice from the tracker, shown above the prompt; network text always escaped."""
        data = {key: escape_for_terminal(str(value)) for key, value in push.data.items()}
        if push.kind == "presence":
            if push.data.get("online") and "peer" in push.data:
                self.node.author_moved(Peer.from_list(push.data["peer"]))
            state = "is online" if push.data.get("online") else "went offline"
            self.console.notice(f"[notice] {data.get('handle')} {state}")
        elif push.kind == "offline":
            self.console.notice(f"[notice] the tracker took {self.handle} offline: "
                             f"{data.get('reason')}")
            self.leave_rings()
        elif push.kind == "followed":
            self.console.notice(f"[notice] you were followed by {data.get('by')}")
        elif push.kind == "say":
            self.console.notice(f"[say] {data.get('sender')}: {data.get('text')}")
        elif push.kind == "message":
            message_id = push.data.get("id")
            if isinstance(message_id, int) and not self.node.first_kept_message(message_id):
                return          # it came peer to peer after all; show it once
            self.console.notice(f"[message] {data.get('sender')}: {data.get('text')} "
                             f"(kept by the tracker, sent {clock_time(push.data.get('created'))})")
        else:
            self.console.trace(f"unknown notice {escape_for_terminal(push.kind)}")

    def do_rings(self, arg: str) -> bool:
        """rings — the rings this user belongs to, as this user keeps them."""
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
        """quit — log out and end (Ctrl-D does the same); nothing is deleted."""
        if self.handle and self.show(self.request("logout")).ok:
            self.leave_rings()
        return True

    def do_EOF(self, arg: str) -> bool:
        if self.console.interactive:
            print()
        return self.do_quit(arg)

    def complete_follow(self, text: str, *rest: Any) -> list[str]:
        return self.completedefault(text, *rest)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="user.py", description="A Tweeter user: shell, tracker session and ring peer.",
        epilog="example: python3 user.py 127.0.0.1 13000, then: register @alice")
    parser.add_argument("tracker_ip", nargs="?", default="127.0.0.1")
    parser.add_argument("tracker_port", nargs="?", type=int, default=limits.DEFAULT_TRACKER_PORT)
    parser.add_argument("-q", "--quiet", action="store_true", help="no trace lines")
    parser.add_argument("--hop-timeout", type=float, default=limits.HOP_TIMEOUT,
                        help="seconds before a datagram is sent again")
    parser.add_argument("--hop-retries", type=int, default=limits.HOP_RETRIES,
                        help="resends before a peer is given up as dead")
    parser.add_argument("--tweet-timeout", type=float, default=limits.TWEET_TIMEOUT,
                        help="seconds to wait for a tweet to come back")
    parser.add_argument("--heartbeat", type=float, default=limits.HEARTBEAT_INTERVAL,
                        help="seconds between heartbeats to the tracker while logged in")
    parser.add_argument("--trace-file", metavar="PATH",
                        help="append a JSON record of every message in and out (SPEC §7)")
    parser.add_argument("--server-password-file", metavar="PATH",
                        help="file whose first line is the tracker's password (else it is asked)")
    args = parser.parse_args(argv)
    if check_ipv4(args.tracker_ip):
        parser.error(f"{args.tracker_ip!r} is not an IPv4 address")
    if not 1 <= args.tracker_port <= 65535:
        parser.error(f"{args.tracker_port} is not a port (1-65535)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.trace_file:
        return run(args, TraceWriter(None, "user"))
    try:
        trace_stream = open(args.trace_file, "a", encoding="utf-8")  # noqa: SIM115 (with below)
    except OSError as error:
        print(f"user.py: cannot write the trace file {args.trace_file}: {error.strerror}",
              file=sys.stderr)
        return 1
    with trace_stream:
        return run(args, TraceWriter(trace_stream, "user"))


def run(args: argparse.Namespace, records: TraceWriter) -> int:
    """Connect, greet the tracker, and run the shell until the user leaves."""
    interactive = sys.stdin.isatty()
    with contextlib.suppress(AttributeError, ValueError):   # bytes that are not UTF-8 typed in
        sys.stdin.reconfigure(errors="replace")             # become U+FFFD, not a traceback
    if interactive:
        import readline  # line editing and history for cmd.Cmd
        readline.set_completer_delims(" \t\n\"'")   # "@alice" and "#tag" are whole words
    console = Console(interactive, args.quiet, records)
    node = PeerNode(console, PeerConfig(args.hop_timeout, args.hop_retries, args.tweet_timeout,
                                        trace=console.tracing))
    shell: UserShell | None = None

    def connect() -> TrackerLink:
        return TrackerLink(args.tracker_ip, args.tracker_port, console,
                           on_push=lambda push: shell.on_push(push) if shell else None)

    shell = UserShell(connect, node, console, args)
    if not shell.connect():
        shell.close()
        console.output.flush()
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        shell.cmdloop()
    except KeyboardInterrupt:
        print()
        console.at_prompt = False       # no prompt to redraw: the process is ending
        shell.do_quit("")       # Ctrl-C ends like quit: logged out, nothing deleted
    finally:
        shell.close()
        console.output.flush()      # the last lines (e.g. "bye") reach the terminal
    return 0


if __name__ == "__main__":
    sys.exit(main())
