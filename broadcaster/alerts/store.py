"""Alert versions in the database, as `approvals.lifecycle.VersionRecord`s and back.

Loading a version for an action locks its row (`FOR UPDATE` on PostgreSQL; SQLite's write lock
is already held from BEGIN IMMEDIATE), so fifty concurrent approvals are applied one after
another and exactly one of them completes the quorum.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.alert import AlertContent, Mode
from approvals.lifecycle import VersionRecord
from approvals.policy import Approval
from approvals.workflow import VersionState
from broadcaster.storage.schema import alert_versions, alerts, approvals


@dataclass(frozen=True)
class StoredVersion:
    id: int
    alert_id: int
    number: int
    record: VersionRecord
    identifier: str | None
    sender: str | None
    sent_at: datetime | None


@dataclass(frozen=True)
class StoredAlert:
    id: int
    mode: Mode
    created_by: int
    created_at: datetime
    current_version_id: int | None


async def create_alert(
    connection: AsyncConnection, mode: Mode, created_by: int, now: datetime
) -> int:
    result = await connection.execute(
        alerts.insert()
        .values(mode=mode.value, created_by=created_by, created_at=now)
        .returning(alerts.c.id)
    )
    return int(result.scalar_one())


async def get_alert(connection: AsyncConnection, alert_id: int) -> StoredAlert | None:
    row = (await connection.execute(select(alerts).where(alerts.c.id == alert_id))).first()
    if row is None:
        return None
    return StoredAlert(
        id=row.id,
        mode=Mode(row.mode),
        created_by=row.created_by,
        created_at=row.created_at,
        current_version_id=row.current_version_id,
    )


def _version_values(record: VersionRecord) -> dict[str, Any]:
    return {
        "state": record.state.value,
        "status": record.content.status.value,
        "msg_type": record.content.msg_type.value,
        "content": record.content.model_dump(mode="json"),
        "content_hash": record.content_hash,
        "author_id": record.author_id,
        "authors": sorted(record.authors),
        "rule": record.rule,
        "reject_reason": record.reject_reason,
        "replaces_version_id": record.replaces,
        "replaces_went_out": record.replaces_went_out,
        "replaced_channels": sorted(record.replaced_channels)
        if record.replaced_channels is not None
        else None,
        "prewritten_hash": record.prewritten_hash,
        "cap_reference": record.cap_reference,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "submitted_at": record.submitted_at,
        "approved_at": record.approved_at,
        "released_at": record.released_at,
        "expires_at": min(
            (info.expires for info in record.content.infos if info.expires), default=None
        ),
    }


async def insert_version(connection: AsyncConnection, alert_id: int, record: VersionRecord) -> int:
    number = await connection.scalar(
        select(func.coalesce(func.max(alert_versions.c.number), 0)).where(
            alert_versions.c.alert_id == alert_id
        )
    )
    result = await connection.execute(
        alert_versions.insert()
        .values(alert_id=alert_id, number=int(number or 0) + 1, **_version_values(record))
        .returning(alert_versions.c.id)
    )
    version_id = int(result.scalar_one())
    await connection.execute(
        alerts.update().where(alerts.c.id == alert_id).values(current_version_id=version_id)
    )
    return version_id


async def save_version(
    connection: AsyncConnection,
    version_id: int,
    before: VersionRecord,
    after: VersionRecord,
    now: datetime,
    *,
    cap_identity: tuple[str, str, datetime] | None = None,
) -> None:
    """Write `after` over the stored version; record new approvals, void dropped ones."""
    values = _version_values(after)
    if cap_identity is not None:
        values["identifier"], values["sender"], values["sent_at"] = cap_identity
    await connection.execute(
        alert_versions.update().where(alert_versions.c.id == version_id).values(**values)
    )
    new = [a for a in after.approvals if a not in before.approvals]
    dropped = [a for a in before.approvals if a not in after.approvals]
    for approval in new:
        await connection.execute(
            approvals.insert().values(
                version_id=version_id,
                approver_id=approval.approver_id,
                decision="approve",
                content_hash=approval.content_hash,
                rule=approval.rule,
                second_factor_at=approval.second_factor_at,
                decided_at=approval.at,
            )
        )
    for approval in dropped:
        await connection.execute(
            approvals.update()
            .where(
                approvals.c.version_id == version_id,
                approvals.c.approver_id == approval.approver_id,
                approvals.c.decided_at == approval.at,
                approvals.c.voided_at.is_(None),
            )
            .values(voided_at=now)
        )


async def record_rejection(
    connection: AsyncConnection,
    version_id: int,
    approver_id: int,
    content_hash: str,
    rule: str | None,
    reason: str,
    now: datetime,
) -> None:
    await connection.execute(
        approvals.insert().values(
            version_id=version_id,
            approver_id=approver_id,
            decision="reject",
            content_hash=content_hash,
            rule=rule or "",
            reason=reason,
            decided_at=now,
        )
    )


async def load_version(
    connection: AsyncConnection, version_id: int, *, lock: bool = False
) -> StoredVersion | None:
    statement = select(alert_versions).where(alert_versions.c.id == version_id)
    if lock:
        statement = statement.with_for_update()
    row = (await connection.execute(statement)).first()
    if row is None:
        return None
    approval_rows = await connection.execute(
        select(approvals)
        .where(
            approvals.c.version_id == version_id,
            approvals.c.decision == "approve",
            approvals.c.voided_at.is_(None),
        )
        .order_by(approvals.c.decided_at, approvals.c.id)
    )
    record = VersionRecord(
        state=VersionState(row.state),
        content=AlertContent.model_validate(row.content),
        content_hash=row.content_hash,
        author_id=row.author_id,
        authors=frozenset(row.authors),
        created_at=row.created_at,
        updated_at=row.updated_at or row.created_at,
        approvals=tuple(
            Approval(
                approver_id=a.approver_id,
                content_hash=a.content_hash,
                at=a.decided_at,
                rule=a.rule,
                second_factor_at=a.second_factor_at,
            )
            for a in approval_rows
        ),
        rule=row.rule,
        reject_reason=row.reject_reason,
        replaces=row.replaces_version_id,
        replaces_went_out=row.replaces_went_out,
        replaced_channels=frozenset(row.replaced_channels)
        if row.replaced_channels is not None
        else None,
        prewritten_hash=row.prewritten_hash,
        submitted_at=row.submitted_at,
        approved_at=row.approved_at,
        released_at=row.released_at,
        cap_reference=row.cap_reference,
    )
    return StoredVersion(
        id=row.id,
        alert_id=row.alert_id,
        number=row.number,
        record=record,
        identifier=row.identifier,
        sender=row.sender,
        sent_at=row.sent_at,
    )


async def version_ids(connection: AsyncConnection, alert_id: int) -> list[int]:
    rows = await connection.execute(
        select(alert_versions.c.id)
        .where(alert_versions.c.alert_id == alert_id)
        .order_by(alert_versions.c.number)
    )
    return [row.id for row in rows]


async def version_number(connection: AsyncConnection, version_id: int) -> int:
    number = await connection.scalar(
        select(alert_versions.c.number).where(alert_versions.c.id == version_id)
    )
    if number is None:
        raise LookupError(f"no alert version {version_id}")
    return int(number)


async def versions_in_states(
    connection: AsyncConnection, states: tuple[VersionState, ...]
) -> list[tuple[int, int]]:
    """(version id, alert id) of every version in one of `states`."""
    rows = await connection.execute(
        select(alert_versions.c.id, alert_versions.c.alert_id).where(
            alert_versions.c.state.in_([state.value for state in states])
        )
    )
    return [(row.id, row.alert_id) for row in rows]


async def newest_released(
    connection: AsyncConnection, alert_id: int, *, lock: bool = False
) -> StoredVersion | None:
    """The alert's newest version that was released (has a CAP identity), if any."""
    version_id = await connection.scalar(
        select(alert_versions.c.id)
        .where(alert_versions.c.alert_id == alert_id, alert_versions.c.identifier.is_not(None))
        .order_by(alert_versions.c.number.desc())
        .limit(1)
    )
    if version_id is None:
        return None
    return await load_version(connection, int(version_id), lock=lock)


async def by_identifier(connection: AsyncConnection, identifier: str) -> StoredVersion | None:
    version_id = await connection.scalar(
        select(alert_versions.c.id).where(alert_versions.c.identifier == identifier)
    )
    return None if version_id is None else await load_version(connection, int(version_id))


async def current_public_versions(
    connection: AsyncConnection, statuses: tuple[str, ...], now: datetime
) -> list[StoredVersion]:
    """The newest released version of each alert with one of `statuses`, unless that version
    is a Cancel or has expired: what a feed of current alerts lists."""
    newest = (
        select(alert_versions.c.alert_id, func.max(alert_versions.c.number).label("number"))
        .where(alert_versions.c.identifier.is_not(None))
        .group_by(alert_versions.c.alert_id)
        .subquery()
    )
    rows = await connection.execute(
        select(alert_versions.c.id)
        .join(
            newest,
            (alert_versions.c.alert_id == newest.c.alert_id)
            & (alert_versions.c.number == newest.c.number),
        )
        .where(
            alert_versions.c.status.in_(statuses),
            alert_versions.c.msg_type != "Cancel",
            (alert_versions.c.expires_at.is_(None)) | (alert_versions.c.expires_at > now),
        )
        .order_by(alert_versions.c.sent_at.desc())
        .limit(500)
    )
    versions = [await load_version(connection, row.id) for row in rows]
    return [version for version in versions if version is not None]
