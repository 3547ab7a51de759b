"""Running a dispatcher for the life of a process: `serve`'s in-process worker, `broadcaster
worker`. On the way out it stops claiming, finishes or hands back what it holds, and closes the
adapters' HTTP sessions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.dispatch.dispatcher import Dispatcher
from broadcaster.dispatch.wake import Wakeup
from broadcaster.settings import LoadedSettings, ServerSettings

log = logging.getLogger(__name__)


def public_base_of(server: ServerSettings) -> str:
    """The address posts link to: server.public_url, else where this service listens."""
    return (server.public_url or f"http://{server.host}:{server.port}").rstrip("/")


def give_lanes_threads(dispatcher: Dispatcher) -> None:
    """Adapters for synchronous libraries (facebook-sdk, Mastodon.py) run in the default thread
    pool. Its stock size (CPUs + 4) would let one hanging platform hold the threads another
    needs: give every lane's slots a thread, so the lanes stay apart there too."""
    threads = sum(lane.concurrency for lane in dispatcher.lanes.values()) + 8
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=min(threads, 512), thread_name_prefix="adapter")
    )


@contextlib.asynccontextmanager
async def dispatching(
    engine: AsyncEngine, loaded: LoadedSettings, worker_id: str, wake: Wakeup
) -> AsyncIterator[asyncio.Task[None]]:
    """A dispatcher running in the background while inside; yields its task (done = it died)."""
    dispatcher = Dispatcher(
        engine,
        loaded.directory,
        loaded.settings,
        worker_id=worker_id,
        public_base=public_base_of(loaded.settings.server),
        wake=wake,
    )
    give_lanes_threads(dispatcher)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop), name=f"dispatcher {worker_id}")
    try:
        yield task
    finally:
        stop.set()
        try:
            await task
        except Exception:
            log.exception("the dispatcher failed while stopping")
        await loaded.directory.aclose()
