"""`make demo` (tools/demo.py): it exits 0, its transcript shows every command's SUCCESS and
FAILURE, and the page it writes is the committed ``tools/demo.md`` to the byte: a rerun of
``make demo`` leaves ``git diff`` empty, and the page and the code cannot drift apart.

``make demo HOSTS=1`` puts each process on a host of its own (network namespaces): tested when
this test runs as root with ``ip`` available, and skipped with the reason otherwise; without
root it must say so and exit 2.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT

from protocol.wire import COMMANDS
from tools.demo import DEFAULT_OUT, HOSTS_OUT

# One FAILURE code each tracker command must show (the demo shows more for some).
FAILURES = {
    "register": "DUPLICATE_HANDLE", "login": "WRONG_PASSWORD", "logout": "NOT_LOGGED_IN",
    "query-handles": "BAD_REQUEST", "follow": "ALREADY_FOLLOWING", "drop": "NOT_FOLLOWING",
    "tweet": "TOO_LONG", "end-tweet": "NO_TWEET_IN_PROGRESS", "exit": "NOT_YOUR_HANDLE",
    "message-received": "UNKNOWN_MESSAGE",
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
SCREEN_ARROWS = 16          # a step's diagram fits on a screen
SCREEN_LINES = 24           # and so does what it printed


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "tools/demo.py", "--quick", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


def same_page(fresh: str, committed: Path) -> None:
    """The fresh page must be the committed one; if not, show how they differ."""
    old = committed.read_text(encoding="utf-8")
    if fresh != old:
        diff = "".join(difflib.unified_diff(old.splitlines(keepends=True),
                                            fresh.splitlines(keepends=True),
                                            str(committed.name), "a fresh run"))
        pytest.fail(f"{committed.name} is not what the demo writes now (run make demo"
                    f"{' HOSTS=1' if 'hosts' in committed.name else ''}):\n{diff}")


def sections(page: str) -> dict[str, str]:
    """The page's steps: title -> text."""
    parts = re.split(r"^## (\d+\. .*)$", page, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_demo_shows_every_command_and_writes_the_committed_page(tmp_path: Path) -> None:
    out = tmp_path / "demo.md"
    done = run_demo("--out", str(out))
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
    assert transcript.count("(ended, status 0)") == 5
    assert "demo done" in transcript

    page = out.read_text(encoding="utf-8")
    same_page(page, DEFAULT_OUT)

    # One short section per step: a transcript and a diagram that fit on a screen.
    steps = sections(page)
    assert len(steps) == transcript.count("\n== step ")
    for title, text in steps.items():
        lines = re.search(r"```text\n(.*?)```", text, re.S)
        assert lines and len(lines.group(1).splitlines()) <= SCREEN_LINES, title
        diagram = re.search(r"```mermaid\n(sequenceDiagram\n.*?)```", text, re.S)
        if diagram is None:
            assert "No message is sent." in text, title
            continue
        arrows = re.findall(r"^    \w+(?:->>|-->>|-\)|-x|--x)\w+: ", diagram.group(1), re.M)
        assert 0 < len(arrows) <= SCREEN_ARROWS, title
        participants = re.findall(r"^    participant \w+(?: as (\S+))?", diagram.group(1), re.M)
        order = ["tracker", "@ann", "@bea", "@cal", "@dan", "@eve", "@raw"]
        shown = [name or "tracker" for name in participants]
        assert shown == sorted(shown, key=order.index), title
    assert tempfile.gettempdir() not in page and "Traceback" not in page


def test_make_demo_runs_the_demo_and_hosts_1_adds_hosts() -> None:
    alone = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}   # not make's
    for args, wanted in (([], "tools/demo.py"), (["HOSTS=1"], "tools/demo.py --hosts"),
                         (["HOSTS=0"], "tools/demo.py")):
        done = subprocess.run(["make", "-n", "--no-print-directory", "demo", *args], cwd=ROOT,
                              env=alone, capture_output=True, text=True, timeout=30, check=True)
        assert done.stdout.strip().splitlines()[-1].endswith(wanted), done.stdout


def test_hosts_without_root_say_so_and_exit_2(tmp_path: Path) -> None:
    command = [PYTHON, "tools/demo.py", "--hosts", "--quick", "--out", str(tmp_path / "x.md")]
    if os.geteuid() == 0:               # run it as nobody, the way a user without root would
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("this test runs as root and there is no setpriv to drop it")
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2, done
    assert done.stderr.strip() == ("demo: make demo HOSTS=1 needs root: it makes network "
                                   "namespaces and a bridge (try: sudo make demo HOSTS=1)")
    assert not (tmp_path / "x.md").exists()


def namespaces() -> set[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30,
                          check=True)
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


def hosts_available() -> str | None:
    """Why the hosts demo cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return f"make demo HOSTS=1 needs root, and this test runs as uid {os.geteuid()}"
    if shutil.which("ip") is None:
        return "make demo HOSTS=1 needs the ip command (iproute2), which is not installed"
    probe = f"tweeter-probe-{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                          timeout=30, check=False)
    if done.returncode != 0:
        return f"this machine refuses network namespaces: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True, timeout=30,
                   check=False)
    return None


def test_demo_on_hosts_names_the_hosts_and_leaves_nothing_behind(tmp_path: Path) -> None:
    why = hosts_available()
    if why:
        pytest.skip(why)
    before = namespaces()
    out = tmp_path / "demo-hosts.md"
    done = run_demo("--hosts", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo done" in done.stdout
    assert namespaces() == before, "the demo left network namespaces behind"
    page = out.read_text(encoding="utf-8")
    same_page(page, HOSTS_OUT)
    participants = set(re.findall(r"^    participant \w+ as (.+)$", page, re.M))
    assert participants == {"tracker 10.10.0.1", "@ann 10.10.0.2", "@bea 10.10.0.3",
                            "@cal 10.10.0.4", "@dan 10.10.0.5", "@eve 10.10.0.6",
                            "@raw 10.10.0.7"}
    assert "register @ann 10.10.0.2 0 0 0" in page
