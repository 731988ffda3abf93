"""Flood control: a token bucket per session (SPEC §6: a burst of 20, then 10 a second)."""

from __future__ import annotations

import time
from collections.abc import Callable

from protocol import limits


class TokenBucket:
    """``burst`` commands at once, refilled at ``rate`` a second; ``take`` says if one may run."""

    def __init__(self, burst: int = limits.FLOOD_BURST, rate: float = limits.FLOOD_RATE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.rate, self.clock = burst, rate, clock
        self.tokens = float(burst)
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
