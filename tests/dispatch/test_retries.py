"""Retries on a fake clock: the platform's wait in every form it comes in, full-jitter bounds,
the circuit breaker opening and half-opening, the retry budget, dead-letter after N tries and
requeue. Time passes only when a test advances the clock; `drain` runs what is due."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.dispatch import control
from broadcaster.dispatch.retry import RetryPolicy
from broadcaster.settings import DispatchSettings
from broadcaster.storage.schema import alert_versions, audit_log, channel_state
from broadcaster.targets import ConfiguredTarget, Directory
from channels.base import AmbiguousError, PermanentError, TargetMode, TransientError
from channels.emulators.base import Emulator, Fault, FaultKind
from channels.emulators.webhook import WebhookReceiverEmulator
from channels.webhook import WebhookChannel
from tests.dispatch.harness import (
    Desk,
    FakeClock,
    Platforms,
    attempt_rows,
    delivery_rows,
    fast_settings,
)

WHO = control.Who("admin", None, "test")
WAIT = 120.0  # what the platform asks for; far above the jitter (base 1 s)


# --- the schedule itself -------------------------------------------------------------------------


def test_full_jitter_stays_within_zero_and_the_capped_exponential() -> None:
    policy = RetryPolicy(DispatchSettings(backoff_base_seconds=1.0, backoff_cap_seconds=10.0))
    for attempt in range(1, 8):
        ceiling = min(10.0, 2.0 ** (attempt - 1))
        waits = [policy.decide(attempt, TransientError("busy")).delay for _ in range(2000)]
        assert all(0.0 <= wait <= ceiling for wait in waits), attempt
        # Full jitter spreads over the whole window, not just near its top.
        assert min(waits) < 0.1 * ceiling and max(waits) > 0.9 * ceiling, attempt


def test_the_platforms_wait_wins_only_when_it_is_later() -> None:
    policy = RetryPolicy(DispatchSettings(backoff_base_seconds=8.0, backoff_cap_seconds=8.0))
    later = [policy.decide(1, TransientError("429", retry_after=30.0)).delay for _ in range(200)]
    assert set(later) == {30.0}
    sooner = [policy.decide(1, TransientError("429", retry_after=0.5)).delay for _ in range(200)]
    assert all(0.5 <= wait <= 8.0 for wait in sooner) and max(sooner) > 4.0


def test_what_is_retried_and_when_to_stop() -> None:
    policy = RetryPolicy(DispatchSettings(max_attempts=3))
    assert policy.decide(1, TransientError("x")).retry
    assert policy.decide(2, AmbiguousError("x")).retry
    assert not policy.decide(3, TransientError("x")).retry  # the third try was the last
    assert not policy.decide(1, PermanentError("too long")).retry


# --- the platform's wait, in every form ----------------------------------------------------------


class _DateRetryAfterEmulator(WebhookReceiverEmulator):
    """A partner that says Retry-After as an HTTP date (RFC 9110 allows either form)."""

    def rate_limited(self, request: web.Request, retry_after: float) -> web.StreamResponse:
        when = datetime.now(UTC) + timedelta(seconds=retry_after)
        return web.json_response(
            {"error": "rate_limited"},
            status=429,
            headers={"Retry-After": format_datetime(when, usegmt=True)},
        )


@pytest.fixture
async def dated_partner() -> AsyncIterator[tuple[WebhookReceiverEmulator, Directory]]:
    emulator = _DateRetryAfterEmulator()
    await emulator.start()
    directory = Directory()
    directory.add(
        ConfiguredTarget(emulator.target("webhook-live", TargetMode.live), WebhookChannel)
    )
    try:
        yield emulator, directory
    finally:
        await directory.aclose()
        await emulator.stop()


FORMS = {
    "Retry-After seconds (Twilio)": "sms",
    "reset time as epoch seconds (X)": "x",
    "reset time as ISO 8601 (Mastodon)": "mastodon",
    "retry_after in the body (Telegram)": "telegram",
    "Retry-After as an HTTP date (partner webhook)": "dated",
}


@pytest.mark.parametrize("form", FORMS, ids=list(FORMS.values()))
async def test_the_platforms_own_wait_is_honoured(
    form: str,
    desk: Desk,
    engine: AsyncEngine,
    platforms: Platforms,
    clock: FakeClock,
    dated_partner: tuple[WebhookReceiverEmulator, Directory],
) -> None:
    platform = FORMS[form]
    emulator: Emulator
    if platform == "dated":
        emulator, directory = dated_partner
        desk.outbox.directory = directory
        channel = "webhook"
    else:
        emulator, directory, channel = platforms.emulator(platform), platforms.directory, platform
    emulator.add_fault(Fault(FaultKind.rate_limit, retry_after=WAIT, method="POST"))
    _alert, version = await desk.release(channels=[channel])
    dispatcher = desk.dispatcher(directory)
    await dispatcher.drain()
    [row, *_] = await delivery_rows(engine, version)
    assert row.state == "retry_wait"
    waited = (row.next_attempt_at - clock()).total_seconds()
    assert WAIT - 2 <= waited <= WAIT + 2, f"{form}: scheduled {waited:.1f} s ahead"
    [attempt] = [a for a in await attempt_rows(engine, row.id)]
    assert attempt.outcome == "transient"
    assert attempt.retry_after_seconds == pytest.approx(WAIT, abs=2)

    requests_before = len(emulator.effects)
    clock.advance(WAIT - 5)
    await dispatcher.drain()
    assert len(emulator.effects) == requests_before, "came back before the platform's time"
    clock.advance(10)
    await dispatcher.drain()
    rows = await delivery_rows(engine, version)
    assert {r.state for r in rows} == {"delivered"}


# --- circuit breaker -----------------------------------------------------------------------------


async def _breaker_state(engine: AsyncEngine, target: str) -> str | None:
    async with engine.connect() as connection:
        state = await connection.scalar(
            select(channel_state.c.breaker_state).where(channel_state.c.target == target)
        )
    return None if state is None else str(state)


async def test_the_breaker_opens_half_opens_and_closes(
    desk: Desk, engine: AsyncEngine, platforms: Platforms, clock: FakeClock
) -> None:
    settings = fast_settings(
        breaker_failure_threshold=3,
        breaker_open_seconds=30.0,
        channels={"webhook": {"concurrency": 1}},
    )
    partner = platforms.emulator("webhook")
    partner.add_fault(Fault(FaultKind.server_error, status=503, times=0, method="POST"))
    for n in range(6):
        await desk.release(channels=["webhook"], area=f"District {n}")
    dispatcher = desk.dispatcher(platforms.directory, settings)
    mastodon = platforms.emulator("mastodon")

    await dispatcher.drain()
    assert len(partner.effects_of("fault")) == 3, "requests went on after the breaker opened"
    assert await _breaker_state(engine, "webhook-live") == "open"
    # Held back without a request and without using a try (or not even claimed).
    assert {row.state for row in await delivery_rows(engine)} <= {"retry_wait", "queued"}
    assert max(row.attempts for row in await delivery_rows(engine)) == 1

    clock.advance(29)
    await dispatcher.drain()
    assert len(partner.effects_of("fault")) == 3, "the breaker let requests through while open"

    clock.advance(2)  # half-open: one trial, which fails: open again for a full period
    await dispatcher.drain()
    assert len(partner.effects_of("fault")) == 4
    assert await _breaker_state(engine, "webhook-live") == "open"

    partner.faults.clear()
    clock.advance(31)  # half-open again: the trial succeeds, the breaker closes, all go out
    await dispatcher.drain()
    await dispatcher.drain()
    assert await _breaker_state(engine, "webhook-live") == "closed"
    assert {row.state for row in await delivery_rows(engine)} == {"delivered"}
    assert len(partner.effects_of("post")) == 6
    assert not mastodon.effects, "another platform was touched"


# --- retry budget --------------------------------------------------------------------------------


async def test_the_retry_budget_keeps_an_outage_from_multiplying_traffic(
    desk: Desk, engine: AsyncEngine, platforms: Platforms, clock: FakeClock
) -> None:
    settings = fast_settings(
        retry_budget_ratio=0.0,
        retry_budget_min_per_second=0.1,  # one retry per 10 s, and a bucket of one
        breaker_failure_threshold=100,
        channels={"webhook": {"concurrency": 1}},
    )
    partner = platforms.emulator("webhook")
    partner.add_fault(Fault(FaultKind.server_error, status=503, times=5, method="POST"))
    for n in range(5):
        await desk.release(channels=["webhook"], area=f"District {n}")
    dispatcher = desk.dispatcher(platforms.directory, settings)
    await dispatcher.drain()  # five first tries, all failing: first tries need no budget
    assert len(partner.effects_of("fault")) == 5

    clock.advance(5)  # every retry is due, but the budget holds one token
    await dispatcher.drain()
    assert len(partner.effects_of("post")) == 1
    rows = await delivery_rows(engine)
    assert sorted(row.state for row in rows) == ["delivered"] + ["retry_wait"] * 4
    assert all(row.attempts <= 2 for row in rows), "a deferred retry used up a try"

    for expected in range(2, 6):
        clock.advance(10.5)
        await dispatcher.drain()
        assert len(partner.effects_of("post")) == expected


# --- dead letter and requeue ---------------------------------------------------------------------


async def test_dead_letter_after_max_tries_with_the_reason_then_requeue(
    desk: Desk, engine: AsyncEngine, platforms: Platforms, clock: FakeClock
) -> None:
    settings = fast_settings(max_attempts=3, breaker_failure_threshold=100)
    partner = platforms.emulator("webhook")
    partner.add_fault(Fault(FaultKind.server_error, status=503, times=0, method="POST"))
    _alert, version = await desk.release(channels=["webhook", "mastodon"])
    dispatcher = desk.dispatcher(platforms.directory, settings)
    for _ in range(4):
        await dispatcher.drain()
        clock.advance(10)
    rows = {row.target: row for row in await delivery_rows(engine, version)}
    dead = rows["webhook-live"]
    # A 503 may come after the partner took it: a fourth try only looks before giving up.
    assert dead.state == "dead" and dead.attempts == 4
    assert dead.last_error.startswith("gave up after 3 tries:")
    assert "503" in dead.last_error and "looked: part 1 did not go out" in dead.last_error
    outcomes = [a.outcome for a in await attempt_rows(engine, dead.id)]
    assert outcomes == [*["ambiguous", "not_found"] * 3, "permanent"]
    assert rows["mastodon-live"].state == "delivered"
    assert len(partner.effects_of("fault")) == 3
    async with engine.connect() as connection:
        state = await connection.scalar(
            select(alert_versions.c.state).where(alert_versions.c.id == version)
        )
    assert state == "partially_failed"

    partner.faults.clear()
    async with engine.begin() as connection:
        assert await control.requeue(connection, dead.id, WHO, clock()) == "queued"
    await dispatcher.drain()
    [again] = [r for r in await delivery_rows(engine, version) if r.id == dead.id]
    assert again.state == "delivered"
    async with engine.connect() as connection:
        state = await connection.scalar(
            select(alert_versions.c.state).where(alert_versions.c.id == version)
        )
        actions = (await connection.execute(select(audit_log.c.action))).scalars().all()
    assert state == "completed"
    assert "delivery.requeue" in actions
    async with engine.begin() as connection:
        with pytest.raises(control.NotDead):
            await control.requeue(connection, dead.id, WHO, clock())


# --- credentials refused -------------------------------------------------------------------------


async def test_refused_credentials_pause_the_target_and_hold_its_deliveries(
    desk: Desk, engine: AsyncEngine, clock: FakeClock
) -> None:
    from channels.emulators.mastodon import MastodonEmulator
    from channels.mastodon import MastodonChannel

    emulator = MastodonEmulator()
    await emulator.start()
    directory = Directory()
    directory.add(
        ConfiguredTarget(
            emulator.target("mastodon-live", TargetMode.live, valid_credentials=False),
            MastodonChannel,
        )
    )
    desk.outbox.directory = directory
    try:
        await desk.release(channels=["mastodon"], area="North")
        await desk.release(channels=["mastodon"], area="South")
        await desk.dispatcher(
            directory, fast_settings(channels={"mastodon": {"concurrency": 1}})
        ).drain()
    finally:
        await directory.aclose()
        await emulator.stop()
    rows = await delivery_rows(engine)
    assert [row.state for row in rows] == ["held", "held"]
    async with engine.connect() as connection:
        paused = (
            await connection.execute(
                select(channel_state).where(channel_state.c.target == "mastodon-live")
            )
        ).one()
        actions = (await connection.execute(select(audit_log.c.action))).scalars().all()
    assert paused.paused
    assert "credentials" in paused.pause_reason
    assert "channel.pause" in actions
