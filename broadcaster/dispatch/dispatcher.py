"""The dispatcher loop: claim what lanes have room for, run each try, record, renew leases.

`run(stop)` serves until `stop` is set (a worker process, or `serve`'s in-process worker); on
stop it claims nothing more, hands back what it claimed but never started, lets tries in flight
finish (or, past the grace period, records them as "may have posted" for the next worker to
reconcile), writes every result and returns. `drain()` is the burst mode tests use: claim and
run everything due now, record it, and return, so a test with a fake clock is deterministic.

Leases last `worker.lease_seconds` less one poll interval, and are renewed every
`worker.heartbeat_seconds`: when a worker dies, its deliveries are claimed again by another
worker within `worker.lease_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.dispatch import claims
from broadcaster.dispatch.claims import Claimed
from broadcaster.dispatch.completion import finished_versions, settle_version
from broadcaster.dispatch.lanes import Lane
from broadcaster.dispatch.payload_cache import PayloadCache
from broadcaster.dispatch.recorder import Recorder, Result
from broadcaster.dispatch.retry import RetryPolicy
from broadcaster.dispatch.sender import Attempt, Context
from broadcaster.dispatch.tries import Tries
from broadcaster.dispatch.versions import VersionCache
from broadcaster.dispatch.wake import Wakeup, listen
from broadcaster.settings import ConfigError, Settings
from broadcaster.storage.schema import channel_state, workers
from broadcaster.storage.sql import is_postgresql
from broadcaster.targets import Directory

log = logging.getLogger(__name__)

# How often finished versions are looked for (completed / partially_failed).
SETTLE_EVERY_SECONDS = 1.0
# A woken worker re-reads pauses and platform waits, but not more often than this.
REFRESH_AT_MOST_SECONDS = 0.2


def utc_now() -> datetime:
    return datetime.now(UTC)


class Dispatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        directory: Directory,
        settings: Settings,
        *,
        worker_id: str,
        public_base: str,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wake: Wakeup | None = None,
    ) -> None:
        self.engine = engine
        self.worker_id = worker_id
        self.clock = clock
        self.settings = settings.dispatch
        self.heartbeat = settings.worker.heartbeat_seconds
        self.lease_seconds = settings.worker.lease_seconds
        # Short of lease_seconds by one poll, so a dead worker's rows are claimed within it.
        self.lease = timedelta(
            seconds=max(
                self.lease_seconds - self.settings.poll_interval_seconds,
                min(self.lease_seconds, 2 * self.heartbeat),
            )
        )
        margin = self.settings.request_timeout_seconds + 2 * self.heartbeat
        if self.lease.total_seconds() <= margin:
            raise ConfigError(
                f"worker.lease_seconds = {self.lease_seconds:g} is too short: it must exceed "
                "dispatch.request_timeout_seconds + 2 x worker.heartbeat_seconds + "
                f"dispatch.poll_interval_seconds ({margin + self.settings.poll_interval_seconds:g}"
                "), so a request never outlives the lease it started under; raise "
                "worker.lease_seconds or lower the others"
            )
        self.wake = wake or Wakeup()
        # Reconciliation reads what the platform tells every process once (Telegram's updates).
        directory.keep_adapter_state_in(engine)
        self.lanes: dict[str, Lane] = {
            configured.name: Lane(
                configured, directory.adapter(configured.name), self.settings, clock
            )
            for configured in directory
        }
        self.recorder = Recorder(
            engine,
            worker_id,
            batch=self.settings.claim_batch,
            clock=clock,
            after_flush=self._after_flush,
            running=self._running,
        )
        self.context = Context(
            engine=engine,
            versions=VersionCache(engine, public_base),
            policy=RetryPolicy(self.settings),
            clock=clock,
            sleep=sleep,
            request_timeout=self.settings.request_timeout_seconds,
            lease_margin=self.settings.request_timeout_seconds + self.heartbeat,
            report_health=self.recorder.health,
            report=self.recorder.add,
        )
        self.payloads = PayloadCache()  # what claimed deliveries send, read once each
        self.tries = Tries(self._try)
        self._jobs: dict[int, Claimed] = {}  # what this worker holds, with its lease
        self._claims = 0
        self._refreshed_at = clock()
        self._renewed_at = clock()
        self._recorded: set[int] = set()  # tries whose final result went to the recorder
        self._unsettled: set[int] = set()
        # `_room` is set when a lane with a backlog has room again (a try ended, results were
        # written): the round it starts claims for the busy lanes only, since quiet lanes' three
        # queries each were half of a busy list's claim rounds. Every lane is still looked at
        # at least once a poll interval, and in every round for a poll interval after a
        # wake-up (a release or a resume), which in one process may come before its
        # transaction commits. Both times are real time, as the poll interval is.
        self._room = asyncio.Event()
        self._full_round_at = time.monotonic()
        self._woken_at = time.monotonic()

    # --- serving ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        recorder_stop = asyncio.Event()
        async with listen(self.engine, self.wake):
            await self._refresh()
            recording = asyncio.create_task(self.recorder.run(recorder_stop), name="recorder")
            # Leases have a task of their own: nothing slow may delay a renewal.
            beating = asyncio.create_task(self._beat(stop), name="lease heartbeat")
            keeping = asyncio.create_task(self._housekeeping(stop), name="housekeeping")
            log.info(
                "dispatcher %s serving %d targets",
                self.worker_id,
                len(self.lanes),
                extra={"worker": self.worker_id},
            )
            try:
                busy_only = False
                while not stop.is_set():
                    try:
                        claimed = await self.claim_round(busy_only=busy_only)
                    except Exception:
                        log.exception("claiming deliveries failed; trying again shortly")
                        claimed = 0
                    if claimed and any(lane.wants_more() for lane in self.lanes.values()):
                        await asyncio.sleep(0)
                        # A release meanwhile (another alert) is looked for at once.
                        if self.wake.take():
                            await self._woken()
                        busy_only = self._quiet_lanes_looked_at_lately()
                        continue
                    room_only = await self._idle(stop)
                    busy_only = room_only and self._quiet_lanes_looked_at_lately()
            finally:
                await self._wind_down()
                recorder_stop.set()
                await recording
                beating.cancel()
                keeping.cancel()
                await asyncio.gather(beating, keeping, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await self._settle()

    async def drain(self, *, rounds: int = 100) -> None:
        """Run everything due now, record it, settle finished versions; then return."""
        await self._refresh()
        for _ in range(rounds):
            claimed = await self.claim_round()
            await self.tries.join()
            await self.recorder.flush()
            if not claimed:
                break
        await self._settle()

    async def aclose(self) -> None:
        await self.tries.cancel()

    # --- claiming --------------------------------------------------------------------------------

    def _quiet_lanes_looked_at_lately(self) -> bool:
        now, interval = time.monotonic(), self.settings.poll_interval_seconds
        return now - self._full_round_at < interval and now - self._woken_at >= interval

    async def claim_round(self, *, busy_only: bool = False) -> int:
        """Claim for every lane with room, or with `busy_only` for those whose last claim was
        full (the others had nothing due a moment ago)."""
        now = self.clock()
        if not busy_only:
            self._full_round_at = time.monotonic()
        wanted: list[tuple[Lane, int]] = []
        for lane in self.lanes.values():
            if busy_only and not lane.backlog:
                continue
            room = min(lane.room(), self.settings.claim_batch)
            if room and lane.may_claim():
                if lane.breaker.state.value == "half_open":
                    room = 1  # one trial
                wanted.append((lane, room))
        if not wanted:
            return 0
        self._claims += 1
        token = claims.lease_token(self.worker_id, self._claims)
        async with self.engine.begin() as connection:
            if (
                self._jobs
                and not is_postgresql(connection)
                and (now - self._renewed_at).total_seconds() >= self.heartbeat / 2
            ):
                # SQLite's write lock is ours anyway: renew what we hold too (on a busy database
                # the heartbeat's own turn at the lock can come late). PostgreSQL's heartbeat
                # renews on a connection of its own, and a claim need not wait for it.
                self._renewed(
                    await claims.renew(connection, self.worker_id, now + self.lease),
                    now + self.lease,
                )
            claimed = await claims.claim_targets(
                connection,
                [(lane.name, room) for lane, room in wanted],
                token,
                now,
                now + self.lease,
                self.payloads,
            )
        total = 0
        for lane, room in wanted:
            jobs = claimed[lane.name]
            lane.backlog = len(jobs) == room
            for job in jobs:
                lane.held.add(job.id)
                self._jobs[job.id] = job
                self.tries.add(lane, job)
            total += len(jobs)
        return total

    async def _try(self, lane: Lane, job: Claimed) -> None:
        result = await Attempt(job, lane, self.context).run()
        self._recorded.add(job.id)
        self.recorder.add(result)
        lane.recording.add(job.id)
        if not self._room.is_set() and lane.wants_more():
            self._room.set()  # room again, and more is likely due: claim it now

    async def _idle(self, stop: asyncio.Event) -> bool:
        """Wait for a wake-up, room in a busy lane, or the poll interval; True when it was
        only room (the next round may skip the quiet lanes)."""
        woken = asyncio.ensure_future(self.wake.wait(self.settings.poll_interval_seconds))
        roomy = asyncio.ensure_future(self._room.wait())
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({woken, roomy, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for waiter in (woken, roomy, stopped):
            waiter.cancel()
        await asyncio.gather(woken, roomy, stopped, return_exceptions=True)
        # A wake-up that came as the others finished the wait still counts: either the waiter
        # finished anyway (on Python 3.11 wait_for returns a result that was ready when it was
        # cancelled) or the Wakeup kept it.
        finished = woken.done() and not woken.cancelled() and woken.exception() is None
        was_woken = (finished and woken.result()) or self.wake.take()
        room_only = roomy in done and not was_woken and stopped not in done
        self._room.clear()
        if was_woken:
            await self._woken()
        return room_only

    async def _woken(self) -> None:
        """A wake-up may be a pause or a resume: look at the shared state now, not at the next
        housekeeping round (rarely: a busy worker is woken all the time)."""
        self._woken_at = time.monotonic()
        now = self.clock()
        if (now - self._refreshed_at).total_seconds() >= REFRESH_AT_MOST_SECONDS:
            try:
                await self._refresh()
            except Exception as error:
                log.warning("reading pauses failed: %s: %s", type(error).__name__, error)

    # --- recording -------------------------------------------------------------------------------

    def _running(self) -> int:
        """Claimed tries whose results have not reached the recorder yet."""
        return len(self.tries)

    async def _after_flush(self, results: Sequence[Result]) -> None:
        freed = False
        for result in results:
            if result.progress:
                continue
            lane = self.lanes.get(result.target)
            job = self._jobs.get(result.delivery_id)
            if lane is not None and (job is None or job.token == result.token):
                # (A stale result of a lease we lost and claimed back leaves the new claim be.)
                lane.forget(result.delivery_id)
                lane.finished()
                freed = freed or lane.wants_more()
            self._recorded.discard(result.delivery_id)
            if job is not None and job.token == result.token:
                del self._jobs[result.delivery_id]
            self._unsettled.add(result.version_id)
        if freed:
            self._room.set()

    async def _settle(self) -> None:
        """Complete (or mark partially failed) the versions whose deliveries all finished."""
        # A version this worker still holds a delivery of cannot be finished: not asked about.
        # (Asking meant reading the states of a whole 100,000-person list every second.)
        held = {job.version_id for job in self._jobs.values()}
        versions = self._unsettled - held
        if not versions:
            return
        self._unsettled -= versions
        now = self.clock()
        try:
            async with self.engine.connect() as connection:
                finished = await finished_versions(connection, sorted(versions))
        except Exception:
            self._unsettled |= versions
            raise
        for version_id in finished:
            try:
                async with self.engine.begin() as connection:
                    await settle_version(connection, version_id, now)
            except Exception:
                log.exception("could not settle version %s; will look again", version_id)
                self._unsettled.add(version_id)

    # --- leases and shared state -----------------------------------------------------------------

    async def _beat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.heartbeat)
            try:
                await self._renew()
            except Exception as error:  # a missed beat is survivable; the next one retries
                log.warning("renewing leases failed: %s: %s", type(error).__name__, error)

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(max(self.heartbeat, SETTLE_EVERY_SECONDS))
            try:
                await self._refresh()
                await self._settle()
            except Exception as error:
                log.warning("dispatcher housekeeping failed: %s: %s", type(error).__name__, error)

    def _held(self) -> set[int]:
        """The deliveries this worker holds and has not finished."""
        return {i for lane in self.lanes.values() for i in lane.held if i in self._jobs}

    async def _renew(self) -> None:
        held = self._held()
        if not held:
            return
        until = self.clock() + self.lease
        async with self.engine.begin() as connection:
            kept = await claims.renew(connection, self.worker_id, until)
        self._renewed(kept, until)
        # Finished ones are no longer in flight (or wait in the recorder): not lost. Nor are
        # those whose results were written while the renewal waited for the database.
        lost = (held & self._held()) - kept - self._recorded
        if lost:
            # Taken over after a stall: the new holder reconciles them. Stop ours at once, so
            # no further part goes out twice (a request already sent cannot be unsent; the new
            # holder finds it), and our results are refused by the recorder's lease check.
            log.warning("%d leases were lost to other workers; dropping them", len(lost))
            for delivery_id in lost:
                self.tries.stop(delivery_id)
                self._jobs.pop(delivery_id, None)
                for lane in self.lanes.values():
                    lane.forget(delivery_id)

    def _renewed(self, kept: set[int], until: datetime) -> None:
        self._renewed_at = until - self.lease
        for delivery_id in kept:
            job = self._jobs.get(delivery_id)
            if job is not None:
                job.lease_until = until

    async def _refresh(self) -> None:
        """Pauses, platform waits and the number of live workers (each takes its share of a
        target's rate), as the shared database says."""
        now = self.clock()
        async with self.engine.connect() as connection:
            states = (
                await connection.execute(
                    select(
                        channel_state.c.target,
                        channel_state.c.paused,
                        channel_state.c.rate_reset_at,
                    )
                )
            ).all()
            live = await connection.scalar(
                select(func.count())
                .select_from(workers)
                .where(
                    workers.c.stopped_at.is_(None),
                    workers.c.heartbeat_at > now - timedelta(seconds=self.lease_seconds),
                )
            )
        self._refreshed_at = now
        known = {row.target: row for row in states}
        for lane in self.lanes.values():
            row = known.get(lane.name)
            lane.paused = bool(row.paused) if row is not None else False
            reset = row.rate_reset_at if row is not None else None
            if reset is not None and (lane.not_before is None or reset > lane.not_before):
                lane.not_before = reset
            lane.share_rate(int(live or 1))

    async def _wind_down(self) -> None:
        """Stop: hand back what never started, let started tries finish within the grace."""
        never_started = self.tries.take_waiting()
        waiting = {job.id for job in never_started}
        running = self.tries.runners()
        if running:
            grace = max(1.0, min(10.0, self.lease_seconds / 2))
            _done, late = await asyncio.wait(running, timeout=grace)
            await self.tries.cancel(late)  # their tries record themselves as "may have posted"
        with contextlib.suppress(Exception):
            await self.recorder.flush()
        if waiting:
            held = [(job.id, job.token) for job in never_started]
            try:
                async with self.engine.begin() as connection:
                    await claims.hand_back(connection, held, self.clock())
            except Exception:
                log.exception(
                    "could not hand back %d deliveries; their leases will lapse", len(waiting)
                )
        for lane in self.lanes.values():
            lane.held.difference_update(waiting)
