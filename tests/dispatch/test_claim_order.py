"""A claim takes a target's longest-due deliveries first, whatever their state: a lapsed lease
(its worker died), then retries and new deliveries by when they fell due; never one not yet
due. On SQLite the three states are read by one statement (claims wait on the one connection)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.dispatch import claims
from broadcaster.dispatch.claims import Claimed
from broadcaster.dispatch.payload_cache import PayloadCache
from broadcaster.storage.schema import deliveries
from tests.dispatch.harness import (
    EIGHT,
    Desk,
    FakeClock,
    add_contacts,
    attempt_rows,
    delivery_rows,
)

SIX_PHONES = tuple(f"+1202555010{n}" for n in range(1, 7))


async def _claim(engine: AsyncEngine, limit: int, token: str, now: datetime) -> list[Claimed]:
    """One claim of the SMS list's target, in a transaction of its own."""
    async with engine.begin() as connection:
        return await claims.claim(
            connection, "sms-live", limit, token, now, now + timedelta(seconds=60), PayloadCache()
        )


async def _list_of_six(desk: Desk, engine: AsyncEngine) -> list[int]:
    await add_contacts(engine, SIX_PHONES, ())
    _alert, version_id = await desk.release(channels=["sms"])
    rows = [row for row in await delivery_rows(engine, version_id) if row.target == "sms-live"]
    assert len(rows) == 6
    return [row.id for row in rows]


async def test_the_longest_due_go_first_across_states(
    engine: AsyncEngine, desk: Desk, clock: FakeClock
) -> None:
    lapsed, early_retry, queued_1, later_retry, queued_2, queued_3 = await _list_of_six(
        desk, engine
    )
    now = clock()
    async with engine.begin() as connection:
        await connection.execute(
            update(deliveries)
            .where(deliveries.c.id == lapsed)
            .values(
                state="in_flight",
                lease_owner="another-worker/4",
                lease_expires_at=now - timedelta(seconds=5),
                next_attempt_at=None,
                attempts=1,
            )
        )
        for delivery_id, due in ((early_retry, -60), (later_retry, 60)):
            await connection.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(state="retry_wait", next_attempt_at=now + timedelta(seconds=due))
            )
        for delivery_id in (queued_1, queued_2, queued_3):
            await connection.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(next_attempt_at=now - timedelta(seconds=1))
            )

    picks: list[str] = []

    def count_picks(_c: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            picks.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count_picks)
    try:
        first = await _claim(engine, 3, "test-worker/1", now)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count_picks)
    assert [job.id for job in first] == sorted([lapsed, early_retry, queued_1])
    by_id = {job.id: job for job in first}
    assert by_id[lapsed].previous_owner == "another-worker"
    assert by_id[lapsed].reconcile_part == 1  # it may have gone out: looked up first
    if engine.dialect.name == "sqlite":
        # The three states in one statement (the payloads are read once, and cached after).
        assert len([sql for sql in picks if "deliveries.state" in sql]) == 1

    rest = await _claim(engine, 10, "test-worker/2", now)
    # What is left and due: the two queued ones; the retry due in a minute stays where it is.
    assert [job.id for job in rest] == [queued_2, queued_3]
    states = {row.id: row.state for row in await delivery_rows(engine)}
    assert states[later_retry] == "retry_wait"
    abandoned = [row for row in await attempt_rows(engine, lapsed) if row.outcome == "abandoned"]
    assert len(abandoned) == 1 and abandoned[0].worker == "another-worker"


async def test_a_claim_returns_the_longest_due_first_when_the_limit_cuts(
    engine: AsyncEngine, desk: Desk, clock: FakeClock
) -> None:
    ids = await _list_of_six(desk, engine)
    now = clock()
    async with engine.begin() as connection:
        # The newest delivery fell due first (a retry), the others in id order after it.
        await connection.execute(
            update(deliveries)
            .where(deliveries.c.id == ids[-1])
            .values(state="retry_wait", next_attempt_at=now - timedelta(seconds=30))
        )
    taken = await _claim(engine, 2, "test-worker/1", now)
    assert {job.id for job in taken} == {ids[-1], ids[0]}


async def test_one_claim_takes_every_targets_share_in_as_many_statements_as_one_target(
    engine: AsyncEngine, desk: Desk, clock: FakeClock
) -> None:
    """A release to eight channels is claimed at once: each target gets its room's worth, the
    longest due first, and the claim makes no more trips to the database than a claim for one
    target does (it made five per target, forty before the first post could go out)."""
    phones = await _list_of_six(desk, engine)  # first a list: six SMS deliveries
    await add_contacts(engine, ("+12025550199",), ("someone@example.org",))  # and one email
    _alert, version_id = await desk.release(channels=EIGHT, area="Hillside")
    now = clock() + timedelta(seconds=1)
    eight = sorted({row.target for row in await delivery_rows(engine, version_id)})
    assert len(eight) == 8 and "sms-live" in eight

    statements: list[str] = []

    def count(_c: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    wanted = [(target, 2) for target in eight] + [("nobody-configured", 3)]
    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with engine.begin() as connection:
            claimed = await claims.claim_targets(
                connection,
                wanted,
                "test-worker/1",
                now,
                now + timedelta(seconds=60),
                PayloadCache(),
            )
        for_all = len(statements)
        statements.clear()
        # What is left of the list, for one target alone.
        async with engine.begin() as connection:
            left = await claims.claim_targets(
                connection, [("sms-live", 2)], "test-worker/2", now, now, PayloadCache()
            )
        for_one = len(statements)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)

    assert for_all == for_one
    assert claimed["nobody-configured"] == []
    # The list's two oldest; one delivery for every other target (its one due row).
    assert [job.id for job in claimed["sms-live"]] == phones[:2]
    for target in eight:
        if target != "sms-live":
            assert [job.target for job in claimed[target]] == [target]
            assert claimed[target][0].token == "test-worker/1"
    assert [job.id for job in left["sms-live"]] == phones[2:4]
    states = {row.id: row.state for row in await delivery_rows(engine)}
    taken = [job.id for jobs in (*claimed.values(), *left.values()) for job in jobs]
    assert all(states[delivery_id] == "in_flight" for delivery_id in taken)
    assert sum(state == "in_flight" for state in states.values()) == len(taken) == 11


async def test_a_claim_for_more_targets_than_one_sqlite_statement_holds_takes_them_all(
    engine: AsyncEngine, desk: Desk, clock: FakeClock
) -> None:
    """SQLite caps a compound SELECT at 500 parts: a claim for two hundred targets (three parts
    each) picks in several statements and still finds every target's rows, in the first of
    them and in the last."""
    phones = await _list_of_six(desk, engine)
    _alert, version_id = await desk.release(channels=["x"], area="Hillside")
    (post,) = [row.id for row in await delivery_rows(engine, version_id)]
    now = clock() + timedelta(seconds=1)
    quiet = [(f"quiet-{n}", 1) for n in range(200)]
    async with engine.begin() as connection:
        claimed = await claims.claim_targets(
            connection,
            [("sms-live", 4), *quiet, ("x-live", 1)],
            "test-worker/1",
            now,
            now,
            PayloadCache(),
        )
    assert [job.id for job in claimed["sms-live"]] == phones[:4]
    assert [job.id for job in claimed["x-live"]] == [post]
    assert all(claimed[target] == [] for target, _room in quiet)


async def test_ids_past_one_sqlite_statements_share_are_taken_in_several(
    engine: AsyncEngine, desk: Desk, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claimed rows are marked in flight in statements of a bounded number of ids (SQLite
    binds each), and none is left out or taken twice."""
    monkeypatch.setattr(claims, "_IDS_PER_SQLITE_TAKE", 2)
    phones = await _list_of_six(desk, engine)
    jobs = await _claim(engine, 5, "test-worker/1", clock() + timedelta(seconds=1))
    assert [job.id for job in jobs] == phones[:5]
    states = {row.id: row.state for row in await delivery_rows(engine)}
    assert [states[delivery_id] for delivery_id in phones] == ["in_flight"] * 5 + ["queued"]


async def test_a_target_named_twice_is_refused(engine: AsyncEngine) -> None:
    now = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    async with engine.begin() as connection:
        with pytest.raises(ValueError, match="more than once"):
            await claims.claim_targets(
                connection, [("sms-live", 2), ("sms-live", 3)], "w/1", now, now, PayloadCache()
            )
