"""Flood control: a token bucket per session (SPEC §6: a burst of 20, then 10 a second).

    a command at time ``now`` ──take(now)──> True: serve it / False: FAILURE THROTTLED

The bucket holds up to ``burst`` tokens and gains ``rate`` a second; each command takes one.
The time is given (``TrackerCore`` passes the ``now`` its caller read), so the bucket is pure
arithmetic and its tests need no clock.
"""

from __future__ import annotations

from protocol import limits


class TokenBucket:
    """``burst`` commands at once, refilled at ``rate`` a second; ``take(now)`` says if one may
    run (``now`` is a monotonic clock's reading, passed in)."""

    def __init__(self, now: float, burst: int = limits.FLOOD_BURST,
                 rate: float = limits.FLOOD_RATE) -> None:
        self.burst, self.rate = burst, rate
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
