"""`make demo` in quick mode: it exits 0, its transcript shows every command's SUCCESS and
FAILURE, and it writes the Mermaid diagram of the run."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from conftest import PYTHON, ROOT

from protocol.wire import COMMANDS

# One FAILURE code each tracker command must show (the demo shows more for some).
FAILURES = {
    "register": "DUPLICATE_HANDLE", "login": "WRONG_PASSWORD", "logout": "NOT_LOGGED_IN",
    "query-handles": "BAD_REQUEST", "follow": "ALREADY_FOLLOWING", "drop": "NOT_FOLLOWING",
    "tweet": "TOO_LONG", "end-tweet": "NO_TWEET_IN_PROGRESS", "exit": "NOT_YOUR_HANDLE",
    "exit-complete": "EXIT_NOT_STARTED", "online": "BAD_REQUEST", "followers": "UNKNOWN_HANDLE",
    "following": "UNKNOWN_HANDLE", "feed": "BAD_COUNT", "retweet": "UNKNOWN_TWEET",
    "search": "BAD_TAG", "trending": "NOT_LOGGED_IN", "auth": "BAD_REQUEST",
    "heartbeat": "NOT_LOGGED_IN", "say": "TOO_LONG", "message": "BLOCKED",
    "message-undelivered": "UNKNOWN_MESSAGE", "block": "ALREADY_BLOCKED",
    "unblock": "NOT_BLOCKED",
}
USER_COMMANDS = ["register", "login", "logout", "query handles", "follow", "drop", "tweet",
                 "retweet", "feed", "search", "trending", "online", "followers", "following",
                 "say", "message", "block", "unblock", "rings", "exit", "quit"]


def test_demo_quick_shows_every_command_and_writes_the_diagram(tmp_path: Path) -> None:
    out = tmp_path / "demo.md"
    done = subprocess.run([PYTHON, "tools/demo.py", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    transcript = done.stdout
    assert done.returncode == 0, transcript + done.stderr
    assert "Traceback" not in transcript + done.stderr

    # Every user.py command was typed by some user, in a labelled step.
    assert re.search(r"^== step 1: ", transcript, re.M)
    for command in USER_COMMANDS:
        assert re.search(rf"^  @\w+> {command}\b", transcript, re.M), command

    # The transcript shows the FAILURE lines as users saw them ...
    for code in {"DUPLICATE_HANDLE", "WRONG_PASSWORD", "ALREADY_FOLLOWING", "TOO_LONG",
                 "BLOCKED", "NOT_BLOCKED", "BAD_TAG", "BAD_COUNT", "UNKNOWN_TWEET"}:
        assert re.search(rf"\| FAILURE {code}: ", transcript), code
    # ... and, per tracker command, a SUCCESS and the expected FAILURE (from the tracker's trace).
    for cmd in COMMANDS:
        row = re.search(rf"^   {re.escape(cmd)} +(\S+)  (.*)$", transcript, re.M)
        assert row, f"no summary row for {cmd}"
        assert row.group(1) == "SUCCESS", row.group(0)
        assert f"FAILURE {FAILURES[cmd]}" in row.group(2), row.group(0)

    # Both rings ran, intersecting in @cal, and everybody left gracefully.
    assert re.search(r"@cal    \| tweet #\d+ by @ann via @bea: ", transcript)
    assert re.search(r"@cal    \| tweet #\d+ by @eve via @eve: ", transcript)
    assert transcript.count("(ended, status 0)") == 5
    assert "demo done" in transcript

    # The diagram: the Markdown intro and one Mermaid block with a lifeline per process.
    text = out.read_text(encoding="utf-8")
    block = re.search(r"```mermaid\n(sequenceDiagram\n.*?)```", text, re.S)
    assert block, text[:500]
    lifelines = re.findall(r"^    participant P\d+ as (.+)$", block.group(1), re.M)
    assert sorted(lifelines) == ["@ann", "@bea", "@cal", "@dan", "@eve", "@raw", "tracker"]
    assert re.search(r"P\d+->>P\d+: tweet ring=@ann tid=1 prev=@bea ", block.group(1))
    assert "Traceback" not in text and tempfile.gettempdir() not in text    # no local paths
