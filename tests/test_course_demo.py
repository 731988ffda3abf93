"""The course's full demo as one end-to-end scenario.

A tracker and five users.  Two logical rings of size three that intersect in one user:
@ann's ring is @ann -> @bea -> @cal, and @eve's ring is @eve -> @cal -> @dan; @cal is in both.
Every command is used; every tracker command is shown once with SUCCESS and once with FAILURE,
with its reason code.  The commands a person never types (``end-tweet``, ``exit-complete``) are
sent by user.py itself for the SUCCESS case, and by a raw session for the FAILURE case.
"""

from __future__ import annotations

from conftest import Tweeter


def test_course_demo(net: Tweeter) -> None:
    users = net.users("@ann", "@bea", "@cal", "@dan", "@eve")
    ann, bea, cal, dan, eve = (users[h] for h in ("@ann", "@bea", "@cal", "@dan", "@eve"))

    # register: SUCCESS above, FAILURE here (in a sixth process, which then leaves).
    late = net.user("@late")
    late.send("register @Ann")
    late.send("a password")
    late.fails("a password", "DUPLICATE_HANDLE")
    late.fails("register @b4d", "BAD_HANDLE")

    # query handles: SUCCESS from a user; FAILURE (malformed request) from a raw session.
    ann.send("query handles")
    ann.expect(r"^5: @ann @bea @cal @dan @eve$")
    raw = net.client()
    raw.send_raw(b'{"id": 1, "cmd": "query-handles", "verbose": true}\n')
    assert raw.read()["code"] == "BAD_REQUEST"

    # follow: the two rings, then failures.
    for follower, author in (("@bea", "@ann"), ("@cal", "@ann"), ("@cal", "@eve"),
                             ("@dan", "@eve")):
        users[follower].ok(f"follow {follower} {author}")
    cal.fails("follow @cal @ann", "ALREADY_FOLLOWING")
    cal.fails("follow @cal @cal", "SELF_FOLLOW")
    cal.fails("follow @cal @zed", "UNKNOWN_HANDLE")
    cal.fails("follow @ann @eve", "NOT_YOUR_HANDLE")

    # tweet + end-tweet around both rings; @cal receives from both authors.
    assert ann.tweet("@ann", "hello from ann #demo")["reached"] == "2"
    bea.expect(r"^tweet #\d+ by @ann via @ann: hello from ann #demo$")
    cal.expect(r"^tweet #\d+ by @ann via @bea: hello from ann #demo$")
    assert eve.tweet("@eve", "hello from eve")["reached"] == "2"
    cal.expect(r"^tweet #\d+ by @eve via @eve: hello from eve$")
    dan.expect(r"^tweet #\d+ by @eve via @cal: hello from eve$")
    ann.fails(f'tweet @ann "{"x" * 141}"', "TOO_LONG")
    ann.fails('tweet @eve "not mine"', "NOT_YOUR_HANDLE")
    cal.send("rings")
    cal.expect(r"^ring @ann: left @bea, right @ann$")
    cal.expect(r"^ring @eve: left @eve, right @dan$")

    # end-tweet: SUCCESS was sent by user.py itself; FAILURE when nothing runs.
    ann.expect(r"^SUCCESS: tweet #\d+ of @ann ended: 2 followers reached", since=0)
    raw_author = net.client()
    raw_author.register("@raw", [61100, 61101, 61102])
    reply = raw_author.call("end-tweet", handle="@raw", tid=1, reached=0, skipped=[])
    assert (reply["status"], reply["code"]) == ("FAILURE", "NO_TWEET_IN_PROGRESS")

    # drop: SUCCESS and FAILURE; the next tweet of @eve no longer visits @cal.
    cal.ok("drop @cal @eve")
    cal.fails("drop @cal @eve", "NOT_FOLLOWING")
    assert eve.tweet("@eve", "after the drop")["reached"] == "1"
    dan.expect(r"^tweet #\d+ by @eve via @eve: after the drop$")

    # exit-complete before exit: FAILURE; exit of someone else's handle: FAILURE.
    reply = raw_author.call("exit-complete", handle="@raw")
    assert (reply["status"], reply["code"]) == ("FAILURE", "EXIT_NOT_STARTED")
    bea.fails("exit @ann", "NOT_YOUR_HANDLE")

    # Graceful exits: authors first (their rings are torn down), then the followers.
    for user, handle in ((ann, "@ann"), (eve, "@eve"), (bea, "@bea"), (cal, "@cal"),
                         (dan, "@dan")):
        user.ok(f"exit {handle}")
        user.expect(rf"^SUCCESS: {handle} exited")
        assert user.wait() == 0
    bea.expect(r"teardown ring=@ann", since=0)
    dan.expect(r"teardown ring=@eve", since=0)
    assert raw.call("query-handles")["handles"] == ["@raw"]
    for user in (*users.values(), late):
        user.assert_no_traceback()
    assert net.tracker_proc is not None
    net.tracker_proc.assert_no_traceback()
