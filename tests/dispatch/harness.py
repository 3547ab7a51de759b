"""What dispatcher tests share: platform emulators with live and exercise targets, a fake clock,
and alerts released through the real AlertService with the outbox hook."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.alert import AlertContent
from approvals.roles import Role
from broadcaster import contacts, users
from broadcaster.alerts.rules import load_alert_rules
from broadcaster.alerts.service import Actor, AlertService
from broadcaster.dispatch import claims
from broadcaster.dispatch.dispatcher import Dispatcher
from broadcaster.dispatch.payload_cache import PayloadCache
from broadcaster.dispatch.recorder import AttemptRow, Result
from broadcaster.dispatch.states import DeliveryState, Outcome
from broadcaster.dispatch.wake import Wakeup
from broadcaster.outbox import Outbox
from broadcaster.settings import SHIPPED_CONFIG_DIR, AlertSettings, DispatchSettings, Settings
from broadcaster.storage.schema import deliveries, delivery_attempts, delivery_payloads
from broadcaster.targets import ConfiguredTarget, Directory
from channels.base import Receipt, TargetMode
from channels.emulators.base import Effect, Emulator
from channels.registry import CHANNELS

# The eight channels the templates name (Instagram needs the service's card server).
EIGHT = ("x", "facebook", "mastodon", "telegram", "sms", "email", "webhook", "cap")
PUBLIC_BASE = "https://alerts.example.test"
PHONES = ("+12025550101", "+12025550102", "+12025550103")
EMAILS = ("one@example.org", "two@example.org", "three@example.org")


class FakeClock:
    """A clock tests move by hand: time passes only when a test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def emulator_class(platform: str) -> type[Emulator]:
    module = importlib.import_module(f"channels.emulators.{platform}")
    found: type[Emulator] = module.EMULATOR
    return found


@dataclass
class Platforms:
    """One emulator per platform and mode, each with its own target."""

    emulators: dict[tuple[str, str], Emulator] = field(default_factory=dict)
    directory: Directory = field(default_factory=Directory)

    def emulator(self, platform: str, mode: str = "live") -> Emulator:
        return self.emulators[(platform, mode)]

    def posts(self, platform: str, mode: str = "live") -> list[Effect]:
        return self.emulator(platform, mode).effects_of("post")

    async def stop(self) -> None:
        await self.directory.aclose()
        for emulator in self.emulators.values():
            await emulator.stop()


async def start_platforms(
    names: Iterable[str] = EIGHT,
    modes: Sequence[str] = ("live", "exercise"),
    *,
    timeout_seconds: float = 2.0,
) -> Platforms:
    platforms = Platforms()
    for name in names:
        for mode in modes:
            emulator = emulator_class(name)()
            await emulator.start()
            platforms.emulators[(name, mode)] = emulator
            channel_class = CHANNELS[name]
            target = emulator.target(
                f"{name}-{mode}", TargetMode(mode), timeout_seconds=timeout_seconds
            )
            lists = ("residents",) if channel_class.needs_recipient else ()
            platforms.directory.add(ConfiguredTarget(target, channel_class, lists))
    return platforms


async def add_contacts(
    engine: AsyncEngine, phones: Sequence[str] = PHONES, emails: Sequence[str] = EMAILS
) -> None:
    rows = [
        contacts.ContactRow(phone, emails[i] if i < len(emails) else None)
        for i, phone in enumerate(phones)
    ]
    async with engine.begin() as connection:
        await contacts.import_contacts(connection, "residents", rows)


async def claim_list(
    engine: AsyncEngine, desk: Desk, phones: Sequence[str], token: str, now: datetime
) -> list[int]:
    """An SMS alert released to `phones`, all its deliveries claimed under `token`: their ids."""
    await add_contacts(engine, phones, ())
    await desk.release(channels=["sms"])
    async with engine.begin() as connection:
        jobs = await claims.claim(
            connection,
            "sms-live",
            len(phones),
            token,
            now,
            now + timedelta(seconds=60),
            PayloadCache(),
        )
    return sorted(job.id for job in jobs)


async def delivered_results(
    engine: AsyncEngine, ids: Sequence[int], token: str, now: datetime
) -> list[Result]:
    """A clean "delivered" result for each delivery, as a try under `token` reports it."""
    versions = {row.id: row.version_id for row in await delivery_rows(engine)}
    return [
        Result(
            delivery_id=delivery_id,
            version_id=versions[delivery_id],
            target="sms-live",
            attempt=1,
            state=DeliveryState.delivered,
            token=token,
            attempts=[AttemptRow(Outcome.delivered, now)],
            receipts=[Receipt("sms", "sms-live", f"SM{delivery_id}", posted_at=now)],
            delivered_at=now,
        )
        for delivery_id in ids
    ]


def fast_settings(**dispatch: Any) -> Settings:
    """Settings for tests: no platform rate limits (the emulators enforce none), and a short
    request timeout (the emulators answer at once; an ambiguous try is looked at after it)."""
    values: dict[str, Any] = {
        "honour_platform_rates": False,
        "request_timeout_seconds": 2.0,
        **dispatch,
    }
    return Settings(dispatch=DispatchSettings(**values))


class Desk:
    """People at the desk: an officer drafts, an approver approves; alerts go out for real."""

    def __init__(self, engine: AsyncEngine, directory: Directory, clock: FakeClock) -> None:
        self.engine = engine
        self.clock = clock
        self.wake = Wakeup()
        self.outbox = Outbox(directory, public_base=PUBLIC_BASE, wake=self.wake, clock=clock)
        rules = load_alert_rules(AlertSettings().relative_to(SHIPPED_CONFIG_DIR))
        self.service = AlertService(
            engine, rules, clock, on_release=self.outbox.on_release, went_out=self.outbox.went_out
        )
        self.officer: Actor | None = None
        self.approver: Actor | None = None

    async def people(self) -> None:
        async with self.engine.begin() as connection:
            officer = await users.add_user(connection, "officer", Role.duty_officer, password=None)
            approver = await users.add_user(
                connection, "approver", Role.approver, password=None, rank=3
            )
        self.officer = Actor(officer)
        self.approver = Actor(approver, second_factor_at=self.clock())

    def dispatcher(
        self, directory: Directory, settings: Settings | None = None, **kw: Any
    ) -> Dispatcher:
        return Dispatcher(
            self.engine,
            directory,
            settings or fast_settings(),
            worker_id=kw.pop("worker_id", "test-worker"),
            public_base=PUBLIC_BASE,
            clock=self.clock,
            wake=self.wake,
            **kw,
        )

    async def release(
        self,
        *,
        exercise: bool = False,
        channels: Sequence[str] = EIGHT,
        area: str = "Riverside",
    ) -> tuple[int, int]:
        """Draft, submit and approve a boil-water alert; returns (alert id, version id)."""
        template = "exercise-boil-water" if exercise else "boil-water"
        content = self.service.from_template(template, self.values(template, area), list(channels))
        return await self.release_content(content)

    async def release_long(
        self, channels: Sequence[str], area: str = "Riverside"
    ) -> tuple[int, int]:
        """An alert whose description is long enough to become a thread on X and Mastodon."""
        content = self.service.from_template(
            "boil-water", self.values("boil-water", area), list(channels)
        )
        long = " ".join(
            f"Sentence {n} about the water in {area}: boil it for one minute before use."
            for n in range(40)
        )
        infos = tuple(info.model_copy(update={"description": long}) for info in content.infos)
        return await self.release_content(content.model_copy(update={"infos": infos}))

    async def release_content(self, content: AlertContent) -> tuple[int, int]:
        assert self.officer is not None and self.approver is not None
        drafted = await self.service.draft(self.officer, content)
        await self.service.submit(self.officer, drafted.alert_id)
        approved = await self.approve(drafted.alert_id)
        return drafted.alert_id, approved

    def values(self, template: str, area: str) -> dict[str, str]:
        """Every placeholder filled; `area` makes the words (and so the posts) unique."""
        placeholders = self.service.rules.templates.get(template).placeholders
        return {name: f"the {name} for {area}" for name in placeholders} | {"area": area}

    async def approve(self, alert_id: int) -> int:
        assert self.approver is not None
        from broadcaster.alerts import store

        async with self.engine.connect() as connection:
            alert = await store.get_alert(connection, alert_id)
            assert alert is not None and alert.current_version_id is not None
            current = await store.load_version(connection, alert.current_version_id)
            assert current is not None
        self.approver = Actor(self.approver.user, second_factor_at=self.clock())
        outcome = await self.service.approve(self.approver, alert_id, current.record.content_hash)
        return outcome.version_id

    async def cancel(self, alert_id: int) -> int:
        """The pre-written cancel: released at once (fast path)."""
        assert self.officer is not None
        outcome = await self.service.cancel(self.officer, alert_id, None)
        return outcome.version_id

    async def update(self, alert_id: int) -> int:
        """The template's correction, submitted and approved."""
        assert self.officer is not None
        drafted = await self.service.update(self.officer, alert_id, None)
        await self.service.submit(self.officer, alert_id)
        await self.approve(alert_id)
        return drafted.version_id


async def delivery_rows(engine: AsyncEngine, version_id: int | None = None) -> list[Any]:
    # With each row's payload, as it was when rows carried their own.
    query = (
        select(deliveries, delivery_payloads.c.payload)
        .select_from(
            deliveries.outerjoin(
                delivery_payloads, delivery_payloads.c.id == deliveries.c.payload_id
            )
        )
        .order_by(deliveries.c.id)
    )
    if version_id is not None:
        query = query.where(deliveries.c.version_id == version_id)
    async with engine.connect() as connection:
        return list((await connection.execute(query)).all())


async def attempt_rows(engine: AsyncEngine, delivery_id: int | None = None) -> list[Any]:
    query = select(delivery_attempts).order_by(delivery_attempts.c.id)
    if delivery_id is not None:
        query = query.where(delivery_attempts.c.delivery_id == delivery_id)
    async with engine.connect() as connection:
        return list((await connection.execute(query)).all())
