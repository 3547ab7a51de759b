"""A per-address sliding-window limit for the public report form (in this process's memory:
behind several web processes each counts its own share, which errs toward letting people in)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Final

__all__ = ["RateLimiter"]

_MAX_ADDRESSES: Final = 100_000  # past this, addresses idle for a whole window are forgotten


class RateLimiter:
    def __init__(
        self,
        limit: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may submit again; 0 when it may now."""
        now = self.clock()
        times = self._recent(address, now)
        if times is None or len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window - now)

    def record(self, address: str) -> None:
        now = self.clock()
        times = self._recent(address, now)
        if times is None:
            if len(self._seen) >= _MAX_ADDRESSES:
                self._forget_idle(now)
            times = self._seen.setdefault(address, deque())
        times.append(now)

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._seen.get(address)
        if times is not None:
            while times and times[0] <= now - self.window:
                times.popleft()
        return times

    def _forget_idle(self, now: float) -> None:
        for address in [a for a, t in self._seen.items() if not t or t[-1] <= now - self.window]:
            del self._seen[address]
