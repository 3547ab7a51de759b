"""Claiming deliveries under a lease, renewing leases, and handing them back.

A claim takes a target's due deliveries (queued or waiting to retry, due by now; or in flight
under a lease that lapsed, because the worker holding it died) and, in the same statement, marks
them in flight for this worker until `lease_until` and bumps their try counter: a worker that
dies mid-send has still used the try. On PostgreSQL the rows are picked with
`FOR UPDATE SKIP LOCKED`, so workers claiming at once never wait on or take each other's rows;
SQLite serialises writers (BEGIN IMMEDIATE), which gives the same guarantee for one process.
One claim serves every target with room at once (`claim_targets`), in as many statements as a
claim for one target (on SQLite, up to 64 targets): a release to eight channels waits for one
claim, not eight.

A delivery claimed back from a dead worker is suspect: the part it was sending may have gone out.
Its next part is looked up with find_published before anything is sent (`reconcile_part`).

Each claim writes a lease token of its own, "<worker id>/<claim number>", into `lease_owner`:
results are written back only under the same token, so a try that a worker stalled on, lost,
and later claimed again can never be mistaken for the new one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Integer, String, bindparam, func, select, true, type_coerce, union_all
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import NullType

from broadcaster.dispatch.payload import Payload, receipts_from_json
from broadcaster.dispatch.payload_cache import PayloadCache
from broadcaster.dispatch.row_locks import in_lock_order
from broadcaster.dispatch.states import DeliveryKind, DeliveryState, Outcome
from broadcaster.storage.schema import deliveries, delivery_attempts
from broadcaster.storage.sql import any_of_parameter, is_postgresql
from channels.base import Receipt

_S = DeliveryState


@dataclass
class Claimed:
    """One delivery as a worker holds it."""

    id: int
    version_id: int
    channel: str
    target: str
    target_mode: str
    kind: DeliveryKind
    key: str
    payload: Payload
    attempt: int  # this try's number (already counted in the row)
    recipient: str | None
    receipts: list[Receipt]  # thread parts already confirmed, in order
    reconcile_part: int | None  # the part whose outcome is unknown, looked up before sending
    superseded_by: int | None
    retracts_delivery_id: int | None
    token: str = ""  # this claim's lease token (lease_owner)
    lease_until: datetime | None = None  # as far as this worker knows, the lease holds until
    previous_owner: str | None = None  # set when claimed back from a worker that died
    started_at: datetime | None = None
    last_error: str | None = None  # why the previous try failed, if it did
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def first_try(self) -> bool:
        return self.attempt == 1


def _claim_order(row: Any) -> tuple[bool, Any, int]:
    # A lapsed lease has no next_attempt_at of its own that matters: it is overdue. The time is
    # compared as the driver returns it (see _pick): without one first, then oldest first.
    due = row.next_attempt_at
    return (due is not None, "" if due is None else due, row.id)


def lease_token(worker: str, claim_number: int) -> str:
    return f"{worker}/{claim_number}"


def worker_of(token: str | None) -> str:
    return (token or "unknown").rsplit("/", 1)[0]


# The states a claim picks from, each read on its own so that the (target, state,
# next_attempt_at, id) index yields its rows already in claim order: a single query with
# "state IN (...) OR ..." sorted every due row of the target (a whole 100,000-person list) on
# each claim.
_WAITING = (_S.queued, _S.retry_wait)
_STATES = (*_WAITING, _S.in_flight)
# SQLite allows 500 SELECTs in one compound statement: a statement picks for this many targets
# at most (three SELECTs each), and more targets take several.
_TARGETS_PER_SQLITE_PICK: Final = 64
# Ids one SQLite UPDATE takes at most (its limit is 32,766 parameters; four more are bound).
_IDS_PER_SQLITE_TAKE: Final = 10_000


def _pick(state: DeliveryState, target: Any, limit: Any, *, lock: bool) -> Any:
    """The statement that picks one state's due rows of `target`, `limit` of them at most."""
    query = select(
        deliveries.c.id,
        deliveries.c.state,
        deliveries.c.lease_owner,
        deliveries.c.attempts,
        # As the driver returns it, only to sort rows of several states (rarely): SQLite's text
        # (fixed-width, so it sorts as the times do) or PostgreSQL's datetime. Parsing SQLite's
        # text into a datetime cost more than anything else a claim does per row.
        type_coerce(deliveries.c.next_attempt_at, NullType()).label("next_attempt_at"),
        deliveries.c.target,
    ).where(deliveries.c.target == target, deliveries.c.state == state.value)
    if state is _S.in_flight:
        # In flight under a lease that lapsed, and never from ourselves: a worker whose
        # renewals ran late still has those tries in hand.
        query = query.where(
            deliveries.c.lease_expires_at < bindparam("now"),
            deliveries.c.lease_owner.not_like(bindparam("ours"), escape="/"),
        )
    else:
        query = query.where(deliveries.c.next_attempt_at <= bindparam("now"))
    query = query.order_by(deliveries.c.next_attempt_at, deliveries.c.id).limit(limit)
    if lock:
        # PostgreSQL: rows another worker is claiming are skipped, never waited for; rows
        # locked here and not taken are free again when this transaction ends.
        query = query.with_for_update(skip_locked=True)
    return query


def _postgresql_picks() -> list[Any]:
    """PostgreSQL's pick statements, one per state (a UNION cannot lock what it picks), each
    for every target at once: the targets and their limits come as two arrays, and each
    target's rows are an ordered, limited index walk of their own (a LATERAL join)."""
    wanted = (
        func.unnest(
            bindparam("targets", type_=postgresql.ARRAY(String)),
            bindparam("limits", type_=postgresql.ARRAY(Integer)),
        )
        .table_valued("target", "room")
        .render_derived(name="wanted")
    )
    picks = []
    for state in _STATES:
        picked = _pick(state, wanted.c.target, wanted.c.room, lock=True).lateral("picked")
        picks.append(select(*picked.c).select_from(wanted).join(picked, true()))
    return picks


_POSTGRESQL_PICKS: Final = _postgresql_picks()


@functools.lru_cache(maxsize=_TARGETS_PER_SQLITE_PICK)
def _sqlite_pick(targets: int) -> Any:
    """SQLite's pick statement for `targets` targets (parameters target_<n> and room_<n>): one
    UNION ALL of every target's and state's ordered, limited index walk. A statement is a trip
    to the connection's thread, and claims wait on that one connection."""
    each = [
        _pick(
            state,
            bindparam(f"target_{n}", type_=String),
            bindparam(f"room_{n}", type_=Integer),
            lock=False,
        ).subquery()
        for n in range(targets)
        for state in _STATES
    ]
    return union_all(*(select(*picked.c) for picked in each))


async def _candidates(
    connection: AsyncConnection, wanted: Sequence[tuple[str, int]], values: dict[str, Any]
) -> list[Any]:
    """The due rows of every wanted target: no more than its room of each state."""
    if is_postgresql(connection):
        arrays = {
            "targets": [target for target, _room in wanted],
            "limits": [room for _target, room in wanted],
        }
        found: list[Any] = []
        for pick in _POSTGRESQL_PICKS:
            found += (await connection.execute(pick, {**values, **arrays})).all()
        return found
    found = []
    for start in range(0, len(wanted), _TARGETS_PER_SQLITE_PICK):
        some = wanted[start : start + _TARGETS_PER_SQLITE_PICK]
        parameters = dict(values)
        for n, (target, room) in enumerate(some):
            parameters[f"target_{n}"] = target
            parameters[f"room_{n}"] = room
        found += (await connection.execute(_sqlite_pick(len(some)), parameters)).all()
    return found


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern (escape character "/") matching text that starts with `prefix`."""
    return prefix.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


async def claim(
    connection: AsyncConnection,
    target: str,
    limit: int,
    token: str,
    now: datetime,
    lease_until: datetime,
    payloads: PayloadCache,
) -> list[Claimed]:
    """Up to `limit` due deliveries of `target`, now in flight under lease `token` (see
    claim_targets)."""
    claimed = await claim_targets(connection, [(target, limit)], token, now, lease_until, payloads)
    return claimed[target]


async def claim_targets(
    connection: AsyncConnection,
    wanted: Sequence[tuple[str, int]],
    token: str,
    now: datetime,
    lease_until: datetime,
    payloads: PayloadCache,
) -> dict[str, list[Claimed]]:
    """For each (target, limit) wanted: up to `limit` due deliveries of the target, now in
    flight under lease `token`, the longest due first. Their payloads are read into `payloads`
    if it lacks them.

    The targets share their statements: a release to eight channels used to make forty trips
    to PostgreSQL (three picks, the update and the payloads, per target) before the first post
    could go out. (SQLite takes one more pick statement for every 64 targets.) Each target is
    named once."""
    claimed: dict[str, list[Claimed]] = {target: [] for target, _limit in wanted}
    if len(claimed) != len(wanted):
        # Twice would pick its rows twice (PostgreSQL's SKIP LOCKED skips only other
        # transactions' locks) and write a dead worker's abandoned try twice.
        raise ValueError("claim_targets: a target is named more than once")
    wanted = [(target, limit) for target, limit in wanted if limit > 0]
    if not wanted:
        return claimed
    worker = worker_of(token)
    values = {"now": now, "ours": _like_prefix(worker + "/")}
    of_target: dict[str, list[Any]] = {}
    for row in await _candidates(connection, wanted, values):
        of_target.setdefault(row.target, []).append(row)
    limits = dict(wanted)
    picked: list[Any] = []
    for target, candidates in of_target.items():
        if not is_postgresql(connection) or len({row.state for row in candidates}) > 1:
            # SQLite's UNION ALL promises no order of its own; on PostgreSQL, more than one
            # state had due rows. Either way: the longest due of them all.
            candidates = sorted(candidates, key=_claim_order)[: limits[target]]
        # (Otherwise one state's rows, in claim order already, and no more than the limit.)
        picked += candidates
    if not picked:
        return claimed
    ids = [row.id for row in picked]
    taken: list[Any] = []
    # SQLite binds each id as a parameter: several busy targets at a large claim_batch could
    # pass its limit in one statement. (PostgreSQL takes them as one array.)
    step = len(ids) if is_postgresql(connection) else _IDS_PER_SQLITE_TAKE
    for start in range(0, len(ids), step):
        chunk = ids[start : start + step]
        parameters = {"ids": chunk, "token": token, "until": lease_until, "now": now}
        taken += (await connection.execute(_TAKE[is_postgresql(connection)], parameters)).all()
    # Rows read by position: a Row's attribute lookup costs ten times an index, and a claim
    # reads some twenty fields of hundreds of rows.
    rows = sorted(taken, key=_first)
    await payloads.load(connection, {row[_PAYLOAD_ID] for row in rows})
    abandoned = [row for row in picked if row.state == _S.in_flight]
    if abandoned:
        # The try the dead worker was making, written down since it never could.
        await connection.execute(
            delivery_attempts.insert(),
            [
                {
                    "delivery_id": row.id,
                    "number": row.attempts,
                    "worker": worker_of(row.lease_owner),
                    "started_at": now,
                    "finished_at": now,
                    "outcome": Outcome.abandoned.value,
                    "error": f"worker {worker_of(row.lease_owner)} stopped answering; "
                    "its lease lapsed",
                }
                for row in abandoned
            ],
        )
    lapsed = {row.id: row.lease_owner for row in abandoned}
    for row in rows:
        job = _claimed(row, lapsed, now, token, lease_until, payloads)
        claimed[job.target].append(job)
    return claimed


# What a worker needs of a claimed row, in the order _claimed unpacks it. The payload is only
# referenced: a list's deliveries share one (delivery_payloads), read once per worker.
_CLAIMED_COLUMNS = (
    deliveries.c.id,
    deliveries.c.version_id,
    deliveries.c.channel,
    deliveries.c.target,
    deliveries.c.target_mode,
    deliveries.c.kind,
    deliveries.c.idempotency_key,
    deliveries.c.payload_id,
    deliveries.c.attempts,
    deliveries.c.recipient,
    deliveries.c.part_receipts,
    deliveries.c.reconcile_part,
    deliveries.c.superseded_by,
    deliveries.c.retracts_delivery_id,
    deliveries.c.last_error,
)


def _take(*, postgresql: bool) -> Any:
    """The statement that marks picked rows in flight under a lease (built once)."""
    return (
        deliveries.update()
        .where(any_of_parameter(deliveries.c.id, "ids", postgresql_arrays=postgresql))
        .values(
            state=_S.in_flight.value,
            lease_owner=bindparam("token"),
            lease_expires_at=bindparam("until", type_=deliveries.c.lease_expires_at.type),
            attempts=deliveries.c.attempts + 1,
            updated_at=bindparam("now", type_=deliveries.c.updated_at.type),
        )
        .returning(*_CLAIMED_COLUMNS)
    )


_TAKE = {postgresql: _take(postgresql=postgresql) for postgresql in (False, True)}
_PAYLOAD_ID = 7  # payload_id's position in _CLAIMED_COLUMNS
assert _CLAIMED_COLUMNS[_PAYLOAD_ID] is deliveries.c.payload_id


def _first(row: tuple[Any, ...]) -> Any:
    return row[0]


_KINDS = {kind.value: kind for kind in DeliveryKind}


def _claimed(
    row: tuple[Any, ...],
    lapsed: dict[int, str | None],
    now: datetime,
    token: str,
    until: datetime,
    payloads: PayloadCache,
) -> Claimed:
    (
        delivery_id,
        version_id,
        channel,
        target,
        target_mode,
        kind,
        key,
        payload_id,
        attempts,
        recipient,
        part_receipts,
        reconcile,
        superseded_by,
        retracts_delivery_id,
        last_error,
    ) = row
    receipts = receipts_from_json(part_receipts) if part_receipts else []
    previous_owner = None
    if delivery_id in lapsed:
        previous_owner = worker_of(lapsed[delivery_id])
        # Whatever was being sent when the worker died may be out: look before sending again.
        reconcile = reconcile or len(receipts) + 1
    return Claimed(
        id=delivery_id,
        version_id=version_id,
        channel=channel,
        target=target,
        target_mode=target_mode,
        kind=_KINDS[kind],
        key=key,
        payload=payloads.get(payload_id, version_id),
        attempt=attempts,
        recipient=recipient,
        receipts=receipts,
        reconcile_part=reconcile,
        superseded_by=superseded_by,
        retracts_delivery_id=retracts_delivery_id,
        token=token,
        lease_until=until,
        previous_owner=previous_owner,
        started_at=now,
        last_error=last_error,
    )


async def renew(connection: AsyncConnection, worker: str, until: datetime) -> set[int]:
    """Extend every lease this worker holds (one statement, whatever its claims' tokens: none
    of them is ever another worker's); returns the ids still held."""
    result = await connection.execute(
        deliveries.update()
        .where(
            *in_lock_order(
                connection,
                deliveries.c.state == _S.in_flight,
                deliveries.c.lease_owner.startswith(worker + "/", autoescape=True),
            )
        )
        .values(lease_expires_at=until)
        .returning(deliveries.c.id)
    )
    return set(result.scalars())


async def hand_back(
    connection: AsyncConnection, held: Sequence[tuple[int, str]], now: datetime
) -> int:
    """Return claimed deliveries never started (stopping, or a paused target): due again at
    once, and the claim's try not counted."""
    returned = 0
    for delivery_id, token in sorted(held):  # one row at a time, in lock order (row_locks)
        result = await connection.execute(
            deliveries.update()
            .where(
                deliveries.c.id == delivery_id,
                deliveries.c.lease_owner == token,
                deliveries.c.state == _S.in_flight,
            )
            .values(
                state=_S.queued,
                lease_owner=None,
                lease_expires_at=None,
                attempts=func.max(deliveries.c.attempts - 1, 0)
                if connection.dialect.name == "sqlite"
                else func.greatest(deliveries.c.attempts - 1, 0),
                next_attempt_at=now,
                updated_at=now,
            )
        )
        returned += result.rowcount
    return returned
