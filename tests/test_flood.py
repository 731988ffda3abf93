"""Unit tests of protocol.flood: the token bucket behind FAILURE THROTTLED (SPEC §6)."""

from __future__ import annotations

from protocol.flood import TokenBucket


def test_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(100.0, burst=3, rate=2.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(100.4)               # 0.8 of a token so far
    assert bucket.take(100.5)                   # one whole token after half a second
    assert not bucket.take(100.5)


def test_an_idle_bucket_fills_up_to_the_burst_only() -> None:
    bucket = TokenBucket(0.0, burst=2, rate=10.0)
    assert bucket.take(0.0) and bucket.take(0.0) and not bucket.take(0.0)
    assert [bucket.take(3600.0) for _ in range(3)] == [True, True, False]
