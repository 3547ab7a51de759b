"""`broadcaster bench inbound`: how many signed webhook reports a second the service takes into
the triage queue, and how long each takes from webhook to a responder's live queue.

The service runs in this process exactly as `serve` runs it (the aiohttp application, the
ingestion writer, dedupe, clustering and scoring, the live queue; the writer in a process of its
own unless `triage.writer_process` is off, and its CPU time counted as the service's), on a
fresh database: a
temporary SQLite file unless --database-url names another. A second process plays the
platforms and a responder: it opens the live queue (server-sent events), then sends the
webhooks, signed as X (Account Activity), Meta (a Facebook comment) and Twilio (an SMS) sign
them, one message per call, with some replays mixed in as platforms do (sent over keep-alive
connections by bench_http, which costs the shared machine far less CPU than aiohttp's client).
Latency is measured in that process, from just before a webhook is sent to the moment its report
arrives on the live queue. Request logging is turned down to warnings for the run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import multiprocessing
import os
import queue
import random
import secrets
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from pydantic import SecretStr
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from approvals.roles import Role
from broadcaster import event_loop, users
from broadcaster.auth.tokens import create_token
from broadcaster.service import web_site
from broadcaster.settings import DatabaseSettings, LoadedSettings, Settings
from broadcaster.storage.database import open_database
from broadcaster.targets import ConfiguredTarget, Directory
from broadcaster.triage.bench_http import KeepAliveConnection, encode_post
from broadcaster.triage.runtime import TRIAGE
from broadcaster.triage.writer_process import WriterProcess
from broadcaster.web_app import create_app
from broadcaster.web_keys import METRICS
from channels.base import Target, TargetMode
from channels.facebook import FacebookChannel, FacebookSettings
from channels.sms import SmsChannel, SmsSettings, twilio_signature
from channels.x import SIGNATURE_HEADER, XChannel, XSettings

__all__ = ["BenchResult", "run_inbound_bench"]

PAGE_ID = "104857600012345"
ACCOUNT_SID = "AC" + "0" * 32
_TEXTS = (
    "We are trapped on the roof at {n} Elm St, water rising 🆘",
    "Is the Main St bridge open? need to get to work",
    "power lines down on Riverside road near house {n}",
    "Estamos atrapados en el techo, calle Elm {n}, ¡ayuda!",
    "¿Está abierto el refugio del recinto ferial?",
    "Nous sommes coincés sur le toit, rue Elm {n}, mon père est blessé",
    "this alert is fake lol 😂",
    "smoke coming from the hills behind the school, {n} families here",
    "need insulin for my mother, we cannot leave the house",
    "thanks for the update, stay safe everyone",
)


@dataclass(frozen=True)
class BenchResult:
    sent: int  # webhook calls made
    replays: int  # calls that repeated an earlier call
    unique: int  # distinct reports among them
    accepted: int  # calls answered 200
    errors: dict[str, int]  # other answers, by status or error
    seconds: float  # first call sent to last report on the live queue
    latencies: list[float]  # seconds, webhook sent -> report on the live queue
    missing: int  # unique reports never seen on the live queue
    batches: int = 0  # database batches the ingestion writer made
    batch_seconds: float = 0.0  # time spent writing them
    server_cpu: float = 0.0  # CPU seconds the service used during the run (writer included)
    writer_cpu: float = 0.0  # of which its writer process (0: it wrote in the web process)
    driver_cpu: float = 0.0  # CPU seconds the platforms' side used
    load_average: float = 0.0  # the machine's 1-minute load average when the run began
    load_average_end: float = 0.0  # and when it ended
    backend: str = ""  # the database: sqlite or postgresql
    loop: str = ""  # the event loop the service ran on

    @property
    def per_second(self) -> float:
        return self.unique / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def lines(self) -> list[str]:
        ms = 1000
        return [
            f"backend:                 {self.backend}, event loop {self.loop}, "
            f"{os.cpu_count()} cores, load average {self.load_average:.2f} at the start, "
            f"{self.load_average_end:.2f} at the end",
            f"webhook calls sent:      {self.sent} ({self.replays} replays), "
            f"{self.unique} distinct messages",
            f"on the live queue:       {self.unique - self.missing} of {self.unique} reports",
            f"answered 200:            {self.accepted}"
            + (f"  errors: {self.errors}" if self.errors else ""),
            f"throughput:              {self.per_second:,.0f} reports/s "
            f"({self.unique} in {self.seconds:.2f} s)",
            f"webhook -> live queue:   p50 {self.percentile(0.50) * ms:.0f} ms, "
            f"p95 {self.percentile(0.95) * ms:.0f} ms, p99 {self.percentile(0.99) * ms:.0f} ms, "
            f"max {max(self.latencies, default=0) * ms:.0f} ms",
            f"ingestion batches:       {self.batches}, "
            f"{self.batch_seconds / max(1, self.batches) * ms:.1f} ms each "
            f"({self.batch_seconds:.2f} s writing in all)",
            f"CPU:                     service {self.server_cpu:.2f} s "
            f"({self.server_cpu / max(1, self.unique) * 1e6:.0f} us per report"
            + (
                f"; web process {self.server_cpu - self.writer_cpu:.2f} s, "
                f"writer process {self.writer_cpu:.2f} s"
                if self.writer_cpu
                else "; writer in the web process"
            )
            + f"), load generator {self.driver_cpu:.2f} s",
        ]


@dataclass(frozen=True)
class _Plan:
    url: str
    token: str
    calls: list[Call]
    concurrency: int


def _secrets() -> dict[str, str]:
    return {
        "consumer_key": secrets.token_urlsafe(18),
        "consumer_secret": secrets.token_urlsafe(37),
        "access_token": f"1580000000000000001-{secrets.token_urlsafe(30)}",
        "access_token_secret": secrets.token_urlsafe(33),
        "page_access_token": "EAAG" + secrets.token_hex(16),
        "app_secret": secrets.token_hex(16),
        "verify_token": secrets.token_urlsafe(12),
        "auth_token": secrets.token_hex(16),
    }


def _directory(keys: dict[str, str]) -> Directory:
    """Targets for the three signing schemes; nothing is ever sent to them."""
    nowhere = "http://127.0.0.1:9"  # the benchmark only receives
    directory = Directory()

    def secret(*names: str) -> dict[str, SecretStr]:
        return {name: SecretStr(keys[name]) for name in names}

    directory.add(
        ConfiguredTarget(
            Target(
                XSettings(name="x-bench", mode=TargetMode.live, base_url=nowhere),
                secret("consumer_key", "consumer_secret", "access_token", "access_token_secret"),
            ),
            XChannel,
        )
    )
    directory.add(
        ConfiguredTarget(
            Target(
                FacebookSettings(
                    name="facebook-bench", mode=TargetMode.live, base_url=nowhere, page_id=PAGE_ID
                ),
                secret("page_access_token", "app_secret", "verify_token"),
            ),
            FacebookChannel,
        )
    )
    directory.add(
        ConfiguredTarget(
            Target(
                SmsSettings(
                    name="sms-bench",
                    mode=TargetMode.live,
                    base_url=nowhere,
                    account_sid=ACCOUNT_SID,
                    from_number="+15005550006",
                ),
                secret("auth_token"),
            ),
            SmsChannel,
            ("bench",),
        )
    )
    return directory


Call = tuple[str, tuple[str, ...], bytes, dict[str, str]]  # target, message ids, body, headers


def _calls(
    base_url: str,
    keys: dict[str, str],
    count: int,
    replays: float,
    rng: random.Random,
    per_call: int = 1,
) -> list[Call]:
    """Signed webhook calls as the platforms make them (X and Meta put up to `per_call`
    messages in one call; Twilio sends one SMS per call); some calls are replays."""
    made: list[Call] = []
    now = datetime.now(UTC)
    serial = 0
    for number in range(count):
        if made and rng.random() < replays:
            made.append(made[rng.randrange(len(made))])
            continue
        kind = number % 3
        batch = per_call if kind != 2 else 1
        texts = [rng.choice(_TEXTS).format(n=rng.randint(1, 60)) for _ in range(batch)]
        serials = list(range(serial, serial + batch))
        serial += batch
        if kind == 0:
            made.append(_x_call(keys, now, serials, texts))
        elif kind == 1:
            made.append(_meta_call(keys, now, serials, texts))
        else:
            made.append(_sms_call(base_url, keys, serials[0], texts[0]))
    return made


def _x_call(keys: dict[str, str], now: datetime, serials: list[int], texts: list[str]) -> Call:
    ids = [str(2_000_000_000_000_000_000 + serial) for serial in serials]
    events = [
        {
            "id_str": tweet_id,
            "created_at": now.strftime("%a %b %d %H:%M:%S +0000 %Y"),
            "text": f"@CountyAlerts {text}",
            "user": {
                "id_str": str(1_700_000_000_000_000_000 + serial % 5000),
                "screen_name": f"resident{serial % 5000}",
                "name": f"Resident {serial % 5000}",
            },
            "in_reply_to_status_id_str": "1999999999999999999",
        }
        for tweet_id, serial, text in zip(ids, serials, texts, strict=True)
    ]
    body = json.dumps(
        {"for_user_id": "1580000000000000001", "tweet_create_events": events},
        ensure_ascii=False,
    ).encode()
    digest = hmac.new(keys["consumer_secret"].encode(), body, hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: "sha256=" + base64.b64encode(digest).decode(),
    }
    return ("x-bench", tuple(ids), body, headers)


def _meta_call(keys: dict[str, str], now: datetime, serials: list[int], texts: list[str]) -> Call:
    ids = [f"{serial}_{serial}" for serial in serials]
    changes = [
        {
            "field": "feed",
            "value": {
                "item": "comment",
                "verb": "add",
                "comment_id": comment_id,
                "post_id": f"{PAGE_ID}_1",
                "parent_id": f"{PAGE_ID}_1",
                "from": {
                    "id": str(100000000000001 + serial % 5000),
                    "name": f"Resident {serial % 5000}",
                },
                "message": text,
                "created_time": int(now.timestamp()),
            },
        }
        for comment_id, serial, text in zip(ids, serials, texts, strict=True)
    ]
    body = json.dumps(
        {
            "object": "page",
            "entry": [{"id": PAGE_ID, "time": int(now.timestamp()), "changes": changes}],
        },
        ensure_ascii=False,
    ).encode()
    signature = hmac.new(keys["app_secret"].encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + signature}
    return ("facebook-bench", tuple(ids), body, headers)


def _sms_call(base_url: str, keys: dict[str, str], serial: int, text: str) -> Call:
    sid = f"SM{serial:032x}"
    fields = {
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": f"+1202555{serial % 10000:04d}",
        "To": "+15005550006",
        "Body": text,
        "NumMedia": "0",
    }
    url = f"{base_url}/api/v1/hooks/sms-bench"
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": twilio_signature(keys["auth_token"], url, sorted(fields.items())),
    }
    return ("sms-bench", (sid,), urlencode(fields).encode(), headers)


# --- the platforms' side (its own process) -------------------------------------------------------


def _drive(plan: _Plan, results: Any) -> None:
    results.put(event_loop.run(_drive_async(plan)))


async def _drive_async(plan: _Plan) -> dict[str, Any]:
    unique = {external_id for _, ids, _, _ in plan.calls for external_id in ids}
    sent_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    all_seen = asyncio.Event()
    errors: dict[str, int] = {}
    accepted = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    connector = aiohttp.TCPConnector(limit=plan.concurrency + 2)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def listen(stream: aiohttp.ClientResponse) -> None:
            async for raw in stream.content:
                if raw.startswith(b"data: {"):
                    external_id = json.loads(raw[6:]).get("external_id")
                    if external_id is not None and external_id not in seen_at:
                        seen_at[external_id] = time.monotonic()
                        if len(seen_at) >= len(unique):
                            all_seen.set()

        stream = await session.get(
            f"{plan.url}/api/v1/reports/events?state=all",
            headers={"Authorization": f"Bearer {plan.token}"},
        )
        if stream.status != 200:
            raise RuntimeError(f"the live queue answered {stream.status}")
        listener = asyncio.create_task(listen(stream))
        address = URL(plan.url)
        requests = [
            (
                ids,
                encode_post(
                    address.host_port_subcomponent or "", f"/api/v1/hooks/{target}", headers, body
                ),
            )
            for target, ids, body, headers in plan.calls
        ]
        position = 0
        started = time.monotonic()
        cpu_started = time.process_time()

        async def sender() -> None:
            nonlocal position, accepted
            connection = KeepAliveConnection(address.host or "127.0.0.1", address.port or 80)
            try:
                while position < len(plan.calls):
                    ids, request = requests[position]
                    position += 1
                    now = time.monotonic()
                    for external_id in ids:
                        sent_at.setdefault(external_id, now)
                    try:
                        status = await connection.send(request)
                    except (OSError, asyncio.IncompleteReadError) as error:
                        name = type(error).__name__
                        errors[name] = errors.get(name, 0) + 1
                        continue
                    if status == 200:
                        accepted += 1
                    else:
                        errors[str(status)] = errors.get(str(status), 0) + 1
            finally:
                connection.close()

        await asyncio.gather(*(sender() for _ in range(plan.concurrency)))
        with contextlib.suppress(TimeoutError):  # counted below as missing
            await asyncio.wait_for(all_seen.wait(), 30)
        finished = max(seen_at.values(), default=time.monotonic())
        listener.cancel()
        stream.close()
    return {
        "driver_cpu": time.process_time() - cpu_started,
        "sent": len(plan.calls),
        "replays": len(plan.calls) - len({ids for _, ids, _, _ in plan.calls}),
        "unique": len(unique),
        "accepted": accepted,
        "errors": errors,
        "seconds": finished - started,
        "latencies": [seen_at[key] - sent_at[key] for key in seen_at if key in sent_at],
        "missing": len(unique - set(seen_at)),
    }


# --- the service's side --------------------------------------------------------------------------


async def _token(engine: AsyncEngine) -> str:
    async with engine.begin() as connection:
        user = await users.add_user(connection, "bench-responder", Role.responder, password=None)
        return (await create_token(connection, user.id, "bench")).value


async def run_inbound_bench(
    loaded: LoadedSettings,
    *,
    reports: int,
    concurrency: int,
    replays: float,
    database_url: str | None,
    per_call: int = 1,
    seed: int = 1,
) -> BenchResult:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        return await _run_inbound_bench(
            loaded,
            reports=reports,
            concurrency=concurrency,
            replays=replays,
            database_url=database_url,
            per_call=per_call,
            seed=seed,
        )
    finally:
        root.setLevel(level)


async def _run_inbound_bench(
    loaded: LoadedSettings,
    *,
    reports: int,
    concurrency: int,
    replays: float,
    database_url: str | None,
    per_call: int,
    seed: int,
) -> BenchResult:
    load_average = os.getloadavg()[0]
    keys = _secrets()
    with tempfile.TemporaryDirectory(prefix="broadcaster-bench-") as scratch:
        url = database_url or f"sqlite+aiosqlite:///{Path(scratch) / 'bench.db'}"
        settings = Settings(
            database=DatabaseSettings(url=url),
            alerts=loaded.settings.alerts,
            triage=loaded.settings.triage.model_copy(
                update={
                    "ingest_queue_size": max(
                        loaded.settings.triage.ingest_queue_size, reports * per_call
                    ),
                    "poll_interval_seconds": 3600.0,  # the targets are stand-ins: nothing to poll
                }
            ),
        )
        bench_loaded = LoadedSettings(
            settings, None, {"session_key": SecretStr(secrets.token_urlsafe(32))}, _directory(keys)
        )
        engine = await open_database(settings.database)
        try:
            token = await _token(engine)
            app = create_app(
                bench_loaded, engine, triage_writer_process=settings.triage.writer_process
            )
            async with web_site(app, "127.0.0.1", 0, 5.0) as base_url:
                plan = _Plan(
                    base_url,
                    token,
                    _calls(base_url, keys, reports, replays, random.Random(seed), per_call),  # noqa: S311 (test data, not secrets)
                    concurrency,
                )
                context = multiprocessing.get_context("spawn")
                results = context.Queue()
                driver = context.Process(target=_drive, args=(plan, results), daemon=True)
                driver.start()
                writer = app[TRIAGE].pipeline
                writer_cpu = writer.cpu_seconds if isinstance(writer, WriterProcess) else None
                cpu_before = time.process_time()
                writer_before = writer_cpu() if writer_cpu else 0.0
                outcome = await asyncio.to_thread(_result_of, driver, results)
                writer_used = writer_cpu() - writer_before if writer_cpu else 0.0
                server_cpu = time.process_time() - cpu_before + writer_used
                await app[TRIAGE].ingestor.flush()
                registry = app[METRICS].registry
                batches = registry.get_sample_value("broadcaster_triage_ingest_batch_seconds_count")
                batch_seconds = registry.get_sample_value(
                    "broadcaster_triage_ingest_batch_seconds_sum"
                )
        finally:
            await engine.dispose()
    return BenchResult(
        **outcome,
        batches=int(batches or 0),
        batch_seconds=batch_seconds or 0.0,
        server_cpu=server_cpu,
        writer_cpu=writer_used,
        load_average=load_average,
        load_average_end=os.getloadavg()[0],
        backend=make_url(url).get_backend_name(),
        loop=event_loop.loop_name(),
    )


def _result_of(driver: Any, results: Any) -> dict[str, Any]:
    """The driver's result, or an error if it died without one."""
    while True:
        try:
            outcome: dict[str, Any] = results.get(timeout=1)
        except queue.Empty:
            if not driver.is_alive():
                raise RuntimeError(
                    f"the load generator stopped (exit status {driver.exitcode}) without a result"
                ) from None
            continue
        driver.join(10)
        return outcome


def summary(
    result: BenchResult, *, target_rate: float = 3000, target_p99: float = 1.0
) -> list[str]:
    verdict = (
        "meets"
        if result.per_second >= target_rate and result.percentile(0.99) < target_p99
        else "does NOT meet"
    )
    busy = (
        [
            f"WARNING: the machine was busy (load average {result.load_average:.1f} on "
            f"{os.cpu_count()} cores) when the run began: these figures are low; run it again "
            "on a quiet machine"
        ]
        if result.load_average > 1.0
        else []
    )
    return [
        *busy,
        *result.lines(),
        f"target: {target_rate:,.0f} reports/s and p99 under {target_p99:g} s: {verdict} it",
    ]
