"""Tries: each lane's claimed deliveries worked by at most `concurrency` runners, one try
stopped alone without stopping its runner, a delivery claimed again started only after the
earlier try of it has ended."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

from broadcaster.dispatch.claims import Claimed
from broadcaster.dispatch.lanes import Lane
from broadcaster.dispatch.tries import Tries


@dataclass(eq=False)
class _Lane:
    name: str
    concurrency: int


@dataclass
class _Platform:
    """Tries that wait to be let go; what happened, in order."""

    events: list[str] = field(default_factory=list)
    gates: dict[int, asyncio.Event] = field(default_factory=dict)
    under_way: dict[str, int] = field(default_factory=dict)
    most_under_way: dict[str, int] = field(default_factory=dict)

    async def run_one(self, lane: Lane, job: Claimed) -> None:
        name = f"{job.id}/{job.token}"
        self.under_way[lane.name] = self.under_way.get(lane.name, 0) + 1
        self.most_under_way[lane.name] = max(
            self.most_under_way.get(lane.name, 0), self.under_way[lane.name]
        )
        self.events.append(f"start {name}")
        try:
            await self.gates.setdefault(job.id, asyncio.Event()).wait()
            self.events.append(f"end {name}")
        except asyncio.CancelledError:
            for _ in range(3):  # winding down takes a few turns (closing a connection)
                await asyncio.sleep(0)
            self.events.append(f"stopped {name}")
            raise
        finally:
            self.under_way[lane.name] -= 1

    def release(self, *ids: int) -> None:
        for delivery_id in ids:
            self.gates.setdefault(delivery_id, asyncio.Event()).set()


def _job(delivery_id: int, token: str = "w/1") -> Claimed:  # noqa: S107 (a lease token)
    return cast(Claimed, _Job(delivery_id, token))


@dataclass(eq=False)
class _Job:
    id: int
    token: str


def _lane(name: str, concurrency: int) -> Lane:
    return cast(Lane, _Lane(name, concurrency))


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def _running(concurrency: int, *jobs: Claimed) -> tuple[_Platform, Tries, Lane]:
    """Tries on one lane with `jobs` added, once they have had the turns to start."""
    platform = _Platform()
    tries = Tries(platform.run_one)
    lane = _lane("sms", concurrency)
    for job in jobs:
        tries.add(lane, job)
    await _settle()
    return platform, tries, lane


async def test_a_lane_runs_at_most_its_concurrency_and_others_are_not_held_up() -> None:
    platform = _Platform()
    tries = Tries(platform.run_one)
    sms, x = _lane("sms", 2), _lane("x", 1)
    for n in range(1, 7):
        tries.add(sms, _job(n))
    tries.add(x, _job(100))
    await _settle()
    assert platform.under_way == {"sms": 2, "x": 1}
    assert len(tries) == 7
    assert len(tries.runners()) == 3  # a runner per slot in use, not a task per delivery
    platform.release(*range(1, 7), 100)
    await tries.join()
    assert platform.most_under_way == {"sms": 2, "x": 1}
    ended = [event for event in platform.events if event.startswith("end")]
    assert sorted(ended) == sorted(f"end {n}/w/1" for n in [*range(1, 7), 100])
    assert len(tries) == 0
    assert not tries.runners()  # a lane with nothing left holds no task


async def test_stopping_one_try_stops_only_it_and_its_runner_goes_on() -> None:
    platform, tries, _sms = await _running(1, _job(1), _job(2))
    tries.stop(1)
    tries.stop(1)  # said twice (lost, and claimed again): one stop
    await _settle()
    assert platform.events == ["start 1/w/1", "stopped 1/w/1", "start 2/w/1"]
    # The runner is not left cancelled: a timeout in a later try still says "timed out".
    runner = next(iter(tries.runners()))
    assert runner.cancelling() == 0
    platform.release(2)
    await tries.join()
    assert platform.events[-1] == "end 2/w/1"


async def test_a_stopped_delivery_that_had_not_started_never_starts() -> None:
    platform, tries, _sms = await _running(1, _job(1), _job(2), _job(3))
    tries.stop(2)
    assert len(tries) == 2
    platform.release(1, 3)
    await tries.join()
    assert platform.events == ["start 1/w/1", "end 1/w/1", "start 3/w/1", "end 3/w/1"]


async def test_a_delivery_claimed_again_starts_after_the_earlier_try_has_ended() -> None:
    # Room to start it at once, were it allowed.
    platform, tries, sms = await _running(4, _job(1, "w/1"))
    tries.add(sms, _job(1, "w/2"))  # our lease lapsed in a stall; claimed again
    await _settle()
    platform.release(1)
    await tries.join()
    assert platform.events == ["start 1/w/1", "stopped 1/w/1", "start 1/w/2", "end 1/w/2"]


async def test_a_delivery_claimed_again_before_it_started_runs_once() -> None:
    platform, tries, _sms = await _running(1, _job(1), _job(2, "w/1"), _job(2, "w/2"))
    platform.release(1, 2)
    await tries.join()
    assert platform.events == ["start 1/w/1", "end 1/w/1", "start 2/w/2", "end 2/w/2"]


async def test_stopping_hands_over_what_never_started_and_cancels_what_runs() -> None:
    platform, tries, _sms = await _running(1, _job(1), _job(2), _job(3))
    never = tries.take_waiting()
    assert sorted(job.id for job in never) == [2, 3]
    await tries.cancel()
    assert platform.events == ["start 1/w/1", "stopped 1/w/1"]
    assert not tries.runners()
    assert len(tries) == 0


async def test_work_added_as_a_runner_finishes_is_not_left_waiting() -> None:
    """A runner whose lane ran dry ends; what is added right then gets a runner of its own,
    not a place behind one that has stopped."""
    platform, tries, sms = await _running(1, _job(1))
    platform.release(1)
    await asyncio.sleep(0)  # the try ends; the runner finds nothing more and returns
    tries.add(sms, _job(2))
    platform.release(2)
    await asyncio.wait_for(tries.join(), 1)
    assert platform.events[-1] == "end 2/w/1"
