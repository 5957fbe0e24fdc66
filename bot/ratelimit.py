"""A per-user sliding-window rate limit.

Sliding rather than fixed windows: a fixed window lets a user fire 2N searches across a window
boundary; here any span of `seconds` holds at most `count` accepted searches. Memory is
`count` timestamps per active user, and idle users are forgotten.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: float  # seconds until the next search would be accepted; 0.0 when allowed


class SlidingWindowLimiter:
    """`count` hits per `seconds` per key. Not thread-safe: call it from the event loop only."""

    def __init__(self, count: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if count < 1 or seconds <= 0:
            raise ValueError("count must be >= 1 and seconds > 0")
        self.count = count
        self.seconds = seconds
        self._clock = clock
        self._hits: dict[int, deque[float]] = {}

    def hit(self, key: int) -> Verdict:
        """Record a search for `key` if the window has room; a refused hit is not recorded."""
        now = self._clock()
        window = self._hits.setdefault(key, deque())
        while window and window[0] <= now - self.seconds:
            window.popleft()
        if len(window) >= self.count:
            return Verdict(False, window[0] + self.seconds - now)
        window.append(now)
        self._forget_idle(now)
        return Verdict(True, 0.0)

    def _forget_idle(self, now: float) -> None:
        # Cheap amortised sweep so a long-running bot does not keep every user it ever saw.
        if len(self._hits) < 1024:
            return
        for key in [k for k, w in self._hits.items() if not w or w[-1] <= now - self.seconds]:
            del self._hits[key]
