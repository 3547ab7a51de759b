"""`broadcaster bench dispatch`: how fast the dispatcher fans out, against the emulators.

Three measurements, printed (never asserted by tests; speed depends on the machine):
1. Throughput. A bare aiohttp client with no storage sends SMS to the Twilio emulator as fast as
   it can: the platform side's ceiling. Then one alert goes to a list of `contacts` people (one
   durable delivery each, written by the approval that completes the quorum) and the dispatcher
   sends them through the real adapter, claiming and recording in batches; the figure is
   deliveries confirmed and recorded per second, and its ratio to the bare client.
2. Release to confirmed: for `rounds` alerts to the eight template channels, the time from the
   approval that completes the quorum to the last channel's confirmation (p50/p95/p99).
3. Cancel to corrected: for the same alerts, from "cancel" to the correction confirmed on every
   channel and for every person the original reached.

The emulators run in a process of their own (bench_platforms), so the platform and the client
do not share an event loop; the dispatcher runs in this process, as `serve`'s in-process worker
does. The database is a fresh SQLite file unless --database-url names another (it is migrated
and must hold no alerts).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.roles import Role
from broadcaster import contacts, users
from broadcaster.alerts.rules import load_alert_rules
from broadcaster.alerts.service import Actor, AlertService
from broadcaster.dispatch.dispatcher import Dispatcher
from broadcaster.dispatch.emulated import EIGHT_CHANNELS, LIST_NAME
from broadcaster.dispatch.running import give_lanes_threads
from broadcaster.dispatch.states import FINAL_STATES
from broadcaster.dispatch.wake import Wakeup
from broadcaster.outbox import Outbox
from broadcaster.process_cpu import cpu_seconds
from broadcaster.settings import DatabaseSettings, LoadedSettings, Settings
from broadcaster.storage import migrate
from broadcaster.storage.engine import create_engine
from broadcaster.storage.schema import alert_versions, deliveries, workers
from broadcaster.targets import build_directory
from channels.sms import basic_authorization

PUBLIC_BASE: Final = "https://alerts.bench.invalid"
_POLL: Final = 0.02


@dataclass
class _CpuSpent:
    """CPU seconds the bare client's runs took: its own process's, and the emulator's."""

    requests: int = 0
    client: float = 0.0
    platform: float = 0.0

    @property
    def total(self) -> float:
        return self.client + self.platform

    def per_request(self, seconds: float) -> float:
        """Microseconds per request."""
        return seconds / self.requests * 1e6 if self.requests else 0.0


@dataclass
class DispatchBench:
    backend: str
    # The bare client runs before the big list and again after it: the machine's speed drifts
    # (by a third within minutes on a shared machine), and the ratio is to the mean of the two.
    baseline_before: float = 0.0
    baseline_after: float = 0.0
    contacts: int = 0
    release_seconds: float = 0.0
    durable_per_second: float = 0.0
    dead: int = 0
    release_to_confirmed: list[float] = field(default_factory=list)
    cancel_to_corrected: list[float] = field(default_factory=list)
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # CPU seconds spent during the big list, and the deliveries the in-process dispatcher made:
    # figures that, unlike the rates, hardly move when something else shares the machine.
    dispatcher_cpu_seconds: float = 0.0  # every dispatcher process together
    platform_cpu_seconds: float = 0.0  # the emulator process
    # PostgreSQL's server processes, when the server runs on this machine (None: not counted,
    # a server elsewhere or SQLite, which runs inside the dispatcher's process).
    database_cpu_seconds: float | None = None
    # The same for the bare client's runs, both together: what one SMS costs at its simplest.
    bare: _CpuSpent = field(default_factory=_CpuSpent)

    @property
    def baseline_per_second(self) -> float:
        runs = [rate for rate in (self.baseline_before, self.baseline_after) if rate]
        return sum(runs) / len(runs) if runs else 0.0

    @property
    def ratio(self) -> float:
        return self.durable_per_second / self.baseline_per_second if self.baseline_per_second else 0

    @property
    def cpu_ratio(self) -> float:
        """CPU per SMS of all that runs for it here (client or dispatcher, emulator, a local
        database server), the bare client's over the dispatcher's: the rate ratio a machine
        whose cores both runs keep busy would show, whatever else runs on it."""
        durable = self.cpu_per_delivery(
            self.dispatcher_cpu_seconds
            + self.platform_cpu_seconds
            + (self.database_cpu_seconds or 0.0)
        )
        return self.bare.per_request(self.bare.total) / durable if durable else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "bare_client_per_second": round(self.baseline_per_second, 1),
            "bare_client_before_and_after": [
                round(self.baseline_before, 1),
                round(self.baseline_after, 1),
            ],
            "contacts": self.contacts,
            "release_seconds": round(self.release_seconds, 2),
            "durable_deliveries_per_second": round(self.durable_per_second, 1),
            "ratio_to_bare_client": round(self.ratio, 2),
            "dead": self.dead,
            "release_to_confirmed_ms": _percentiles(self.release_to_confirmed),
            "cancel_to_corrected_ms": _percentiles(self.cancel_to_corrected),
            "load_average": self.load_average,
            "dispatcher_cpu_us_per_delivery": round(
                self.cpu_per_delivery(self.dispatcher_cpu_seconds)
            ),
            "platform_cpu_us_per_delivery": round(self.cpu_per_delivery(self.platform_cpu_seconds)),
            "database_server_cpu_us_per_delivery": None
            if self.database_cpu_seconds is None
            else round(self.cpu_per_delivery(self.database_cpu_seconds)),
            "bare_client_cpu_us_per_request": round(self.bare.per_request(self.bare.client)),
            "bare_client_platform_cpu_us_per_request": round(
                self.bare.per_request(self.bare.platform)
            ),
            "cpu_ratio_to_bare_client": round(self.cpu_ratio, 2),
        }

    def cpu_per_delivery(self, seconds: float) -> float:
        """Microseconds of CPU per delivery of the big list."""
        return seconds / self.contacts * 1e6 if self.contacts else 0.0


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    return {
        name: round(_percentile(values, q) * 1000, 1)
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
    }


def summary(result: DispatchBench) -> list[str]:
    latency = _percentiles(result.release_to_confirmed)
    cancel = _percentiles(result.cancel_to_corrected)
    dispatcher_cpu = result.cpu_per_delivery(result.dispatcher_cpu_seconds)
    platform_cpu = result.cpu_per_delivery(result.platform_cpu_seconds)
    if result.backend == "sqlite":
        database = "SQLite's work within the dispatchers'"
    elif result.database_cpu_seconds is None:
        database = "the database server's not counted (it runs elsewhere)"
    else:
        database = f"database server {result.cpu_per_delivery(result.database_cpu_seconds):.0f} us"
    return [
        f"dispatch benchmark ({result.backend}, load average {result.load_average[0]:.2f})",
        f"  bare aiohttp client, no storage:  {result.baseline_per_second:8.0f} SMS/s "
        f"(before the list {result.baseline_before:.0f}, after it {result.baseline_after:.0f})",
        f"  dispatcher, durable:              {result.durable_per_second:8.0f} deliveries/s "
        f"({result.contacts} contacts, {result.ratio:.0%} of the bare client; aim >= 2,500/s "
        "and >= 50%)",
        f"  CPU per delivery: dispatchers {dispatcher_cpu:.0f} us, SMS emulator "
        f"{platform_cpu:.0f} us, {database}",
        f"  CPU per bare client SMS: client {result.bare.per_request(result.bare.client):.0f} us, "
        f"emulator {result.bare.per_request(result.bare.platform):.0f} us: "
        f"{result.cpu_ratio:.0%} of a delivery's (the rate ratio when the cores are the limit)",
        f"  writing {result.contacts} deliveries at release: {result.release_seconds:.2f} s; "
        f"dead: {result.dead}",
        f"  approval -> last of 8 channels confirmed: p50 {latency['p50']} ms, "
        f"p95 {latency['p95']} ms, p99 {latency['p99']} ms (aim p99 <= 250 ms, "
        f"{len(result.release_to_confirmed)} alerts)",
        f"  cancel -> correction confirmed everywhere: p50 {cancel['p50']} ms, "
        f"p95 {cancel['p95']} ms, p99 {cancel['p99']} ms (aim p99 <= 1000 ms)",
    ]


# --- the platforms -----------------------------------------------------------------------------


class _Platforms:
    """The emulator process and what it told us."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.targets: list[dict[str, Any]] = []
        self.environment: dict[str, str] = {}
        self.urls: dict[str, str] = {}

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "broadcaster.dispatch.bench_platforms",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        if not line:
            raise RuntimeError("the emulator process stopped before it was ready")
        told = json.loads(line)
        self.targets, self.environment, self.urls = (
            told["targets"],
            told["environment"],
            told["urls"],
        )

    async def stop(self) -> None:
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    async def reset(self, session: aiohttp.ClientSession) -> None:
        for url in self.urls.values():
            async with session.post(f"{url}/_emulator/reset") as answer:
                await answer.read()


async def _bare_client(
    platforms: _Platforms, requests: int, concurrency: int, spent: _CpuSpent
) -> float:
    """SMS per second from a plain aiohttp client: no adapter, no library, no storage. The CPU
    it and the emulator used is added to `spent`."""
    [sms] = [t for t in platforms.targets if t["channel"] == "sms"]
    token = platforms.environment[sms["credentials"]["auth_token"]["env"]]
    url = f"{sms['base_url']}/2010-04-01/Accounts/{sms['account_sid']}/Messages.json"
    headers = {"Authorization": basic_authorization(sms["account_sid"], token)}
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(n: int) -> None:
            form = {"To": _phone(n), "From": sms["from_number"], "Body": f"Bench message {n}"}
            async with gate, session.post(url, data=form, headers=headers) as answer:
                await answer.read()
                if answer.status != 201:
                    raise RuntimeError(f"the SMS emulator answered {answer.status}")

        platform_pid = platforms.process.pid if platforms.process is not None else 0
        cpu_before = cpu_seconds(os.getpid()), cpu_seconds(platform_pid)
        began = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(requests)))
        elapsed = time.perf_counter() - began
        spent.requests += requests
        spent.client += cpu_seconds(os.getpid()) - cpu_before[0]
        spent.platform += cpu_seconds(platform_pid) - cpu_before[1]
        await platforms.reset(session)
    return requests / elapsed


async def _database_server_cpu(engine: AsyncEngine) -> dict[int, float] | None:
    """CPU seconds so far of each of PostgreSQL's server processes, when the server runs on this
    machine (its processes are ours to read); None otherwise, or on SQLite."""
    if engine.dialect.name != "postgresql":
        return None
    async with engine.connect() as connection:
        pids = list(await connection.scalars(text("SELECT pid FROM pg_stat_activity")))
    return _server_cpu(pids)


def _server_cpu(pids: Sequence[int]) -> dict[int, float] | None:
    found: dict[int, float] = {}
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if command.startswith("postgres"):  # the server's, not some local process's number
            found[pid] = cpu_seconds(pid)
    return found or None


def _spent_since(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
    """CPU the server spent in between: processes that ran throughout, and all of those that
    started meanwhile (a connection the pool opened); ended ones are lost (few)."""
    if before is None or after is None:
        return None
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def _phone(n: int) -> str:
    """A valid North American number for person n (up to 800,000 of them)."""
    return f"+1{202 + n // 10_000}555{n % 10_000:04d}"


async def _worker_process(
    url: str, platforms: _Platforms, settings: Settings
) -> asyncio.subprocess.Process:
    """A `broadcaster worker` on the same database and emulators; ready once registered."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    environment.update(platforms.environment)
    environment.update(
        {
            "BROADCASTER_TARGETS": json.dumps(platforms.targets),
            "BROADCASTER_DATABASE__URL": url,
            "BROADCASTER_DISPATCH__HONOUR_PLATFORM_RATES": "false",
            "BROADCASTER_LOGGING__LEVEL": "ERROR",
            "BROADCASTER_WORKER__IN_PROCESS": "false",
        }
    )
    scratch = tempfile.mkdtemp(prefix="broadcaster-bench-worker-")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "broadcaster", "worker", cwd=scratch, env=environment
    )
    engine = create_engine(DatabaseSettings(url=url))
    try:
        for _ in range(600):
            async with engine.connect() as connection:
                found = await connection.scalar(
                    select(func.count()).select_from(workers).where(workers.c.pid == process.pid)
                )
            if found:
                return process
            await asyncio.sleep(0.1)
        raise RuntimeError("a benchmark worker process did not start within a minute")
    finally:
        await engine.dispose()


# --- the service side --------------------------------------------------------------------------


class _Desk:
    def __init__(self, engine: AsyncEngine, service: AlertService) -> None:
        self.engine = engine
        self.service = service
        self.officer: Actor | None = None
        self.approver: Actor | None = None

    async def people(self) -> None:
        async with self.engine.begin() as connection:
            self.officer = Actor(
                await users.add_user(connection, "bench-officer", Role.duty_officer, password=None)
            )
            approver = await users.add_user(
                connection, "bench-approver", Role.approver, password=None, rank=3
            )
        self.approver = Actor(approver)

    async def submitted(self, area: str, channels: Sequence[str]) -> tuple[int, str]:
        """A boil-water alert drafted and submitted; returns (alert id, its content hash)."""
        assert self.officer is not None
        placeholders = self.service.rules.templates.get("boil-water").placeholders
        values = {name: f"the {name} for {area}" for name in placeholders} | {"area": area}
        content = self.service.from_template("boil-water", values, list(channels))
        drafted = await self.service.draft(self.officer, content)
        await self.service.submit(self.officer, drafted.alert_id)
        async with self.engine.connect() as connection:
            digest = await connection.scalar(
                select(alert_versions.c.content_hash).where(
                    alert_versions.c.id == drafted.version_id
                )
            )
        return drafted.alert_id, str(digest)

    async def approve(self, alert_id: int, digest: str) -> int:
        assert self.approver is not None
        return (await self.service.approve(self.approver, alert_id, digest)).version_id


async def _settled(
    engine: AsyncEngine, version_id: int, within: float, every: float = _POLL
) -> None:
    deadline = time.monotonic() + within
    # Is one delivery still open? Looked for from the newest: a list is sent about in order, so
    # one turns up at once until the end. Counting them all read the whole 100,000-person list
    # every second in the dispatcher's process, whose CPU time the benchmark reports.
    one_open = (
        select(deliveries.c.id)
        .where(
            deliveries.c.version_id == version_id,
            deliveries.c.state.not_in([s.value for s in FINAL_STATES]),
        )
        .order_by(deliveries.c.id.desc())
        .limit(1)
    )
    while True:
        async with engine.connect() as connection:
            left = await connection.scalar(one_open)
        if left is None:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"deliveries of version {version_id} still open, e.g. {left}")
        await asyncio.sleep(every)


async def _confirmed_at(engine: AsyncEngine, version_id: int) -> tuple[datetime, int, int]:
    """When the last delivery of the version was confirmed; how many; how many are dead."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(
                    func.max(deliveries.c.delivered_at),
                    func.count(deliveries.c.delivered_at),
                    func.count().filter(deliveries.c.state == "dead"),
                ).where(deliveries.c.version_id == version_id)
            )
        ).one()
    last = row[0]
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    return last, int(row[1]), int(row[2])


async def run_dispatch_bench(
    loaded: LoadedSettings,
    *,
    contacts_count: int = 100_000,
    baseline_requests: int = 20_000,
    rounds: int = 50,
    database_url: str | None = None,
    workers: int = 1,
) -> DispatchBench:
    platforms = _Platforms()
    await platforms.start()
    scratch = tempfile.TemporaryDirectory(prefix="broadcaster-bench-")
    url = database_url or f"sqlite+aiosqlite:///{Path(scratch.name) / 'bench.db'}"
    engine = create_engine(DatabaseSettings(url=url))
    result = DispatchBench(backend=engine.dialect.name)
    stop = asyncio.Event()
    running: asyncio.Task[None] | None = None
    directory = None
    helpers: list[asyncio.subprocess.Process] = []
    try:
        sms_concurrency = loaded.settings.dispatch.for_channel("sms").concurrency
        result.baseline_before = await _bare_client(
            platforms, baseline_requests, sms_concurrency, result.bare
        )
        await migrate.upgrade(engine)
        os.environ.update(platforms.environment)  # the emulators' credentials, as secrets come
        directory = build_directory(platforms.targets, "the benchmark's emulators")
        dispatch = loaded.settings.dispatch.model_copy(update={"honour_platform_rates": False})
        settings = Settings(
            database=DatabaseSettings(url=url),
            worker=loaded.settings.worker,
            dispatch=dispatch,
        )
        wake = Wakeup()
        outbox = Outbox(directory, public_base=PUBLIC_BASE, wake=wake)
        service = AlertService(
            engine,
            load_alert_rules(loaded.settings.alerts),
            on_release=outbox.on_release,
            went_out=outbox.went_out,
        )
        desk = _Desk(engine, service)
        await desk.people()
        async with engine.begin() as connection:
            await contacts.import_contacts(
                connection, LIST_NAME, [contacts.ContactRow(_phone(0), "person0@example.org")]
            )
        dispatcher = Dispatcher(
            engine, directory, settings, worker_id="bench", public_base=PUBLIC_BASE, wake=wake
        )
        give_lanes_threads(dispatcher)
        running = asyncio.create_task(dispatcher.run(stop))

        # 2 and 3: one person on each list, eight channels, one alert at a time; the first
        # alert is not measured (it opens the adapters' connections, as a running service has).
        for n in range(-1, rounds):
            alert_id, digest = await desk.submitted(f"Latency district {n}", EIGHT_CHANNELS)
            began = datetime.now(UTC)
            version_id = await desk.approve(alert_id, digest)
            await _settled(engine, version_id, 30)
            last, _count, _dead = await _confirmed_at(engine, version_id)
            if n >= 0:
                result.release_to_confirmed.append((last - began).total_seconds())
            assert desk.officer is not None
            began = datetime.now(UTC)
            cancel = await service.cancel(desk.officer, alert_id, None)
            await _settled(engine, cancel.version_id, 30)
            last, _count, _dead = await _confirmed_at(engine, cancel.version_id)
            if n >= 0:
                result.cancel_to_corrected.append((last - began).total_seconds())

        # 1: the big list, with `workers - 1` `broadcaster worker` processes helping the
        # in-process one (a machine's other cores; they look every poll interval).
        rows = [contacts.ContactRow(_phone(n)) for n in range(1, contacts_count)]
        async with engine.begin() as connection:
            await contacts.import_contacts(connection, LIST_NAME, rows)
        for _ in range(workers - 1):
            helpers.append(await _worker_process(url, platforms, settings))
        alert_id, digest = await desk.submitted("the whole county", ["sms"])
        tick = time.perf_counter()
        version_id = await desk.approve(alert_id, digest)
        result.release_seconds = time.perf_counter() - tick
        released = datetime.now(UTC)  # the deliveries are durable from here on
        processes = [os.getpid(), *(helper.pid for helper in helpers)]
        platform_pid = platforms.process.pid if platforms.process is not None else 0
        cpu_before = sum(map(cpu_seconds, processes)), cpu_seconds(platform_pid)
        server_before = await _database_server_cpu(engine)
        # Counting a big list's open deliveries costs: look seldom, not to slow the worker.
        await _settled(engine, version_id, 3600, every=1.0)
        result.dispatcher_cpu_seconds = sum(map(cpu_seconds, processes)) - cpu_before[0]
        result.platform_cpu_seconds = cpu_seconds(platform_pid) - cpu_before[1]
        server_after = await _database_server_cpu(engine)
        result.database_cpu_seconds = _spent_since(server_before, server_after)
        last, count, dead = await _confirmed_at(engine, version_id)
        result.contacts, result.dead = count + dead, dead
        result.durable_per_second = count / max(1e-9, (last - released).total_seconds())
        result.load_average = os.getloadavg()
        # Against an emulator as fresh as the first run's: not holding the list's messages.
        async with aiohttp.ClientSession() as session:
            await platforms.reset(session)
        result.baseline_after = await _bare_client(
            platforms, baseline_requests, sms_concurrency, result.bare
        )
    finally:
        for helper in helpers:
            helper.send_signal(signal.SIGTERM)
        for helper in helpers:
            await helper.wait()
        stop.set()
        if running is not None:
            await running
        if directory is not None:
            await directory.aclose()
        await engine.dispose()
        await platforms.stop()
        scratch.cleanup()
    return result
