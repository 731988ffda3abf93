"""user.py's ``diagram`` command: the time-space diagram of its last command, from its own
trace, drawn in the width of the terminal (here, of ``COLUMNS``)."""

from __future__ import annotations

import re

from conftest import FAST_PEER_ARGS, Cluster, Tweeter, User

from protocol.diagram import cells

ARROW = re.compile(r"[▶◀▷◁✕]")


def drawing(user: User, since: int, legend: str = "never received") -> list[str]:
    """The lines ``diagram`` printed: from its header (the tracker's lifeline first) to its
    legend."""
    user.expect(legend, since=since)
    lines = user.lines[since:]
    first = next(i for i, line in enumerate(lines) if line.startswith("tracker "))
    return lines[first:next(i for i, line in enumerate(lines) if legend in line) + 1]


def test_diagram_draws_the_last_command_with_the_peers_it_involved(cluster: Cluster) -> None:
    net = Tweeter(cluster)
    net.tracker()
    env = {"COLUMNS": "72"}
    users = {h: User(["user.py", "127.0.0.1", str(net.port), *FAST_PEER_ARGS], h, env=env)
             for h in ("@a", "@b", "@c")}         # no -q: the trace is kept for `diagram`
    cluster.procs += users.values()
    for handle, user in users.items():
        user.register(handle)
    author = users["@a"]
    for follower in ("@b", "@c"):
        users[follower].ok(f"follow {follower} @a")
        author.expect(rf"you were followed by {follower}")
    author.tweet("@a", "hello")

    start = len(author.lines)
    author.send("diagram")
    lines = drawing(author, start)
    assert lines[0].split() == ["tracker", "@a", "@b", "@c"]
    assert all(cells(line) <= 72 for line in lines)
    arrows = [line for line in lines if ARROW.search(line) and "│" in line]     # not the legend
    # tweet, its reply, two setups and their acks, the tweet to @b and its ack, the tweet home
    # from @c and its ack, end-tweet and its reply: @a's own view (it saw no @b -> @c hop).
    assert len(arrows) == 12, "\n".join(lines)
    text = "\n".join(lines)
    assert "tweet handle=@a text=hello" in text and "end-tweet handle=@a" in text
    assert "SUCCESS: tweet #1 of @a ended" in text

    # Again: the same diagram (diagram itself sends nothing); --ascii draws it in ASCII.
    start = len(author.lines)
    author.send("diagram ascii")
    again = drawing(author, start)
    assert len([line for line in again if re.search(r"[-.~][>x]\||\|[<x][-.~]", line)]) == 12
    assert all(line.isascii() for line in again[:-2])
    for user in users.values():
        user.assert_no_traceback()


def test_diagram_says_why_it_has_nothing(net: Tweeter) -> None:
    quiet = net.user("@q", "-q")               # no terminal, -q, no trace file: nothing kept
    quiet.register("@q")
    quiet.send("diagram")
    quiet.expect(r"^no messages kept: run user.py in a terminal, without -q, or with "
                 r"--trace-file$")
    fresh = net.user("@f")                      # before any command: the tracker's greeting
    fresh.send("diagram")
    lines = drawing(fresh, 0)
    assert lines[0].split()[0] == "tracker" and "push:welcome" in lines[3]
