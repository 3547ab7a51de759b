"""The tries a worker has claimed, each lane's worked by at most `concurrency` runner tasks.

A runner takes the lane's claimed deliveries one after another, so a list of 100,000 costs a
handful of tasks, not one task (and a wait on a semaphore) per delivery: that was a twentieth
of what the dispatcher's event loop spent per delivery. Runners start when a lane has claimed
work and end when it has none left, so a quiet lane holds no task.

One try can still be stopped alone (a lease lost to another worker, or a delivery this worker
claimed again after a stall): its runner is cancelled while it is in that try, which is the
only place a runner waits, so the CancelledError lands in that try. The try records itself as
"may have posted" and the runner goes on with the next delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

from broadcaster.dispatch.claims import Claimed
from broadcaster.dispatch.lanes import Lane

log = logging.getLogger(__name__)


class Tries:
    def __init__(self, run_one: Callable[[Lane, Claimed], Awaitable[None]]) -> None:
        self._run_one = run_one
        self._waiting: dict[Lane, deque[Claimed]] = {}  # claimed, not started, oldest first
        # What is still to start, by delivery: a job in `_waiting` no longer here was dropped
        # (its lease lost, or claimed again), and its runner passes it by.
        self._queued: dict[int, Claimed] = {}
        self._runners: dict[Lane, set[asyncio.Task[None]]] = {}
        self._busy: dict[Lane, int] = {}  # runners in a try now
        # The try under way of each delivery, and the runner making it.
        self._current: dict[int, tuple[Claimed, asyncio.Task[None]]] = {}
        self._stopping: dict[int, Claimed] = {}  # tries stopped alone, until their runner sees it
        # Claimed again while an earlier try of ours is still under way: starts when it ends.
        self._after: dict[int, tuple[Lane, Claimed]] = {}

    def __len__(self) -> int:
        """Claimed tries not finished: waiting or under way."""
        return len(self._queued) + len(self._current) + len(self._after)

    def add(self, lane: Lane, job: Claimed) -> None:
        """Run a try of `job` on `lane`, after those claimed before it."""
        if job.id in self._current:
            # An earlier claim of ours came back to us after a stall: stop that try, and let it
            # finish, before this one looks at the platform.
            self.stop(job.id)
            self._after[job.id] = (lane, job)
            return
        self._queued[job.id] = job  # (an earlier claim of it, not started, is passed by)
        self._waiting.setdefault(lane, deque()).append(job)
        self._staff(lane)

    def stop(self, delivery_id: int) -> None:
        """Stop this delivery's try, whether under way (it records itself as "may have posted")
        or not started yet (it never will be)."""
        self._after.pop(delivery_id, None)
        self._queued.pop(delivery_id, None)
        current = self._current.get(delivery_id)
        if current is not None and self._stopping.get(delivery_id) is not current[0]:
            job, runner = current
            self._stopping[delivery_id] = job
            runner.cancel()  # once: each cancel() the runner does not take back would linger

    def take_waiting(self) -> list[Claimed]:
        """Every claimed try not started, which now never will be (stopping: handed back)."""
        taken = [*self._queued.values(), *(job for _lane, job in self._after.values())]
        self._queued.clear()
        self._after.clear()
        for jobs in self._waiting.values():
            jobs.clear()
        return taken

    def runners(self) -> set[asyncio.Task[None]]:
        return {runner for runners in self._runners.values() for runner in runners}

    async def join(self) -> None:
        """Until every claimed try has ended (runners end when their lane has no more)."""
        while running := self.runners():
            await asyncio.gather(*running, return_exceptions=True)

    async def cancel(self, runners: Iterable[asyncio.Task[None]] | None = None) -> None:
        """Cancel runners (all, and what waits, by default): their tries record themselves as
        "may have posted"; wait for them to end."""
        if runners is None:
            self.take_waiting()
        chosen = list(self.runners() if runners is None else runners)
        for runner in chosen:
            runner.cancel()
        await asyncio.gather(*chosen, return_exceptions=True)

    # --- runners ---------------------------------------------------------------------------------

    def _staff(self, lane: Lane) -> None:
        """Enough runners for what waits, up to the lane's concurrency."""
        runners = self._runners.setdefault(lane, set())
        wanted = min(lane.concurrency, self._busy.get(lane, 0) + len(self._waiting[lane]))
        while len(runners) < wanted:
            runner = asyncio.create_task(self._run(lane), name=f"lane {lane.name}")
            runners.add(runner)
            # (A runner cancelled before its first turn never reaches its own discard.)
            runner.add_done_callback(runners.discard)

    async def _run(self, lane: Lane) -> None:
        runner = asyncio.current_task()
        assert runner is not None
        waiting = self._waiting[lane]
        try:
            while waiting:
                job = waiting.popleft()
                if self._queued.get(job.id) is not job:
                    continue  # dropped, or claimed again (a later entry)
                del self._queued[job.id]
                # The try is awaited here, not in a coroutine of its own: every resumption of
                # a request passes through each coroutine between the task and it.
                self._current[job.id] = (job, runner)
                self._busy[lane] = self._busy.get(lane, 0) + 1
                try:
                    await self._run_one(lane, job)
                except asyncio.CancelledError:
                    if self._stopping.get(job.id) is not job:
                        raise  # the worker is stopping: the runner ends
                    runner.uncancel()  # only this try was stopped
                except Exception:  # a bug in the try's own bookkeeping: the others go on
                    log.exception(
                        "the try of delivery %s failed; it stays claimed by this worker (its "
                        "lease is renewed) until the worker restarts, then it is reconciled",
                        job.id,
                    )
                finally:
                    self._busy[lane] -= 1
                    self._end(job)
        finally:
            # At once, not in the task's done callback (a loop turn later): a delivery added
            # meanwhile would count on this runner and wait for one that has stopped.
            self._runners[lane].discard(runner)

    def _end(self, job: Claimed) -> None:
        del self._current[job.id]
        if self._stopping.get(job.id) is job:
            del self._stopping[job.id]
        later = self._after.pop(job.id, None)
        if later is not None:
            self.add(*later)


__all__ = ["Tries"]
