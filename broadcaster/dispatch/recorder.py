"""Writing what happened back to the outbox, many deliveries per transaction.

Each result updates its delivery only while the claim it came from still holds the lease
(`lease_owner` is that claim's token):
if the lease lapsed and another worker took the delivery over, that worker reconciles what we
sent instead, so nothing is posted twice and nothing is lost. Each try also becomes a row in
delivery_attempts, and each target's health (breaker, platform wait, last success or error) is
kept in channel_state for operators.

A result arriving while its delivery was superseded by a Cancel (`stop_if_superseded`) turns
the delivery superseded instead of waiting to retry: nothing new is sent for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Integer, and_, bindparam, case, null, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from broadcaster import audit
from broadcaster.dispatch.payload import receipt_json_text, receipt_to_json
from broadcaster.dispatch.row_locks import in_lock_order, locked_in_order
from broadcaster.dispatch.states import DeliveryState, Outcome
from broadcaster.storage.schema import channel_state, deliveries, delivery_attempts
from broadcaster.storage.sql import DriverStatement, any_of
from channels.base import Receipt

log = logging.getLogger(__name__)
_S = DeliveryState
# How long a result may wait for company before it is written anyway.
FLUSH_AFTER_SECONDS = 0.01
# ... and while many tries are running (a big list), how long at most: each write is a
# transaction (on SQLite, a turn at the one write lock and a commit), and at a thousand results a
# second 10 ms gathered a dozen, which cost three times as much per result as a hundred do. The
# rows are durable in flight meanwhile; only their outcome waits (a worker that dies first
# leaves them to be reconciled, as at any moment).
BUSY_FLUSH_AFTER_SECONDS = 0.1
# Tries claimed and not yet ended from which a worker counts as busy: a few alerts' channels
# stay far below.
BUSY_TRIES = 64


@dataclass
class AttemptRow:
    outcome: Outcome
    at: datetime
    error: str | None = None
    retry_after: float | None = None


@dataclass
class Result:
    """What became of one claimed delivery (or, with `state` None, progress on a thread)."""

    delivery_id: int
    version_id: int
    target: str
    attempt: int
    state: DeliveryState | None
    token: str = ""  # the lease token of the claim this try ran under
    attempts: list[AttemptRow] = field(default_factory=list)
    receipts: list[Receipt] = field(default_factory=list)
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    reconcile_part: int | None = None
    retracts_delivery_id: int | None = None
    delivered_at: datetime | None = None
    undo_try: bool = False  # the claim's try was not used (deferred before any request)
    stop_if_superseded: bool = False

    @property
    def progress(self) -> bool:
        return self.state is None


@dataclass
class TargetHealth:
    """A change to one target's row in channel_state."""

    target: str
    channel: str
    at: datetime
    breaker_state: str | None = None
    breaker_opened_at: datetime | None = None
    rate_reset_at: datetime | None = None
    success: bool = False
    error: str | None = None
    pause_reason: str | None = None  # set: pause the target (its credentials were refused)


class Recorder:
    def __init__(
        self,
        engine: AsyncEngine,
        worker: str,
        *,
        batch: int,
        clock: Callable[[], datetime],
        after_flush: Callable[[Sequence[Result]], Awaitable[None]] | None = None,
        running: Callable[[], int] | None = None,
    ) -> None:
        self.engine = engine
        self.worker = worker
        self.batch = batch
        self.clock = clock
        self.after_flush = after_flush
        self.running = running or (lambda: 0)  # tries claimed whose results are to come
        self._results: list[Result] = []
        self._health: dict[str, TargetHealth] = {}
        self._pending = asyncio.Event()
        self._flush_lock = asyncio.Lock()

    def add(self, result: Result) -> None:
        self._results.append(result)
        self._pending.set()

    def health(self, change: TargetHealth) -> None:
        known = self._health.get(change.target)
        if known is not None:
            # Keep the newest facts; a pause, once asked for, stays asked for.
            change.pause_reason = change.pause_reason or known.pause_reason
            change.success = change.success or known.success
            change.error = change.error or known.error
            change.rate_reset_at = change.rate_reset_at or known.rate_reset_at
            change.breaker_state = change.breaker_state or known.breaker_state
            change.breaker_opened_at = change.breaker_opened_at or known.breaker_opened_at
        self._health[change.target] = change
        self._pending.set()

    @property
    def waiting(self) -> int:
        return len(self._results)

    async def run(self, stop: asyncio.Event) -> None:
        """Flush whenever there is something, a little later to gather a batch; until stopped."""
        while not stop.is_set() or self._results or self._health:
            if not self._results and not self._health:
                waiter = asyncio.ensure_future(self._pending.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            await self._gather()
            try:
                await self.flush()
            except Exception:
                log.exception("recording delivery results failed; trying again in 1 s")
                await asyncio.sleep(1.0)

    async def _gather(self) -> None:
        """Wait a little for more results to share the write: 10 ms, or up to 100 ms while
        many tries are running, looking every 10 ms (a batch fills, the load drops)."""
        waited = 0.0
        while len(self._results) < self.batch:
            limit = BUSY_FLUSH_AFTER_SECONDS if self.running() >= BUSY_TRIES else 0.0
            if waited >= max(limit, FLUSH_AFTER_SECONDS):
                return
            await asyncio.sleep(FLUSH_AFTER_SECONDS)
            waited += FLUSH_AFTER_SECONDS

    async def flush(self) -> None:
        async with self._flush_lock:
            while self._results or self._health:
                results, self._results = self._results[: self.batch], self._results[self.batch :]
                health, self._health = self._health, {}
                self._pending.clear()
                try:
                    async with self.engine.begin() as connection:
                        await self._write(connection, results, list(health.values()))
                except BaseException:
                    self._results[:0] = results  # keep them for the next try
                    for target, change in health.items():
                        self._health.setdefault(target, change)
                    raise
                if self.after_flush is not None and results:
                    await self.after_flush(results)

    async def _write(
        self, connection: AsyncConnection, results: list[Result], health: list[TargetHealth]
    ) -> None:
        # Row updates are fenced by their own WHERE (the lease token); tries are rows of their
        # own, written only for results whose lease still holds, so look those up first.
        results = await self._still_ours(connection, results)
        finals = [r for r in results if not r.progress]
        progress = [r for r in results if r.progress]
        if progress:
            await connection.execute(_PROGRESS, [self._progress_params(r) for r in progress])
        # Most results of a big list are clean deliveries: written by a statement with half the
        # parameters (binding each, per row, is most of what a write costs us).
        clean = [r for r in finals if _clean_delivery(r)]
        if clean:
            updated = self.clock()
            await _DELIVERED.executemany(connection, [_delivered_row(r, updated) for r in clean])
        others = [r for r in finals if not _clean_delivery(r)] if clean else finals
        if others:
            await connection.execute(_FINAL, [self._final_params(r) for r in others])
        attempts = [
            {
                "delivery_id": r.delivery_id,
                "number": r.attempt,
                "worker": self.worker,
                "started_at": row.at,
                "finished_at": row.at,
                "outcome": row.outcome.value,
                "error": (row.error or "")[:2000] or None,
                "retry_after_seconds": row.retry_after,
            }
            for r in results
            for row in r.attempts
        ]
        if attempts:
            await connection.execute(delivery_attempts.insert(), attempts)
        for change in health:
            await _save_health(connection, change)

    async def _still_ours(self, connection: AsyncConnection, results: list[Result]) -> list[Result]:
        """The results to write: those without tries (their row's WHERE fences them), and those
        with tries whose delivery this worker still holds. A lease lost during a stall was
        claimed back by another worker, which reconciles what we did: our word no longer counts,
        for the row or for its tries. Every result's row is locked here (PostgreSQL), all at
        once and in id order (row_locks), before any is written."""
        if not results:
            return results
        ids = sorted({r.delivery_id for r in results})
        query = locked_in_order(
            connection,
            select(deliveries.c.id, deliveries.c.lease_owner).where(
                any_of(connection, deliveries.c.id, ids)
            ),
        )
        holder = {delivery_id: owner for delivery_id, owner in await connection.execute(query)}
        kept = [r for r in results if not r.attempts or holder.get(r.delivery_id) == r.token]
        if len(kept) < len(results):
            log.warning(
                "%d results dropped: their leases were taken over; the new holders reconcile",
                len(results) - len(kept),
            )
        return kept

    def _progress_params(self, result: Result) -> dict[str, Any]:
        receipts = [receipt_to_json(r) for r in result.receipts]
        return {
            **_row_identity(result),
            "b_receipts": receipts,
            "b_receipt": receipts[0] if receipts else None,
            "b_updated": self.clock(),
        }

    def _final_params(self, result: Result) -> dict[str, Any]:
        assert result.state is not None
        params = self._progress_params(result)
        params.update(
            {
                "b_state": result.state.value,
                "b_stop": result.stop_if_superseded,
                "b_undo": 1 if result.undo_try else 0,
                "b_next": result.next_attempt_at,
                "b_error": result.last_error[:4000] if result.last_error else None,
                "b_reconcile": result.reconcile_part,
                "b_retracts": result.retracts_delivery_id,
                "b_delivered": result.delivered_at,
            }
        )
        return params


_PROGRESS = (
    deliveries.update()
    .where(
        deliveries.c.id == bindparam("b_id"),
        deliveries.c.lease_owner == bindparam("b_owner"),
    )
    .values(
        parts_done=bindparam("b_parts"),
        part_receipts=bindparam("b_receipts", type_=deliveries.c.part_receipts.type),
        receipt=bindparam("b_receipt", type_=deliveries.c.receipt.type),
        external_id=bindparam("b_external_id"),
        external_url=bindparam("b_external_url"),
        reconcile_part=None,
        updated_at=bindparam("b_updated"),
    )
)


def _clean_delivery(result: Result) -> bool:
    """Delivered, with nothing else to write than _DELIVERED writes (every other column it
    sets is what _FINAL would set for this result)."""
    return (
        result.state is _S.delivered
        and not result.undo_try
        and not result.stop_if_superseded
        and result.next_attempt_at is None
        and result.last_error is None
        and result.reconcile_part is None
        and result.retracts_delivery_id is None
    )


_FINAL = (
    deliveries.update()
    .where(
        deliveries.c.id == bindparam("b_id"),
        deliveries.c.lease_owner == bindparam("b_owner"),
    )
    .values(
        state=case(
            (
                and_(
                    bindparam("b_stop", type_=Boolean),
                    deliveries.c.superseded_by.is_not(None),
                ),
                _S.superseded.value,
            ),
            else_=bindparam("b_state"),
        ),
        attempts=deliveries.c.attempts - bindparam("b_undo", type_=Integer),
        next_attempt_at=bindparam("b_next", type_=deliveries.c.next_attempt_at.type),
        lease_owner=None,
        lease_expires_at=None,
        last_error=bindparam("b_error"),
        parts_done=bindparam("b_parts"),
        part_receipts=bindparam("b_receipts", type_=deliveries.c.part_receipts.type),
        receipt=bindparam("b_receipt", type_=deliveries.c.receipt.type),
        external_id=bindparam("b_external_id"),
        external_url=bindparam("b_external_url"),
        reconcile_part=bindparam("b_reconcile", type_=Integer),
        retracts_delivery_id=bindparam("b_retracts", type_=Integer),
        delivered_at=bindparam("b_delivered", type_=deliveries.c.delivered_at.type),
        updated_at=bindparam("b_updated", type_=deliveries.c.updated_at.type),
    )
)


# _FINAL for a _clean_delivery: the same columns, the same values (NULL written out, not bound).
# Run with driver values (a big list's every row goes through it), the receipt encoded once for
# both its columns.
_DELIVERED = DriverStatement(
    deliveries.update()
    .where(
        deliveries.c.id == bindparam("b_id"),
        deliveries.c.lease_owner == bindparam("b_owner"),
    )
    .values(
        state=_S.delivered.value,
        next_attempt_at=null(),
        lease_owner=null(),
        lease_expires_at=null(),
        last_error=null(),
        parts_done=bindparam("b_parts"),
        part_receipts=bindparam("b_receipts", type_=deliveries.c.part_receipts.type),
        receipt=bindparam("b_receipt", type_=deliveries.c.receipt.type),
        external_id=bindparam("b_external_id"),
        external_url=bindparam("b_external_url"),
        reconcile_part=null(),
        retracts_delivery_id=null(),
        delivered_at=bindparam("b_delivered", type_=deliveries.c.delivered_at.type),
        updated_at=bindparam("b_updated", type_=deliveries.c.updated_at.type),
    ),
    prepared=("b_receipts", "b_receipt"),
    row_key="b_id",
)


def _row_identity(result: Result) -> dict[str, Any]:
    """The parameters every write of a result names: which row, whose lease, how many parts,
    and the first part's post (the delivery's link)."""
    first = result.receipts[0] if result.receipts else None
    return {
        "b_id": result.delivery_id,
        "b_owner": result.token,
        "b_parts": len(result.receipts),
        "b_external_id": first.external_id if first else None,
        "b_external_url": first.url if first else None,
    }


def _delivered_row(result: Result, updated: datetime) -> dict[str, Any]:
    """_DELIVERED's parameters for one result, the JSON columns as JSON text."""
    texts = [receipt_json_text(r) for r in result.receipts]
    return {
        **_row_identity(result),
        "b_receipts": f"[{', '.join(texts)}]",
        "b_receipt": texts[0] if texts else "null",  # as the JSON column writes None
        "b_updated": updated,
        "b_delivered": result.delivered_at,
    }


async def _save_health(connection: AsyncConnection, change: TargetHealth) -> None:
    values: dict[str, Any] = {"updated_at": change.at}
    if change.breaker_state is not None:
        values["breaker_state"] = change.breaker_state
        values["breaker_opened_at"] = change.breaker_opened_at
    if change.rate_reset_at is not None:
        values["rate_reset_at"] = change.rate_reset_at
    if change.success:
        values["last_success_at"] = change.at
        values["last_error"] = None  # healthy again, unless an error came with it below
    if change.error is not None:
        values["last_error"] = change.error[:2000]
    if change.pause_reason is not None:
        values.update(paused=True, paused_at=change.at, paused_by=None)
        values["pause_reason"] = change.pause_reason[:2000]
    await upsert_channel_state(connection, change.channel, change.target, values)
    if change.pause_reason is not None:
        held = await hold_waiting(connection, change.target, change.at, skip_locked=True)
        await audit.append(
            connection,
            audit.AuditEntry(
                actor="system",
                action="channel.pause",
                subject=f"target:{change.target}",
                details={"reason": change.pause_reason, "held": held, "automatic": True},
            ),
            at=change.at,
        )
        log.error(
            "target %s paused: %s. Fix it, then resume the target (%d deliveries held)",
            change.target,
            change.pause_reason,
            held,
        )


async def hold_waiting(
    connection: AsyncConnection, target: str, now: datetime, *, skip_locked: bool = False
) -> int:
    """Hold what waits to go to a paused target (not lost: resume queues it again).
    `skip_locked`: for the recorder, which holds its results' rows already, out of the order
    row_locks keeps, so it must not wait. A row another transaction holds is being superseded,
    or claimed: the claiming worker holds it back once its lane knows of the pause, or meets
    the refused credentials and pauses the target itself."""
    held = await connection.execute(
        deliveries.update()
        .where(
            *in_lock_order(
                connection,
                deliveries.c.target == target,
                deliveries.c.state.in_([_S.queued, _S.retry_wait]),
                skip_locked=skip_locked,
            )
        )
        .values(state=_S.held, updated_at=now)
    )
    return int(held.rowcount)


async def upsert_channel_state(
    connection: AsyncConnection, channel: str, target: str, values: dict[str, Any]
) -> None:
    """Insert or update the channel_state row of one target."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    row = {"channel": channel, "target": target, "paused": False, "breaker_state": "closed"}
    row.update(values)
    statement = dialect.insert(channel_state).values(**row)
    statement = statement.on_conflict_do_update(
        index_elements=[channel_state.c.channel, channel_state.c.target],
        set_={name: statement.excluded[name] for name in values},
    )
    await connection.execute(statement)
