"""A token bucket per target: a sustained rate with a burst, shared out among live workers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], datetime]) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        self.clock = clock
        self.tokens = self.burst
        self._at = clock()

    def set_rate(self, rate: float) -> None:
        self._refill()
        self.rate = rate

    def _refill(self) -> None:
        now = self.clock()
        elapsed = max(0.0, (now - self._at).total_seconds())
        self._at = now
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)

    def reserve(self) -> float:
        """Take one token; return how many seconds to wait before using it (0 when free now).

        The token is spent at once, so concurrent callers queue up behind each other."""
        self._refill()
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
