"""One lane per target: how much may be in flight, how fast, and whether it may send at all.

Lanes are what keep one platform's trouble to itself: each target has its own concurrency slots,
rate, circuit breaker, retry budget and pause flag, and a worker claims for each lane only what
that lane has room for. A platform that hangs fills its own slots and nobody else's.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime

from broadcaster.dispatch.breaker import BreakerState, CircuitBreaker
from broadcaster.dispatch.ratelimit import TokenBucket
from broadcaster.dispatch.retry import RetryBudget
from broadcaster.settings import DispatchSettings
from broadcaster.targets import ConfiguredTarget
from channels.base import Channel

# Seconds over which a lane's pace is measured: claims hold about one second's worth.
_PACE_WINDOW = 1.0
# Ended tries waiting for the recorder, in lane capacities, beyond which the lane claims no more.
RECORDING_AT_MOST = 2
# Claim batches a busy lane may hold ahead of its slots. With one, a lane sending 3,000 a second
# asked for more when about 100 ms of work was left, and on a busy SQLite database the claim
# (queued behind a write of results) often came later: the lane stood empty a tenth of the time.
BATCHES_AHEAD = 2


class Lane:
    def __init__(
        self,
        configured: ConfiguredTarget,
        adapter: Channel,
        settings: DispatchSettings,
        clock: Callable[[], datetime],
    ) -> None:
        self.configured = configured
        self.adapter = adapter
        self.name = configured.name
        self.channel = configured.channel_class.name
        self.mode = configured.target.mode
        own = settings.for_channel(self.channel)
        self.concurrency = own.concurrency
        platform = adapter.limits.max_rate_per_second if settings.honour_platform_rates else None
        rates = [rate for rate in (own.rate_per_second, platform) if rate is not None]
        self.rate: float | None = min(rates) if rates else None
        self.bucket = TokenBucket(self.rate, own.burst, clock) if self.rate is not None else None
        # Claimed ahead of the free slots, so the next sends never wait on the database, and
        # claims come in batches rather than a row at a time: about a second's worth of work
        # at the rate this lane is going (between its concurrency and BATCHES_AHEAD claim
        # batches). No more, because a worker that dies leaves what it claimed to be looked up
        # (reconciled) before anyone may send it. Rate-limited lanes hold only what they can
        # send soon.
        self.most_claimed_ahead = settings.claim_batch * BATCHES_AHEAD
        self.most_ahead = (
            self.most_claimed_ahead if self.rate is None else min(own.burst, own.concurrency)
        )
        self._finished: deque[float] = deque()
        self.breaker = CircuitBreaker(
            settings.breaker_failure_threshold, settings.breaker_open_seconds, clock
        )
        self.budget = RetryBudget(
            settings.retry_budget_ratio, settings.retry_budget_min_per_second, clock
        )
        self.clock = clock
        self.paused = False
        self.not_before: datetime | None = None  # the platform asked us to wait until then
        self.held: set[int] = set()  # deliveries claimed and not yet recorded
        # Of those, the tries that ended and wait for the recorder (which gathers a batch for up
        # to a tenth of a second): they no longer take room, or a busy lane would stand idle
        # for every write. No more than RECORDING_AT_MOST capacities' worth, though: past that
        # the recorder is behind, and what a crash would leave to reconcile only grows.
        self.recording: set[int] = set()
        self.backlog = False  # the last claim was full: there is likely more
        self.last_success_reported: datetime | None = None
        self.failing = False  # the last thing reported was an error

    def share_rate(self, workers: int) -> None:
        """Each of `workers` live workers takes its share of the target's rate."""
        if self.bucket is not None and self.rate is not None:
            self.bucket.set_rate(self.rate / max(1, workers))

    @property
    def capacity(self) -> int:
        self._forget_old(time.monotonic())
        pace = round(len(self._finished) / _PACE_WINDOW)  # tries ended per second, lately
        ahead = max(self.concurrency, min(self.most_ahead, pace))
        return self.concurrency + min(ahead, self.most_claimed_ahead)

    def finished(self) -> None:
        """A try of this lane ended (the pace the claims follow)."""
        now = time.monotonic()
        self._finished.append(now)
        self._forget_old(now)

    def _forget_old(self, now: float) -> None:
        while self._finished and now - self._finished[0] > _PACE_WINDOW:
            self._finished.popleft()

    def room(self) -> int:
        return self._room(self.capacity)

    def _room(self, capacity: int) -> int:
        if len(self.recording) >= RECORDING_AT_MOST * capacity:
            return 0
        return max(0, capacity - (len(self.held) - len(self.recording)))

    def forget(self, delivery_id: int) -> None:
        """The delivery is recorded (or no longer ours): it leaves the lane."""
        self.held.discard(delivery_id)
        self.recording.discard(delivery_id)

    def wants_more(self) -> bool:
        """Worth a claim now: the last one was full and a good part of the lane is free."""
        if not self.backlog:
            return False
        capacity = self.capacity
        return self._room(capacity) * 2 >= capacity

    def may_claim(self) -> bool:
        if self.paused:
            return False
        now = self.clock()
        if self.not_before is not None and now < self.not_before:
            return False
        state = self.breaker.state
        if state is BreakerState.open:
            return False
        return not (state is BreakerState.half_open and self.held)

    async def wait_for_rate(self, sleep: Callable[[float], object]) -> None:
        if self.bucket is None:
            return
        delay = self.bucket.reserve()
        if delay > 0:
            result = sleep(delay)
            if asyncio.iscoroutine(result):
                await result
