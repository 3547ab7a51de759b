"""The crash test: `broadcaster worker` processes fan out 1,000 alerts across the emulators while
the platforms misbehave, and are killed with SIGKILL at random moments, 20 times.

At the end every delivery is delivered, or dead with a reason; no emulator holds one idempotency
key twice, nor (where the platform has no keys) one post twice for the same person; and every
try that may have posted (an ambiguous failure, or a worker killed mid-request) was followed by
a reconciliation before anything was sent again. The counts are printed.

BROADCASTER_CRASH_ALERTS and BROADCASTER_CRASH_KILLS make it smaller (CI on a slow machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.alert import Area, Circle
from approvals.roles import Role
from broadcaster import contacts, users
from broadcaster.alerts.rules import load_alert_rules
from broadcaster.alerts.service import Actor, AlertService
from broadcaster.dispatch.emulated import EmulatedPlatforms
from broadcaster.dispatch.states import FINAL_STATES, DeliveryState
from broadcaster.outbox import Outbox
from broadcaster.settings import SHIPPED_CONFIG_DIR, AlertSettings
from broadcaster.storage.schema import alert_versions, deliveries, delivery_attempts, workers
from broadcaster.targets import ConfiguredTarget, Directory
from channels.emulators.base import Fault, FaultKind
from channels.registry import CHANNELS
from tests.dispatch.harness import PUBLIC_BASE

# Minutes long: `python -m pytest -m crash` runs it alone, `-m 'not crash'` everything else.
pytestmark = pytest.mark.crash

T = TypeVar("T")
ALERTS = int(os.environ.get("BROADCASTER_CRASH_ALERTS", "1000"))
PEOPLE_PER_ALERT = 1  # on the SMS and email lists, inside each alert's area
KILLS = int(os.environ.get("BROADCASTER_CRASH_KILLS", "20"))
WORKERS = 3
# A safety net against a hung run, not a speed check (the benchmark measures speed): generous
# enough for a 2-core machine that is busy with other work.
SETTLE_TIMEOUT = 1200.0
# Faults the platforms throw while the workers run (and a post that lands before a 500).
FAULTS = (
    FaultKind.rate_limit,
    FaultKind.server_error,
    FaultKind.commit_then_error,
    FaultKind.timeout,
    FaultKind.reset,
)
KEYED = {"mastodon", "webhook", "cap"}  # the platform drops a repeated idempotency key
# Every other platform is reconciled exactly too: per person (the messages to one number or
# address), over a time window of the account's posts read page by page (X, Facebook), or
# through the automatic forwards of the channel's posts, which every worker keeps in the shared
# database (Telegram). So no platform may record a post twice.
TARGET_SETTINGS: dict[str, dict[str, Any]] = {
    # Each alert's SMS and email go to the people inside its area (see _residents).
    "sms": {"inside_area_only": True},
    "email": {"inside_area_only": True},
    # Far busier than X allows an account (its quotas are lifted here): read back as deep as X
    # serves a timeline, so a lookup does not stop at the default page cap.
    "x": {"reconcile_max_pages": 31},
}


def _worker_environment(platforms: EmulatedPlatforms, database_url: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    environment.update(platforms.environment(timeout_seconds=1.5, extra=TARGET_SETTINGS))
    environment.update(
        {
            "BROADCASTER_DATABASE__URL": database_url,
            "BROADCASTER_WORKER__LEASE_SECONDS": "5",
            "BROADCASTER_WORKER__HEARTBEAT_SECONDS": "0.5",
            "BROADCASTER_DISPATCH__HONOUR_PLATFORM_RATES": "false",
            "BROADCASTER_DISPATCH__POLL_INTERVAL_SECONDS": "0.5",
            "BROADCASTER_DISPATCH__REQUEST_TIMEOUT_SECONDS": "2",
            "BROADCASTER_DISPATCH__BACKOFF_BASE_SECONDS": "0.2",
            "BROADCASTER_DISPATCH__BACKOFF_CAP_SECONDS": "2",
            "BROADCASTER_DISPATCH__MAX_ATTEMPTS": "40",
            "BROADCASTER_DISPATCH__BREAKER_OPEN_SECONDS": "1",
            "BROADCASTER_DISPATCH__RETRY_BUDGET_MIN_PER_SECOND": "50",
            "BROADCASTER_LOGGING__LEVEL": "ERROR",
            "BROADCASTER_LOGGING__FORMAT": "text",
        }
    )
    return environment


class Workers:
    """Worker processes; the ones killed are replaced at once, as a supervisor would."""

    def __init__(self, environment: dict[str, str], directory: Path, engine: AsyncEngine) -> None:
        self.environment = environment
        self.directory = directory
        self.engine = engine
        self.processes: list[asyncio.subprocess.Process] = []
        self.started = 0
        self.events: list[str] = []
        self.began = time.monotonic()

    def note(self, event: str) -> None:
        self.events.append(f"{time.monotonic() - self.began:7.2f} s  {event}")

    async def start(self) -> None:
        self.started += 1
        log = (self.directory / f"worker-{self.started}.log").open("wb")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "broadcaster",
            "worker",
            cwd=self.directory,
            env=self.environment,
            stdout=log,
            stderr=log,
        )
        log.close()
        self.processes.append(process)
        self.note(f"started worker pid {process.pid}")

    async def kill_one(self, rng: random.Random) -> None:
        """SIGKILL a worker that is at work (registered: it claims deliveries)."""
        working = await self._working()
        while not working:  # polling the database: another process's state
            await asyncio.sleep(0.1)
            working = await self._working()
        victim = rng.choice(working)
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        self.processes.remove(victim)
        self.note(f"killed worker pid {victim.pid}")
        await self.start()

    async def _working(self) -> list[asyncio.subprocess.Process]:
        async def registered() -> set[int]:
            async with self.engine.connect() as connection:
                return set((await connection.execute(select(workers.c.pid))).scalars())

        pids = await _again(registered)
        return [p for p in self.processes if p.pid in pids]

    async def stop(self) -> list[int | None]:
        # A replacement started by the last kill may still be importing when everything has
        # settled: until it registers it has no SIGTERM handler (and claims nothing), so the
        # signal would end it the default way. Stop workers once they are at work.
        for _ in range(600):
            alive = [p for p in self.processes if p.returncode is None]
            if len(await self._working()) == len(alive):
                break
            await asyncio.sleep(0.1)
        for process in self.processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for process in self.processes:
            try:
                codes.append(await asyncio.wait_for(process.wait(), 30))
            except TimeoutError:
                process.kill()
                codes.append(await process.wait())
        return codes


async def _release_all(engine: AsyncEngine, directory: Directory, count: int) -> None:
    outbox = Outbox(directory, public_base=PUBLIC_BASE)
    service = AlertService(
        engine,
        load_alert_rules(AlertSettings().relative_to(SHIPPED_CONFIG_DIR)),
        on_release=outbox.on_release,
        went_out=outbox.went_out,
    )
    async with engine.begin() as connection:
        officer = Actor(
            await users.add_user(connection, "officer", Role.duty_officer, password=None)
        )
        approver_user = await users.add_user(connection, "approver", Role.approver, password=None)
    placeholders = service.rules.templates.get("boil-water").placeholders
    lanes = asyncio.Semaphore(4)

    async def one(n: int) -> None:
        async with lanes:
            area = f"Zone {n}"
            values = {name: f"the {name} in {area}" for name in placeholders} | {"area": area}
            content = service.from_template("boil-water", values, None)
            lat, lon = _home(n)
            circle = Circle(lat=lat, lon=lon, radius_km=0.2)
            infos = tuple(
                info.model_copy(update={"areas": (Area(description=area, circles=(circle,)),)})
                for info in content.infos
            )
            content = content.model_copy(update={"infos": infos})
            drafted = await _again(lambda: service.draft(officer, content))
            submitted = await _again(lambda: service.submit(officer, drafted.alert_id))
            async with engine.connect() as connection:
                content_hash = await connection.scalar(
                    select(alert_versions.c.content_hash).where(
                        alert_versions.c.id == submitted.version_id
                    )
                )
            approver = Actor(approver_user)
            await _again(lambda: service.approve(approver, drafted.alert_id, str(content_hash)))

    await asyncio.gather(*(one(n) for n in range(count)))


async def _again(action: Callable[[], Awaitable[T]]) -> T:
    """Click again: on SQLite, four processes writing at once on a busy 2-core machine can keep
    one waiting past its 30 s lock timeout (the transaction is rolled back; nothing is half
    done). A person would simply try again, and so does the test."""
    for _ in range(5):
        try:
            return await action()
        except OperationalError as error:
            if "database is locked" not in str(error):
                raise
    return await action()


def _home(n: int) -> tuple[float, float]:
    """Where alert n's neighbourhood is: 1.1 km from the next one, so each alert reaches only
    its own residents (a person gets a handful of alerts, as in life, not a thousand)."""
    return 30.0 + 0.01 * n, -100.0


async def _residents(engine: AsyncEngine, count: int) -> None:
    rows = []
    for n in range(count):
        lat, lon = _home(n)
        for k in range(PEOPLE_PER_ALERT):
            number = n * PEOPLE_PER_ALERT + k
            rows.append(
                contacts.ContactRow(
                    f"+1202555{number:04d}", f"resident{number}@example.org", lat, lon + k * 1e-4
                )
            )
    async with engine.begin() as connection:
        await contacts.import_contacts(connection, "residents", rows)


async def _open_deliveries(engine: AsyncEngine) -> int:
    async def count() -> int:
        async with engine.connect() as connection:
            return int(
                await connection.scalar(
                    select(func.count())
                    .select_from(deliveries)
                    .where(deliveries.c.state.not_in([s.value for s in FINAL_STATES]))
                )
                or 0
            )

    return await _again(count)


async def _misbehave(platforms: EmulatedPlatforms, rng: random.Random, stop: asyncio.Event) -> int:
    made = 0
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.1, 0.5))
        emulator = rng.choice(list(platforms.emulators.values()))
        kind = rng.choice(FAULTS)
        emulator.add_fault(
            Fault(kind, times=1, retry_after=0.3, status=rng.choice((500, 502, 503)), delay=2.5)
        )
        made += 1
    return made


def _duplicates(platform: str, effects: list[dict[str, Any]]) -> int:
    if platform in KEYED:
        seen = Counter(e.get("key") for e in effects)
    else:
        seen = Counter((e.get("text"), e.get("to")) for e in effects)
    return sum(n - 1 for n in seen.values() if n > 1)


async def test_workers_killed_at_random_lose_nothing_and_post_nothing_twice(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    rng = random.Random(int(os.environ.get("BROADCASTER_CRASH_SEED", str(time.time_ns()))))
    platforms = EmulatedPlatforms()
    await platforms.start()
    platforms.lift_quotas()  # 1,000 alerts are far beyond X's 100 posts per 15 minutes
    workers = Workers(_worker_environment(platforms, database_url), tmp_path, engine)
    directory = Directory()
    for name, emulator in platforms.emulators.items():
        target = emulator.target(platforms.target_name(name), platforms.mode)
        lists = ("residents",) if CHANNELS[name].needs_recipient else ()
        directory.add(ConfiguredTarget(target, CHANNELS[name], lists, bool(lists)))
    assert directory.targets["sms-live"].inside_area_only
    calm = asyncio.Event()
    try:
        await _residents(engine, ALERTS)
        for _ in range(WORKERS):
            await workers.start()
        trouble = asyncio.create_task(_misbehave(platforms, rng, calm))
        releasing = asyncio.create_task(_release_all(engine, directory, ALERTS))
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.5, 6.0))  # random moments across the run
            await workers.kill_one(rng)
        await releasing
        workers.note("all alerts released, all kills done")
        calm.set()
        faults = await trouble
        for emulator in platforms.emulators.values():
            emulator.faults.clear()
        deadline = time.monotonic() + SETTLE_TIMEOUT
        still = await _open_deliveries(engine)
        while still and time.monotonic() < deadline:  # other processes' work: poll for it
            await asyncio.sleep(0.5)
            still = await _open_deliveries(engine)
        workers.note(f"settled ({still} open)")
        codes = await workers.stop()
        assert still == 0, f"{still} deliveries still open after {SETTLE_TIMEOUT:g} s"
        assert codes == [0] * WORKERS, f"workers did not stop cleanly on SIGTERM: {codes}"

        async with engine.connect() as connection:
            rows = (await connection.execute(select(deliveries))).all()
            attempts = (
                await connection.execute(select(delivery_attempts).order_by(delivery_attempts.c.id))
            ).all()
        states = Counter(row.state for row in rows)
        assert set(states) <= {DeliveryState.delivered, DeliveryState.dead}, states
        dead = [row for row in rows if row.state == DeliveryState.dead]
        assert all(row.last_error for row in dead), "a dead delivery without its reason"
        why_dead = Counter(f"{row.channel}: {row.last_error[:100]}" for row in dead)

        by_delivery: dict[int, list[Any]] = {}
        for attempt in attempts:
            by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
        channel_of = {row.id: row.channel for row in rows}
        unsure: Counter[str] = Counter()  # tries that may have posted, on platforms without keys
        reconciled: Counter[str] = Counter()
        unresolved = []
        for delivery_id, tries in by_delivery.items():
            channel = channel_of[delivery_id]
            for index, attempt in enumerate(tries):
                if attempt.outcome not in ("ambiguous", "abandoned"):
                    continue
                later = [t.outcome for t in tries[index + 1 :]]
                looked = any(o in ("reconciled", "not_found") for o in later)
                if channel not in KEYED:
                    unsure[channel] += 1
                    reconciled[channel] += looked
                if not looked and later:
                    unresolved.append((delivery_id, channel, attempt.outcome, later))

        duplicates = {
            name: _duplicates(name, [e.as_dict() for e in emulator.effects_of("post")])
            for name, emulator in platforms.emulators.items()
        }
        kills = Counter(a.outcome for a in attempts)["abandoned"]
        report = (
            f"crash test: {ALERTS} alerts, {len(rows)} deliveries {dict(states)}; "
            f"{KILLS} SIGKILLs ({kills} tries abandoned mid-flight), {faults} platform faults; "
            f"may-have-posted tries on platforms without keys: {dict(unsure)}, "
            f"resolved by reconciliation: {dict(reconciled)}; duplicates: {duplicates}; "
            f"dead: {dict(why_dead)}"
        )
        print("\n" + report)
        (tmp_path / "crash-report.txt").write_text("\n".join([*workers.events, report]) + "\n")
        assert not unresolved, f"sent again without reconciling: {unresolved[:5]}"
        assert unsure == reconciled
        assert not any(duplicates.values()), duplicates
    finally:
        calm.set()
        with contextlib.suppress(Exception):
            await workers.stop()
        await platforms.stop()
