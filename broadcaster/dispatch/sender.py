"""One delivery, one try: check it may go, find out what an earlier try left, send the rest.

The order of things, and why:
1. Refuse what must never go: a delivery of a version that is not released, or whose mode is
   not the target's (an exercise on a live account, or the reverse). Nothing is sent; it is
   dead-lettered with the reason. (The outbox never writes such a row; this is the second lock.)
2. Stop what a Cancel/Update superseded, unless an earlier try's outcome is still unknown.
3. Hold back, without using a try, when the target is paused, its breaker is open, or a retry
   would overspend its retry budget.
4. Reconcile: when an earlier try may have posted (timeout, 5xx after sending, a worker that
   died), ask the platform (find_published) before sending anything again; platforms with
   idempotency keys look the key up, others search recent posts for the exact text.
5. Publish the remaining parts; part k of a thread answers part k-1, and each confirmed part is
   recorded at once, so a crash mid-thread resumes at the next part.
   A retraction (Update/Cancel) asks the adapter to retract what the latest earlier delivery
   on this target put out; it waits while that delivery is unresolved.

Failures become the next state: transient → retry after backoff (the platform's wait wins when
later) or dead after max_attempts; ambiguous → reconcile first, then retry (and past
max_attempts, up to three tries that only look, so nothing is dead-lettered without knowing
whether it went out); permanent → dead
with the platform's reason; rejected credentials → the target is paused and the delivery held.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.alert import Mode, MsgType
from broadcaster.dispatch.claims import Claimed
from broadcaster.dispatch.lanes import Lane
from broadcaster.dispatch.payload import part_key, receipts_from_json
from broadcaster.dispatch.recorder import AttemptRow, Result, TargetHealth
from broadcaster.dispatch.retry import RetryPolicy, retryable
from broadcaster.dispatch.states import OPEN_STATES, DeliveryState, Outcome
from broadcaster.dispatch.versions import VersionCache, VersionInfo
from broadcaster.storage.schema import alert_versions, deliveries
from channels.base import (
    AmbiguousError,
    AuthError,
    PermanentError,
    Post,
    Receipt,
    RetractMethod,
    TransientError,
)

log = logging.getLogger(__name__)
_S = DeliveryState
T = TypeVar("T")

# What a lookup (find_published) may take, in request timeouts: it pages back through the
# account's recent posts. A lookup that times out is simply tried again later; it sent nothing.
LOOKUP_REQUESTS = 4
# A retraction waiting for the delivery it retracts to settle looks again this soon.
RETRACT_WAIT_SECONDS = 0.5
# Retract methods that are safe to repeat as they are: the same edit or delete twice changes
# nothing more. Others post something new, so an unknown outcome is looked up first.
_REPEATABLE_RETRACTS = frozenset({RetractMethod.delete, RetractMethod.edit})


@dataclass
class Context:
    engine: AsyncEngine
    versions: VersionCache
    policy: RetryPolicy
    clock: Callable[[], datetime]
    sleep: Callable[[float], Awaitable[None]]
    request_timeout: float
    lease_margin: float  # a request starts only with this much lease left (timeout + a beat)
    report_health: Callable[[TargetHealth], None]
    report: Callable[[Result], None]  # to the recorder: progress or the final result


class _Stop(Exception):
    """Leave the try early with this result (held, superseded, waiting)."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.state)
        self.result = result


class Attempt:
    """One try of one delivery; `run` returns the result to record."""

    def __init__(self, job: Claimed, lane: Lane, context: Context) -> None:
        self.job = job
        self.lane = lane
        self.context = context
        self.steps: list[AttemptRow] = []
        self.receipts: list[Receipt] = list(job.receipts)
        self.current_part = len(self.receipts) + 1
        self.retracts: int | None = job.retracts_delivery_id
        self.trial = False  # holding the breaker's half-open trial

    # --- the whole try ---------------------------------------------------------------------------

    async def run(self) -> Result:
        try:
            info = await self.context.versions.get(self.job.version_id)
            refusal = self._refusal(info)
            if refusal is not None:
                return self._final(_S.dead, Outcome.refused, refusal)
            assert info is not None
            assert info.version is not None
            if self.job.superseded_by is not None and self.job.reconcile_part is None:
                return self._superseded()
            self._gate()
            if self.job.kind.value == "retract":
                await self._retract(info)
            else:
                await self._publish(self.job.payload.posts)
            return self._delivered()
        except _Stop as stop:
            return stop.result
        except AuthError as error:
            return self._auth(error)
        except PermanentError as error:
            return self._final(_S.dead, Outcome.permanent, error.message)
        except TransientError as error:
            return self._retry(Outcome.transient, error, error.message)
        except AmbiguousError as error:
            return self._ambiguous(error, error.message)
        except TimeoutError as error:
            message = (
                f"no answer from {self.lane.name} within "
                f"{self.context.request_timeout:g} s; the post may have gone out"
            )
            return self._ambiguous(error, message)
        except asyncio.CancelledError:
            # Stopping mid-request: whatever was sent may be out; the next try looks first.
            stopped = self._base(_S.retry_wait, self.context.clock())
            stopped.reconcile_part = self.current_part
            stopped.attempts = [*self.steps, self._row(Outcome.ambiguous, "worker stopped")]
            self.context.report(stopped)
            raise
        except Exception as error:  # an adapter bug: treat as "may have posted", log it whole
            log.exception("delivery %s to %s failed unexpectedly", self.job.id, self.lane.name)
            return self._ambiguous(error, f"unexpected {type(error).__name__}: {error}")
        finally:
            if self.trial:
                self.lane.breaker.release_trial()

    # --- checks before anything is sent ----------------------------------------------------------

    def _refusal(self, info: VersionInfo | None) -> str | None:
        if info is None or not info.released or info.version is None:
            return f"version {self.job.version_id} is not released: nothing of it may be sent"
        wanted = "exercise" if info.mode is Mode.exercise else "live"
        if info.mode is Mode.internal:
            return "internal (System/Draft) alerts are never sent to any target"
        target_mode = self.lane.mode.value
        if (
            target_mode != wanted
            or self.job.target_mode != wanted
            or self.job.payload.mode != wanted
        ):
            return (
                f"refused: a {wanted} alert may not reach {target_mode} target "
                f"{self.lane.name!r}; exercise alerts go to exercise targets only"
            )
        return None

    def _gate(self) -> None:
        now = self.context.clock()
        if self.lane.paused:
            raise _Stop(self._hold("its target is paused"))
        if not self.lane.breaker.allow():
            retry_at = self.lane.breaker.retry_at or now
            raise _Stop(self._defer(retry_at, f"circuit breaker of {self.lane.name} is open"))
        self.trial = self.lane.breaker.state.value == "half_open"
        # Every retry spends budget, a reconciling one too: it is traffic all the same.
        if not self.job.first_try and not self.lane.budget.try_spend():
            wait = self.lane.budget.seconds_until_available()
            raise _Stop(
                self._defer(
                    now + timedelta(seconds=max(wait, 0.1)),
                    f"retry budget of {self.lane.name} spent; waiting",
                )
            )
        if self.job.first_try:
            self.lane.budget.deposit()

    # --- publishing ------------------------------------------------------------------------------

    async def _publish(self, posts: tuple[Post, ...], reply_first: Receipt | None = None) -> None:
        job, adapter = self.job, self.lane.adapter
        if not posts:
            raise PermanentError("nothing to send: the delivery carries no posts")
        if job.reconcile_part is not None:
            await self._reconcile(posts)
        if len(self.receipts) < len(posts):
            self._stop_if_only_looking(len(self.receipts) + 1)
        while len(self.receipts) < len(posts):
            if self.lane.paused:
                raise _Stop(self._hold("its target was paused"))
            post = posts[len(self.receipts)]
            self.current_part = post.part
            await self.lane.wait_for_rate(self.context.sleep)
            reply_to = self.receipts[-1] if self.receipts else reply_first
            key = part_key(job.key, post.part)
            try:
                receipt = await self._call(
                    adapter.publish(post, key, reply_to=reply_to, recipient=job.recipient)
                )
            except PermanentError as error:
                if error.code != "duplicate":
                    raise
                # "Already posted" on a retry usually means an earlier try got through. Until
                # it is found, this part may be out: a lookup that fails leaves the next try
                # only looking, never posting again.
                job.reconcile_part = post.part
                found = await self._look(adapter.find_published(post, key, recipient=job.recipient))
                if found is None:
                    # The platform has it; we cannot tell where. Dead, but marked "may have
                    # gone out", so a later Cancel or Update still corrects this target.
                    raise
                job.reconcile_part = None
                self.steps.append(self._row(Outcome.reconciled, "duplicate refused; found it"))
                receipt = found
            self.receipts.append(receipt)
            if len(self.receipts) < len(posts):
                self._save_progress()

    def _stop_if_only_looking(self, part: int) -> None:
        """A try past the last one only looks (RetryPolicy.look_again): part `part` did not go
        out, so the delivery is dead now, knowingly."""
        tries = self.context.policy.max_attempts
        if self.job.attempt > tries:
            raise _Stop(
                self._final(
                    _S.dead,
                    Outcome.permanent,
                    f"gave up after {tries} tr{'y' if tries == 1 else 'ies'}: "
                    f"{self.job.last_error or 'no reason given'}; looked: part {part} did "
                    "not go out",
                )
            )

    async def _reconcile(self, posts: tuple[Post, ...]) -> None:
        """Find the parts an earlier try may have posted, from the first unconfirmed one on."""
        job, adapter = self.job, self.lane.adapter
        while len(self.receipts) < len(posts):
            post = posts[len(self.receipts)]
            self.current_part = post.part
            found = await self._look(
                adapter.find_published(post, part_key(job.key, post.part), recipient=job.recipient)
            )
            if found is None:
                self.steps.append(self._row(Outcome.not_found, f"part {post.part} not found"))
                break
            self.steps.append(self._row(Outcome.reconciled, f"part {post.part} found"))
            self.receipts.append(found)
        job.reconcile_part = None
        if len(self.receipts) < len(posts):
            self._save_progress()
        if job.superseded_by is not None and len(self.receipts) < len(posts):
            raise _Stop(self._superseded())

    # --- retracting ------------------------------------------------------------------------------

    async def _retract(self, info: VersionInfo) -> None:
        assert info.version is not None
        base = await self._earlier_on_this_slot(info)
        if base is _WAIT:
            raise _Stop(self._wait())
        if base is None or base is _UNKNOWN:
            if info.msg_type is MsgType.update or base is _UNKNOWN:
                # Nothing earlier reached this target (an Update then goes out as a post of its
                # own), or something did but its receipt is unknown (the platform said it had
                # the post; we could not find it): the correction goes out as a post of its own.
                await self._publish(self.job.payload.posts)
                return
            raise _Stop(
                self._final(
                    _S.superseded,
                    Outcome.superseded,
                    "nothing earlier reached this target, so there is nothing to cancel",
                )
            )
        assert isinstance(base, _Earlier)
        self.retracts = base.delivery_id
        adapter = self.lane.adapter
        method = adapter.limits.retract
        if adapter.needs_recipient and method not in _REPEATABLE_RETRACTS:
            # A correction to one person is a new message under the original: sent as a publish
            # with our own key, so an unknown outcome is reconciled like any other post.
            await self._publish(self.job.payload.posts, reply_first=base.receipt)
            return
        repeatable = method in _REPEATABLE_RETRACTS or adapter.limits.idempotency_keys
        if self.job.reconcile_part is not None and not repeatable and self.job.payload.posts:
            post = self.job.payload.posts[0]
            found = await self._look(
                adapter.find_published(
                    post, part_key(self.job.key, 1), recipient=self.job.recipient
                )
            )
            self.steps.append(
                self._row(Outcome.reconciled if found else Outcome.not_found, "retraction")
            )
            if found is not None:
                self.receipts = [found]
                return
            self._stop_if_only_looking(1)
        self.current_part = 1
        receipt = await self._call(adapter.retract(base.receipt, info.version))
        self.receipts = [receipt]

    async def _earlier_on_this_slot(self, info: VersionInfo) -> _Earlier | object | None:
        """The latest earlier delivery on this target (and recipient) that put something out;
        _WAIT while one that may have is unresolved; _UNKNOWN when one may have but gave up
        without a receipt; None when nothing ever went out."""
        recipient = (
            deliveries.c.recipient.is_(None)
            if self.job.recipient is None
            else deliveries.c.recipient == self.job.recipient
        )
        query = (
            select(
                deliveries.c.id,
                deliveries.c.state,
                deliveries.c.parts_done,
                deliveries.c.reconcile_part,
                deliveries.c.part_receipts,
            )
            .join(alert_versions, alert_versions.c.id == deliveries.c.version_id)
            .where(
                alert_versions.c.alert_id == info.alert_id,
                alert_versions.c.number < info.number,
                deliveries.c.target == self.job.target,
                recipient,
            )
            .order_by(deliveries.c.id.desc())
        )
        async with self.context.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        for row in rows:
            unresolved = row.state == _S.in_flight or row.reconcile_part is not None
            if row.state in OPEN_STATES and (unresolved or row.parts_done > 0):
                return _WAIT
        for row in rows:
            if row.parts_done > 0:
                receipts = receipts_from_json(row.part_receipts)
                if receipts:
                    return _Earlier(row.id, receipts[0])
        if any(row.reconcile_part is not None for row in rows):
            return _UNKNOWN  # gave up not knowing whether it posted: assume it did
        return None

    # --- talking to the platform -----------------------------------------------------------------

    async def _look(self, lookup: Awaitable[T]) -> T:
        """find_published: it may read several pages of the account's posts (each a request),
        so it gets LOOKUP_REQUESTS request timeouts, not one."""
        return await self._call(lookup, requests=LOOKUP_REQUESTS)

    async def _call(self, request: Awaitable[T], requests: int = 1) -> T:
        # Start a request only if the lease outlasts it: should this worker's renewals stall,
        # another worker may take the delivery over once the lease lapses, and must not find
        # a request of ours still landing on the platform after it looked.
        until = self.job.lease_until
        latest = self.context.clock() + timedelta(seconds=self.context.lease_margin)
        if until is not None and latest >= until:
            if asyncio.iscoroutine(request):
                request.close()
            raise _Stop(self._defer(self.context.clock(), "its lease ran short; trying again"))
        async with asyncio.timeout(self.context.request_timeout * requests):
            return await request

    # --- results ---------------------------------------------------------------------------------

    def _row(
        self, outcome: Outcome, error: str | None = None, wait: float | None = None
    ) -> AttemptRow:
        return AttemptRow(outcome, self.context.clock(), error, wait)

    def _base(self, state: DeliveryState | None, now: datetime) -> Result:
        return Result(
            delivery_id=self.job.id,
            version_id=self.job.version_id,
            target=self.job.target,
            attempt=self.job.attempt,
            state=state,
            token=self.job.token,
            receipts=list(self.receipts),
            reconcile_part=self.job.reconcile_part,
            retracts_delivery_id=self.retracts,
            next_attempt_at=now,
        )

    def _save_progress(self) -> None:
        self.context.report(self._base(None, self.context.clock()))

    def _delivered(self) -> Result:
        now = self.context.clock()
        self.lane.breaker.record_success()
        self.trial = False
        self._health(success=True)
        result = self._base(_S.delivered, now)
        result.reconcile_part = None
        result.delivered_at = now
        result.next_attempt_at = None
        if self.steps or not self.job.first_try:
            result.attempts = [*self.steps, self._row(Outcome.delivered)]
        # A clean first try needs no row of its own: the delivery says it all (attempts 1,
        # delivered_at, the receipt). At 100,000 deliveries that halves what is written.
        return result

    def _final(self, state: DeliveryState, outcome: Outcome, reason: str) -> Result:
        result = self._base(state, self.context.clock())
        result.next_attempt_at = None
        result.last_error = reason
        result.attempts = [*self.steps, self._row(outcome, reason)]
        if state is _S.dead:
            self._health(error=reason)
        return result

    def _superseded(self) -> Result:
        asked = bool(self.steps)  # whether the platform was asked anything in this try
        result = self._final(
            _S.superseded,
            Outcome.superseded,
            "superseded by a later Update/Cancel; nothing more is sent",
        )
        result.reconcile_part = None
        result.undo_try = not asked
        return result

    def _held_back(self, result: Result) -> Result:
        """A try that stopped short: what it did ask the platform is kept; if it asked
        nothing, it did not count as a try."""
        result.attempts = list(self.steps)
        result.undo_try = not self.steps and len(self.receipts) == len(self.job.receipts)
        return result

    def _hold(self, reason: str) -> Result:
        result = self._base(_S.held, self.context.clock())
        result.last_error = f"held: {reason}"
        return self._held_back(result)

    def _defer(self, when: datetime, reason: str) -> Result:
        result = self._base(_S.retry_wait, when)
        result.last_error = reason
        result.stop_if_superseded = self.job.reconcile_part is None
        return self._held_back(result)

    def _wait(self) -> Result:
        now = self.context.clock()
        result = self._base(_S.queued, now + timedelta(seconds=RETRACT_WAIT_SECONDS))
        result.last_error = "waiting for the delivery it retracts to settle"
        return self._held_back(result)

    def _retry(self, outcome: Outcome, error: BaseException, message: str) -> Result:
        now = self.context.clock()
        self.lane.breaker.record_failure()
        self.trial = False
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            # The platform's wait holds for the whole target, not only this delivery.
            reset = now + timedelta(seconds=float(retry_after))
            if self.lane.not_before is None or reset > self.lane.not_before:
                self.lane.not_before = reset
            self._health(error=message, rate_reset_at=reset)
        else:
            self._health(error=message)
        policy = self.context.policy
        decision = policy.decide(self.job.attempt, error)
        if not decision.retry and self.job.reconcile_part is not None and retryable(error):
            # Out of tries, but one of them may have posted: never give up without knowing.
            decision = policy.look_again(self.job.attempt, error)
        row = self._row(outcome, message, retry_after)
        if not decision.retry:
            result = self._base(_S.dead, now)
            result.next_attempt_at = None
            result.last_error = f"gave up after {self.job.attempt} tries: {message}"
            result.attempts = [*self.steps, row]
            return result
        result = self._base(_S.retry_wait, now + timedelta(seconds=decision.delay))
        result.last_error = message
        result.attempts = [*self.steps, row]
        result.stop_if_superseded = self.job.reconcile_part is None
        return result

    def _ambiguous(self, error: BaseException, message: str) -> Result:
        self.job.reconcile_part = self.current_part
        result = self._retry(Outcome.ambiguous, error, message)
        result.reconcile_part = self.current_part
        if result.state is _S.retry_wait and result.next_attempt_at is not None:
            # A request we stopped waiting for may still land (a library thread finishing it,
            # a slow platform) until its timeout: look no sooner than that.
            earliest = self.context.clock() + timedelta(seconds=self.context.request_timeout)
            result.next_attempt_at = max(result.next_attempt_at, earliest)
        result.stop_if_superseded = False  # first find out whether it went out
        if result.state is _S.dead:
            result.last_error = f"{result.last_error} (the last try may have posted)"
        return result

    def _auth(self, error: AuthError) -> Result:
        self.lane.paused = True
        reason = f"the platform refused the credentials: {error.message}"
        self._health(error=error.message, pause_reason=reason)
        result = self._hold(reason)
        result.attempts = [*self.steps, self._row(Outcome.auth, error.message)]
        result.undo_try = False
        return result

    def _health(
        self,
        *,
        success: bool = False,
        error: str | None = None,
        rate_reset_at: datetime | None = None,
        pause_reason: str | None = None,
    ) -> None:
        breaker = self.lane.breaker
        now = self.context.clock()
        quiet = not (error or rate_reset_at or pause_reason or breaker.changed)
        if quiet and success:
            # Success on a healthy target: tell the database once a second, not per post.
            if (
                self.lane.last_success_reported is not None
                and (now - self.lane.last_success_reported) < timedelta(seconds=1)
                and not self.lane.failing
            ):
                return
            self.lane.last_success_reported = now
        self.lane.failing = bool(error) and not success
        change = TargetHealth(
            target=self.lane.name,
            channel=self.lane.channel,
            at=now,
            success=success,
            error=error,
            rate_reset_at=rate_reset_at,
            pause_reason=pause_reason,
        )
        if breaker.changed:
            breaker.changed = False
            change.breaker_state = breaker.state.value
            change.breaker_opened_at = breaker.opened_at
        if success or error or rate_reset_at or pause_reason or change.breaker_state:
            self.context.report_health(change)


@dataclass(frozen=True)
class _Earlier:
    delivery_id: int
    receipt: Receipt


_WAIT = object()
_UNKNOWN = object()


__all__ = ["Attempt", "Context"]
