"""Privacy: reports are kept `triage.retention_days`, then deleted with their replies, and each
purge is written to the audit log (how many, received before when; never what they said).

Open reports are purged too: retention is a promise to the public, and a report weeks old is
no longer a call for help. Incidents left with no reports go with them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster import audit
from broadcaster.storage.schema import incidents, report_replies, report_views, reports
from broadcaster.triage.metrics import TriageMetrics

__all__ = ["purge_expired"]

log = logging.getLogger(__name__)
_CHUNK: Final = 2000


async def purge_expired(
    engine: AsyncEngine,
    retention_days: int,
    metrics: TriageMetrics | None,
    clock: Callable[[], datetime],
    *,
    actor: str = "system",
) -> int:
    """Delete reports received before now - retention; how many were deleted."""
    now = clock()
    cutoff = now - timedelta(days=retention_days)
    total = incidents_total = 0
    while True:
        async with engine.begin() as connection:
            ids = [
                row.id
                for row in await connection.execute(
                    select(reports.c.id).where(reports.c.received_at < cutoff).limit(_CHUNK)
                )
            ]
            if not ids:
                break
            await connection.execute(
                update(reports).where(reports.c.duplicate_of.in_(ids)).values(duplicate_of=None)
            )
            await connection.execute(delete(report_views).where(report_views.c.report_id.in_(ids)))
            await connection.execute(
                delete(report_replies).where(report_replies.c.report_id.in_(ids))
            )
            await connection.execute(delete(reports).where(reports.c.id.in_(ids)))
            total += len(ids)
    async with engine.begin() as connection:
        emptied = await connection.execute(
            delete(incidents).where(
                ~exists().where(reports.c.incident_id == incidents.c.id),
                incidents.c.created_at < cutoff,
            )
        )
        incidents_total = emptied.rowcount or 0
        if total or incidents_total:
            await audit.append(
                connection,
                audit.AuditEntry(
                    actor=actor,
                    action="report.purge",
                    subject="reports",
                    details={
                        "reports": total,
                        "incidents": incidents_total,
                        "received_before": cutoff.isoformat(),
                        "retention_days": retention_days,
                    },
                ),
                at=now,
            )
    if total:
        log.info("triage: purged %d reports older than %d days", total, retention_days)
        if metrics is not None:
            metrics.purged.inc(total)
    return total
