"""What the alerts say about a report: which alert it answers, and whether it lies inside the
area of an alert in force.

An alert is in force while its current version is released (or finished delivering), is an
Actual Alert or Update (a Cancel ends it; exercises never raise a real report's priority), and
no info block has expired. The list is read at most every few seconds, not per report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.alert import AlertContent, Area, MsgType, Status
from approvals.workflow import VersionState
from broadcaster.storage.schema import alert_versions, alerts, deliveries
from channels.geo import in_areas

__all__ = ["ActiveAlert", "AlertContext"]

_REFRESH = timedelta(seconds=5)
_WENT_OUT = (VersionState.released, VersionState.completed, VersionState.partially_failed)


@dataclass(frozen=True)
class ActiveAlert:
    alert_id: int
    areas: tuple[Area, ...]
    expires: datetime | None


class AlertContext:
    def __init__(self) -> None:
        self._active: list[ActiveAlert] = []
        self._read_at: datetime | None = None

    def invalidate(self) -> None:
        self._read_at = None

    async def active(self, connection: AsyncConnection, now: datetime) -> list[ActiveAlert]:
        if self._read_at is None or now - self._read_at > _REFRESH or now < self._read_at:
            self._active = await _load_active(connection)
            self._read_at = now
        return [alert for alert in self._active if alert.expires is None or alert.expires > now]

    @staticmethod
    async def answered(
        connection: AsyncConnection, replies: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], int]:
        """(channel, post id) -> the alert whose delivery made that post."""
        by_channel: dict[str, set[str]] = {}
        for channel, post_id in replies:
            by_channel.setdefault(channel, set()).add(post_id)
        if not by_channel:
            return {}
        if connection.dialect.name == "postgresql":
            # Two arrays: the same statement for any number of posts (see triage.batch_sql).
            pairs = [(channel, post) for channel, posts in by_channel.items() for post in posts]
            rows = await connection.execute(
                _ANSWERED_PG,
                {"channels": [pair[0] for pair in pairs], "posts": [pair[1] for pair in pairs]},
            )
            return {(row.channel, row.external_id): row.alert_id for row in rows}
        rows = await connection.execute(  # one query for every channel: see batch_sql.existing
            select(deliveries.c.channel, deliveries.c.external_id, alert_versions.c.alert_id)
            .join(alert_versions, alert_versions.c.id == deliveries.c.version_id)
            .where(
                or_(
                    *(
                        and_(
                            deliveries.c.channel == channel,
                            deliveries.c.external_id.in_(sorted(post_ids)),
                        )
                        for channel, post_ids in by_channel.items()
                    )
                )
            )
        )
        return {(row.channel, row.external_id): row.alert_id for row in rows}


_ANSWERED_PG = text(
    "SELECT deliveries.channel, deliveries.external_id, alert_versions.alert_id"
    " FROM deliveries"
    " JOIN unnest(CAST(:channels AS TEXT[]), CAST(:posts AS TEXT[])) AS post(channel, id)"
    " ON deliveries.channel = post.channel AND deliveries.external_id = post.id"
    " JOIN alert_versions ON alert_versions.id = deliveries.version_id"
)


def inside(
    alerts_in_force: Sequence[ActiveAlert], lat: float | None, lon: float | None
) -> int | None:
    if lat is None or lon is None:
        return None
    for alert in alerts_in_force:
        if in_areas(lat, lon, alert.areas):
            return alert.alert_id
    return None


async def _load_active(connection: AsyncConnection) -> list[ActiveAlert]:
    rows = await connection.execute(
        select(alert_versions.c.alert_id, alert_versions.c.content)
        .join(alerts, and_(alerts.c.current_version_id == alert_versions.c.id))
        .where(
            alert_versions.c.state.in_([state.value for state in _WENT_OUT]),
            alert_versions.c.status == Status.actual.value,
            alert_versions.c.msg_type != MsgType.cancel.value,
        )
    )
    found: list[ActiveAlert] = []
    for row in rows:
        content = AlertContent.model_validate(row.content)
        expiries = [info.expires for info in content.infos if info.expires is not None]
        found.append(
            ActiveAlert(
                row.alert_id,
                tuple(area for info in content.infos for area in info.areas),
                min(expiries) if expiries else None,
            )
        )
    return found
