"""Reading alerts for people: the current version with its quorum, and the version history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals import lifecycle
from approvals.policy import Policy
from approvals.workflow import VersionState
from broadcaster.alerts import store
from broadcaster.api.alert_models import (
    AlertList,
    AlertOut,
    AlertSummary,
    ApprovalOut,
    QuorumOut,
    VersionOut,
    VersionSummary,
)
from broadcaster.storage.schema import alert_versions, alerts, users

# Quorum is worth showing while approvals are being gathered or were just completed.
_QUORUM_STATES = {VersionState.submitted, VersionState.approved, VersionState.released}


async def _names(connection: AsyncConnection, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await connection.execute(
        select(users.c.id, users.c.username).where(users.c.id.in_(sorted(ids)))
    )
    return {row.id: row.username for row in rows}


def version_out(
    stored: store.StoredVersion, names: dict[int, str], policy: Policy, now: datetime
) -> VersionOut:
    record = stored.record
    quorum = None
    if record.state in _QUORUM_STATES:
        result = lifecycle.quorum(record, now, policy)
        quorum = QuorumOut(
            rule=result.rule,
            needed=result.needed,
            counted=[names.get(user, str(user)) for user in result.counted],
            missing=result.missing,
            met=result.met,
            reasons=list(result.reasons),
        )
    return VersionOut(
        id=stored.id,
        number=stored.number,
        state=record.state.value,
        status=record.content.status.value,
        msg_type=record.content.msg_type.value,
        author=names.get(record.author_id, str(record.author_id)),
        content=record.content.model_dump(mode="json"),
        content_hash=record.content_hash,
        rule=record.rule,
        quorum=quorum,
        approvals=[
            ApprovalOut(
                approver=names.get(a.approver_id, str(a.approver_id)),
                at=a.at,
                content_hash=a.content_hash,
                second_factor_at=a.second_factor_at,
            )
            for a in record.approvals
        ],
        reject_reason=record.reject_reason,
        replaces_version_id=record.replaces,
        identifier=stored.identifier,
        sender=stored.sender,
        sent=stored.sent_at,
        created_at=record.created_at,
        updated_at=record.updated_at,
        submitted_at=record.submitted_at,
        released_at=record.released_at,
    )


async def alert_out(
    connection: AsyncConnection, alert_id: int, policy: Policy, now: datetime
) -> AlertOut | None:
    alert = await store.get_alert(connection, alert_id)
    if alert is None or alert.current_version_id is None:
        return None
    current = await store.load_version(connection, alert.current_version_id)
    assert current is not None
    history = await connection.execute(
        select(
            alert_versions.c.id,
            alert_versions.c.number,
            alert_versions.c.state,
            alert_versions.c.msg_type,
            alert_versions.c.identifier,
        )
        .where(alert_versions.c.alert_id == alert_id)
        .order_by(alert_versions.c.number)
    )
    people = {alert.created_by, *current.record.authors}
    people |= {a.approver_id for a in current.record.approvals}
    names = await _names(connection, people)
    return AlertOut(
        id=alert.id,
        mode=alert.mode.value,
        created_at=alert.created_at,
        created_by=names.get(alert.created_by, str(alert.created_by)),
        current=version_out(current, names, policy, now),
        versions=[
            VersionSummary(
                id=row.id,
                number=row.number,
                state=row.state,
                msg_type=row.msg_type,
                identifier=row.identifier,
            )
            for row in history
        ],
    )


async def alert_list(
    connection: AsyncConnection, *, state: str | None, limit: int, before: int | None
) -> AlertList:
    statement = (
        select(
            alerts.c.id,
            alerts.c.mode,
            alert_versions.c.status,
            alert_versions.c.msg_type,
            alert_versions.c.state,
            alert_versions.c.content,
            alert_versions.c.updated_at,
            alert_versions.c.created_at,
        )
        .join(alert_versions, alert_versions.c.id == alerts.c.current_version_id)
        .order_by(alerts.c.id.desc())
        .limit(limit + 1)
    )
    if state is not None:
        statement = statement.where(alert_versions.c.state == state)
    if before is not None:
        statement = statement.where(alerts.c.id < before)
    rows = (await connection.execute(statement)).all()
    page = [
        AlertSummary(
            id=row.id,
            mode=row.mode,
            status=row.status,
            msg_type=row.msg_type,
            state=row.state,
            headline=row.content["infos"][0]["headline"],
            updated_at=row.updated_at or row.created_at,
        )
        for row in rows[:limit]
    ]
    more = len(rows) > limit
    return AlertList(alerts=page, next_before=page[-1].id if more and page else None)
