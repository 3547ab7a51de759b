"""The triage queue's parts, wired together and run in the web service.

`build_triage` makes every part from the settings; `install` puts it in an aiohttp application
with its background work in the application's cleanup context (so `serve`, the demo and test
servers all run it the same way): the ingestion writer, the polling loop, the escalation
sweep, the retention purge and the cluster-index pruning. Each sweep takes its time from the
injected clock, and each can be called directly (tests, the benchmark).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.settings import LoadedSettings, TriageSettings
from broadcaster.triage.context import AlertContext
from broadcaster.triage.escalation import Escalator
from broadcaster.triage.ingest import Ingestor
from broadcaster.triage.live import LiveHub
from broadcaster.triage.metrics import TriageMetrics
from broadcaster.triage.normalise import Normaliser, pseudonym_key
from broadcaster.triage.pipeline import Pipeline, ReportWriter
from broadcaster.triage.polling import Poller, polled_targets
from broadcaster.triage.ratelimit import RateLimiter
from broadcaster.triage.retention import purge_expired
from broadcaster.triage.rules import TriageRules, load_triage_rules
from broadcaster.triage.service import TriageService
from broadcaster.triage.writer_process import WriterProcess, can_run_apart
from broadcaster.web_keys import METRICS

__all__ = ["TRIAGE", "Triage", "build_triage", "install"]

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
PURGE_EVERY_SECONDS = 3600.0
PRUNE_EVERY_SECONDS = 300.0
ESCALATION_SWEEP_MAX_SECONDS = 15.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Triage:
    settings: TriageSettings
    rules: TriageRules
    normaliser: Normaliser
    hub: LiveHub
    metrics: TriageMetrics
    pipeline: ReportWriter  # a Pipeline, or a WriterProcess running one in a child process
    ingestor: Ingestor
    service: TriageService
    escalator: Escalator
    poller: Poller
    form_limiter: RateLimiter
    clock: Clock

    async def purge(self) -> int:
        purged = await purge_expired(
            self.service.engine, self.settings.retention_days, self.metrics, self.clock
        )
        if purged:
            self.pipeline.invalidate()  # its clusters may name reports that are gone
        return purged


def build_triage(
    loaded: LoadedSettings,
    engine: AsyncEngine,
    registry: CollectorRegistry,
    *,
    clock: Clock | None = None,
    writer_process: bool = False,
) -> Triage:
    """Every part of triage. `writer_process`: write reports in a process of their own
    (`serve`, the benchmark; see writer_process.py), where the database allows it."""
    # Read at call time, so a test can put a fake clock in `utc_now` before the app is made.
    clock = clock or utc_now
    settings = loaded.settings.triage
    rules = load_triage_rules(settings)
    metrics = TriageMetrics(registry)
    hub = LiveHub()
    hub.on_publish = metrics.live_events.inc
    metrics.live_subscribers.set_function(lambda: hub.subscribers)
    normaliser = Normaliser(rules, pseudonym_key(loaded.secret("session_key")))
    pipeline: ReportWriter
    if writer_process and can_run_apart(engine.url):
        pipeline = WriterProcess(
            engine.url,
            rules,
            metrics,
            log_format=loaded.settings.logging.format,
            on_lost=hub.resync_all,
        )
    else:
        if writer_process:
            log.warning("triage: an in-memory database cannot be shared; writing in this process")
        pipeline = Pipeline(engine, rules, normaliser, AlertContext())
    ingestor = Ingestor(pipeline, hub, metrics, clock, queue_size=settings.ingest_queue_size)
    directory = loaded.directory
    return Triage(
        settings=settings,
        rules=rules,
        normaliser=normaliser,
        hub=hub,
        metrics=metrics,
        pipeline=pipeline,
        ingestor=ingestor,
        service=TriageService(engine, rules, directory, hub, metrics, clock),
        escalator=Escalator(
            engine,
            settings,
            rules,
            directory,
            hub,
            metrics,
            clock,
            public_url=loaded.settings.server.public_url,
        ),
        poller=Poller(engine, directory, normaliser, ingestor, metrics, clock),
        form_limiter=RateLimiter(settings.form_max_per_window, settings.form_window_seconds),
        clock=clock,
    )


TRIAGE = web.AppKey("triage", Triage)


def install(
    app: web.Application, loaded: LoadedSettings, engine: AsyncEngine, *, writer_process: bool
) -> Triage:
    """Add triage to the application: its state, its background work and its public form."""
    from broadcaster.triage import web_form  # the page module needs TRIAGE from here

    triage = build_triage(loaded, engine, app[METRICS].registry, writer_process=writer_process)
    app[TRIAGE] = triage
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_end_live_streams)
    app.add_routes(web_form.routes)
    return triage


async def _end_live_streams(app: web.Application) -> None:
    app[TRIAGE].hub.close()


async def _background(app: web.Application) -> AsyncIterator[None]:
    triage = app[TRIAGE]
    await triage.ingestor.start()
    escalation_every = min(
        ESCALATION_SWEEP_MAX_SECONDS, triage.settings.escalation_minutes * 60 / 4
    )
    jobs: list[tuple[str, float, Callable[[], Awaitable[object]]]] = [
        ("triage purge", PURGE_EVERY_SECONDS, triage.purge),
        ("triage cluster pruning", PRUNE_EVERY_SECONDS, lambda: _prune(triage)),
    ]
    if triage.escalator.enabled:
        jobs.append(("triage escalation", escalation_every, triage.escalator.sweep))
    if polled_targets(triage.poller.directory):
        jobs.append(
            ("triage polling", triage.settings.poll_interval_seconds, triage.poller.poll_all)
        )
    tasks = [asyncio.create_task(_every(name, every, job), name=name) for name, every, job in jobs]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await triage.ingestor.stop()


async def _prune(triage: Triage) -> int:
    return triage.pipeline.prune(triage.clock())


async def _every(name: str, every: float, job: Callable[[], Awaitable[object]]) -> None:
    """Run `job` every `every` seconds; a failure is logged and the job runs again next time."""
    while True:
        await asyncio.sleep(every)
        try:
            await job()
        except Exception:
            log.exception("background job %s failed; it runs again in %s s", name, every)


@contextlib.asynccontextmanager
async def running(triage: Triage) -> AsyncIterator[Triage]:
    """The ingestion writer running outside a web application (benchmarks, scripts)."""
    await triage.ingestor.start()
    try:
        yield triage
    finally:
        await triage.ingestor.stop()
