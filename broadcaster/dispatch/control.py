"""What operators do to delivery, each in the caller's transaction and audited: pause a target
(breach response), resume it, requeue a dead-lettered delivery.

Pausing holds the target's waiting deliveries (state `held`); nothing is lost and nothing is
sent until it is resumed, when they are queued again (and workers are woken). A try already in
flight finishes its current request; it sends no further part of a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from broadcaster import audit
from broadcaster.dispatch.recorder import hold_waiting, upsert_channel_state
from broadcaster.dispatch.row_locks import in_lock_order
from broadcaster.dispatch.states import DeliveryState
from broadcaster.dispatch.wake import Wakeup, notify_workers
from broadcaster.storage.schema import channel_state, deliveries
from broadcaster.targets import Directory

_S = DeliveryState


class TargetNotFound(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(known) or "none are configured"
        super().__init__(f"there is no target named {name!r}; targets: {listed}")


class DeliveryNotFound(LookupError):
    def __init__(self, delivery_id: int) -> None:
        super().__init__(f"there is no delivery {delivery_id}")


class NotDead(Exception):
    """Only a dead-lettered delivery can be requeued."""

    def __init__(self, delivery_id: int, state: str) -> None:
        super().__init__(
            f"delivery {delivery_id} is {state}, not dead: only dead-lettered deliveries can be "
            "requeued (the others are still being worked on, or finished)"
        )
        self.state = state


@dataclass(frozen=True)
class Who:
    """The person acting, for the audit log."""

    actor: str
    user_id: int | None
    source_address: str | None


def _target(directory: Directory, name: str) -> tuple[str, str]:
    configured = directory.targets.get(name)
    if configured is None:
        raise TargetNotFound(name, sorted(directory.targets))
    return configured.channel_class.name, configured.name


async def pause(
    connection: AsyncConnection,
    directory: Directory,
    name: str,
    who: Who,
    reason: str | None,
    now: datetime,
    wake: Wakeup | None = None,
) -> int:
    """Pause target `name`; returns how many waiting deliveries are now held."""
    channel, target = _target(directory, name)
    await upsert_channel_state(
        connection,
        channel,
        target,
        {
            "paused": True,
            "paused_by": who.user_id,
            "paused_at": now,
            "pause_reason": reason,
            "updated_at": now,
        },
    )
    held = await hold_waiting(connection, target, now)
    await audit.append(
        connection,
        audit.AuditEntry(
            actor=who.actor,
            action="channel.pause",
            subject=f"target:{target}",
            source_address=who.source_address,
            details={"reason": reason, "held": held},
        ),
        at=now,
    )
    await notify_workers(connection, wake)  # so a thread under way sends no further part
    return held


async def resume(
    connection: AsyncConnection,
    directory: Directory,
    name: str,
    who: Who,
    now: datetime,
    wake: Wakeup | None = None,
) -> int:
    """Resume target `name`; returns how many held deliveries are queued again."""
    channel, target = _target(directory, name)
    await upsert_channel_state(
        connection,
        channel,
        target,
        {"paused": False, "pause_reason": None, "updated_at": now},
    )
    queued = await connection.execute(
        deliveries.update()
        .where(
            *in_lock_order(connection, deliveries.c.target == target, deliveries.c.state == _S.held)
        )
        .values(state=_S.queued, updated_at=now)
    )
    await audit.append(
        connection,
        audit.AuditEntry(
            actor=who.actor,
            action="channel.resume",
            subject=f"target:{target}",
            source_address=who.source_address,
            details={"queued": queued.rowcount},
        ),
        at=now,
    )
    await notify_workers(connection, wake)
    return int(queued.rowcount)


async def requeue(
    connection: AsyncConnection,
    delivery_id: int,
    who: Who,
    now: datetime,
    wake: Wakeup | None = None,
) -> str:
    """Give a dead-lettered delivery a fresh set of tries; returns its new state."""
    row = (
        await connection.execute(
            select(deliveries.c.state, deliveries.c.target, deliveries.c.last_error)
            .where(deliveries.c.id == delivery_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise DeliveryNotFound(delivery_id)
    if row.state != _S.dead:
        raise NotDead(delivery_id, row.state)
    paused = await connection.scalar(
        select(channel_state.c.paused).where(channel_state.c.target == row.target)
    )
    state = _S.held if paused else _S.queued
    await connection.execute(
        deliveries.update()
        .where(deliveries.c.id == delivery_id)
        .values(
            state=state,
            attempts=0,
            next_attempt_at=now,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
    )
    await audit.append(
        connection,
        audit.AuditEntry(
            actor=who.actor,
            action="delivery.requeue",
            subject=f"delivery:{delivery_id}",
            source_address=who.source_address,
            details={"target": row.target, "was": row.last_error, "now": state.value},
        ),
        at=now,
    )
    await notify_workers(connection, wake)
    return state.value
