"""Ingestion: a bounded queue in front of the database, written in batches by one task.

Every source (webhooks, polling, the public form) hands its reports to `Ingestor.submit`, which
waits until they are committed: a webhook is answered 200 only once its report is stored, so a
platform whose call failed retries it, and the (source, external id) key makes the retry
harmless.

When the database is slow, reports wait in the queue (its depth and the oldest wait are in
/metrics) and later batches grow, which is what makes a slow database catch up. A submitter
that has waited `wait_seconds` gets `IngestSlow` (the webhook answers 503: "try again"), but its
reports stay queued and are still written. Only when the queue is full is anything refused
(`IngestBusy`, 503 with Retry-After): refused before it was accepted, so the sender keeps it and
retries. A batch the database refuses stays at the head of the queue and is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from broadcaster.triage.live import LiveHub
from broadcaster.triage.metrics import TriageMetrics
from broadcaster.triage.normalise import NewReport
from broadcaster.triage.pipeline import Ingested, Pipeline

__all__ = ["IngestBusy", "IngestSlow", "Ingestor"]

log = logging.getLogger(__name__)
BATCH_MAX = 1000
_RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class IngestBusy(Exception):
    """The queue is full: nothing was accepted; try again after `retry_after` seconds."""

    retry_after = 5


class IngestSlow(Exception):
    """Accepted and queued, but not yet written; it will be. Answer "try again later"."""

    retry_after = 5


@dataclass
class _Pending:
    report: NewReport
    queued_at: float
    done: asyncio.Future[Ingested] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Ingestor:
    def __init__(
        self,
        pipeline: Pipeline,
        hub: LiveHub,
        metrics: TriageMetrics,
        clock: Callable[[], datetime],
        *,
        queue_size: int,
        wait_seconds: float = 10.0,
    ) -> None:
        self.pipeline = pipeline
        self.hub = hub
        self.metrics = metrics
        self.clock = clock
        self.queue_size = queue_size
        self.wait_seconds = wait_seconds
        self._pending: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()  # set while nothing is waiting to be written
        self._drained.set()
        self._task: asyncio.Task[None] | None = None
        metrics.queue_capacity.set(queue_size)
        metrics.queue_depth.set_function(lambda: len(self._pending))
        metrics.oldest_wait.set_function(self._oldest_wait)

    @property
    def depth(self) -> int:
        return len(self._pending)

    def _oldest_wait(self) -> float:
        return time.monotonic() - self._pending[0].queued_at if self._pending else 0.0

    async def submit(self, reports: Sequence[NewReport]) -> list[Ingested]:
        """Queue `reports` and wait until they are stored; IngestBusy if the queue is full,
        IngestSlow if they are queued but not stored within `wait_seconds`."""
        if not reports:
            return []
        if len(self._pending) + len(reports) > self.queue_size:
            self.metrics.refused.inc(len(reports))
            raise IngestBusy()
        now = time.monotonic()
        pending = [_Pending(report, now) for report in reports]
        self._pending.extend(pending)
        self._drained.clear()
        self._wakeup.set()
        waiting = [item.done for item in pending]
        _, not_done = await asyncio.wait(waiting, timeout=self.wait_seconds)
        if not_done:
            raise IngestSlow()
        return [future.result() for future in waiting]

    # --- the writer ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the cluster index, then start writing. A database that cannot be reached yet
        does not stop the service from starting (its readiness check says so): the index is
        built with the first batch instead."""
        try:
            await self.pipeline.warm(self.clock())
        except Exception as error:
            log.warning(
                "triage: cannot read recent reports to group new ones with (%s); trying again "
                "with the first report",
                type(error).__name__,
            )
            self.pipeline.invalidate()
        self._task = asyncio.create_task(self._run(), name="triage ingestion")

    async def stop(self, drain_seconds: float = 5.0) -> None:
        """Write what is queued (for up to `drain_seconds`), then stop."""
        if self._task is None:
            return
        if not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), drain_seconds)
        if self._pending:
            log.error(
                "triage: stopping with %d reports not written; their senders were not answered "
                "200 and will deliver them again",
                len(self._pending),
            )
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def flush(self) -> None:
        """Wait until everything queued so far is written (tests, benchmarks)."""
        await self._drained.wait()

    async def _run(self) -> None:
        failures = 0
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = [self._pending.popleft() for _ in range(min(BATCH_MAX, len(self._pending)))]
            started = time.perf_counter()
            try:
                results, changed = await self.pipeline.write(
                    [item.report for item in batch],
                    self.clock(),
                    show=self.hub.subscribers > 0,
                )
            except asyncio.CancelledError:
                self._pending.extendleft(reversed(batch))
                raise
            except Exception as error:
                # Keep the batch at the head of the queue and try again: nothing is dropped.
                self._pending.extendleft(reversed(batch))
                self.metrics.write_failures.inc()
                delay = _RETRY_DELAYS[min(failures, len(_RETRY_DELAYS) - 1)]
                failures += 1
                log.warning(
                    "triage: writing %d reports failed (%s); retrying in %s s, %d waiting",
                    len(batch),
                    type(error).__name__,
                    delay,
                    len(self._pending),
                    exc_info=failures == 1,
                )
                await asyncio.sleep(delay)
                continue
            failures = 0
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
            for item, result in zip(batch, results, strict=True):
                counter = self.metrics.ingested if result.created else self.metrics.replayed
                counter.labels(item.report.source).inc()
                if not item.done.done():
                    item.done.set_result(result)
            self.hub.publish_reports(changed)
            if not self._pending:
                self._drained.set()
