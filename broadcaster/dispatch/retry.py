"""When to try again: full-jitter backoff, the platform's own wait, and a retry budget.

The schedule is tenacity's: `wait_random_exponential` is the "full jitter" algorithm (a wait
drawn uniformly from 0 to min(cap, base * 2^(try-1))), `retry_if_exception_type` says which
failures are worth another try and `stop_after_attempt` when to give up. Our retries are
durable (the next try is a row's `next_attempt_at`, possibly on another worker), so the policy
is asked for a decision and a delay rather than wrapped around a call.

The platform's wait (TransientError.retry_after: Retry-After in seconds or as a date, a
rate-limit reset time, Telegram's retry_after) wins whenever it is later than the jitter: coming
back early only earns another 429.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import tenacity
from tenacity import RetryCallState
from tenacity.wait import wait_base

from broadcaster.settings import DispatchSettings
from channels.base import AmbiguousError, TransientError

# Failures that another try may fix. Ambiguous ones are reconciled before that try.
RETRYABLE = (TransientError, AmbiguousError, TimeoutError)
# Tries that only look whether an earlier one posted, allowed after the last real try.
LOOKS_AFTER_LAST_TRY = 3


def retryable(error: BaseException) -> bool:
    return isinstance(error, RETRYABLE)


class wait_platform_or(wait_base):
    """The platform's own wait (the failure's `retry_after`) when later than `fallback`'s."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        ours = self.fallback(retry_state)
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        theirs = getattr(error, "retry_after", None)
        return max(ours, float(theirs)) if theirs is not None else ours


@dataclass(frozen=True)
class Decision:
    retry: bool
    delay: float = 0.0  # seconds from now, when retry is True


class RetryPolicy:
    def __init__(self, settings: DispatchSettings) -> None:
        self.max_attempts = settings.max_attempts
        self.wait = wait_platform_or(
            tenacity.wait_random_exponential(
                multiplier=settings.backoff_base_seconds, max=settings.backoff_cap_seconds
            )
        )
        self.retry_when = tenacity.retry_if_exception_type(RETRYABLE)
        self.stop = tenacity.stop_after_attempt(settings.max_attempts)
        self._retrying = tenacity.AsyncRetrying()

    def decide(self, attempt: int, error: BaseException) -> Decision:
        """After try number `attempt` (1-based) failed with `error`: again, and when?"""
        state = self._state(attempt, error)
        if not self.retry_when(state) or self.stop(state):
            return Decision(False)
        return Decision(True, self.wait(state))

    def look_again(self, attempt: int, error: BaseException) -> Decision:
        """After try `attempt` failed while an earlier try may have posted: a try that only
        looks (find_published, nothing sent), up to LOOKS_AFTER_LAST_TRY past max_attempts, so
        nothing is given up on without knowing whether it went out."""
        if attempt >= self.max_attempts + LOOKS_AFTER_LAST_TRY:
            return Decision(False)
        return Decision(True, self.wait(self._state(attempt, error)))

    def _state(self, attempt: int, error: BaseException) -> RetryCallState:
        """What tenacity's predicates read: try `attempt` ended with `error`."""
        state = RetryCallState(self._retrying, None, (), {})
        state.attempt_number = attempt
        state.set_exception((type(error), error, error.__traceback__))
        return state


class RetryBudget:
    """Caps retries at `ratio` per first attempt plus `min_per_second`, per target.

    A token bucket: each first attempt deposits `ratio`, time deposits `min_per_second`, each
    retry withdraws one. During an outage first attempts stop succeeding, the deposits dry up,
    and retries slow to the floor instead of multiplying the load on a platform that is down."""

    def __init__(self, ratio: float, min_per_second: float, clock: Callable[[], datetime]) -> None:
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.clock = clock
        # Room for a burst of retries after a blip, but not an unbounded backlog of them.
        self.capacity = max(1.0, 10 * min_per_second + 100 * ratio)
        self.balance = self.capacity
        self._at = clock()

    def _refill(self) -> None:
        now = self.clock()
        elapsed = max(0.0, (now - self._at).total_seconds())
        self._at = now
        self.balance = min(self.capacity, self.balance + elapsed * self.min_per_second)

    def deposit(self) -> None:
        """A first attempt was made."""
        if self.balance >= self.capacity:
            # Full already (a healthy target, nearly always): time and the deposit add nothing,
            # and the next withdrawal refills from the last time it looked, to the same cap.
            return
        self._refill()
        self.balance = min(self.capacity, self.balance + self.ratio)

    def try_spend(self) -> bool:
        """True (and one token spent) if a retry may go out now."""
        self._refill()
        if self.balance >= 1.0:
            self.balance -= 1.0
            return True
        return False

    def seconds_until_available(self) -> float:
        self._refill()
        if self.balance >= 1.0:
            return 0.0
        if self.min_per_second <= 0:
            return 60.0  # only first attempts can refill it; look again in a minute
        return (1.0 - self.balance) / self.min_per_second
