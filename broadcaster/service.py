"""Running the service until asked to stop, then stopping cleanly.

SIGINT (Ctrl-C) and SIGTERM both begin a graceful shutdown: stop accepting connections, let
requests in flight finish (up to `server.shutdown_timeout_seconds`), sign the worker off, close
the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.dispatch.running import dispatching
from broadcaster.dispatch.wake import Wakeup
from broadcaster.settings import LoadedSettings
from broadcaster.storage.database import open_database
from broadcaster.web_app import create_app
from broadcaster.web_keys import ALERTS, OUTBOX
from broadcaster.worker import WorkerPresence

log = logging.getLogger(__name__)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


@contextlib.asynccontextmanager
async def database(loaded: LoadedSettings) -> AsyncIterator[AsyncEngine]:
    engine = await open_database(loaded.settings.database)
    try:
        yield engine
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def web_site(
    app: web.Application, host: str, port: int, shutdown_timeout: float
) -> AsyncIterator[str]:
    """Serve `app` on host:port; yields the URL it listens on (the real port when port is 0)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
        bound_port = runner.addresses[0][1]
        yield f"http://{host}:{bound_port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def worker_presence(
    engine: AsyncEngine, loaded: LoadedSettings
) -> AsyncIterator[WorkerPresence]:
    presence = WorkerPresence(engine, loaded.settings.worker)
    await presence.start()
    try:
        yield presence
    finally:
        await presence.stop()


EXPIRY_SWEEP_SECONDS = 15.0


@contextlib.asynccontextmanager
async def periodic(
    name: str, every: float, job: Callable[[], Awaitable[object]]
) -> AsyncIterator[None]:
    """Run `job` every `every` seconds in the background; a failure is logged, not fatal."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await job()
            except Exception:
                log.exception("background job %s failed; it runs again in %s s", name, every)

    task = asyncio.create_task(loop(), name=name)
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def serve(
    loaded: LoadedSettings,
    *,
    prepare: Callable[[AsyncEngine], Awaitable[None]] | None = None,
    on_ready: Callable[[str], None] | None = None,
    host: str | None = None,
    port: int | None = None,
) -> None:
    """Run the web service (and, if configured, an in-process worker) until a stop signal.

    `prepare` runs on the open database before anything is served; `on_ready` once it is.
    """
    server = loaded.settings.server
    stop = stop_on_signals()
    async with AsyncExitStack() as stack:
        engine = await stack.enter_async_context(database(loaded))
        if prepare is not None:
            await prepare(engine)
        presence = None
        if loaded.settings.worker.in_process:
            presence = await stack.enter_async_context(worker_presence(engine, loaded))
        app = create_app(
            loaded, engine, triage_writer_process=loaded.settings.triage.writer_process
        )
        if presence is not None:
            # The in-process dispatcher; the release hook wakes it directly (app[OUTBOX].wake).
            await stack.enter_async_context(
                dispatching(engine, loaded, presence.id, app[OUTBOX].wake or Wakeup())
            )
        # Submitted alerts whose approval window ran out are marked expired, and audited.
        await stack.enter_async_context(
            periodic("expire lapsed alerts", EXPIRY_SWEEP_SECONDS, app[ALERTS].expire_lapsed)
        )
        url = await stack.enter_async_context(
            web_site(
                app,
                host or server.host,
                server.port if port is None else port,
                server.shutdown_timeout_seconds,
            )
        )
        log.info("serving on %s", url, extra={"url": url})
        if on_ready is not None:
            on_ready(url)
        await stop.wait()
        log.info("stopping: finishing requests in flight")
    log.info("stopped")


async def run_worker(loaded: LoadedSettings) -> None:
    """A separate worker process sharing the database's outbox (woken by NOTIFY on PostgreSQL).

    Runs until SIGTERM/SIGINT; a dispatcher that fails for good ends the process with an error,
    so a supervisor restarts it rather than leaving a worker that claims nothing."""
    stop = stop_on_signals()
    async with (
        database(loaded) as engine,
        worker_presence(engine, loaded) as presence,
        dispatching(engine, loaded, presence.id, Wakeup()) as dispatcher,
    ):
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({stopped, dispatcher}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if dispatcher.done() and dispatcher.exception() is not None:
            raise RuntimeError("the dispatcher stopped unexpectedly") from dispatcher.exception()
