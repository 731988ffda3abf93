"""Integration tests of user.py: real users, a real tracker, the ring over real UDP sockets."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from pathlib import Path

from conftest import PYTHON, ROOT, Tweeter, User, password_of


def lines_since(user: User, start: int, pattern: str) -> list[str]:
    """The lines ``user`` printed from index ``start`` on that match ``pattern``."""
    regex = re.compile(pattern)
    return [line for line in user.lines[start:] if regex.search(line)]


def setups_sent(user: User, start: int, ring: str) -> list[str]:
    return lines_since(user, start, rf"^\[trace\] {ring} -> .* setup ring={ring} ")


def test_register_binds_three_ports_and_prints_them(net: Tweeter) -> None:
    alice = net.user("@alice")
    alice.send("register @alice")
    alice.send("secret")
    reply = alice.ok("secret")
    ports = alice.expect(r"^ports: left=(\d+) middle=(\d+) right=(\d+)$").groups()
    assert f"ports {' '.join(ports)}" in reply
    for port in ports:     # each is really bound by the user: binding it again fails
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            try:
                probe.bind(("127.0.0.1", int(port)))
                raise AssertionError(f"port {port} was not bound")
            except OSError:
                pass
        finally:
            probe.close()


def test_register_with_a_port_in_use_sends_nothing(net: Tweeter) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        port = taken.getsockname()[1]
        alice = net.user("@alice")
        alice.fails(f"register @alice 127.0.0.1 0 {port} 0", "PORT_IN_USE")
        alice.fails("register @alice 127.0.0.1 1 2", "USAGE")
        alice.fails("register @alice 999.0.0.1 0 0 0", "BAD_ADDRESS")
        alice.fails("register @alice 127.0.0.1 0 0 99999", "BAD_PORT")
        alice.send("query handles")
        alice.expect(r"^0: $")
        assert net.tracker_proc is not None
        assert '"cmd": "register"' not in net.tracker_proc.text()
        alice.register("@alice")      # the failed attempts left nothing bound behind
    finally:
        taken.close()


def test_tweet_visits_followers_alphabetically_and_comes_back(net: Tweeter) -> None:
    users = net.users("@a", "@d", "@b", "@c")
    for handle in ("@d", "@b", "@c"):
        users[handle].ok(f"follow {handle} @a")
    start = len(users["@a"].lines)
    done = users["@a"].tweet("@a", "hello ring")
    assert done["reached"] == "3" and done["skipped"] is None
    # Each follower names its previous hop: @a -> @b -> @c -> @d -> back to @a.
    assert users["@b"].expect(r"^tweet #\d+ by @a via (@\w+): hello ring$").group(1) == "@a"
    assert users["@c"].expect(r"^tweet #\d+ by @a via (@\w+): hello ring$").group(1) == "@b"
    assert users["@d"].expect(r"^tweet #\d+ by @a via (@\w+): hello ring$").group(1) == "@c"
    users["@a"].expect(r"^\[trace\] @a <- .* tweet ring=@a tid=\d+ prev=@d ", since=start)
    users["@a"].expect(r"^SUCCESS: tweet #\d+ of @a ended: 3 followers reached", since=start)


def test_ring_updates_send_only_the_setups_needed(net: Tweeter) -> None:
    users = net.users("@a", "@b", "@c", "@d", "@e")
    author = users["@a"]
    for handle in ("@b", "@c", "@d"):
        users[handle].ok(f"follow {handle} @a")

    start = len(author.lines)
    author.tweet("@a", "first")
    assert len(setups_sent(author, start, "@a")) == 3

    start = len(author.lines)
    assert author.tweet("@a", "same followers")["reached"] == "3"
    assert setups_sent(author, start, "@a") == []

    users["@e"].ok("follow @e @a")            # appended after @d: @e, @d and @b change
    start = len(author.lines)
    assert author.tweet("@a", "one more")["reached"] == "4"
    assert 1 <= len(setups_sent(author, start, "@a")) <= 3
    users["@e"].expect(r"^tweet #\d+ by @a via @d: one more$")

    users["@c"].ok("drop @c @a")
    start = len(author.lines)
    assert author.tweet("@a", "without c")["reached"] == "3"
    assert 1 <= len(setups_sent(author, start, "@a")) <= 2
    users["@d"].expect(r"^tweet #\d+ by @a via @b: without c$")
    assert "without c" not in users["@c"].text()
    users["@c"].send("rings")
    users["@c"].expect(r"^own ring @c: no followers set up$")
    users["@c"].send("query handles")       # a command after `rings` marks its end
    users["@c"].expect(r"^5: ")
    assert not any(line.startswith("ring @a") for line in users["@c"].lines)
    users["@b"].send("rings")
    users["@b"].expect(r"^ring @a: left @a, right @d$")


def test_exit_of_an_author_tears_its_ring_down_everywhere(net: Tweeter) -> None:
    users = net.users("@a", "@b", "@c", "@x")
    for handle in ("@b", "@c"):
        users[handle].ok(f"follow {handle} @a")
    users["@a"].ok("follow @a @x")
    users["@x"].ok("follow @x @b")
    users["@a"].tweet("@a", "before leaving")
    for handle in ("@b", "@c"):
        users[handle].send("rings")
        users[handle].expect(r"^ring @a: ")

    users["@a"].ok("exit @a")
    users["@a"].expect(r"^ring of @a torn down \(2 of 2 followers acknowledged\)$")
    users["@a"].expect(r"^SUCCESS: @a exited")
    assert users["@a"].wait() == 0
    for handle in ("@b", "@c"):
        users[handle].expect(r"^\[trace\] .* <- .* teardown ring=@a ")
        start = len(users[handle].lines)
        users[handle].send("rings")
        users[handle].send("query handles")
        users[handle].expect(r"^3: @b @c @x$")
        assert not lines_since(users[handle], start, r"^ring @a")
    # @a is in no follower list: @x's followers are... @a no more.
    users["@x"].send("tweet @x \"who follows me\"")
    users["@x"].expect(r"^SUCCESS: tweet #\d+ of @x goes to 0 followers")
    newcomer = net.user("@newa")
    newcomer.register("@a")


def test_killed_follower_is_skipped_and_named(net: Tweeter) -> None:
    users = net.users("@a", "@b", "@c", "@d")
    for handle in ("@b", "@c", "@d"):
        users[handle].ok(f"follow {handle} @a")
    users["@a"].tweet("@a", "all alive")
    users["@c"].kill(signal.SIGKILL)
    start = len(users["@a"].lines)
    done = users["@a"].tweet("@a", "c is gone")
    assert (done["reached"], done["skipped"]) == ("2", "@c")
    users["@b"].expect(r"^tweet #\d+ by @a via @a: c is gone$")
    users["@d"].expect(r"^tweet #\d+ by @a via @b: c is gone$")
    users["@a"].expect(r"^SUCCESS: tweet #\d+ of @a ended: 2 followers reached, skipped @c$",
                       since=start)
    # The tracker took @c offline: the next ring is @b, @d and needs no detour.
    done = users["@a"].tweet("@a", "after the repair")
    assert (done["reached"], done["skipped"]) == ("2", None)
    users["@d"].expect(r"^tweet #\d+ by @a via @b: after the repair$")


def test_killed_last_follower_is_skipped_too(net: Tweeter) -> None:
    users = net.users("@a", "@b", "@c")
    for handle in ("@b", "@c"):
        users[handle].ok(f"follow {handle} @a")
    users["@a"].tweet("@a", "hello")
    users["@c"].kill(signal.SIGKILL)
    done = users["@a"].tweet("@a", "last one gone")
    assert (done["reached"], done["skipped"]) == ("1", "@c")


def test_follower_killed_before_its_first_setup(net: Tweeter) -> None:
    users = net.users("@a", "@b", "@c")
    for handle in ("@b", "@c"):
        users[handle].ok(f"follow {handle} @a")
    users["@b"].kill(signal.SIGKILL)
    done = users["@a"].tweet("@a", "b never set up")
    assert (done["reached"], done["skipped"]) == ("1", "@b")
    users["@c"].expect(r"^tweet #\d+ by @a via @a: b never set up$")


def test_not_your_handle_from_the_shell(net: Tweeter) -> None:
    users = net.users("@a", "@b", "@c")
    users["@c"].ok("follow @c @a")
    intruder = users["@b"]
    intruder.fails("follow @a @c", "NOT_YOUR_HANDLE")
    intruder.fails("drop @c @a", "NOT_YOUR_HANDLE")
    intruder.fails('tweet @a "not mine"', "NOT_YOUR_HANDLE")
    intruder.fails("exit @a", "NOT_YOUR_HANDLE")
    assert users["@a"].tweet("@a", "still mine")["reached"] == "1"
    assert "not mine" not in users["@c"].text()


def test_shell_errors_are_one_clear_line(net: Tweeter) -> None:
    user = net.user("@a")
    user.fails("fly away", "UNKNOWN_COMMAND")
    user.fails("follow @a @b @c", "USAGE")
    user.fails("query everything", "USAGE")
    user.fails("tweet", "USAGE")
    user.fails('tweet @a "too early"', "NOT_LOGGED_IN")       # the tracker says so
    user.fails("tweet too early", "NOT_LOGGED_IN")             # short forms need a login
    user.fails("follow @a", "NOT_LOGGED_IN")
    user.register("@a")
    user.fails("register @b", "ALREADY_LOGGED_IN")
    user.send("help tweet")
    user.expect(r"^tweet \[@you\] text — ")
    user.close_stdin()                       # Ctrl-D / end of input: a clean end
    assert user.wait() == 0
    user.assert_no_traceback()


def test_quit_ends_the_process_and_closes_the_session(net: Tweeter) -> None:
    user = net.user("@a")
    user.register("@a")
    user.send("quit")
    assert user.wait() == 0
    assert net.tracker_proc is not None
    net.tracker_proc.expect(r"-- 127\.0\.0\.1:\d+ closed")


def test_user_command_line() -> None:
    for args in (["127.0.0.1", "notaport"], ["300.0.0.1"], ["--nope"]):
        done = subprocess.run([PYTHON, "user.py", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=15, stdin=subprocess.DEVNULL)
        assert done.returncode == 2, (args, done.stderr)
        assert "usage: user.py" in done.stderr and "Traceback" not in done.stderr
    helped = subprocess.run([PYTHON, "user.py", "-h"], cwd=ROOT, capture_output=True,
                            text=True, timeout=15)
    assert helped.returncode == 0 and "example: python3 user.py" in helped.stdout


def test_user_without_a_tracker_says_so(cluster) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    done = subprocess.run([PYTHON, "user.py", "127.0.0.1", str(port)], cwd=ROOT,
                          capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert "FAILURE NO_TRACKER: cannot reach the tracker" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_short_forms_act_for_the_sessions_handle(net: Tweeter) -> None:
    users = net.users("@a", "@b")
    a, b = users["@a"], users["@b"]
    b.ok("follow @a")                                   # follow @b @a
    a.ok("tweet hello, short form")                      # tweet @a "hello, short form"
    b.expect(r"^tweet #\d+ by @a via @a: hello, short form$")
    a.expect(r"^tweet #\d+ reached 1 follower in [\d.]+ ms$")
    a.ok("tweet @a it's the course form, unquoted")
    b.expect(r"^tweet #\d+ by @a via @a: it's the course form, unquoted$")
    b.ok("drop @a")
    b.fails("drop @a", "NOT_FOLLOWING")
    a.ok("msg @b hi, b")                                  # msg is message
    b.expect(r"^\[message\] @a: hi, b$")
    a.ok("/online")                                      # a chat client's slash
    a.ok("exit")                                         # piped: no question, as the tests do
    a.expect(r"^bye$")
    assert a.wait() == 0
    b.ok("query handles")
    b.expect(r"^1: @b$")


def test_a_command_too_long_for_a_frame_fails_here_and_the_session_stays(net: Tweeter) -> None:
    user = net.users("@a")["@a"]
    reply = user.fails("say " + "y" * 5000, "TOO_LONG")
    assert reply.endswith("a say has at most 140 characters, this one has 5000; nothing was sent")
    reply = user.fails("search #" + "t" * 5000, "TOO_LONG")
    assert "over the tracker's 4096; nothing was sent" in reply
    user.fails("message @a " + "z" * 141, "TOO_LONG")    # fits a frame: the tracker says so
    user.ok("online")
    user.expect(r"^  @a$")
    assert net.tracker_proc is not None
    assert "TOO_LARGE" not in net.tracker_proc.text()


def test_a_session_the_tracker_closed_unused_is_replaced_without_a_word(cluster) -> None:
    net = Tweeter(cluster)
    net.tracker("--register-timeout", "1")
    user = net.user("@slow")
    closed = r"^\[trace\] the tracker closed the session \(register or log in within 1s\)"
    user.expect(closed)                      # the session opened at start
    user.send("register @slow")
    user.expect(closed)                      # the next one, while the password is "typed"
    user.send(password_of("@slow"))
    user.ok(password_of("@slow"))           # sent on a third session, opened there and then
    user.expect(r"^ports: left=")
    assert not [line for line in user.lines if line.startswith("FAILURE")]


def test_a_session_timed_out_by_the_tracker_is_said_with_its_reason(cluster) -> None:
    net = Tweeter(cluster)
    net.tracker("--idle-timeout", "1")
    user = net.user("@idle", "--heartbeat", "600")        # silent: no heartbeat in time
    user.register("@idle")
    user.expect(r"^\[notice\] the tracker ended the session of @idle \(nothing received for "
                r"1s: you are offline\); log in again$")
    user.login("@idle")                                   # at once, on a new session
    user.ok("online")
    user.expect(r"^  @idle$")


# ---- regressions found in review ----------------------------------------------------------
def test_user_py_refuses_odd_digits_and_huge_ids(net: Tweeter) -> None:
    user = net.users("@a")["@a"]
    user.fails("retweet ²", "USAGE")
    user.fails("feed ³", "USAGE")
    user.fails("retweet 99999999999999999999", "BAD_REQUEST")
    user.ok("query handles")                           # the session is still fine
    user.assert_no_traceback()


def test_exit_in_a_new_process_tears_down_the_ring_an_earlier_one_set_up(net: Tweeter) -> None:
    users = net.users("@alice", "@bob")
    users["@bob"].ok("follow @bob @alice")
    users["@alice"].tweet("@alice", "set up")
    users["@alice"].send("quit")
    assert users["@alice"].wait() == 0
    again = net.user("@alice-again")
    again.login("@alice")
    again.ok("exit @alice")
    again.expect(r"^ring of @alice torn down \(1 of 1 follower acknowledged\)$")
    users["@bob"].expect(r"teardown ring=@alice")
    users["@bob"].send("rings")
    users["@bob"].ok("query handles")
    assert not any(line.startswith("ring @alice") for line in users["@bob"].lines)


def test_logout_and_login_do_not_pile_up_threads(net: Tweeter) -> None:
    user = net.users("@a")["@a"]

    def threads() -> int:
        status = Path(f"/proc/{user.popen.pid}/status").read_text()
        return int(next(line for line in status.splitlines()
                        if line.startswith("Threads:")).split()[1])

    user.ok("logout")
    user.login("@a")
    first = threads()
    for _ in range(5):
        user.ok("logout")
        user.login("@a")
    assert threads() == first
