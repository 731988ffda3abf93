"""tools/wire_client.py, the raw wire client of the tests, the demo and the benchmark, against a
real tracker."""

from __future__ import annotations

import selectors

from conftest import DEFAULT_TIMEOUT, SAMPLE_KEY, Tweeter

from protocol import limits
from tools.wire_client import WireClient, encode, is_reply


def test_requests_are_numbered_and_replies_told_from_pushes(net: Tweeter) -> None:
    watcher, talker = WireClient(net.port), WireClient(net.port)
    try:
        assert watcher.welcome is not None and watcher.welcome["push"] == "welcome"
        assert watcher.register("@watch", [61001, 61002, 61003], "pw-watch")["re"] == 1
        assert talker.register("@talk", [61004, 61005, 61006], "pw-talk",
                               key=SAMPLE_KEY)["status"] == "SUCCESS"
        assert talker.call("say", text="hello")["count"] == 1
        reply = watcher.call("online")                  # the say came first: kept aside
        assert reply["re"] == 2 and [p["push"] for p in watcher.pushes] == ["say"]
        assert watcher.read_push()["text"] == "hello" and watcher.pushes == []
    finally:
        watcher.close()
        talker.close()


def test_a_selector_loop_reads_whole_lines(net: Tweeter) -> None:
    client = WireClient(net.port, welcome=False, nodelay=True)
    try:
        client.send_raw(encode({"id": 1, "cmd": "query-handles"}) * 2)
        lines: list[bytes] = []
        with selectors.DefaultSelector() as selector:
            selector.register(client.sock, selectors.EVENT_READ)
            while sum(is_reply(line) for line in lines) < 2:
                assert selector.select(DEFAULT_TIMEOUT), "no reply in time"
                lines += client.received_lines()
        assert not is_reply(lines[0]) and lines[0].startswith(b'{"push":"welcome"')
        assert all(line.endswith(b"}") for line in lines)
    finally:
        client.close()


def test_the_end_of_a_session_is_seen(net: Tweeter) -> None:
    client = WireClient(net.port)
    # One byte over the frame limit, and nothing after it: the tracker reads it all, says
    # TOO_LARGE and closes (bytes it left unread could reset the connection first).
    client.send_raw(b"x" * (limits.FRAME_MAX + 1))
    assert client.read()["code"] == "TOO_LARGE"
    assert client.closed_by_peer()
    client.close()


def test_frames_are_compact_json_lines() -> None:
    frame = encode({"id": 1, "cmd": "say", "text": "é"})
    assert frame == b'{"id":1,"cmd":"say","text":"\\u00e9"}\n'
