"""Reading the queue: reports most urgent first, one report with its replies and viewers,
incidents, and an alert's areas for the area filter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.alert import AlertContent, Area
from broadcaster.storage.schema import (
    alert_versions,
    alerts,
    incidents,
    report_replies,
    report_views,
    reports,
    users,
)
from broadcaster.triage.filters import ReportFilter
from broadcaster.triage.states import ReplyState
from broadcaster.triage.views import (
    HeldReplyOut,
    IncidentOut,
    ReplyOut,
    ReportOut,
    ViewerOut,
    incident_out,
    report_out,
)

__all__ = [
    "VIEWING_FRESH",
    "alert_areas",
    "export_reports",
    "get_incident",
    "get_report",
    "held_replies",
    "list_incidents",
    "list_reports",
    "outs",
    "report_query",
    "report_row",
    "usernames",
    "viewers",
]

# Someone is "viewing" a report while their console says so at least this often.
VIEWING_FRESH = timedelta(seconds=60)
_SCAN_CHUNK = 500


def report_query() -> Select[Any]:
    """Reports with their incident's size (`incident_size`)."""
    return select(reports, incidents.c.report_count.label("incident_size")).select_from(
        reports.outerjoin(incidents, incidents.c.id == reports.c.incident_id)
    )


def queue_order(query: Select[Any]) -> Select[Any]:
    """Most urgent first; among equals the one waiting longest."""
    return query.order_by(reports.c.priority.desc(), reports.c.received_at, reports.c.id)


async def list_reports(
    connection: AsyncConnection, wanted: ReportFilter, *, limit: int, offset: int = 0
) -> list[ReportOut]:
    query = queue_order(report_query().where(*wanted.where()))
    if wanted.area is None:
        rows = (await connection.execute(query.limit(limit).offset(offset))).mappings().all()
        return await outs(connection, rows)
    # The area test is exact only in Python: read in chunks until the page is full.
    kept: list[ReportOut] = []
    skipped, position = 0, 0
    while len(kept) < limit:
        rows = (
            (await connection.execute(query.limit(_SCAN_CHUNK).offset(position))).mappings().all()
        )
        if not rows:
            break
        position += len(rows)
        for report in wanted.keep(await outs(connection, rows)):
            if skipped < offset:
                skipped += 1
            elif len(kept) < limit:
                kept.append(report)
    return kept


async def report_row(
    connection: AsyncConnection, report_id: int, *, lock: bool = False
) -> dict[str, Any] | None:
    # Locking reads the report alone: FOR UPDATE over an outer join is refused by PostgreSQL.
    query = (select(reports).with_for_update() if lock else report_query()).where(
        reports.c.id == report_id
    )
    row = (await connection.execute(query)).mappings().first()
    return dict(row) if row is not None else None


async def get_report(
    connection: AsyncConnection, report_id: int, now: datetime
) -> ReportOut | None:
    row = await report_row(connection, report_id)
    if row is None:
        return None
    [out] = await outs(connection, [row])
    out.viewers = await viewers(connection, report_id, now)
    out.replies = await _replies(connection, report_id)
    return out


async def viewers(connection: AsyncConnection, report_id: int, now: datetime) -> list[ViewerOut]:
    rows = await connection.execute(
        select(users.c.username, report_views.c.seen_at)
        .join(users, users.c.id == report_views.c.user_id)
        .where(
            report_views.c.report_id == report_id,
            report_views.c.seen_at >= now - VIEWING_FRESH,
        )
        .order_by(report_views.c.seen_at.desc())
    )
    return [ViewerOut(username=row.username, seen_at=row.seen_at) for row in rows]


async def _replies(connection: AsyncConnection, report_id: int) -> list[ReplyOut]:
    rows = (
        (
            await connection.execute(
                select(report_replies)
                .where(report_replies.c.report_id == report_id)
                .order_by(report_replies.c.id)
            )
        )
        .mappings()
        .all()
    )
    names = await usernames(
        connection, {row["author_id"] for row in rows} | {row["approved_by"] for row in rows}
    )
    return [
        ReplyOut(
            id=row["id"],
            author=names.get(row["author_id"]),
            text=row["text"],
            canned=row["canned"],
            language=row["language"],
            state=row["state"],
            approved_by=names.get(row["approved_by"]) if row["approved_by"] else None,
            external_id=row["external_id"],
            error=row["error"],
            created_at=row["created_at"],
            sent_at=row["sent_at"],
        )
        for row in rows
    ]


async def held_replies(
    connection: AsyncConnection, *, limit: int
) -> tuple[int, list[HeldReplyOut]]:
    """Free-text replies waiting for a second responder: how many, and the longest-waiting
    `limit` of them (whatever their report's state: a closed report's held reply still waits)."""
    waiting = report_replies.c.state == ReplyState.pending_approval.value
    total = int(
        await connection.scalar(select(func.count()).select_from(report_replies).where(waiting))
        or 0
    )
    if total == 0:
        return 0, []
    rows = (
        await connection.execute(
            select(
                report_replies.c.id,
                report_replies.c.report_id,
                report_replies.c.created_at,
                users.c.username,
            )
            .join(users, users.c.id == report_replies.c.author_id)
            .where(waiting)
            .order_by(report_replies.c.created_at, report_replies.c.id)
            .limit(limit)
        )
    ).all()
    return total, [
        HeldReplyOut(
            id=row.id, report_id=row.report_id, author=row.username, created_at=row.created_at
        )
        for row in rows
    ]


async def list_incidents(
    connection: AsyncConnection,
    *,
    misinformation: bool | None,
    min_reports: int,
    state: str | None,
    limit: int,
    offset: int,
) -> list[IncidentOut]:
    query = select(incidents).where(incidents.c.report_count >= min_reports)
    if misinformation is not None:
        query = query.where(incidents.c.misinformation == misinformation)
    if state is not None:
        query = query.where(incidents.c.state == state)
    query = query.order_by(
        incidents.c.priority.desc(), incidents.c.report_count.desc(), incidents.c.id.desc()
    )
    rows = (await connection.execute(query.limit(limit).offset(offset))).mappings().all()
    return [incident_out(row) for row in rows]


async def get_incident(connection: AsyncConnection, incident_id: int) -> IncidentOut | None:
    row = (
        (await connection.execute(select(incidents).where(incidents.c.id == incident_id)))
        .mappings()
        .first()
    )
    return incident_out(row) if row is not None else None


async def alert_areas(connection: AsyncConnection, alert_id: int) -> tuple[Area, ...] | None:
    """The areas of an alert's current version; None when there is no such alert."""
    row = (
        await connection.execute(
            select(alert_versions.c.content)
            .join(alerts, alerts.c.current_version_id == alert_versions.c.id)
            .where(alerts.c.id == alert_id)
        )
    ).first()
    if row is None:
        return None
    content = AlertContent.model_validate(row.content)
    return tuple(area for info in content.infos for area in info.areas)


async def usernames(connection: AsyncConnection, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    rows = await connection.execute(
        select(users.c.id, users.c.username).where(users.c.id.in_(wanted))
    )
    return {row.id: row.username for row in rows}


async def outs(connection: AsyncConnection, rows: Sequence[Any]) -> list[ReportOut]:
    names = await usernames(connection, (row["assigned_to"] for row in rows))
    return [report_out(row, names) for row in rows]


async def export_reports(
    connection: AsyncConnection, wanted: ReportFilter, *, limit: int
) -> AsyncIterator[ReportOut]:
    """Every report the filter keeps, oldest first, page by page (never all in memory)."""
    last, sent = 0, 0
    while sent < limit:
        rows = (
            (
                await connection.execute(
                    report_query()
                    .where(*wanted.where(), reports.c.id > last)
                    .order_by(reports.c.id)
                    .limit(_SCAN_CHUNK)
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            return
        last = rows[-1]["id"]
        for report in wanted.keep(await outs(connection, rows)):
            if sent >= limit:
                return
            yield report
            sent += 1
