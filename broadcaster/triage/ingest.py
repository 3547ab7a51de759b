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
from collections import Counter, deque
from collections.abc import Callable, Sequence
from datetime import datetime

from broadcaster.triage.live import LiveHub
from broadcaster.triage.metrics import TriageMetrics
from broadcaster.triage.normalise import NewReport
from broadcaster.triage.pipeline import Ingested, ReportWriter

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


class _Call:
    """One `submit` call: its reports' results, and one future its caller waits on, set when
    the last of them is written. (One future and one timer per call, not one per report: this
    runs for every webhook in a flood.)"""

    __slots__ = ("done", "remaining", "results")

    def __init__(self, count: int, done: asyncio.Future[None]) -> None:
        self.results: list[Ingested | None] = [None] * count
        self.remaining = count
        self.done = done

    def settle(self, index: int, result: Ingested) -> None:
        self.results[index] = result
        self.remaining -= 1
        if not self.remaining and not self.done.done():
            self.done.set_result(None)


class _Pending:
    __slots__ = ("call", "index", "queued_at", "report")

    def __init__(self, report: NewReport, queued_at: float, call: _Call, index: int) -> None:
        self.report = report
        self.queued_at = queued_at
        self.call = call
        self.index = index


def _give_up(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_exception(IngestSlow())


class Ingestor:
    def __init__(
        self,
        pipeline: ReportWriter,
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
        loop = asyncio.get_running_loop()
        call = _Call(len(reports), loop.create_future())
        now = time.monotonic()
        self._pending.extend(_Pending(report, now, call, n) for n, report in enumerate(reports))
        self._drained.clear()
        self._wakeup.set()
        # Waiting longer is IngestSlow; the reports stay queued and are written all the same.
        timer = loop.call_later(self.wait_seconds, _give_up, call.done)
        try:
            await call.done
        finally:
            timer.cancel()
        return [result for result in call.results if result is not None]

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
        self.pipeline.hold_connection()
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
        await self.pipeline.release()

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
            counts: Counter[tuple[bool, str]] = Counter()
            for item, result in zip(batch, results, strict=True):
                counts[result.created, item.report.source] += 1
                item.call.settle(item.index, result)
            for (created, source), count in counts.items():
                counter = self.metrics.ingested if created else self.metrics.replayed
                counter.labels(source).inc(count)
            self.hub.publish_reports(changed)
            if not self._pending:
                self._drained.set()
