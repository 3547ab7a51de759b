"""Reading delivery status for people: per alert, channel and target; per target's health; the
dead-letter list. Recipients are shown masked: a board needs to tell people apart, not call them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from broadcaster.dispatch.payload import mask_recipient
from broadcaster.dispatch.states import DeliveryState
from broadcaster.storage.schema import alert_versions, alerts, channel_state, deliveries
from broadcaster.targets import Directory

_S = DeliveryState
# Per target, the deliveries listed one by one (the rest are counted): an account target has
# one; a list target shows the ones that need attention first.
SHOWN_PER_TARGET: Final = 50
_WAITING = (_S.queued, _S.in_flight, _S.retry_wait, _S.held, _S.dead)


class DeliveryOut(BaseModel):
    id: int
    alert_id: int | None = None
    version_id: int
    channel: str
    target: str
    target_mode: str
    kind: str
    recipient: str | None  # masked
    state: str
    attempts: int
    next_attempt_at: datetime | None
    url: str | None  # the post, where the platform gives a link
    external_id: str | None
    last_error: str | None
    delivered_at: datetime | None
    updated_at: datetime | None


class TargetDeliveries(BaseModel):
    channel: str
    target: str
    target_mode: str
    total: int
    counts: dict[str, int]  # state -> deliveries in it
    deliveries: list[DeliveryOut]  # each one for account targets; those needing attention first


class VersionDeliveries(BaseModel):
    version_id: int
    number: int
    msg_type: str
    state: str  # the version's: released, completed, partially_failed
    targets: list[TargetDeliveries]


class AlertDeliveries(BaseModel):
    alert_id: int
    versions: list[VersionDeliveries]


class ChannelOut(BaseModel):
    name: str  # the target's name: what pause and resume take
    channel: str
    mode: str | None
    configured: bool  # false: deliveries wait for a target no longer in the configuration
    paused: bool
    paused_at: datetime | None
    pause_reason: str | None
    breaker_state: str
    breaker_opened_at: datetime | None
    rate_reset_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    health: str  # ok, paused, breaker_open, rate_limited, failing
    waiting: dict[str, int]  # queued, in_flight, retry_wait, held, dead


class ChannelList(BaseModel):
    channels: list[ChannelOut]


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]


def delivery_out(row: Any) -> DeliveryOut:
    return DeliveryOut(
        id=row.id,
        alert_id=getattr(row, "alert_id", None),
        version_id=row.version_id,
        channel=row.channel,
        target=row.target,
        target_mode=row.target_mode,
        kind=row.kind,
        recipient=mask_recipient(row.recipient),
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        url=row.external_url,
        external_id=row.external_id,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
        updated_at=row.updated_at,
    )


_COLUMNS = (
    deliveries.c.id,
    deliveries.c.version_id,
    deliveries.c.channel,
    deliveries.c.target,
    deliveries.c.target_mode,
    deliveries.c.kind,
    deliveries.c.recipient,
    deliveries.c.state,
    deliveries.c.attempts,
    deliveries.c.next_attempt_at,
    deliveries.c.external_url,
    deliveries.c.external_id,
    deliveries.c.last_error,
    deliveries.c.delivered_at,
    deliveries.c.updated_at,
)


async def alert_deliveries(connection: AsyncConnection, alert_id: int) -> AlertDeliveries | None:
    exists = await connection.scalar(select(alerts.c.id).where(alerts.c.id == alert_id))
    if exists is None:
        return None
    versions = (
        await connection.execute(
            select(
                alert_versions.c.id,
                alert_versions.c.number,
                alert_versions.c.msg_type,
                alert_versions.c.state,
            )
            .where(alert_versions.c.alert_id == alert_id, alert_versions.c.released_at.is_not(None))
            .order_by(alert_versions.c.number)
        )
    ).all()
    ids = [v.id for v in versions]
    counts = (
        await connection.execute(
            select(
                deliveries.c.version_id,
                deliveries.c.channel,
                deliveries.c.target,
                deliveries.c.target_mode,
                deliveries.c.state,
                func.count().label("n"),
            )
            .where(deliveries.c.version_id.in_(ids))
            .group_by(
                deliveries.c.version_id,
                deliveries.c.channel,
                deliveries.c.target,
                deliveries.c.target_mode,
                deliveries.c.state,
            )
        )
    ).all()
    attention = case(
        (deliveries.c.state == _S.dead, 0),
        (deliveries.c.state.in_([_S.retry_wait, _S.held]), 1),
        (deliveries.c.state == _S.in_flight, 2),
        else_=3,
    )
    # Ranked within each target, so a 100,000-person list shows its first 50, worst first.
    rank = (
        func.row_number()
        .over(
            partition_by=(deliveries.c.version_id, deliveries.c.target),
            order_by=(attention, deliveries.c.id),
        )
        .label("rank")
    )
    ranked = select(*_COLUMNS, rank).where(deliveries.c.version_id.in_(ids)).subquery()
    shown = (
        await connection.execute(
            select(ranked).where(ranked.c.rank <= SHOWN_PER_TARGET).order_by(ranked.c.id)
        )
    ).all()
    return AlertDeliveries(
        alert_id=alert_id,
        versions=[
            VersionDeliveries(
                version_id=v.id,
                number=v.number,
                msg_type=v.msg_type,
                state=v.state,
                targets=_targets(v.id, alert_id, counts, shown),
            )
            for v in versions
        ],
    )


def _targets(
    version_id: int, alert_id: int, counts: Sequence[Any], shown: Sequence[Any]
) -> list[TargetDeliveries]:
    found: dict[str, TargetDeliveries] = {}
    for row in counts:
        if row.version_id != version_id:
            continue
        entry = found.setdefault(
            row.target,
            TargetDeliveries(
                channel=row.channel,
                target=row.target,
                target_mode=row.target_mode,
                total=0,
                counts={},
                deliveries=[],
            ),
        )
        entry.counts[row.state] = int(row.n)
        entry.total += int(row.n)
    for row in shown:
        if row.version_id == version_id and row.target in found:
            out = delivery_out(row)
            out.alert_id = alert_id
            found[row.target].deliveries.append(out)
    return sorted(found.values(), key=lambda t: (t.channel, t.target))


async def channels_overview(connection: AsyncConnection, directory: Directory) -> ChannelList:
    states = {row.target: row for row in (await connection.execute(select(channel_state))).all()}
    waiting: dict[str, dict[str, int]] = {}
    channel_of: dict[str, str] = {}
    for row in await connection.execute(
        select(deliveries.c.target, deliveries.c.channel, deliveries.c.state, func.count())
        .where(deliveries.c.state.in_([s.value for s in _WAITING]))
        .group_by(deliveries.c.target, deliveries.c.channel, deliveries.c.state)
    ):
        waiting.setdefault(row.target, {})[row.state] = int(row[3])
        channel_of[row.target] = row.channel
    names = sorted(set(directory.targets) | set(waiting))
    out = []
    for name in names:
        configured = directory.targets.get(name)
        state = states.get(name)
        channel = configured.channel_class.name if configured else channel_of.get(name, "?")
        out.append(
            ChannelOut(
                name=name,
                channel=channel,
                mode=configured.target.mode.value if configured else None,
                configured=configured is not None,
                paused=bool(state.paused) if state else False,
                paused_at=state.paused_at if state else None,
                pause_reason=state.pause_reason if state else None,
                breaker_state=state.breaker_state if state else "closed",
                breaker_opened_at=state.breaker_opened_at if state else None,
                rate_reset_at=state.rate_reset_at if state else None,
                last_success_at=state.last_success_at if state else None,
                last_error=state.last_error if state else None,
                health=_health(state),
                waiting={s.value: waiting.get(name, {}).get(s.value, 0) for s in _WAITING},
            )
        )
    return ChannelList(channels=out)


def _health(state: Any) -> str:
    if state is None:
        return "ok"
    if state.paused:
        return "paused"
    if state.breaker_state != "closed":
        return "breaker_open"
    if state.rate_reset_at is not None and state.rate_reset_at > datetime.now(
        state.rate_reset_at.tzinfo
    ):
        return "rate_limited"
    # The recorder clears last_error when a request succeeds again.
    return "failing" if state.last_error is not None else "ok"


async def delivery_list(
    connection: AsyncConnection, state: str, limit: int, before: int | None
) -> DeliveryList:
    query = (
        select(*_COLUMNS, alert_versions.c.alert_id)
        .join(alert_versions, alert_versions.c.id == deliveries.c.version_id)
        .where(deliveries.c.state == state)
        .order_by(deliveries.c.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(deliveries.c.id < before)
    rows = (await connection.execute(query)).all()
    return DeliveryList(deliveries=[delivery_out(row) for row in rows])
