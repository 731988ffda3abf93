"""The course demo in one terminal (``make demo``, SPEC §8), with one short diagram per step.

    python3 tools/demo.py                    # what `make demo` runs; writes tools/demo.md
    python3 tools/demo.py --hosts            # `make demo HOSTS=1` (root): a host per process
    python3 tools/demo.py --quick --out X.md # smaller timeouts, the same commands (the tests)

A tracker (throw-away database) and five scripted ``user.py`` processes, driven through pipes:
@ann's ring is @ann -> @bea -> @cal -> @ann and @eve's ring is @eve -> @cal -> @dan -> @eve, two
rings of three that intersect in @cal.  Every ``user.py`` command is typed, every tracker command
is answered once with SUCCESS and once with FAILURE (the few that ``user.py`` never gets wrong, such
as ``end-tweet``, by a raw wire session), and everyone leaves gracefully.  ``run_scenario`` is the
course scenario, scripted once: ``tests/test_demo_course.py`` runs it too.

How a run becomes the page:

* The terminal shows each step as ``== step N: … ==``, then what was typed (``@ann> …``) and every
  line each process printed in answer (``@bea | …``), in the order they came.  The demo checks
  each answer as it goes and exits 1, naming what differed, if anything did.
* Every process writes its ``--trace-file``; the demo writes its own, with a ``step`` record at
  each step and a ``mark`` record each time it acts (types a line, starts a process): the
  processes it drives are linked only through it, and the marks give ``protocol.diagram`` that
  order (see its docstring).
* At the end the traces are built into one diagram and ``--out`` (``tools/demo.md``) gets, per
  step, what was typed and printed and the step's own Mermaid diagram.  Ports, sequence numbers,
  keys and times are named in order of appearance (``protocol.diagram.Normaliser``), durations
  and dates blanked, so that a rerun writes the same file: ``git diff`` stays empty.

With ``--hosts`` (root and ``ip`` needed) each process runs on a host of its own: a network
namespace with one address in 10.10.0.0/24, all joined by a bridge in a namespace of its own.
The demo makes them and removes them, and touches nothing of the machine's own network.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))     # protocol/, tools/

from adapters.trace_file import TraceWriter
from protocol.diagram import REPLY, Normaliser, Run, aliases, arrow_style, build, mermaid, select
from protocol.trace import TraceRecord
from protocol.wire import COMMANDS
from tools.diagram_cli import read_traces
from tools.driver import PYTHON, SAMPLE_KEY, Proc, Timeout, free_port
from tools.wire_client import WireSession

TOOLS = Path(__file__).resolve().parent
DEFAULT_OUT = TOOLS / "demo.md"
HOSTS_OUT = TOOLS / "demo-hosts.md"
USERS = ("@ann", "@bea", "@cal", "@dan", "@eve")
LIFELINES = ("tracker", *USERS, "@raw")          # the order of the diagrams' lifelines
USER_COMMANDS = ("register", "login", "logout", "query", "follow", "drop", "tweet", "retweet",
                 "feed", "search", "trending", "online", "followers", "following", "say",
                 "message", "block", "unblock", "rings", "help", "exit", "quit")
REPLY_LINE = r"^(SUCCESS|FAILURE [A-Z_]+):"
# What differs from run to run in the lines the processes print, beside ports: durations and
# dates (feed, kept messages).  Ports and addresses go through the diagram's Normaliser.
_VOLATILE = [(re.compile(r"\b\d+(\.\d+)? ms\b"), "… ms"),
             (re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d(\.\d+)?)?\b"), "YYYY-MM-DD hh:mm"),
             (re.compile(r"\b\d\d:\d\d:\d\d\b"), "hh:mm:ss")]
# A line relay run as a process (stdin to a TCP connection, the connection to stdout): the raw
# wire session, so that on --hosts it too runs on a host of its own.
RELAY = """\
import socket, sys, threading
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
sock.settimeout(None)
def pump():
    for line in sys.stdin.buffer:
        sock.sendall(line)
    sock.shutdown(socket.SHUT_WR)
threading.Thread(target=pump, daemon=True).start()
for line in sock.makefile("rb"):
    sys.stdout.write(line.decode("utf-8", "replace"))
    sys.stdout.flush()
"""
# Runs the rest of its command line in a network namespace: sys.argv[1] is the namespace.
IN_NAMESPACE = "import os, sys; os.execvp('ip', ['ip', 'netns', 'exec', *sys.argv[1:]])"


class DemoFailed(Exception):
    """Something answered differently from what the demo expects."""


class HostsError(Exception):
    """The hosts of --hosts could not be made (not root, no ``ip``, or ``ip`` refused)."""


def _shortened(match: re.Match[str]) -> str:
    """A run of one character as the transcript shows it: ``xxxxxxxx…(141 x)``."""
    return f"{match.group(1) * 8}…({len(match.group(0))} {match.group(1)})"


def password_of(handle: str) -> str:
    return f"pw-{handle.strip('@').lower()}-demo"


# ---- hosts (--hosts) -------------------------------------------------------------------------
class Hosts:
    """One network namespace per process, joined by a bridge (``make demo HOSTS=1``).

    ``<prefix>-net`` holds the bridge ``br0``; host number N is the namespace ``<prefix>-N``
    with ``eth0`` at 10.10.0.N/24, the other end of which is a port of the bridge.  All of it
    lives in namespaces of its own, so the machine's own network is never touched, and
    ``close`` removes it all (deleting a namespace deletes its links).
    """

    SUBNET = "10.10.0"

    def __init__(self, names: Sequence[str]) -> None:
        self.prefix = f"tweeter-demo-{os.getpid()}"
        self.addresses = {name: f"{self.SUBNET}.{n}" for n, name in enumerate(names, 1)}
        self.namespaces: dict[str, str] = {}
        self.made: list[str] = []

    @staticmethod
    def check() -> None:
        """Raise HostsError unless this process may make namespaces."""
        if os.geteuid() != 0:
            raise HostsError("make demo HOSTS=1 needs root: it makes network namespaces and a "
                             "bridge (try: sudo make demo HOSTS=1)")
        if shutil.which("ip") is None:
            raise HostsError("make demo HOSTS=1 needs the ip command (iproute2)")

    @staticmethod
    def ip(*args: str) -> None:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                              check=False)
        if done.returncode != 0:
            raise HostsError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")

    def __enter__(self) -> Hosts:
        try:
            bridge = f"{self.prefix}-net"
            self.ip("netns", "add", bridge)
            self.made.append(bridge)
            self.ip("-n", bridge, "link", "add", "br0", "type", "bridge")
            self.ip("-n", bridge, "link", "set", "br0", "up")
            for n, (name, address) in enumerate(self.addresses.items(), 1):
                host = f"{self.prefix}-{n}"
                self.ip("netns", "add", host)
                self.made.append(host)
                self.namespaces[name] = host
                self.ip("-n", bridge, "link", "add", f"v{n}", "type", "veth",
                        "peer", "name", "eth0", "netns", host)
                self.ip("-n", bridge, "link", "set", f"v{n}", "master", "br0", "up")
                self.ip("-n", host, "addr", "add", f"{address}/24", "dev", "eth0")
                self.ip("-n", host, "link", "set", "eth0", "up")
                self.ip("-n", host, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for namespace in reversed(self.made):
            with contextlib.suppress(HostsError, OSError, subprocess.SubprocessError):
                self.ip("netns", "delete", namespace)
        self.made.clear()

    def args(self, name: str, args: Sequence[str]) -> list[str]:
        """What ``Proc`` (which puts the interpreter first) runs to run ``args`` on host
        ``name``: a one-line program that becomes ``ip netns exec <host> python3 args``."""
        return ["-c", IN_NAMESPACE, self.namespaces[name], PYTHON, *args]


# ---- the raw wire session ----------------------------------------------------------------------
class RawSession(WireSession):
    """A bare TCP session that speaks the wire protocol (PROTOCOL.md §1), through a relay
    process whose output (the tracker's frames) shows in the transcript as ``raw``."""

    def __init__(self, demo: Demo) -> None:
        super().__init__()
        self.demo = demo
        self.proc = demo.start("raw", ["-c", RELAY, demo.tracker_ip, str(demo.port)],
                               host="@raw")
        welcome = self.next_frame()
        if welcome.get("push") != "welcome":
            raise DemoFailed(f"raw: the first frame is not the welcome push: {welcome}")

    def send_raw(self, data: bytes) -> None:
        self.proc.send(data.decode().removesuffix("\n"))

    def next_line(self) -> bytes:
        return self.proc.expect(r"^\{", self.demo.timeout).string.encode()

    def expect(self, want: str, cmd: str, **fields: object) -> dict:
        """Send one request, shown in the transcript (its password hidden); its reply must be
        ``want`` (SUCCESS, or FAILURE CODE)."""
        shown = {k: ("***" if k == "password" else v) for k, v in fields.items()}
        self.demo.typing("raw", json.dumps({"id": self.next_id, "cmd": cmd, **shown}))
        reply = self.call(cmd, **fields)
        got = reply["status"] + (f" {reply['code']}" if reply.get("code") else "")
        if got != want:
            raise DemoFailed(f"raw: {cmd} answered {got}, not {want}")
        self.demo.show_output()
        return reply

    def close(self) -> None:
        self.proc.close_stdin()
        self.proc.wait(self.demo.timeout)


# ---- the demo ----------------------------------------------------------------------------------
@dataclass
class StepLog:
    """One step as the page shows it: its title and its transcript, as (who typed, or None for
    a line printed, process, text) in the order it came."""

    number: int
    title: str
    entries: list[tuple[bool, str, str]] = field(default_factory=list)


class Demo:
    """The processes of the demo, what they print, and the demo's own trace of its steps."""

    def __init__(self, workdir: Path, quick: bool = False, hosts: Hosts | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        self.workdir, self.quick, self.hosts = workdir, quick, hosts
        self.timeout = 10.0 if quick else 20.0
        self.echo = echo or (lambda text: print(text, flush=True))
        self.procs: dict[str, Proc] = {}
        self.traces: list[Path] = []
        self.steps: list[StepLog] = [StepLog(0, "")]
        self.typed: set[str] = set()
        self.port = 0
        self.tracker_ip = hosts.addresses["tracker"] if hosts else "127.0.0.1"
        self._marks_file = (workdir / "demo.jsonl").open("w", encoding="utf-8")
        self.traces.append(workdir / "demo.jsonl")
        self.marks = TraceWriter(self._marks_file, "demo")

    # ---- transcript --------------------------------------------------------------------------
    def printed(self, name: str, text: str) -> None:
        """Show a line of process ``name`` (and keep it for the page)."""
        self.echo(f"   {name:<7} | {text}")
        self.steps[-1].entries.append((False, name, text))

    def show_output(self) -> None:
        """Every line the processes printed since last time, in the order it came."""
        lines = [(order, name, text) for name, proc in self.procs.items()
                 for order, text in proc.take_unshown()]
        for _order, name, text in sorted(lines):
            self.printed(name, text)

    def step(self, title: str) -> None:
        self.show_output()
        self.steps.append(StepLog(len(self.steps), title))
        self.marks.record("send", "demo", "demo", "step", title)
        self.echo(f"\n== step {self.steps[-1].number}: {title} ==")

    def typing(self, who: str, line: str, note: str = "") -> None:
        """Show and mark what ``who`` is about to type (the mark orders the diagram)."""
        self.show_output()
        self.marks.record("send", "demo", "demo", "mark", f"{who}> {line}")
        self.echo(f"  {who}> {line}{note}")
        self.steps[-1].entries.append((True, who, f"{line}{note}"))

    # ---- processes ---------------------------------------------------------------------------
    def start(self, name: str, args: Sequence[str], host: str | None = None) -> Proc:
        """Start ``python3 args`` as process ``name`` (with --hosts, on the host of the lifeline
        ``host``, by default ``name``)."""
        self.marks.record("send", "demo", "demo", "mark", f"start {name}")
        full = self.hosts.args(host or name, args) if self.hosts else list(args)
        proc = Proc(full, name)
        self.procs[name] = proc
        return proc

    def trace_file(self, name: str) -> Path:
        path = self.workdir / f"{name.strip('@')}.jsonl"
        self.traces.append(path)
        return path

    def start_tracker(self) -> None:
        # A wrong password makes the next login of that handle from that address wait (1 s
        # by default, PROTOCOL.md §1.7); @dan's right one comes two hashes after his wrong one,
        # so a wait shorter than a hash keeps the page the same from run to run.
        proc = self.start("tracker", ["tracker.py", "0", "--host", self.tracker_ip,
                                      "--db", ":memory:", "-q", "--login-backoff", "0.01",
                                      "--trace-file", str(self.trace_file("tracker"))])
        self.port = int(proc.expect(r"listening on [\d.]+:(\d+)", self.timeout).group(1))

    def start_user(self, handle: str) -> Proc:
        # No resend sooner than half a second: a busy machine's pause is not drawn as a loss,
        # so every run draws the same page.
        return self.start(handle, ["user.py", self.tracker_ip, str(self.port), "-q",
                                   "--hop-timeout", "0.5",
                                   "--trace-file", str(self.trace_file(handle))])

    def where(self, handle: str) -> str:
        """What follows ``register @h`` / ``login @h``: nothing on one machine (the address of
        the tracker connection, ports 0 0 0); on --hosts the host's address, ports 0 0 0."""
        return f" {self.hosts.addresses[handle]} 0 0 0" if self.hosts else ""

    def expect(self, name: str, pattern: str) -> None:
        self.procs[name].expect(pattern, self.timeout)

    def reply(self, who: str, want: str) -> None:
        """The next answer ``who`` prints must be ``want`` (SUCCESS, or FAILURE CODE)."""
        got = self.procs[who].expect(REPLY_LINE, self.timeout).group(1)
        if got != want:
            raise DemoFailed(f"{who}: expected {want}, got {got}")

    # ---- typing ------------------------------------------------------------------------------
    def type(self, who: str, line: str, want: str | None,
             then: Sequence[tuple[str, str]] = (), passwords: Sequence[str] = ()) -> None:
        """``who`` types ``line`` (and passwords, not shown); its answer must be ``want``; then
        each (process, pattern) of ``then`` must be printed, in order per process.  Every line
        a command prints is waited for, so that it shows under the command on every run."""
        note = f"   (password typed {'twice' if len(passwords) == 2 else 'once'})" \
            if passwords else ""
        self.typing(who, re.sub(r"(\w)\1{15,}", _shortened, line), note)
        self.typed.add(line.split()[0])
        proc = self.procs[who]
        proc.send(line)
        for password in passwords:
            proc.send(password)
        if want is not None:
            self.reply(who, want)
        for name, pattern in then:
            self.expect(name, pattern)
        self.show_output()

    def ok(self, who: str, line: str, *then: tuple[str, str]) -> None:
        self.type(who, line, "SUCCESS", then)

    def fails(self, who: str, line: str, code: str, *then: tuple[str, str]) -> None:
        self.type(who, line, f"FAILURE {code}", then)

    def register(self, who: str, handle: str, want: str = "SUCCESS") -> None:
        password = password_of(handle)
        self.type(who, f"register {handle}{self.where(who)}", want,
                  passwords=(password, password),
                  then=[(who, r"^ports: left=\d+")] if want == "SUCCESS" else ())

    def login(self, who: str, handle: str, password: str, want: str,
              then: Sequence[tuple[str, str]] = ()) -> None:
        self.type(who, f"login {handle}{self.where(who)}", want, then, passwords=[password])

    def tweet(self, author: str, text: str, ring: Sequence[str], cmd: str | None = None) -> None:
        """``author`` tweets (or retweets with ``cmd``); the text goes round ``ring``."""
        then = [(author, r"^SUCCESS: tweet #\d+ of ")]
        previous = author
        for follower in ring:
            then.append((follower, rf"^tweet #\d+ by {author} via {previous}: "))
            previous = follower
        then += [(author, r"^SUCCESS: tweet #\d+ of \S+ ended"),
                 (author, rf"^tweet #\d+ reached {len(ring)} followers? in [\d.]+ ms$"),
                 ("tracker", rf"tweet #\d+ of {author} ended")]
        self.type(author, cmd or f'tweet {author} "{text}"', None, then)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop()
        if not self._marks_file.closed:
            self._marks_file.close()


def run_scenario(demo: Demo) -> None:
    """The course demo, step by step (each step a handful of messages, to fit on a screen)."""
    d = demo
    d.step("a tracker on a free port, with a throw-away database (--db :memory:)")
    d.start_tracker()
    d.show_output()

    d.step("@ann starts and looks around before registering")
    d.start_user("@ann")
    d.ok("@ann", "query handles", ("@ann", r"^0: $"))
    d.ok("@ann", "online")
    d.fails("@ann", "trending", "NOT_LOGGED_IN")
    d.fails("@ann", "logout", "NOT_LOGGED_IN")

    d.step("register: @ann, @bea, @cal and @dan, each in a process of its own")
    d.register("@ann", "@ann")
    for handle in ("@bea", "@cal", "@dan"):
        d.start_user(handle)
        d.register(handle, handle)

    d.step("register fails: @eve tries a taken handle and a malformed one, then registers")
    d.start_user("@eve")
    d.register("@eve", "@Ann", want="FAILURE DUPLICATE_HANDLE")
    d.fails("@eve", "register @e4", "BAD_HANDLE")
    d.register("@eve", "@eve")
    d.ok("@ann", "query handles", ("@ann", r"^5: @ann @bea @cal @dan @eve$"))

    d.step("help (nothing is sent)")
    d.type("@ann", "help follow", None, [("@ann", r"^follow \[@you\] @handle")])

    d.step("follow: @bea and @cal follow @ann (the ring @ann -> @bea -> @cal)")
    for follower in ("@bea", "@cal"):
        d.ok(follower, f"follow {follower} @ann",
             ("@ann", rf"^\[notice\] you were followed by {follower}$"))

    d.step("follow: @cal and @dan follow @eve (the ring @eve -> @cal -> @dan, which meets "
           "@ann's in @cal)")
    for follower in ("@cal", "@dan"):
        d.ok(follower, f"follow {follower} @eve",
             ("@eve", rf"^\[notice\] you were followed by {follower}$"))

    d.step("follow fails: already, self, unknown handle, someone else's handle")
    d.fails("@cal", "follow @cal @ann", "ALREADY_FOLLOWING")
    d.fails("@cal", "follow @cal @cal", "SELF_FOLLOW")
    d.fails("@cal", "follow @cal @zed", "UNKNOWN_HANDLE")
    d.fails("@cal", "follow @ann @eve", "NOT_YOUR_HANDLE")

    d.step("followers and following")
    d.ok("@ann", "followers", ("@ann", r"^  @bea @cal$"))
    d.ok("@cal", "following", ("@cal", r"^  @ann @eve$"))
    d.fails("@cal", "followers @zed", "UNKNOWN_HANDLE")
    d.fails("@cal", "following @zed", "UNKNOWN_HANDLE")

    d.step("@ann tweets: setups, then the ring @ann -> @bea -> @cal -> @ann, then end-tweet")
    d.tweet("@ann", "hello from @ann #demo", ["@bea", "@cal"])

    d.step("@eve tweets: the ring @eve -> @cal -> @dan -> @eve")
    d.tweet("@eve", "rings meet at @cal #demo #rings", ["@cal", "@dan"])

    d.step("rings: @cal keeps one entry per ring it is in (nothing is sent)")
    d.type("@cal", "rings", None, [("@cal", r"^ring @ann: left @bea, right @ann$"),
                                   ("@cal", r"^ring @eve: left @eve, right @dan$")])
    d.type("@ann", "rings", None, [("@ann", r"^own ring @ann: @ann -> @bea -> @cal -> @ann$")])

    d.step("tweet fails: empty, too long, someone else's handle")
    d.fails("@ann", 'tweet @ann ""', "EMPTY_TEXT")
    d.fails("@ann", f'tweet @ann "{"x" * 141}"', "TOO_LONG")
    d.fails("@ann", 'tweet @eve "not mine"', "NOT_YOUR_HANDLE")

    d.step("retweet: @eve sends @ann's tweet #1 around her own ring (set up already: no "
           "setup); an unknown id fails")
    d.tweet("@eve", "", ["@cal", "@dan"], cmd="retweet 1")
    d.fails("@eve", "retweet 999", "UNKNOWN_TWEET")

    d.step("feed and search")
    d.ok("@cal", "feed", ("@cal", r"^  #1 .* @ann: hello from @ann #demo$"))
    d.fails("@cal", "feed 0", "BAD_COUNT")
    d.ok("@cal", "search #demo", ("@cal", r"^  #\d+ .* @eve: rings meet"),
         ("@cal", r"^  #1 .* @ann: hello from @ann #demo$"))
    d.fails("@cal", "search demo", "BAD_TAG")

    d.step("trending, and who is online (the ones @bea follows marked)")
    d.ok("@cal", "trending", ("@cal", r"^  #demo 3$"), ("@cal", r"^  #rings 1$"))
    d.ok("@bea", "online", ("@bea", r"^  @ann  \(following\)$"), ("@bea", r"^  @eve$"))

    d.step("say: a chat-room line, pushed to everyone online")
    d.ok("@ann", 'say "coffee at noon?"',
         *[(h, r"^\[say\] @ann: coffee at noon\?$") for h in ("@bea", "@cal", "@dan", "@eve")])
    d.fails("@ann", f'say "{"y" * 141}"', "TOO_LONG")

    d.step("message: the tracker names the peer, the text goes peer to peer; an unknown "
           "handle fails")
    d.ok("@bea", 'message @cal "see you there"', ("@bea", r"^message #\d+ delivered to @cal$"),
         ("@cal", r"^\[message\] @bea: see you there$"))
    d.fails("@bea", 'message @zed "hello?"', "UNKNOWN_HANDLE")

    d.step("block: @eve blocks @dan, who can then neither message nor follow her")
    d.ok("@eve", "block @dan")
    d.fails("@dan", 'message @eve "hey"', "BLOCKED")
    d.fails("@dan", "follow @dan @eve", "BLOCKED")
    d.fails("@eve", "block @dan", "ALREADY_BLOCKED")
    d.fails("@eve", "block @eve", "SELF_BLOCK")

    d.step("unblock: @dan may follow @eve again")
    d.ok("@eve", "unblock @dan")
    d.fails("@eve", "unblock @dan", "NOT_BLOCKED")
    d.ok("@dan", "follow @dan @eve", ("@eve", r"^\[notice\] you were followed by @dan$"))

    d.step("drop: @cal leaves @eve's ring")
    d.ok("@cal", "drop @cal @eve")
    d.fails("@cal", "drop @cal @eve", "NOT_FOLLOWING")

    d.step("@eve tweets after the drop: a teardown for @cal, a setup for @dan, who is her "
           "only follower now")
    d.tweet("@eve", "after the drop", ["@dan"])
    # Nobody waits for a teardown; @cal's rings show it has been taken (and acknowledged).
    d.type("@cal", "rings", None, [("@cal", r"^ring @ann: left @bea, right @ann$")])

    d.step("logout: @dan goes away; a message to him is kept by the tracker")
    d.ok("@dan", "logout")
    d.fails("@dan", "logout", "NOT_LOGGED_IN")
    d.ok("@ann", 'message @dan "welcome back"')

    d.step("@eve tweets while @dan is away: no follower online; the teardown to his old ports "
           "is never answered")
    d.tweet("@eve", "while @dan is away", [])

    d.step("login: a wrong password, an unknown handle, then @dan is back and gets the kept "
           "message")
    d.login("@dan", "@dan", "not my password", "FAILURE WRONG_PASSWORD")
    d.login("@dan", "@zed", "whatever", "FAILURE UNKNOWN_HANDLE")
    d.login("@dan", "@dan", password_of("@dan"), "SUCCESS",              # 1 new tweet
            then=[("@dan", r"^ports: left="), ("@dan", r"^\[message\] @ann: welcome back ")])
    d.ok("@dan", "feed 2", ("@dan", r"^  #\d+ .* @eve: while @dan is away$"),
         ("@dan", r"^  #\d+ .* @eve: after the drop$"))

    d.step("@eve tweets again: @dan has new ports, so a new setup")
    d.tweet("@eve", "welcome back @dan (new ports, so a new setup)", ["@dan"])

    d.step("a raw wire session (PROTOCOL.md §1): auth, and requests user.py never malforms")
    raw = RawSession(demo)
    raw.expect("SUCCESS", "auth", password="none needed")
    raw.expect("FAILURE BAD_REQUEST", "auth")
    raw.expect("FAILURE BAD_REQUEST", "query-handles", verbose=True)
    raw.expect("FAILURE BAD_REQUEST", "online", verbose=True)
    raw.expect("FAILURE NOT_LOGGED_IN", "heartbeat")

    d.step("the raw session registers, then sends end-tweet and exit-complete out of turn")
    ip = d.hosts.addresses["@raw"] if d.hosts else "127.0.0.1"
    udp = [free_port(socket.SOCK_DGRAM) for _ in range(3)]
    raw.expect("SUCCESS", "register", handle="@raw", ip=ip, ports=udp, key=SAMPLE_KEY,
               password=password_of("@raw"))
    raw.expect("SUCCESS", "heartbeat")
    raw.expect("FAILURE NO_TWEET_IN_PROGRESS", "end-tweet", handle="@raw", tid=1, reached=0,
               skipped=[])
    raw.expect("FAILURE EXIT_NOT_STARTED", "exit-complete", handle="@raw")

    d.step("the raw session: a message it could not deliver is relayed by the tracker; then it "
           "exits")
    message_id = raw.expect("SUCCESS", "message", to="@dan", text="from the wire")["message_id"]
    raw.expect("SUCCESS", "message-undelivered", message_id=message_id)
    d.expect("@dan", r"^\[message\] @raw: from the wire \(kept by the tracker")   # relayed now
    raw.expect("FAILURE UNKNOWN_MESSAGE", "message-undelivered", message_id=message_id + 999)
    raw.expect("FAILURE UNKNOWN_MESSAGE", "message-received", message_id=message_id)  # not ours
    raw.expect("SUCCESS", "exit", handle="@raw")
    raw.expect("SUCCESS", "exit-complete", handle="@raw")
    raw.close()

    d.step("exit fails for someone else's handle")
    d.fails("@bea", "exit @ann", "NOT_YOUR_HANDLE")

    d.step("@ann exits: she tears her ring down, is deleted, and her followers are told")
    d.ok("@ann", "exit @ann", ("@ann", r"^ring of @ann torn down \(2 of 2 followers "),
         ("@ann", r"^SUCCESS: @ann exited"), ("@ann", r"^bye$"),
         ("@bea", r"^\[notice\] @ann went offline$"), ("@cal", r"^\[notice\] @ann went offline$"))

    d.step("@eve exits the same way")
    d.ok("@eve", "exit @eve", ("@eve", r"^ring of @eve torn down \(1 of 1 followers "),
         ("@eve", r"^SUCCESS: @eve exited"), ("@eve", r"^bye$"),
         ("@dan", r"^\[notice\] @eve went offline$"))

    d.step("@bea exits (no ring of her own); @cal and @dan quit, which only logs them out")
    d.ok("@bea", "exit @bea", ("@bea", r"^SUCCESS: @bea exited"), ("@bea", r"^bye$"))
    d.ok("@cal", "quit")
    d.ok("@dan", "quit")
    for handle in ("@ann", "@eve", "@bea", "@cal", "@dan"):
        status = d.procs[handle].wait(d.timeout)
        if status != 0:
            raise DemoFailed(f"{handle} ended with status {status}")
        d.printed(handle, "(ended, status 0)")
    status = d.procs["tracker"].interrupt(d.timeout)
    d.show_output()
    d.printed("tracker", f"(stopped with Ctrl-C, status {status})")
    if status != 0:
        raise DemoFailed(f"the tracker ended with status {status}")


# ---- checks ------------------------------------------------------------------------------------
def outcomes(records: Sequence[TraceRecord]) -> dict[str, set[str]]:
    """Each tracker command and the answers it got (SUCCESS, FAILURE CODE), from the tracker's
    trace: per lifeline, replies come in the order of the requests."""
    names = aliases(records)
    pending: dict[str, deque[str]] = defaultdict(deque)
    answers: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r.at != "tracker" or r.kind == "alias":
            continue
        if r.dir == "recv":
            cmd = r.kind
            if cmd not in COMMANDS:         # a frame the tracker refused: the kind is its code
                with contextlib.suppress(ValueError, AttributeError):
                    cmd = str(json.loads(r.summary).get("cmd", cmd))
            pending[names.get(r.src, r.src)].append(cmd)
        elif arrow_style(r.kind) == REPLY:
            queue = pending[names.get(r.dst, r.dst)]
            answers[queue.popleft() if queue else "?"].add(r.kind)
    return answers


def coverage(demo: Demo, records: Sequence[TraceRecord]) -> tuple[list[str], list[str]]:
    """The summary lines (every tracker command's answers, the user.py commands typed) and what
    is missing."""
    lines, missing = [], []
    answers = outcomes(records)
    for cmd in COMMANDS:
        got = answers.get(cmd, set())
        failures = sorted(kind for kind in got if kind.startswith("FAILURE"))
        lines.append(f"   {cmd:<20} {'SUCCESS' if 'SUCCESS' in got else '-------'}  "
                     f"{', '.join(failures) or '(no FAILURE)'}")
        if "SUCCESS" not in got or not failures:
            missing.append(f"tracker command {cmd}: SUCCESS and a FAILURE")
    typed = [c for c in USER_COMMANDS if c in demo.typed]
    lines.append(f"\n   user.py commands typed: {len(typed)} of {len(USER_COMMANDS)}")
    lines.append("   " + " ".join(typed))
    missing += [f"user.py command {c}" for c in USER_COMMANDS if c not in demo.typed]
    return lines, missing


# ---- the page ------------------------------------------------------------------------------------
def normalise_line(norm: Normaliser, line: str) -> str:
    """A transcript line as the page shows it: ports named as in the diagrams, durations and
    dates blanked."""
    for pattern, replacement in _VOLATILE:
        line = pattern.sub(replacement, line)
    return norm.text(line)


def transcript_lines(log: StepLog) -> list[str]:
    """A step's transcript for the page: after each typed line, the lines it made each process
    print, the typist's first, then per process in a fixed order (the order in which lines of
    different processes arrive changes from run to run)."""
    order = {name: rank for rank, name in enumerate((*USERS, "raw", "tracker"))}
    lines: list[str] = []
    block: list[tuple[int, int, str]] = []
    typist = ""
    for position, (typed, name, text) in enumerate([*log.entries, (True, "", "")]):
        if not typed:
            block.append((-1 if name == typist else order.get(name, len(order)), position,
                          f"   {name:<7} | {text}"))
            continue
        lines += [text for _rank, _position, text in sorted(block)]
        block, typist = [], name
        if name:
            lines.append(f"  {name}> {text}")
    return lines


def page(demo: Demo, run: Run, summary: Sequence[str]) -> str:
    """The Markdown of the run: an introduction, then per step its transcript and diagram."""
    norm = Normaliser()
    names = None
    if demo.hosts:              # the lifelines name their hosts
        names = {name: f"{name} {address}" for name, address in demo.hosts.addresses.items()}
    where = ("each process on a host of its own (a network namespace with an address in "
             f"{Hosts.SUBNET}.0/24, joined by a bridge): `make demo HOSTS=1`"
             if demo.hosts else "all on one machine: `make demo`")
    out = [
        "# The course demo, step by step",
        "",
        f"`tools/demo.py` runs a tracker and five scripted `user.py` processes, {where}. "
        "@ann's ring (@ann → @bea → @cal → @ann) and @eve's ring (@eve → @cal → @dan → @eve) "
        "intersect in @cal; every command is used, every tracker command answers once with "
        "`SUCCESS` and once with `FAILURE` (a raw wire session sends the requests `user.py` "
        "never gets wrong), and everyone leaves gracefully.",
        "",
        "Each step shows what was typed (`@ann> …`) and what each process printed "
        "(`@bea | …`), then the step's time-space diagram, merged from every process's "
        "`--trace-file` by `protocol.diagram`: one lifeline per process, each message once, "
        "in causal order. Requests and datagrams are `->>`, replies and acks `-->>`, tracker "
        "pushes `-)`, a message never received ends in a cross.",
        "",
        "So that a rerun writes the same page, what differs from run to run is named in order "
        "of appearance: ports `p1`, `p2`, …, datagram sequence numbers `s1`, …, keys `k1`, …, "
        "times `t1`, …; durations and dates are blanked. `python3 -m protocol.diagram --text` "
        "draws the same diagrams in a terminal.",
        "",
    ]
    by_number = {step.number: step for step in run.steps}
    for log in demo.steps[1:]:
        out += [f"## {log.number}. {log.title}", ""]
        step = by_number.get(log.number)
        diagram = ""
        if step is not None and step.messages:
            diagram = mermaid(select(run, {log.number}), norm, names, step_notes=False)
        transcript = [normalise_line(norm, line) for line in transcript_lines(log)]
        if transcript:
            out += ["```text", *transcript, "```", ""]
        if diagram:
            out += ["```mermaid", diagram.rstrip("\n"), "```", ""]
        else:
            out += ["No message is sent.", ""]
    out += ["## Every tracker command, answered", "",
            "From the tracker's own trace: each command and the answers it gave.", "",
            "```text", *(line.rstrip() for line in "\n".join(summary).splitlines()), "```", ""]
    return "\n".join(out)


# ---- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/demo.py",
        description="The course demo: a tracker and five scripted users, then one time-space "
                    "diagram per step, written as Markdown.",
        epilog="example: python3 tools/demo.py --quick --out /path/to/demo.md")
    parser.add_argument("--quick", action="store_true",
                        help="smaller timeouts (the same commands): what the tests run")
    parser.add_argument("--hosts", action="store_true",
                        help="each process on a host of its own (network namespaces and a "
                             "bridge, made and removed by the demo; needs root and ip)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the Markdown (default tools/demo.md, or "
                             "tools/demo-hosts.md with --hosts)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="show only the outcome (and the last lines if something failed)")
    parser.add_argument("--traces", type=Path, metavar="DIR",
                        help="keep the trace files in DIR (made if need be), e.g. for "
                             "python3 -m protocol.diagram --text --step 10 DIR/*.jsonl")
    return parser.parse_args(argv)


@contextlib.contextmanager
def terminated_cleanly() -> Iterator[None]:
    """SIGTERM ends the demo as Ctrl-C does: through the clean-up (processes, namespaces)."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace, hosts: Hosts | None) -> int:
    out = args.out or (HOSTS_OUT if hosts else DEFAULT_OUT)
    with contextlib.ExitStack() as stack:
        if args.traces is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tweeter-")))
        else:
            workdir = args.traces
            workdir.mkdir(parents=True, exist_ok=True)
            for old in workdir.glob("*.jsonl"):     # trace files append: start afresh
                old.unlink()
        held: deque[str] = deque(maxlen=40)        # with --quiet: the last lines, for a failure
        demo = Demo(workdir, args.quick, hosts, echo=held.append if args.quiet else None)
        try:
            run_scenario(demo)
        except (DemoFailed, Timeout, OSError, ValueError) as error:
            demo.show_output()
            print("\n".join(held))
            print(f"\ndemo FAILED at step {demo.steps[-1].number}: {error}", flush=True)
            return 1
        finally:
            demo.stop_all()
        records = read_traces([str(path) for path in demo.traces])
        summary, missing = coverage(demo, records)
        if not args.quiet:
            print("\n== summary: the answers of every tracker command (from the tracker's "
                  "trace) ==")
            print("\n".join(summary), flush=True)
        run_diagram = build(records, order=LIFELINES)
        out.write_text(page(demo, run_diagram, summary), encoding="utf-8")
    print(f"\n== {len(demo.steps) - 1} steps and their diagrams written to {out.name} ==",
          flush=True)
    if missing:
        print("demo FAILED: not covered: " + "; ".join(missing), flush=True)
        return 1
    print("demo done: every command shown, every answer as expected", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with terminated_cleanly():
        try:
            if not args.hosts:
                return run(args, None)
            Hosts.check()
            with Hosts(LIFELINES) as hosts:
                return run(args, hosts)
        except HostsError as error:
            print(f"demo: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:       # the processes and hosts are gone by now
            print("\ndemo interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
