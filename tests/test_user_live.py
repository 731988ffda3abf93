"""Live features between real processes: notices, say, direct messages, blocking, the server
password, and a terminal that stays usable while things arrive."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
from conftest import (
    DEFAULT_TIMEOUT,
    FAST_PEER_ARGS,
    PYTHON,
    ROOT,
    Cluster,
    Tweeter,
    password_of,
    terminal_env,
)


def count(lines: list[str], pattern: str) -> int:
    return sum(1 for line in lines if re.search(pattern, line))


def test_say_reaches_everyone_else_once_under_the_real_sender(net: Tweeter) -> None:
    users = net.users("@a", "@b", "@c")
    users["@a"].ok('say "hello, room"')
    for handle in ("@b", "@c"):
        users[handle].expect(r"^\[say\] @a: hello, room$")
    mallory = net.client()
    mallory.register("@mallory", [61001, 61002, 61003])
    reply = mallory.call("say", text="trust me", **{"from": "@a"})
    assert reply["status"] == "SUCCESS" and reply["count"] == 3
    for handle in ("@a", "@b", "@c"):
        users[handle].expect(r"^\[say\] @mallory: trust me$")
    for handle in ("@b", "@c"):           # a command after the says marks the end of them
        users[handle].ok("online")
        assert count(users[handle].lines, r"^\[say\] @a: hello, room$") == 1
    assert count(users["@a"].lines, r"^\[say\] @a:") == 0       # not echoed to the sender
    users["@a"].fails('say ""', "EMPTY_TEXT")
    users["@a"].fails(f'say "{"y" * 141}"', "TOO_LONG")


def test_notices_of_follows_and_presence(net: Tweeter) -> None:
    users = net.users("@a", "@b")
    users["@b"].ok("follow @b @a")
    users["@a"].expect(r"^\[notice\] you were followed by @b$")
    users["@a"].ok("logout")
    users["@b"].expect(r"^\[notice\] @a went offline$")
    users["@a"].login("@a")
    users["@b"].expect(r"^\[notice\] @a is online$")


def test_direct_message_goes_peer_to_peer_or_waits_for_login(net: Tweeter) -> None:
    users = net.users("@a", "@b", "@c")
    a, b, c = users["@a"], users["@b"], users["@c"]
    a.ok('message @b "psst, b"')
    a.expect(r"^message #\d+ delivered to @b$")
    b.expect(r"^\[message\] @a: psst, b$")
    a.expect(r"^\[trace\] @a -> @b 127\.0\.0\.1:\d+ message id=\d+ ", since=0)
    b.expect(r"^\[trace\] @b <- 127\.0\.0\.1:\d+ message id=\d+ ", since=0)
    assert net.tracker_proc is not None
    assert "psst" not in "".join(line for line in net.tracker_proc.lines if "->" in line
                                 and '"push":"message"' in line)

    c.ok("logout")
    reply = a.ok('message @c "while you were away"')
    assert "kept for @c" in reply
    c.login("@c")
    c.expect(r"^\[message\] @a: while you were away \(kept by the tracker, sent [\d-]+ [\d:]+\)$")
    c.ok("logout")
    c.login("@c")
    c.ok("online")
    assert count(c.lines, "while you were away") == 1
    a.fails('message @nobody "x"', "UNKNOWN_HANDLE")
    a.fails('message @b ""', "EMPTY_TEXT")


def test_direct_message_to_a_killed_peer_is_kept_for_its_next_login(net: Tweeter) -> None:
    users = net.users("@a", "@b")
    users["@b"].kill()                  # its connection closes: the tracker knows it is gone
    assert net.tracker_proc is not None
    net.tracker_proc.expect(r"@b lost its connection")
    assert "kept for @b, who is offline" in users["@a"].ok('message @b "are you there?"')
    again = net.user("@b-again")
    again.login("@b")
    again.expect(r"^\[message\] @a: are you there\? \(kept by the tracker")


def test_direct_message_that_gets_no_answer_is_kept_too(net: Tweeter) -> None:
    users = net.users("@a", "@b")
    users["@b"].kill(signal.SIGSTOP)    # frozen: its session is open, its UDP ports are silent
    users["@a"].ok('message @b "wake up"')
    users["@a"].expect(r"^SUCCESS: message #\d+ kept for the recipient's next login$")
    users["@b"].kill(signal.SIGKILL)
    again = net.user("@b-again")
    again.login("@b")
    again.expect(r"^\[message\] @a: wake up \(kept by the tracker")
    again.ok("online")
    assert count(again.lines, "wake up") == 1


def test_block_and_unblock(net: Tweeter) -> None:
    users = net.users("@a", "@b")
    a, b = users["@a"], users["@b"]
    b.ok("follow @b @a")
    a.ok("block @b")
    a.ok("followers")
    a.expect(r"^  $")
    b.fails("follow @b @a", "BLOCKED")
    b.fails('message @a "let me in"', "BLOCKED")
    assert a.tweet("@a", "nobody hears")["reached"] == "0"
    a.fails("block @b", "ALREADY_BLOCKED")
    a.fails("block @a", "SELF_BLOCK")
    a.fails("block @zed", "UNKNOWN_HANDLE")
    a.ok("unblock @b")
    a.fails("unblock @b", "NOT_BLOCKED")
    b.ok("follow @b @a")
    b.ok('message @a "thanks"')
    a.expect(r"^\[message\] @b: thanks$")
    assert a.tweet("@a", "welcome back")["reached"] == "1"


def test_server_password_is_required_first(cluster: Cluster, tmp_path: Path) -> None:
    net = Tweeter(cluster)
    net.tracker("--password", "open sesame")
    silent = net.client()
    assert silent.welcome["password_required"] is True
    reply = silent.call("query-handles")
    assert reply["code"] == "SERVER_PASSWORD_REQUIRED" and silent.closed_by_peer()
    wrong = net.client()
    assert wrong.call("auth", password="guess")["code"] == "WRONG_SERVER_PASSWORD"
    assert wrong.closed_by_peer()
    right = net.client()
    assert right.call("auth", password="open sesame")["status"] == "SUCCESS"
    assert right.register("@a", [61001, 61002, 61003])["status"] == "SUCCESS"
    assert net.tracker_proc is not None
    assert "open sesame" not in net.tracker_proc.text()

    secret_file = tmp_path / "server-password"
    secret_file.write_text("open sesame\n", encoding="utf-8")
    user = net.user("@b", "--server-password-file", str(secret_file))
    user.expect(r"^SUCCESS: welcome$")
    user.register("@b")
    user.ok("query handles")

    piped = net.user("@c")                 # asked for on standard input: the next line
    piped.ok("open sesame")
    piped.register("@c")

    refused = subprocess.run([PYTHON, "user.py", "127.0.0.1", str(net.port)], cwd=ROOT,
                             input="not it\n", capture_output=True, text=True, timeout=15)
    assert refused.returncode == 1
    assert "FAILURE WRONG_SERVER_PASSWORD" in refused.stdout
    assert "Traceback" not in refused.stdout + refused.stderr


def test_tracker_without_password_admits_auth_as_a_no_op(net: Tweeter) -> None:
    client = net.client()
    assert client.welcome["password_required"] is False
    assert client.call("auth", password="anything")["status"] == "SUCCESS"
    assert client.call("query-handles")["status"] == "SUCCESS"


def test_a_tweet_arriving_keeps_the_half_typed_line(net: Tweeter, tmp_path: Path) -> None:
    author = net.users("@a")["@a"]
    child = pexpect.spawn(sys.executable, ["user.py", "127.0.0.1", str(net.port), "-q",
                                           *FAST_PEER_ARGS],
                          cwd=str(ROOT), encoding="utf-8", timeout=DEFAULT_TIMEOUT,
                          dimensions=(24, 200), env=terminal_env(tmp_path))
    child.logfile_read = screen = io.StringIO()
    try:
        child.expect_exact("tweeter> ")
        child.sendline("register @reader")
        for prompt in ("password: ", "password again: "):
            child.expect_exact(prompt)
            child.send(password_of("@reader") + "\r")
        child.expect("SUCCESS: @reader registered")
        child.expect_exact("@reader> ")
        child.sendline("follow @reader @a")
        child.expect("SUCCESS: @reader now follows @a")
        child.expect_exact("@reader> ")
        child.send("query hand")                       # half a command, no Enter yet
        child.expect_exact("query hand")
        author.tweet("@a", "breaking news")
        child.expect(r"tweet #\d+ by @a via @a: breaking news\r\n")
        child.expect_exact("@reader> query hand")      # the prompt and the half line, redrawn
        child.send("les\r")                            # finish it
        child.expect(r"SUCCESS: 2 handles")
        child.expect(r"2: @a @reader")
        child.sendline("quit")
        child.expect(pexpect.EOF)
        assert "Traceback" not in screen.getvalue()
    finally:
        child.close(force=True)


def test_tab_completes_commands_and_known_handles(net: Tweeter, tmp_path: Path) -> None:
    net.users("@alice")
    child = pexpect.spawn(sys.executable, ["user.py", "127.0.0.1", str(net.port), "-q"],
                          cwd=str(ROOT), encoding="utf-8", timeout=DEFAULT_TIMEOUT,
                          env=terminal_env(tmp_path))
    try:
        child.expect_exact("tweeter> ")
        child.send("que\t")                         # a command name
        child.expect_exact("query")
        child.send(" handles\r")
        child.expect("SUCCESS: 1 handles")
        child.expect_exact("tweeter> ")
        child.send("follow @bo")                    # not known: nothing to complete
        child.send("\x15")                          # Ctrl-U: clear the line
        child.send("online\r")
        child.expect_exact("tweeter> ")
        child.send("follow @me @al\t")              # a handle seen in `query handles`
        child.expect_exact("follow @me @alice")
        child.send("\x15quit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
