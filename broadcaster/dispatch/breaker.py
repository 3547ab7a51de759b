"""A circuit breaker per target: stop hammering a platform that keeps failing.

closed ──(threshold failures in a row)──▶ open ──(open_seconds pass)──▶ half_open
  ▲                                        ▲                               │ one trial request
  └──────────────── trial succeeds ────────┴──────── trial fails ──────────┘

While open, deliveries for the target are deferred without a request (and without using a
try); other targets are unaffected. Failures that count: transient, ambiguous, timeouts. A
refused post (permanent) says nothing about the platform's health and does not count.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum


class BreakerState(StrEnum):
    closed = "closed"  # requests flow
    open = "open"  # requests are held back until open_seconds pass
    half_open = "half_open"  # one trial request decides


class CircuitBreaker:
    def __init__(self, threshold: int, open_seconds: float, clock: Callable[[], datetime]) -> None:
        self.threshold = threshold
        self.open_for = timedelta(seconds=open_seconds)
        self.clock = clock
        self.failures = 0
        self.opened_at: datetime | None = None
        self._trial_out = False
        self.changed = False  # set on every state change, for the recorder to publish

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.closed
        if self.clock() >= self.opened_at + self.open_for:
            return BreakerState.half_open
        return BreakerState.open

    @property
    def retry_at(self) -> datetime | None:
        """When an open breaker lets a trial through."""
        return None if self.opened_at is None else self.opened_at + self.open_for

    def allow(self) -> bool:
        """May a request go now? In half-open, only one at a time (the trial)."""
        state = self.state
        if state is BreakerState.closed:
            return True
        if state is BreakerState.half_open and not self._trial_out:
            self._trial_out = True
            return True
        return False

    def release_trial(self) -> None:
        """The trial request never reached the platform (nothing to judge by)."""
        self._trial_out = False

    def record_success(self) -> None:
        if self.opened_at is not None:
            self.changed = True
        self.failures = 0
        self.opened_at = None
        self._trial_out = False

    def record_failure(self) -> None:
        if self._trial_out or self.state is BreakerState.half_open:
            self.opened_at = self.clock()  # the trial failed: open again for a full period
            self._trial_out = False
            self.changed = True
            return
        self.failures += 1
        if self.opened_at is None and self.failures >= self.threshold:
            self.opened_at = self.clock()
            self.changed = True
