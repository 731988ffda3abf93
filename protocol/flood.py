"""Flood control: a token bucket per session (SPEC §6: a burst of 20, then 10 a second).

    a command at time ``now`` ──take(now)──> True: serve it / False: FAILURE THROTTLED

The bucket holds up to ``burst`` tokens and gains ``rate`` a second; each command takes one.
The time is given (``TrackerCore`` passes the ``now`` its caller read), so the bucket is pure
arithmetic and its tests need no clock.

The same bucket counts the per-address budgets of ``protocol.accounts`` (registrations, failed
logins), with a rate per hour instead of per second.
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

    def _refill(self, now: float) -> None:
        self.tokens = min(float(self.burst), self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def spend(self, now: float) -> None:
        """Take a token for something that happened anyway, into debt if none is left (the
        wait for the next grows accordingly)."""
        self._refill(now)
        self.tokens -= 1.0

    def wait(self, now: float) -> float:
        """Seconds until ``take`` will succeed (0 when it would now)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        """Whether the bucket has its whole burst again (its owner may be forgotten)."""
        self._refill(now)
        return self.tokens >= self.burst
