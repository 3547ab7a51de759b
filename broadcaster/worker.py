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

from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.settings import WorkerSettings
from broadcaster.storage.schema import workers

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class WorkerPresence:
    def __init__(self, engine: AsyncEngine, settings: WorkerSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.id = new_worker_id()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
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
        async with self.engine.begin() as connection:
            await connection.execute(
                workers.update().where(workers.c.id == self.id).values(stopped_at=datetime.now(UTC))
            )
        log.info("worker %s stopped", self.id, extra={"worker": self.id})
