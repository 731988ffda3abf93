"""The per-command diagrams of ``protocol/PROTOCOL.md``, generated from a real scripted run.

    python3 tools/protocol_diagrams.py           # rewrite the diagram blocks of PROTOCOL.md
    python3 tools/protocol_diagrams.py --check   # exit 1, showing the difference, if stale

A tracker and six ``user.py`` processes (@a to @f) play one scripted run (``scenario``); each
step the page draws is a diagram block of PROTOCOL.md, between the lines
``<!-- diagram: NAME -->`` and ``<!-- /diagram -->``.  Only those blocks are rewritten: the rest
of the file is hand-written.  The run is driven, traced and drawn as ``tools/demo.py`` does it
(its ``Demo``), each block with a ``Normaliser`` of its own, so that a rerun gives the same text
and ``tests/test_protocol_diagrams.py`` can check that the written protocol matches the code.
"""

from __future__ import annotations

import argparse
import difflib
import re
import signal
import sys
import tempfile
import textwrap
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))     # protocol/, tools/

from protocol.diagram import Normaliser, Run, build, mermaid, select
from tools.demo import Demo, DemoFailed, password_of
from tools.diagram_cli import read_traces
from tools.driver import Timeout

PROTOCOL = Path(__file__).resolve().parent.parent / "protocol" / "PROTOCOL.md"
LIFELINES = ("tracker", "@a", "@b", "@c", "@d", "@e", "@f")
BLOCK = re.compile(r"^<!-- diagram: (?P<name>[\w-]+) -->\n.*?^<!-- /diagram -->$", re.S | re.M)
GENERATED = "%% generated from a real run by tools/protocol_diagrams.py (make diagrams)"

# Per block: a sentence above the diagram (or none), and names for lifelines with a role.
CAPTIONS = {
    "other-commands": "The other commands are a request and its reply each. After `login`, "
                      "the tracker pushes the messages kept for the user (§6), and `user.py` "
                      "asks `following` (it takes setups only for rings of handles it "
                      "follows, §3.2):",
}
ROLES: dict[str, Mapping[str, str]] = {
    "tweet": {"@a": "@a (author)"},
    "detour": {"@e": "@e (author)", "@c": "@c (stopped)"},
    "say-message": {"@f": "@f (offline, then back)"},
}


def scenario(d: Demo) -> dict[str, list[int]]:
    """The scripted run; returns the steps each block draws."""
    blocks: dict[str, list[int]] = {}

    def step(title: str, block: str | None = None) -> None:
        d.step(title)
        if block:
            blocks.setdefault(block, []).append(d.steps[-1].number)

    step("a tracker")
    d.start_tracker()
    step("register: @a binds its three UDP ports, then registers", "register")
    d.start_user("@a")
    d.register("@a", "@a")
    step("the others register (not drawn)")
    for handle in ("@b", "@c", "@d", "@e", "@f"):
        d.start_user(handle)
        d.register(handle, handle)
    step("query handles", "query-handles")
    d.ok("@a", "query handles", ("@a", r"^6: "))
    step("follow and drop", "follow-drop")
    d.ok("@e", "follow @e @a", ("@a", r"you were followed by @e"))
    d.ok("@e", "drop @e @a")
    step("the rings: @b, @c, @d follow @a and @e (not drawn)")
    for follower in ("@b", "@c", "@d"):
        for author in ("@a", "@e"):
            d.ok(follower, f"follow {follower} {author}",
                 (author, rf"you were followed by {follower}"))
    step("the other commands", "other-commands")
    d.ok("@b", "online", ("@b", r"^  @f$"))
    d.ok("@b", "followers @a", ("@b", r"^  @b @c @d$"))
    d.ok("@b", "following", ("@b", r"^  @a @e$"))
    d.ok("@b", "block @f")
    d.ok("@b", "unblock @f")
    step("a tweet around the ring", "tweet")
    d.tweet("@a", "hi #protocol", ["@b", "@c", "@d"])
    step("logout, login, feed, search, trending", "other-commands")
    d.ok("@f", "logout")
    d.login("@f", "@f", password_of("@f"), "SUCCESS", then=[("@f", r"^ports: ")])
    d.ok("@f", "search #protocol", ("@f", r"^  #1 "))      # (after login's own following)
    d.ok("@f", "trending", ("@f", r"^  #protocol 1$"))
    d.ok("@b", "feed 1", ("@b", r"^  #1 "))
    step("say", "say-message")
    d.ok("@b", 'say "hello"', *[(h, r"^\[say\] @b: hello$") for h in ("@a", "@c", "@d", "@e",
                                                                        "@f")])
    step("@f logs out (not drawn)")
    d.ok("@f", "logout")
    step("messages", "say-message")
    d.ok("@b", 'message @c "psst"', ("@c", r"^\[message\] @b: psst$"),
         ("@b", r"^message #\d+ delivered"))
    d.ok("@b", 'message @f "later"')
    d.login("@f", "@f", password_of("@f"), "SUCCESS",
            then=[("@f", r"^ports: "), ("@f", r"^\[message\] @b: later ")])
    settle(d, "@f")
    step("exit", "exit")
    d.ok("@a", "exit @a", ("@a", r"^ring of @a torn down \(3 of 3 "), ("@a", r"^bye$"),
         *[(h, r"^\[notice\] @a went offline$") for h in ("@b", "@c", "@d")])
    d.procs["@a"].wait(d.timeout)
    step("@e sets its ring up; then @c stops answering (not drawn)")
    d.tweet("@e", "ring up", ["@b", "@c", "@d"])
    d.procs["@c"].kill(signal.SIGSTOP)
    step("a follower that does not answer", "detour")
    d.type("@e", 'tweet @e "around @c"', None, [
        ("@e", r"^SUCCESS: tweet #\d+ of @e goes"), ("@d", r"^tweet #\d+ by @e via @b: "),
        ("@e", r"^tweet #\d+ reached 2 followers in [\d.]+ ms; skipped @c$")])
    # What the tracker does about @c goes to @c, which cannot show it: @e's next request is
    # answered only after it (one thread serves @e), so it closes the step.
    d.ok("@e", "online", ("@e", r"^  @f$"))
    step("the end (not drawn)")
    d.procs["@c"].kill(signal.SIGKILL)
    for handle in ("@b", "@d", "@e", "@f"):
        d.ok(handle, "quit")
        d.procs[handle].wait(d.timeout)
    d.procs["tracker"].interrupt(d.timeout)
    return blocks


def settle(d: Demo, who: str) -> None:
    """Wait until ``who`` has finished its last command (``login`` goes on after its last line
    with a ``following`` request): a command that sends nothing answers once it has."""
    d.type(who, "rings", None, [(who, r"^own ring ")])


def render(run: Run, blocks: Mapping[str, list[int]]) -> dict[str, str]:
    """Each block's text: its caption and its Mermaid diagram."""
    texts = {}
    for name, steps in blocks.items():
        diagram = mermaid(select(run, set(steps)), Normaliser(), ROLES.get(name),
                          step_notes=False)
        head, body = diagram.split("\n", 1)
        caption = [*textwrap.wrap(CAPTIONS[name], 99), ""] if name in CAPTIONS else []
        texts[name] = "\n".join([*caption, "```mermaid", head, f"    {GENERATED}",
                                 body.rstrip("\n"), "```"])
    return texts


def update(text: str, blocks: Mapping[str, str]) -> str:
    """``text`` (PROTOCOL.md) with each marked block replaced; every block must be there."""
    found = set()

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in blocks:
            return match.group(0)
        found.add(name)
        return f"<!-- diagram: {name} -->\n{blocks[name]}\n<!-- /diagram -->"

    result = BLOCK.sub(replace, text)
    missing = sorted(set(blocks) - found)
    if missing:
        raise DemoFailed(f"PROTOCOL.md has no block for {', '.join(missing)}: add the lines "
                         f"<!-- diagram: {missing[0]} --> and <!-- /diagram --> where it goes")
    return result


def generate(quiet: bool = True) -> dict[str, str]:
    """Run the scenario and return every block's text."""
    with tempfile.TemporaryDirectory(prefix="tweeter-protocol-") as workdir:
        demo = Demo(Path(workdir), echo=(lambda _text: None) if quiet else None)
        try:
            blocks = scenario(demo)
        finally:
            demo.stop_all()
        run = build(read_traces([str(path) for path in demo.traces]), order=LIFELINES)
    return render(run, blocks)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/protocol_diagrams.py",
        description="Regenerate the per-command time-space diagrams of protocol/PROTOCOL.md "
                    "from a real scripted run.",
        epilog="example: python3 tools/protocol_diagrams.py --check")
    parser.add_argument("--check", action="store_true",
                        help="change nothing: exit 1 and show the difference if PROTOCOL.md's "
                             "diagrams are not those of a fresh run")
    parser.add_argument("--file", type=Path, default=PROTOCOL, help="the file to update")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the run as it goes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        old = args.file.read_text(encoding="utf-8")
        new = update(old, generate(quiet=not args.verbose))
    except (DemoFailed, Timeout) as error:
        print(f"protocol_diagrams: the run failed: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"protocol_diagrams: {args.file}: {error.strerror or error}", file=sys.stderr)
        return 2
    if new == old:
        print(f"{args.file.name}: the diagrams are those of a fresh run")
        return 0
    if args.check:
        sys.stdout.writelines(difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True),
            f"{args.file.name} (committed)", f"{args.file.name} (a fresh run)"))
        print(f"\n{args.file.name}: the diagrams differ from a fresh run: run make diagrams")
        return 1
    args.file.write_text(new, encoding="utf-8")
    print(f"{args.file.name}: {len(BLOCK.findall(new))} diagrams rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
