"""Each target on its own: the rate it may use, its token bucket on a fake clock."""

from __future__ import annotations

from broadcaster.dispatch.lanes import BATCHES_AHEAD, RECORDING_AT_MOST, Lane
from broadcaster.dispatch.ratelimit import TokenBucket
from broadcaster.settings import DispatchSettings
from tests.dispatch.harness import FakeClock, Platforms


def test_the_bucket_lets_a_burst_through_then_spaces_requests_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    # Each further request waits its turn: half a second apart at 2 per second.
    assert [bucket.reserve() for _ in range(3)] == [0.5, 1.0, 1.5]
    clock.advance(10)  # a quiet spell refills the burst, not more
    assert [bucket.reserve() for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]


def test_a_lane_keeps_to_the_lower_of_its_configured_and_the_platforms_rate(
    platforms: Platforms,
) -> None:
    clock = FakeClock()
    x = platforms.directory.targets["x-live"]
    adapter = platforms.directory.adapter("x-live")
    platform_rate = adapter.limits.max_rate_per_second
    assert platform_rate is not None

    honoured = Lane(x, adapter, DispatchSettings(), clock)
    assert honoured.rate == platform_rate

    lower = DispatchSettings(channels={"x": {"rate_per_second": platform_rate / 2}})
    assert Lane(x, adapter, lower, clock).rate == platform_rate / 2

    emulated = DispatchSettings(honour_platform_rates=False)
    assert Lane(x, adapter, emulated, clock).rate is None


def test_a_lane_shares_its_rate_among_live_workers(platforms: Platforms) -> None:
    clock = FakeClock()
    sms = platforms.directory.targets["sms-live"]
    settings = DispatchSettings(channels={"sms": {"rate_per_second": 30, "burst": 1}})
    lane = Lane(sms, platforms.directory.adapter("sms-live"), settings, clock)
    lane.share_rate(3)
    assert lane.bucket is not None
    lane.bucket.reserve()
    assert lane.bucket.reserve() == 0.1  # 10 per second for each of three workers


def test_tries_waiting_for_the_recorder_leave_room_up_to_a_bound(platforms: Platforms) -> None:
    clock = FakeClock()
    sms = platforms.directory.targets["sms-live"]
    settings = DispatchSettings(channels={"sms": {"concurrency": 4}}, claim_batch=10)
    lane = Lane(sms, platforms.directory.adapter("sms-live"), settings, clock)
    capacity = lane.capacity
    lane.held.update(range(capacity))
    assert lane.room() == 0  # every claimed delivery is waiting or being sent
    # Half of them ended; their results wait for the recorder's next write. The lane must not
    # stand idle meanwhile: that room is free for the next claim.
    ended = range(capacity // 2)
    lane.recording.update(ended)
    assert lane.room() == capacity // 2
    for delivery_id in ended:
        lane.forget(delivery_id)  # recorded
    assert (lane.room(), lane.recording) == (capacity // 2, set())
    # A recorder far behind (a slow database): past the bound the lane claims nothing more,
    # so what a crash would leave to reconcile stays bounded.
    backlog = range(1000, 1000 + RECORDING_AT_MOST * capacity)
    lane.held.update(backlog)
    lane.recording.update(backlog)
    assert lane.room() == 0


def test_a_busy_lane_holds_two_claims_ahead_and_a_quiet_one_a_seconds_worth(
    platforms: Platforms,
) -> None:
    clock = FakeClock()
    sms = platforms.directory.targets["sms-live"]
    settings = DispatchSettings(channels={"sms": {"concurrency": 8}}, claim_batch=100)
    lane = Lane(sms, platforms.directory.adapter("sms-live"), settings, clock)
    assert lane.capacity == 8 + 8  # nothing ended yet: its slots, and as many again
    for _ in range(50):
        lane.finished()
    assert lane.capacity == 8 + 50  # 50 tries a second: a second's worth ahead
    for _ in range(1000):
        lane.finished()
    # A thousand a second: two claims' worth ahead, so the next claim is asked for while a
    # whole batch is still in hand (one that comes late finds the lane still sending).
    assert lane.capacity == 8 + BATCHES_AHEAD * 100
    lane.backlog = True
    lane.held.update(range(lane.capacity - 100))
    assert not lane.wants_more()
    lane.held.difference_update(range(100))
    assert lane.wants_more()
    assert min(lane.room(), settings.claim_batch) == 100  # each claim is still one batch
