"""adapters/tracker_link.py: typed replies and pushes from a tracker, and what a malformed frame
becomes (a FAILURE BAD_REPLY, or a dropped push with a trace line), never an exception.

The tracker here is a script on a real socket: it sends the welcome, then answers each request
with the frames a test gives it.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import DEFAULT_TIMEOUT, SAMPLE_KEY

from adapters.console import Console
from adapters.tracker_link import TrackerLink
from protocol.messages import (
    Done,
    Failure,
    FollowedPush,
    Notice,
    PresencePush,
    QueryHandlesReply,
    TweetReply,
)
from protocol.ring import Peer

WELCOME = {"push": "welcome", "server": "tweeter", "password_required": False}
HANG_UP = object()          # in an answer: the scripted tracker closes the connection there


class ScriptedTracker:
    """Accepts one connection and answers each request with the next answer given by ``then``:
    frames (pushes and replies) sent in order, up to a ``HANG_UP``."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.answers: queue.Queue[list[Any]] = queue.Queue()
        self.requests: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(DEFAULT_TIMEOUT)
        connection, _ = self.listener.accept()
        with connection:
            connection.sendall(json.dumps(WELCOME).encode() + b"\n")
            for line in connection.makefile("rb"):
                request = json.loads(line)
                self.requests.append(request)
                for frame in self.answers.get(timeout=DEFAULT_TIMEOUT):
                    if frame is HANG_UP:
                        return
                    data = frame if isinstance(frame, bytes) else json.dumps(
                        frame(request) if callable(frame) else frame).encode()
                    connection.sendall(data + b"\n")

    def then(self, *frames: Any) -> None:
        """The frames of the next answer; a frame may be a function of the request."""
        self.answers.put(list(frames))

    def close(self) -> None:
        self.listener.close()


def reply(**fields: Any) -> Any:
    """A SUCCESS to the request it answers, with ``fields``."""
    return lambda request: {"re": request["id"], "status": "SUCCESS", "message": "ok", **fields}


@pytest.fixture
def tracker() -> Iterator[ScriptedTracker]:
    scripted = ScriptedTracker()
    try:
        yield scripted
    finally:
        scripted.close()


@pytest.fixture
def console() -> Console:
    return Console(interactive=False, quiet=False)


def connect(tracker: ScriptedTracker, console: Console,
            pushes: list[Notice] | None = None) -> TrackerLink:
    link = TrackerLink("127.0.0.1", tracker.port, console,
                       on_push=(pushes if pushes is not None else []).append)
    welcome = link.wait_welcome(DEFAULT_TIMEOUT)
    assert welcome is not None and welcome.password_required is False
    return link


def said(console: Console, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert console.output.flush(DEFAULT_TIMEOUT)
    return capsys.readouterr().out.splitlines()


def test_replies_come_back_typed(tracker: ScriptedTracker, console: Console) -> None:
    link = connect(tracker, console)
    tracker.then(reply(count=2, handles=["@a", "@b"]))
    answer = link.request("query-handles")
    assert isinstance(answer, QueryHandlesReply) and answer.handles == ("@a", "@b")
    peer = ["@b", "127.0.0.1", 1, 2, 3, SAMPLE_KEY]
    tracker.then(reply(tid=7, text="hi", count=1, followers=[peer]))
    tweet = link.request("tweet", handle="@a", text="hi")
    assert isinstance(tweet, TweetReply) and tweet.followers == (Peer.from_list(peer),)
    tracker.then(lambda r: {"re": r["id"], "status": "FAILURE", "code": "NOT_LOGGED_IN",
                            "message": "log in first"})
    failed = link.request("logout")
    assert isinstance(failed, Failure) and failed.code == "NOT_LOGGED_IN"
    assert tracker.requests[0] == {"id": 1, "cmd": "query-handles"}
    link.close()


@pytest.mark.parametrize("bad", [
    lambda r: {"re": r["id"], "status": "SUCCESS", "message": "ok", "count": 1},  # no handles
    lambda r: {"re": r["id"], "status": "SUCCESS", "message": "ok", "count": "1",
               "handles": []},
    lambda r: {"re": r["id"], "status": "MAYBE", "message": "ok"},
    lambda r: {"re": r["id"], "status": "FAILURE", "message": "no code"},
])
def test_a_malformed_reply_is_a_bad_reply_failure(tracker: ScriptedTracker, console: Console,
                                                  bad: Any) -> None:
    link = connect(tracker, console)
    tracker.then(bad)
    answer = link.request("query-handles")
    assert isinstance(answer, Failure) and answer.code == "BAD_REPLY"
    assert answer.message.startswith("the tracker's answer was not understood (")
    tracker.then(reply())
    assert isinstance(link.request("heartbeat"), Done)       # the session goes on
    link.close()


def test_pushes_come_typed_and_malformed_ones_are_dropped(
        tracker: ScriptedTracker, console: Console, capsys: pytest.CaptureFixture[str]) -> None:
    pushes: list[Notice] = []
    link = connect(tracker, console, pushes)
    tracker.then({"push": "followed", "by": "@b"},
                 {"push": "followed", "by": 42},                    # not a handle
                 {"push": "weather", "sky": "blue"},                # no such push
                 b"{not json",
                 {"push": "presence", "handle": "@b", "online": False},
                 reply())
    assert isinstance(link.request("heartbeat"), Done)      # every frame before it is handled
    assert pushes == [FollowedPush(by="@b"), PresencePush(handle="@b", online=False)]
    lines = said(console, capsys)
    assert any(line.startswith("[trace] dropped a malformed 'followed' notice:") for line in lines)
    assert "[trace] unknown notice weather" in lines
    assert any(line.startswith("[trace] dropped a bad frame from the tracker:") for line in lines)
    link.close()


def test_the_trackers_last_word_is_kept_for_on_close(tracker: ScriptedTracker,
                                                      console: Console) -> None:
    closed: queue.Queue[Failure | None] = queue.Queue()
    link = TrackerLink("127.0.0.1", tracker.port, console, on_push=lambda push: None,
                       on_close=closed.put)
    tracker.then({"re": None, "status": "FAILURE", "code": "IDLE_TIMEOUT",
                  "message": "silent for too long"}, HANG_UP)
    answer = link.request("heartbeat")
    assert isinstance(answer, Failure) and answer.code == "NO_TRACKER"
    farewell = closed.get(timeout=DEFAULT_TIMEOUT)
    assert farewell == Failure(code="IDLE_TIMEOUT", message="silent for too long")
    assert link.closed and link.farewell == farewell
    link.close()


def test_an_answer_to_nothing_is_shown_as_a_notice(tracker: ScriptedTracker, console: Console,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    link = connect(tracker, console)
    tracker.then({"re": None, "status": "FAILURE", "code": "BAD_FRAME",
                  "message": "a frame is one JSON object"}, reply())
    assert isinstance(link.request("heartbeat"), Done)
    assert "FAILURE BAD_FRAME: a frame is one JSON object" in said(console, capsys)
    link.close()


def test_a_request_too_long_for_a_frame_is_never_sent(tracker: ScriptedTracker,
                                                      console: Console) -> None:
    link = connect(tracker, console)
    answer = link.request("say", text="x" * 5000)
    assert isinstance(answer, Failure) and answer.code == "TOO_LONG"
    tracker.then(reply())
    assert isinstance(link.request("heartbeat"), Done)
    assert [r["cmd"] for r in tracker.requests] == ["heartbeat"]
    link.close()
