"""A worker process's presence in the shared database: registration, heartbeat and sign-off.

Delivery leases name the worker holding them; a worker whose heartbeat is older than
`worker.lease_seconds` is presumed dead and its leases may be taken over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from datetime import UTC, datetime

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from broadcaster.settings import WorkerSettings
from broadcaster.storage.schema import workers

log = logging.getLogger(__name__)


# Registering and signing off wait out a busy database (SQLite's write lock held past its busy
# timeout by other processes, PostgreSQL restarting) rather than end the process over it.
def _patiently() -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception_type(OperationalError),
        stop=stop_after_attempt(5),
        wait=wait_fixed(1.0),
        reraise=True,
    )


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class WorkerPresence:
    def __init__(self, engine: AsyncEngine, settings: WorkerSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.id = new_worker_id()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async for attempt in _patiently():
            with attempt:
                now = datetime.now(UTC)
                async with self.engine.begin() as connection:
                    await connection.execute(
                        workers.insert().values(
                            id=self.id,
                            host=socket.gethostname(),
                            pid=os.getpid(),
                            started_at=now,
                            heartbeat_at=now,
                        )
                    )
        self._task = asyncio.create_task(self._beat(), name=f"heartbeat {self.id}")
        log.info("worker %s started", self.id, extra={"worker": self.id})

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                async with self.engine.begin() as connection:
                    await connection.execute(
                        workers.update()
                        .where(workers.c.id == self.id)
                        .values(heartbeat_at=datetime.now(UTC))
                    )
            except Exception as error:  # a missed beat is survivable; the next one retries
                log.warning("worker heartbeat failed: %s", type(error).__name__)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        async for attempt in _patiently():
            with attempt:
                async with self.engine.begin() as connection:
                    await connection.execute(
                        workers.update()
                        .where(workers.c.id == self.id)
                        .values(stopped_at=datetime.now(UTC))
                    )
        log.info("worker %s stopped", self.id, extra={"worker": self.id})
