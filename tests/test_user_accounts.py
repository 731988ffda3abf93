"""Accounts as a user meets them: login, logout, feed, retweet, search, trending, exit."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pexpect
from conftest import (
    DEFAULT_TIMEOUT,
    FAST_PEER_ARGS,
    ROOT,
    Cluster,
    Tweeter,
    password_of,
    terminal_env,
)


def test_register_asks_twice_and_refuses_a_mismatch(net: Tweeter) -> None:
    user = net.user("@alice")
    user.send("register @alice")
    user.send("one password")
    user.fails("another password", "PASSWORD_MISMATCH")
    user.send("register @alice")
    user.send("")
    user.fails("", "BAD_PASSWORD")
    user.register("@alice")


def test_login_with_a_wrong_password_fails_with_a_reason(net: Tweeter) -> None:
    net.users("@alice")["@alice"].ok("logout")
    other = net.user("@other")
    other.send("login @alice")
    other.fails("not it", "WRONG_PASSWORD")
    other.send("login @alice")                   # from here, @alice's next login must wait
    assert "try again in 1 s" in other.fails(password_of("@alice"), "THROTTLED")
    other.send("login @nobody")
    other.fails("x", "UNKNOWN_HANDLE")


def test_the_right_password_after_the_wait(cluster: Cluster) -> None:
    net = Tweeter(cluster)
    net.tracker("--login-backoff", "0.01")      # a wait shorter than the hash that follows
    net.users("@alice")["@alice"].ok("logout")
    other = net.user("@other")
    other.send("login @alice")
    other.fails("not it", "WRONG_PASSWORD")
    other.send("login @nobody")                  # a hash, as long as a wrong password's
    other.fails("x", "UNKNOWN_HANDLE")
    other.login("@alice")


def test_logout_keeps_everything_and_login_counts_what_is_new(net: Tweeter) -> None:
    users = net.users("@a", "@b", "@c")
    a, b = users["@a"], users["@b"]
    a.ok("follow @a @b")
    b.ok("follow @b @a")
    b.tweet("@b", "before")
    a.ok("logout")
    a.fails("feed", "NOT_LOGGED_IN")
    b.ok("online")
    b.expect(r"^  @b$")
    b.expect(r"^  @c$")
    assert not any(line == "  @a  (following)" for line in b.lines[-3:])
    assert b.tweet("@b", "while a was out #one")["reached"] == "0"
    b.tweet("@b", "and again #two")
    assert "2 new tweets since the last session" in a.login("@a")
    a.ok("following")
    a.expect(r"^  @b$")
    a.ok("followers")
    a.expect(r"^  @b$")
    a.ok("feed 2")
    a.expect(r"^  #\d+ .* @b: and again #two$")
    a.expect(r"^  #\d+ .* @b: while a was out #one$")
    b.ok("online")
    b.expect(r"^  @a  \(following\)$")
    assert b.tweet("@b", "a is back")["reached"] == "1"
    a.expect(r"^tweet #\d+ by @b via @b: a is back$")


def test_exit_deletes_the_handle_its_follows_and_its_account(net: Tweeter) -> None:
    users = net.users("@a", "@b")
    users["@a"].ok("follow @a @b")
    users["@b"].ok("follow @b @a")
    users["@a"].ok("exit @a")
    assert users["@a"].wait() == 0
    b = users["@b"]
    b.ok("followers")
    b.expect(r"^  $")
    b.ok("following")
    b.expect(r"^  $")
    b.fails("followers @a", "UNKNOWN_HANDLE")
    newcomer = net.user("@newcomer")
    newcomer.send("login @a")
    newcomer.fails(password_of("@a"), "UNKNOWN_HANDLE")
    newcomer.register("@a", password="a different owner")
    newcomer.ok("followers")
    newcomer.expect(r"^  $")


def test_retweet_runs_around_the_retweeters_ring(net: Tweeter) -> None:
    users = net.users("@a", "@b", "@c", "@d")
    users["@b"].ok("follow @b @a")
    users["@c"].ok("follow @c @b")
    users["@d"].ok("follow @d @b")
    users["@a"].tweet("@a", "original #Tag with #other")
    tid = users["@b"].expect(r"^tweet #(\d+) by @a via @a: original").group(1)
    users["@b"].ok(f"retweet {tid}")
    done = users["@b"].expect(r"^tweet #(\d+) reached (\d+) followers")
    assert done.group(2) == "2"
    users["@c"].expect(r"^tweet #\d+ by @b via @b: RT @a: original #Tag with #other$")
    users["@d"].expect(r"^tweet #\d+ by @b via @c: RT @a: original #Tag with #other$")
    users["@c"].ok("feed")
    users["@c"].expect(r"^  #\d+ .* @b: RT @a: original #Tag with #other$")
    users["@c"].fails("retweet 999", "UNKNOWN_TWEET")
    # A retweet of the retweet quotes the original once, not "RT @b: RT @a: ...".
    users["@d"].ok(f"retweet {done.group(1)}")
    users["@d"].expect(r"^tweet #\d+ reached 0 followers")
    users["@d"].ok("feed 1")
    users["@d"].expect(r"^  #\d+ .* @d: RT @a: original #Tag with #other$")

    users["@c"].ok("search #tag")
    found = [users["@c"].expect(r"^  #\d+ \S+ \S+ @\w+: (.*)$").group(1) for _ in range(3)]
    assert found == ["RT @a: original #Tag with #other"] * 2 + ["original #Tag with #other"]
    users["@c"].ok("trending")
    users["@c"].expect(r"^  #other 3$")
    users["@c"].expect(r"^  #tag 3$")
    users["@c"].fails("search #bad-tag", "BAD_TAG")
    users["@c"].fails("feed 0", "BAD_COUNT")
    users["@c"].fails("feed x", "USAGE")


def test_password_typed_at_a_terminal_is_not_echoed(net: Tweeter, tmp_path: Path) -> None:
    secret = "s3cret-Pass-word"
    child = pexpect.spawn(sys.executable, ["user.py", "127.0.0.1", str(net.port), "-q",
                                           *FAST_PEER_ARGS],
                          cwd=str(ROOT), encoding="utf-8", timeout=DEFAULT_TIMEOUT,
                          env=terminal_env(tmp_path))
    child.logfile_read = transcript = io.StringIO()     # everything the terminal showed
    try:
        child.expect_exact("tweeter> ")
        child.sendline("register @typist")
        child.expect_exact("password: ")
        child.send(secret + "\r")          # Enter, as a terminal sends it (raw mode: CR)
        child.expect_exact("password again: ")
        child.send(secret + "\r")
        child.expect(r"SUCCESS: @typist registered")
        child.expect_exact("@typist> ")
        child.sendline("quit")
        child.expect(pexpect.EOF)
        shown = transcript.getvalue()
        assert secret not in shown
        assert "password: " + "*" * len(secret) in shown        # masked, one star a letter
    finally:
        child.close(force=True)
