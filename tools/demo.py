"""The course demo in one terminal (``make demo``, SPEC §8), ending with its time-space diagram.

    python3 tools/demo.py                    # what `make demo` runs; writes tools/demo.md
    python3 tools/demo.py --quick --out X.md # smaller timeouts, the same commands (the test)

A tracker (throw-away database) and five scripted ``user.py`` processes, driven through pipes:
@ann's ring is @ann -> @bea -> @cal -> @ann and @eve's ring is @eve -> @cal -> @dan -> @eve, two
rings of three that intersect in @cal.  Every ``user.py`` command is typed, every tracker command
is answered once with SUCCESS and once with FAILURE (the few that ``user.py`` never gets wrong, such
as ``end-tweet``, by a raw wire session), and everyone leaves gracefully.  Each step is printed
as ``== step N: … ==``, then what was typed (``@ann> …``) and every line each process printed in
answer (``@bea | …``), in the order they came.  The demo checks each answer as it goes, and at the
end, from the tracker's own trace, that each tracker command got a SUCCESS and a FAILURE; it exits
1, naming what differed, if anything did.  Finally it merges every process's ``--trace-file`` with
``protocol.diagram`` and writes the Mermaid diagram of the whole run to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import tempfile
from collections import defaultdict, deque
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))     # protocol/, tracker.py

from driver import SAMPLE_KEY, Proc, Timeout, free_port, start_tracker  # tools/ is on sys.path

from protocol.diagram import REPLY, aliases, arrow_style, merge, read_traces, render
from protocol.trace import TraceRecord
from protocol.wire import COMMANDS

DEFAULT_OUT = Path(__file__).resolve().parent / "demo.md"
USER_COMMANDS = ("register", "login", "logout", "query", "follow", "drop", "tweet", "retweet",
                 "feed", "search", "trending", "online", "followers", "following", "say",
                 "message", "block", "unblock", "rings", "help", "exit", "quit")
MERMAID_MAX = 50_000        # characters Mermaid renders by default (its maxTextSize)
REPLY_LINE = r"^(SUCCESS|FAILURE [A-Z_]+):"


class DemoFailed(Exception):
    """Something answered differently from what the demo expects."""


def password_of(handle: str) -> str:
    return f"pw-{handle.strip('@').lower()}-demo"


class RawSession:
    """A bare TCP session that speaks the wire protocol (PROTOCOL.md §1) and shows each frame."""

    def __init__(self, demo: Demo, port: int) -> None:
        self.demo = demo
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=demo.timeout)
        self.reader = self.sock.makefile("rb")
        self.next_id = 1
        welcome = self.frame()
        if welcome.get("push") != "welcome":
            raise DemoFailed(f"raw: the first frame is not the welcome push: {welcome}")

    def frame(self) -> dict:
        try:
            line = self.reader.readline()
        except OSError as error:
            raise DemoFailed(f"raw: no frame from the tracker: {error}") from None
        if not line:
            raise DemoFailed("raw: the tracker closed the connection")
        self.demo.out(f"   {'raw':<7} | {line.decode('utf-8', 'replace').rstrip()}")
        return json.loads(line)

    def call(self, want: str, cmd: str, **fields: object) -> dict:
        """Send one request; its reply must be ``want`` (SUCCESS, or FAILURE CODE)."""
        request = {"id": self.next_id, "cmd": cmd, **fields}
        self.next_id += 1
        shown = {k: ("***" if k == "password" else v) for k, v in request.items()}
        self.demo.out(f"  raw> {json.dumps(shown)}")
        self.sock.sendall((json.dumps(request) + "\n").encode())
        while "push" in (reply := self.frame()):
            pass
        got = reply["status"] + (f" {reply['code']}" if reply.get("code") else "")
        if got != want:
            raise DemoFailed(f"raw: {cmd} answered {got}, not {want}")
        return reply

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class Demo:
    """The processes of the demo and the transcript of what they print."""

    def __init__(self, quick: bool, workdir: Path) -> None:
        self.quick, self.workdir = quick, workdir
        self.timeout = 10.0 if quick else 20.0
        self.peer_args = ["--hop-timeout", "0.1", "--hop-retries", "3"] if quick else []
        self.procs: dict[str, Proc] = {}
        self.traces: list[Path] = []
        self.typed: set[str] = set()
        self.step_number = 0
        self.port = 0

    # ---- transcript --------------------------------------------------------------------------
    @staticmethod
    def out(text: str) -> None:
        print(text, flush=True)

    def show_output(self) -> None:
        """Every line the processes printed since last time, in the order it came."""
        lines = [(order, name, text) for name, proc in self.procs.items()
                 for order, text in proc.take_unshown()]
        for _order, name, text in sorted(lines):
            self.out(f"   {name:<7} | {text}")

    def step(self, title: str) -> None:
        self.show_output()
        self.step_number += 1
        self.out(f"\n== step {self.step_number}: {title} ==")

    # ---- processes ---------------------------------------------------------------------------
    def trace_file(self, name: str) -> Path:
        path = self.workdir / f"{name.strip('@')}.jsonl"
        self.traces.append(path)
        return path

    def start_tracker(self) -> None:
        proc, self.port = start_tracker("-q", "--trace-file", str(self.trace_file("tracker")),
                                        timeout=self.timeout)
        self.procs["tracker"] = proc

    def start_user(self, handle: str) -> Proc:
        proc = Proc(["user.py", "127.0.0.1", str(self.port), "-q", *self.peer_args,
                     "--trace-file", str(self.trace_file(handle))], handle)
        self.procs[handle] = proc
        return proc

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
        each (process, pattern) of ``then`` must be printed, in order per process."""
        self.show_output()
        note = f"   (password typed {'twice' if len(passwords) == 2 else 'once'})" \
            if passwords else ""
        self.out(f"  {who}> {line}{note}")
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
        self.type(who, f"register {handle}", want, passwords=(password, password),
                  then=[(who, r"^ports: left=\d+")] if want == "SUCCESS" else ())

    def tweet(self, author: str, text: str, ring: Sequence[str], cmd: str | None = None) -> None:
        """``author`` tweets (or retweets with ``cmd``); the text goes round ``ring``."""
        then = [(author, r"^SUCCESS: tweet #\d+ of ")]
        previous = author
        for follower in ring:
            then.append((follower, rf"^tweet #\d+ by {author} via {previous}: "))
            previous = follower
        then += [(author, r"^SUCCESS: tweet #\d+ of \S+ ended"),
                 (author, rf"^tweet #\d+ reached {len(ring)} followers? in [\d.]+ ms$")]
        self.type(author, cmd or f'tweet {author} "{text}"', None, then)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop()


def run_scenario(demo: Demo) -> None:
    """The course demo, step by step."""
    d = demo
    d.step("a tracker on a free port, with a throw-away database (--db :memory:)")
    d.start_tracker()
    d.show_output()

    d.step("five users start; @eve looks around before registering")
    for handle in ("@ann", "@bea", "@cal", "@dan", "@eve"):
        d.start_user(handle)
    d.ok("@eve", "query handles", ("@eve", r"^0: $"))
    d.ok("@eve", "online")
    d.fails("@eve", "trending", "NOT_LOGGED_IN")
    d.fails("@eve", "logout", "NOT_LOGGED_IN")

    d.step("register: four handles; then @eve tries a taken one and a malformed one")
    for handle in ("@ann", "@bea", "@cal", "@dan"):
        d.register(handle, handle)
    d.register("@eve", "@Ann", want="FAILURE DUPLICATE_HANDLE")
    d.fails("@eve", "register @e4", "BAD_HANDLE")
    d.register("@eve", "@eve")
    d.ok("@ann", "query handles", ("@ann", r"^5: @ann @bea @cal @dan @eve$"))

    d.step("help")
    d.type("@ann", "help follow", None, [("@ann", r"^follow \[@you\] @handle")])

    d.step("follow: @bea and @cal follow @ann; @cal and @dan follow @eve (two rings, one "
           "shared member: @cal)")
    for follower, author in (("@bea", "@ann"), ("@cal", "@ann"), ("@cal", "@eve"),
                             ("@dan", "@eve")):
        d.ok(follower, f"follow {follower} {author}",
             (author, rf"^\[notice\] you were followed by {follower}$"))

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

    d.step("@ann tweets: the ring @ann -> @bea -> @cal -> @ann")
    d.tweet("@ann", "hello from @ann #demo", ["@bea", "@cal"])

    d.step("@eve tweets: the ring @eve -> @cal -> @dan -> @eve")
    d.tweet("@eve", "rings meet at @cal #demo #rings", ["@cal", "@dan"])

    d.step("rings: @cal keeps one entry per ring it is in")
    d.type("@cal", "rings", None, [("@cal", r"^ring @ann: left @bea, right @ann$"),
                                   ("@cal", r"^ring @eve: left @eve, right @dan$")])
    d.type("@ann", "rings", None, [("@ann", r"^own ring @ann: @ann -> @bea -> @cal -> @ann$")])

    d.step("tweet fails: empty, too long, someone else's handle")
    d.fails("@ann", 'tweet @ann ""', "EMPTY_TEXT")
    d.fails("@ann", f'tweet @ann "{"x" * 141}"', "TOO_LONG")
    d.fails("@ann", 'tweet @eve "not mine"', "NOT_YOUR_HANDLE")

    d.step("retweet: @eve sends @ann's tweet #1 around her own ring; an unknown id fails")
    d.tweet("@eve", "", ["@cal", "@dan"], cmd="retweet 1")
    d.fails("@eve", "retweet 999", "UNKNOWN_TWEET")

    d.step("feed, search and trending")
    d.ok("@cal", "feed", ("@cal", r"^  #1 .* @ann: hello from @ann #demo$"))
    d.fails("@cal", "feed 0", "BAD_COUNT")
    d.ok("@cal", "search #demo", ("@cal", r"^  #\d+ .* @eve: rings meet"))
    d.fails("@cal", "search demo", "BAD_TAG")
    d.ok("@cal", "trending", ("@cal", r"^  #demo 3$"), ("@cal", r"^  #rings 1$"))

    d.step("online: who is online, the ones @bea follows marked")
    d.ok("@bea", "online", ("@bea", r"^  @ann  \(following\)$"))

    d.step("say: a chat-room line to everyone online")
    d.ok("@ann", 'say "coffee at noon?"',
         *[(h, r"^\[say\] @ann: coffee at noon\?$") for h in ("@bea", "@cal", "@dan", "@eve")])
    d.fails("@ann", f'say "{"y" * 141}"', "TOO_LONG")

    d.step("message: peer to peer to an online user; an unknown handle fails")
    d.ok("@bea", 'message @cal "see you there"', ("@bea", r"^message #\d+ delivered to @cal$"),
         ("@cal", r"^\[message\] @bea: see you there$"))
    d.fails("@bea", 'message @zed "hello?"', "UNKNOWN_HANDLE")

    d.step("block and unblock: @eve blocks @dan, who can then neither follow nor message her")
    d.ok("@eve", "block @dan")
    d.fails("@dan", 'message @eve "hey"', "BLOCKED")
    d.fails("@dan", "follow @dan @eve", "BLOCKED")
    d.fails("@eve", "block @dan", "ALREADY_BLOCKED")
    d.fails("@eve", "block @eve", "SELF_BLOCK")
    d.ok("@eve", "unblock @dan")
    d.fails("@eve", "unblock @dan", "NOT_BLOCKED")
    d.ok("@dan", "follow @dan @eve", ("@eve", r"^\[notice\] you were followed by @dan$"))

    d.step("drop: @cal leaves @eve's ring; @eve's next tweet only visits @dan")
    d.ok("@cal", "drop @cal @eve")
    d.fails("@cal", "drop @cal @eve", "NOT_FOLLOWING")
    d.tweet("@eve", "after the drop", ["@dan"])

    d.step("logout and login: a message kept while @dan is away, delivered at his login")
    d.ok("@dan", "logout")
    d.fails("@dan", "logout", "NOT_LOGGED_IN")
    d.ok("@ann", 'message @dan "welcome back"')
    d.tweet("@eve", "while @dan is away", [])
    d.type("@dan", "login @dan", "FAILURE WRONG_PASSWORD", passwords=["not my password"])
    d.type("@dan", "login @zed", "FAILURE UNKNOWN_HANDLE", passwords=["whatever"])
    d.type("@dan", "login @dan", "SUCCESS", passwords=[password_of("@dan")],  # 1 new tweet
           then=[("@dan", r"^ports: left="), ("@dan", r"^\[message\] @ann: welcome back ")])
    d.ok("@dan", "feed 2", ("@dan", r"^  #\d+ .* @eve: while @dan is away$"),
         ("@dan", r"^  #\d+ .* @eve: after the drop$"))
    d.tweet("@eve", "welcome back @dan (new ports, so a new setup)", ["@dan"])

    d.step("a raw wire session: what user.py never gets wrong (PROTOCOL.md §1)")
    raw = RawSession(demo, demo.port)
    udp = [free_port(socket.SOCK_DGRAM) for _ in range(3)]
    raw.call("SUCCESS", "auth", password="none needed")
    raw.call("FAILURE BAD_REQUEST", "auth")
    raw.call("FAILURE BAD_REQUEST", "query-handles", verbose=True)
    raw.call("FAILURE BAD_REQUEST", "online", verbose=True)
    raw.call("FAILURE NOT_LOGGED_IN", "heartbeat")
    raw.call("SUCCESS", "register", handle="@raw", ip="127.0.0.1", ports=udp, key=SAMPLE_KEY,
             password=password_of("@raw"))
    raw.call("SUCCESS", "heartbeat")
    raw.call("FAILURE NO_TWEET_IN_PROGRESS", "end-tweet", handle="@raw", tid=1, reached=0,
             skipped=[])
    raw.call("FAILURE EXIT_NOT_STARTED", "exit-complete", handle="@raw")
    message_id = raw.call("SUCCESS", "message", to="@dan", text="from the wire")["message_id"]
    raw.call("SUCCESS", "message-undelivered", message_id=message_id)
    raw.call("FAILURE UNKNOWN_MESSAGE", "message-undelivered", message_id=message_id + 999)
    raw.call("SUCCESS", "exit", handle="@raw")
    raw.call("SUCCESS", "exit-complete", handle="@raw")
    raw.close()

    d.step("exit fails for someone else's handle")
    d.fails("@bea", "exit @ann", "NOT_YOUR_HANDLE")

    d.step("graceful exits: authors tear their rings down and are deleted; others quit")
    d.ok("@ann", "exit @ann", ("@ann", r"^ring of @ann torn down \(2 of 2 followers "),
         ("@ann", r"^SUCCESS: @ann exited"), ("@ann", r"^bye$"),
         ("@bea", r"^\[notice\] @ann went offline$"), ("@cal", r"^\[notice\] @ann went offline$"))
    d.ok("@eve", "exit @eve", ("@eve", r"^ring of @eve torn down \(1 of 1 followers "),
         ("@eve", r"^SUCCESS: @eve exited"), ("@eve", r"^bye$"),
         ("@dan", r"^\[notice\] @eve went offline$"))
    d.ok("@bea", "exit @bea", ("@bea", r"^SUCCESS: @bea exited"), ("@bea", r"^bye$"))
    d.ok("@cal", "quit")
    d.ok("@dan", "quit")
    for handle in ("@ann", "@eve", "@bea", "@cal", "@dan"):
        status = d.procs[handle].wait(d.timeout)
        if status != 0:
            raise DemoFailed(f"{handle} ended with status {status}")
        d.out(f"   {handle:<7} | (ended, status 0)")
    status = d.procs["tracker"].interrupt(d.timeout)
    d.show_output()
    d.out(f"   {'tracker':<7} | (stopped with Ctrl-C, status {status})")
    if status != 0:
        raise DemoFailed(f"the tracker ended with status {status}")


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


def check_coverage(demo: Demo, records: Sequence[TraceRecord]) -> list[str]:
    """Print the answers of every tracker command and the user.py commands typed; return what
    is missing."""
    missing = []
    demo.out("\n== summary: the answers of every tracker command (from the tracker's trace) ==")
    answers = outcomes(records)
    for cmd in COMMANDS:
        got = answers.get(cmd, set())
        failures = sorted(kind for kind in got if kind.startswith("FAILURE"))
        demo.out(f"   {cmd:<20} {'SUCCESS' if 'SUCCESS' in got else '-------'}  "
                 f"{', '.join(failures) or '(no FAILURE)'}")
        if "SUCCESS" not in got or not failures:
            missing.append(f"tracker command {cmd}: SUCCESS and a FAILURE")
    typed = [c for c in USER_COMMANDS if c in demo.typed]
    demo.out(f"\n== summary: user.py commands typed: {len(typed)} of {len(USER_COMMANDS)} ==")
    demo.out("   " + " ".join(typed))
    missing += [f"user.py command {c}" for c in USER_COMMANDS if c not in demo.typed]
    return missing


def write_diagram(records: Sequence[TraceRecord], out: Path, processes: int) -> str:
    """The Markdown file: a short intro and the Mermaid diagram of the run."""
    acks = True
    text = render(merge(records))
    if len(text) > MERMAID_MAX:
        acks, text = False, render(merge(records, acks=False))
    arrows = text.count("\n") - text.count("participant ") - 1
    intro = [
        "# The course demo, as a time-space diagram",
        "",
        "`make demo` (`tools/demo.py`) runs a tracker and five scripted `user.py` processes in "
        "one terminal: @ann's ring (@ann → @bea → @cal → @ann) and @eve's ring "
        "(@eve → @cal → @dan → @eve) intersect in @cal; every command is used, every tracker "
        "command answers once with `SUCCESS` and once with `FAILURE` (a raw wire session sends "
        "the requests `user.py` never gets wrong), and everyone leaves gracefully.",
        "",
        f"Each of the {processes} processes wrote its `--trace-file`; "
        "`python3 -m protocol.diagram` merged them into the diagram below: one lifeline per "
        f"process, each of the {arrows} messages once, in time order. Requests and datagrams "
        "are `->>`, replies and acks `-->>`, tracker pushes `-)`."
        + ("" if acks else " The datagram acks are left out (`--no-acks`) to keep the "
                           "diagram within what Mermaid renders."),
        "",
        "Regenerate with `make demo`; ports, ids and sequence numbers differ from run to run.",
        "",
    ]
    out.write_text("\n".join(intro) + "\n```mermaid\n" + text + "```\n", encoding="utf-8")
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/demo.py", description="The course demo: a tracker and five scripted users, "
                                          "then the Mermaid time-space diagram of the run.",
        epilog="example: python3 tools/demo.py --quick --out /path/to/demo.md")
    parser.add_argument("--quick", action="store_true",
                        help="smaller timeouts (the same commands): what the test runs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="where to write the Markdown diagram (default tools/demo.md)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tweeter-demo-") as workdir:
        demo = Demo(args.quick, Path(workdir))
        try:
            run_scenario(demo)
        except (DemoFailed, Timeout, OSError, ValueError) as error:
            demo.show_output()
            print(f"\ndemo FAILED at step {demo.step_number}: {error}", flush=True)
            return 1
        finally:
            demo.stop_all()
        records = read_traces([str(path) for path in demo.traces])
        missing = check_coverage(demo, records)
        text = write_diagram(records, args.out, len(demo.traces))
    print(f"\n== the diagram: {text.count(chr(10)) - 1} lines of Mermaid written to "
          f"{args.out.name} ==", flush=True)
    if missing:
        print("demo FAILED: not covered: " + "; ".join(missing), flush=True)
        return 1
    print("demo done: every command shown, every answer as expected", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
