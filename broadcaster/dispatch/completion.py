"""A released version is completed when every delivery is finished, or partially_failed when some
were dead-lettered (a requeued one that then goes out completes it after all). Each move is a
workflow transition (approvals.lifecycle) and is audited like every other."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals import lifecycle
from approvals.workflow import VersionState
from broadcaster import audit
from broadcaster.alerts import store
from broadcaster.dispatch.states import OPEN_STATES, DeliveryState
from broadcaster.storage.schema import deliveries


async def finished_versions(connection: AsyncConnection, version_ids: list[int]) -> list[int]:
    """Which of these versions have no delivery left to work on (one query for all)."""
    if not version_ids:
        return []
    busy = await connection.execute(
        select(deliveries.c.version_id)
        .where(
            deliveries.c.version_id.in_(version_ids),
            deliveries.c.state.in_([s.value for s in OPEN_STATES]),
        )
        .group_by(deliveries.c.version_id)
    )
    open_ones = set(busy.scalars())
    return [v for v in version_ids if v not in open_ones]


async def settle_version(connection: AsyncConnection, version_id: int, now: datetime) -> bool:
    """Move the version on if its deliveries are all finished; True if it moved."""
    still_open = await connection.execute(
        select(deliveries.c.id)
        .where(
            deliveries.c.version_id == version_id,
            deliveries.c.state.in_([s.value for s in OPEN_STATES]),
        )
        .limit(1)
    )
    if still_open.first() is not None:
        return False
    stored = await store.load_version(connection, version_id, lock=True)
    if stored is None or stored.record.state not in (
        VersionState.released,
        VersionState.partially_failed,
    ):
        return False
    dead = await connection.scalar(
        select(func.count())
        .select_from(deliveries)
        .where(deliveries.c.version_id == version_id, deliveries.c.state == DeliveryState.dead)
    )
    if dead:
        if stored.record.state is VersionState.partially_failed:
            return False
        step = lifecycle.partially_fail(stored.record, now, f"{dead} deliveries dead-lettered")
    else:
        step = lifecycle.complete(stored.record, now)
    await store.save_version(connection, version_id, stored.record, step.record, now)
    for event in step.events:
        await audit.append(
            connection,
            audit.AuditEntry(
                actor="system",
                action=f"alert.{event.action.value}",
                subject=f"alert:{stored.alert_id}/version:{version_id}",
                details={
                    "from": event.from_state.value if event.from_state else None,
                    "to": event.to_state.value,
                    "detail": event.detail,
                },
                content_hash=event.content_hash,
            ),
            at=event.at,
        )
    return True
