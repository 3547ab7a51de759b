"""High-priority reports nobody acknowledged in time go to the on-call target.

A sweep (every few seconds in `serve`) claims due reports by setting `escalated_at` where it is
still empty, so two processes never escalate the same report twice, then sends one message per
report through the on-call target's adapter. While the message is on its way the report says
so (`escalation_error` = SENDING); a claim still saying so minutes later belonged to a process
that stopped mid-way, and the next sweep takes it over, so a crash cannot swallow a page.

A transient failure (rate limit, outage) gives the claim back for the next sweep; any other
failure is kept on the report (`escalation_error`), logged and audited, because retrying a
refused message every few seconds helps nobody.

Time comes from the injected clock, so tests move it forward instead of sleeping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster import audit
from broadcaster.settings import TriageSettings
from broadcaster.storage.schema import reports
from broadcaster.targets import Directory
from broadcaster.triage import store
from broadcaster.triage.live import LiveHub
from broadcaster.triage.metrics import TriageMetrics
from broadcaster.triage.rules import TriageRules
from broadcaster.triage.states import ReportState
from channels.base import ChannelError, Post, TransientError

__all__ = ["Escalator", "escalation_text"]

log = logging.getLogger(__name__)
_PER_SWEEP: Final = 50
SENDING: Final = "sending to the on-call target"
_CLAIM_LAPSES: Final = timedelta(minutes=2)  # far longer than one send may take
_QUOTE: Final = 120


def escalation_text(row: dict[str, Any], minutes: float, public_url: str | None) -> str:
    reasons = "; ".join(reason["text"] for reason in (row.get("priority_reasons") or [])[:3])
    quote = row["text"] if len(row["text"]) <= _QUOTE else row["text"][: _QUOTE - 1] + "…"
    link = f" {public_url.rstrip('/')}/api/v1/reports/{row['id']}" if public_url else ""
    return (
        f"URGENT: report #{row['id']} (priority {row['priority']:.0f}, {row['source']}) has not "
        f'been acknowledged for {minutes:g} min. {reasons}. "{quote}"{link}'
    )


class Escalator:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: TriageSettings,
        rules: TriageRules,
        directory: Directory,
        hub: LiveHub,
        metrics: TriageMetrics,
        clock: Callable[[], datetime],
        public_url: str | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.rules = rules
        self.directory = directory
        self.hub = hub
        self.metrics = metrics
        self.clock = clock
        self.public_url = public_url

    @property
    def enabled(self) -> bool:
        return bool(self.settings.escalation_target)

    async def sweep(self) -> int:
        """Escalate every due report; how many messages went out."""
        target = self.settings.escalation_target
        if not target:
            return 0
        now = self.clock()
        due = now - timedelta(minutes=self.settings.escalation_minutes)
        unclaimed = or_(
            reports.c.escalated_at.is_(None),
            and_(
                reports.c.escalation_error == SENDING,
                reports.c.escalated_at < now - _CLAIM_LAPSES,
            ),
        )
        async with self.engine.begin() as connection:
            rows = (
                (
                    await connection.execute(
                        select(reports)
                        .where(
                            reports.c.state == ReportState.new.value,
                            reports.c.priority >= self.rules.scoring.high_priority,
                            unclaimed,
                            reports.c.received_at <= due,
                        )
                        .order_by(reports.c.priority.desc(), reports.c.received_at)
                        .limit(_PER_SWEEP)
                    )
                )
                .mappings()
                .all()
            )
            claimed: list[dict[str, Any]] = []
            for row in rows:
                result = await connection.execute(
                    update(reports)
                    .where(reports.c.id == row["id"], unclaimed)
                    .values(escalated_at=now, escalation_error=SENDING)
                )
                if result.rowcount == 1:
                    claimed.append(dict(row))
        sent = 0
        for report in claimed:
            sent += await self._send(report, target, now)
        if claimed:
            async with self.engine.connect() as connection:
                found = await connection.execute(
                    store.report_query().where(reports.c.id.in_([row["id"] for row in claimed]))
                )
                changed = await store.outs(connection, found.mappings().all())
            self.hub.publish_reports(changed)
        return sent

    async def _send(self, row: dict[str, Any], target: str, now: datetime) -> int:
        text = escalation_text(row, self.settings.escalation_minutes, self.public_url)
        error: ChannelError | None = None
        external_id: str | None = None
        if target not in self.directory.targets:
            error = ChannelError(
                f"triage.escalation_target {target!r} is not a configured target; name one of "
                f"the [[targets]]"
            )
        else:
            adapter = self.directory.adapter(target)
            recipient = self.settings.escalation_recipient if adapter.needs_recipient else None
            try:
                receipt = await adapter.publish(
                    Post(text=text, length=len(text)),
                    f"escalation:{row['id']}",
                    recipient=recipient,
                )
                external_id = receipt.external_id
            except ChannelError as failure:
                error = failure
        async with self.engine.begin() as connection:
            if error is None:
                await connection.execute(
                    update(reports).where(reports.c.id == row["id"]).values(escalation_error=None)
                )
                outcome, details = "sent", {"target": target, "external_id": external_id}
            elif isinstance(error, TransientError):
                # Give the claim back: the next sweep tries again.
                await connection.execute(
                    update(reports)
                    .where(reports.c.id == row["id"])
                    .values(escalated_at=None, escalation_error=None)
                )
                outcome, details = "retry", {"target": target, "error": error.message}
            else:
                await connection.execute(
                    update(reports)
                    .where(reports.c.id == row["id"])
                    .values(escalation_error=error.message)
                )
                outcome, details = "failed", {"target": target, "error": error.message}
            await audit.append(
                connection,
                audit.AuditEntry(
                    actor="system",
                    action="report.escalate" if error is None else "report.escalation_failed",
                    subject=f"report:{row['id']}",
                    details=details,
                ),
                at=now,
            )
        self.metrics.escalations.labels(outcome).inc()
        if error is not None:
            log.error(
                "triage: escalating report %s to %s failed (%s): %s",
                row["id"],
                target,
                outcome,
                error.message,
            )
        return 1 if error is None else 0
