"""protocol/limits.py: the limits fit one another (what one message may hold fits the frame or
datagram that carries it)."""

from __future__ import annotations

import json

from protocol import limits


def test_a_retweet_of_the_longest_tweet_by_the_longest_handle_fits_a_ring_text() -> None:
    author = "@" + "a" * limits.HANDLE_MAX
    assert len(f"RT {author}: " + "x" * limits.TWEET_MAX) == limits.RING_TEXT_MAX


def test_the_longest_say_fits_a_frame_to_the_tracker() -> None:
    # Every character a text may hold is at most 6 bytes in JSON (\uXXXX).
    frame = json.dumps({"id": 2**53 - 1, "cmd": "say", "text": "\x01" * limits.TWEET_MAX})
    assert len(frame) + 1 <= limits.FRAME_MAX


def test_timeouts_leave_room_for_what_they_wait_for() -> None:
    assert limits.RTO_MIN <= limits.RTO_INITIAL <= limits.RTO_MAX < limits.GIVE_UP
    assert limits.HEARTBEAT_INTERVAL < limits.IDLE_TIMEOUT          # a live session stays
    assert limits.FEED_DEFAULT <= limits.FEED_MAX
    assert limits.SEND_BUFFER < limits.SENDQ_MAX
    assert limits.TTWEET_MAX * 4 + len("UPLOAD 600\n") <= limits.TTWEET_REQUEST_MAX
