"""Writing a batch of new reports: dedupe, cluster, score and store, in one transaction.

Per batch, not per report: one query finds the messages we already have (a replayed webhook, a
re-polled mention), one reads the reporters' history, one finds the alerts they answer; new
incidents, reports and incident counts are each one multi-row statement. That is what lets a
flood of thousands of reports a second through on one SQLite file.

Idempotency rests on the unique (source, external_id) key: the lookup skips what is stored,
and the insert ignores conflicts, so two processes racing on the same message store it once.

Reports already stored are re-scored only when their incident's similar-reports points change
(scoring.similar_points: at 2, 4, 8 and 16 reports with the shipped rules), so a flood of a
thousand similar reports costs four small updates, not a thousand. The "N similar reports" a
responder reads is filled in from the incident's count when the report is read.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from broadcaster.storage.schema import incidents, reports
from broadcaster.storage.sql import any_of, none_of
from broadcaster.triage import batch_sql
from broadcaster.triage.clustering import Cluster, ClusterIndex
from broadcaster.triage.context import AlertContext, inside
from broadcaster.triage.live import LiveReport
from broadcaster.triage.normalise import NewReport, Normaliser
from broadcaster.triage.rules import TriageRules
from broadcaster.triage.scoring import (
    SIMILAR,
    Reason,
    ReporterHistory,
    ScoreContext,
    priority_of,
    score,
    similar_points,
    similar_reason,
)
from broadcaster.triage.states import OPEN, IncidentState, ReportState
from broadcaster.triage.views import ReportOut, report_out

__all__ = ["Ingested", "Pipeline", "ReportWriter"]

log = logging.getLogger(__name__)
_TITLE = 120


@dataclass(frozen=True)
class Ingested:
    report_id: int | None
    created: bool  # False: we already had this message


class ReportWriter(Protocol):
    """What the ingestion queue (ingest.Ingestor) and the sweeps call: a Pipeline in this
    process, or writer_process.WriterProcess, which runs a Pipeline in a process of its own."""

    async def warm(self, now: datetime) -> None: ...
    def invalidate(self) -> None: ...
    def hold_connection(self) -> None: ...
    async def release(self) -> None: ...
    async def write(
        self, batch: Sequence[NewReport], now: datetime, *, show: bool = True
    ) -> tuple[list[Ingested], Sequence[LiveReport]]: ...
    def prune(self, now: datetime) -> int: ...


class Pipeline:
    def __init__(
        self,
        engine: AsyncEngine,
        rules: TriageRules,
        normaliser: Normaliser,
        context: AlertContext,
    ) -> None:
        self.engine = engine
        self.rules = rules
        self.normaliser = normaliser
        self.context = context
        clustering = rules.clustering
        self.index = ClusterIndex(
            clustering.similarity,
            timedelta(minutes=clustering.window_minutes),
            clustering.max_distance_km,
        )
        self._dirty = True  # rebuild the index from the database before the first batch
        self._hold = False
        self._held: AsyncConnection | None = None

    def hold_connection(self) -> None:
        """Keep one connection for the batches (PostgreSQL; called by the ingestion writer).

        Taking one from the pool for each batch costs three round trips for the pool's
        liveness check (BEGIN, a ping, ROLLBACK), and the writer waits behind the web requests
        at each. A held connection that breaks fails its batch, which is retried on a fresh
        one (the batch stays queued). SQLite keeps taking it per batch: it has one connection
        per process, which the rest of the service shares.
        """
        self._hold = self.engine.dialect.name == "postgresql"

    async def release(self) -> None:
        """Give the held connection back to the pool (when the writer stops)."""
        held, self._held = self._held, None
        if held is not None:
            await held.close()

    @contextlib.asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        if not self._hold:
            async with self.engine.begin() as connection:
                yield connection
            return
        if self._held is None:
            self._held = await self.engine.connect()
        try:
            async with self._held.begin():
                yield self._held
        except BaseException:
            # It may be broken: discard it rather than hand it back to the pool.
            held, self._held = self._held, None
            if held is not None:
                with contextlib.suppress(Exception):
                    await held.invalidate()
            raise

    async def warm(self, now: datetime) -> None:
        """Build the cluster index now (at start), not on the first report."""
        async with self.engine.begin() as connection:
            await self._rebuild(connection, now)

    def invalidate(self) -> None:
        """The index may disagree with the database (a failed batch): rebuild it next time."""
        self._dirty = True

    async def write(
        self, batch: Sequence[NewReport], now: datetime, *, show: bool = True
    ) -> tuple[list[Ingested], list[ReportOut]]:
        """Store what is new in `batch`; a result per item, and (when `show`: someone watches
        the live queue) the reports new or changed."""
        unique: dict[tuple[str, str], NewReport] = {}
        for item in batch:
            unique.setdefault(item.key, item)
        stored: dict[tuple[str, str], int] = {}
        changed: list[ReportOut] = []
        try:
            async with self._begin() as connection:
                if self._dirty:
                    await self._rebuild(connection, now)
                existing = await batch_sql.existing(connection, list(unique))
                fresh = sorted(
                    (report for key, report in unique.items() if key not in existing),
                    key=lambda report: report.received_at,
                )
                if fresh:
                    stored, changed = await self._store(connection, fresh, now, show)
        except BaseException:
            self._dirty = True  # the index already holds what the database just refused
            raise
        if len(stored) < len(unique) - len(existing):
            # Another process stored some of these between our lookup and insert.
            self._dirty = True
        results: list[Ingested] = []
        first_seen: set[tuple[str, str]] = set()
        for item in batch:
            if item.key in existing:
                results.append(Ingested(existing[item.key], False))
            elif item.key in stored:
                results.append(Ingested(stored[item.key], item.key not in first_seen))
                first_seen.add(item.key)
            else:
                results.append(Ingested(None, False))
        return results, changed

    # --- one batch -----------------------------------------------------------------------------

    async def _store(
        self, connection: AsyncConnection, fresh: list[NewReport], now: datetime, show: bool
    ) -> tuple[dict[tuple[str, str], int], list[ReportOut]]:
        in_force = await self.context.active(connection, now)
        active_ids = {alert.alert_id for alert in in_force}
        answered = await AlertContext.answered(
            connection, [(r.source, r.in_reply_to) for r in fresh if r.in_reply_to]
        )
        history = await batch_sql.history(
            connection, {r.author_pseudonym for r in fresh if r.author_pseudonym}, now
        )

        # Cluster: every report joins the most similar open cluster, or starts one.
        plan: list[tuple[NewReport, Cluster]] = []
        size_before: dict[int, int] = {}
        for report in fresh:
            cluster = self.index.match(
                report.words, report.latitude, report.longitude, report.received_at
            )
            if cluster is None:
                cluster = self.index.new_cluster(
                    report.words, report.latitude, report.longitude, report.received_at
                )
                size_before[cluster.key] = 0
            else:
                size_before.setdefault(cluster.key, cluster.size)
                cluster.size += 1
                cluster.last_at = max(cluster.last_at, report.received_at)
            plan.append((report, cluster))
        clusters = {cluster.key: cluster for _, cluster in plan}
        await self._create_incidents(connection, plan, clusters.values(), now)

        # Score, with each incident's size after this batch.
        rows: list[dict[str, Any]] = []
        burst: dict[str, int] = {}
        for report, cluster in plan:
            pseudonym = report.author_pseudonym
            past = history.get(pseudonym, ReporterHistory()) if pseudonym else ReporterHistory()
            if pseudonym:
                past = ReporterHistory(
                    past.misinformation, past.resolved, past.last_hour + burst.get(pseudonym, 0)
                )
                burst[pseudonym] = burst.get(pseudonym, 0) + 1
            alert_id = answered.get((report.source, report.in_reply_to or ""))
            context = ScoreContext(
                answers_alert=alert_id if alert_id in active_ids else None,
                inside_alert=inside(in_force, report.latitude, report.longitude),
                incident_size=cluster.size,
                reporter=past,
            )
            priority, reasons = score(
                report.matches, context, self.rules.scoring, self.rules.categories
            )
            cluster.priority = max(cluster.priority, priority)
            rows.append(_row(report, cluster, alert_id, priority, reasons, now))

        inserted = await batch_sql.insert_reports(connection, rows)
        for (report, cluster), row in zip(plan, rows, strict=True):
            report_id = inserted.get(report.key)
            row["id"] = report_id
            row["incident_size"] = cluster.size if cluster.incident_id is not None else None
            if cluster.incident_id is None and cluster.first_report_id is None:
                cluster.first_report_id = report_id
        await self._update_incidents(connection, clusters.values(), now)
        changed = [report_out(row, {}) for row in rows if row["id"] is not None] if show else []
        rescored = await self._rescore_grown(connection, clusters.values(), size_before, inserted)
        if show:
            names = await batch_sql.usernames(connection, {row["assigned_to"] for row in rescored})
            changed += [report_out(row, names) for row in rescored]
        return inserted, changed

    async def _create_incidents(
        self,
        connection: AsyncConnection,
        plan: Sequence[tuple[NewReport, Cluster]],
        clusters: Iterable[Cluster],
        now: datetime,
    ) -> None:
        """An incident for every cluster that just reached two reports."""
        forming = [c for c in clusters if c.size >= 2 and c.incident_id is None]
        if not forming:
            return
        first_of: dict[int, NewReport] = {}
        for report, cluster in plan:
            first_of.setdefault(cluster.key, report)
        values = []
        for cluster in forming:
            first = first_of[cluster.key]
            title = first.text if len(first.text) <= _TITLE else first.text[: _TITLE - 1] + "…"
            values.append(
                {
                    "title": title or "(no text)",
                    "state": IncidentState.open.value,
                    "report_count": cluster.size,
                    "priority": 0.0,
                    "latitude": cluster.latitude,
                    "longitude": cluster.longitude,
                    "place": first.place,
                    "misinformation": False,
                    "created_at": now,
                    "updated_at": now,
                    "last_report_at": cluster.last_at,
                }
            )
        result = await connection.execute(
            incidents.insert().returning(incidents.c.id, sort_by_parameter_order=True), values
        )
        for cluster, incident_id in zip(forming, result.scalars().all(), strict=True):
            self.index.set_incident(cluster, incident_id)
        # The report that was alone in its cluster until now belongs to the incident too.
        earlier = [
            {"b_id": c.first_report_id, "b_incident": c.incident_id}
            for c in forming
            if c.first_report_id is not None
        ]
        if earlier:
            await connection.execute(
                update(reports)
                .where(reports.c.id == bindparam("b_id"))
                .values(incident_id=bindparam("b_incident")),
                earlier,
            )
        for cluster in forming:
            cluster.first_report_id = None

    async def _update_incidents(
        self, connection: AsyncConnection, clusters: Iterable[Cluster], now: datetime
    ) -> None:
        values = [
            {
                "b_id": cluster.incident_id,
                "b_count": cluster.size,
                "b_priority": cluster.priority,
                "b_last": cluster.last_at,
            }
            for cluster in clusters
            if cluster.incident_id is not None
        ]
        if values:
            await connection.execute(
                update(incidents)
                .where(incidents.c.id == bindparam("b_id"))
                .values(
                    report_count=bindparam("b_count"),
                    priority=bindparam("b_priority"),
                    last_report_at=bindparam("b_last"),
                    updated_at=now,
                ),
                values,
            )

    async def _rescore_grown(
        self,
        connection: AsyncConnection,
        clusters: Iterable[Cluster],
        size_before: dict[int, int],
        inserted: dict[tuple[str, str], int],
    ) -> list[dict[str, Any]]:
        """Re-score earlier open reports of incidents whose similar-reports points changed;
        their rows as they are now."""
        scoring = self.rules.scoring
        grown = {
            cluster.incident_id: cluster
            for cluster in clusters
            if cluster.incident_id is not None
            and similar_points(max(1, size_before.get(cluster.key, 0)), scoring)
            != similar_points(cluster.size, scoring)
        }
        if not grown:
            return []
        new_ids = set(inserted.values())
        rows = (
            (
                await connection.execute(
                    select(reports).where(
                        any_of(connection, reports.c.incident_id, list(grown)),
                        reports.c.state.in_([state.value for state in OPEN]),
                        none_of(connection, reports.c.id, new_ids),
                    )
                )
            )
            .mappings()
            .all()
        )
        updates: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        for row in rows:
            if row["id"] in new_ids:
                continue
            cluster = grown[row["incident_id"]]
            reasons = [
                Reason.from_dict(reason)
                for reason in row["priority_reasons"] or []
                if reason.get("code") != SIMILAR
            ]
            similar = similar_reason(cluster.size, self.rules.scoring)
            if similar is not None:
                reasons.append(similar)
            reasons.sort(key=lambda reason: reason.points, reverse=True)
            priority = priority_of(reasons)
            cluster.priority = max(cluster.priority, priority)
            as_dicts = [reason.as_dict() for reason in reasons]
            updates.append({"b_id": row["id"], "b_priority": priority, "b_reasons": as_dicts})
            changed.append(
                {
                    **row,
                    "priority": priority,
                    "priority_reasons": as_dicts,
                    "incident_size": cluster.size,
                }
            )
        if updates:
            await connection.execute(
                update(reports)
                .where(reports.c.id == bindparam("b_id"))
                .values(priority=bindparam("b_priority"), priority_reasons=bindparam("b_reasons")),
                updates,
            )
            await connection.execute(
                update(incidents)
                .where(incidents.c.id == bindparam("b_id"))
                .values(priority=bindparam("b_priority")),
                [
                    {"b_id": incident_id, "b_priority": cluster.priority}
                    for incident_id, cluster in grown.items()
                ],
            )
        return changed

    # --- the index -----------------------------------------------------------------------------

    async def _rebuild(self, connection: AsyncConnection, now: datetime) -> None:
        """The cluster index from the reports of the last window (at start, or after a failure)."""
        self.index.clear()
        since = now - self.index.window
        rows = await connection.execute(
            select(
                reports.c.id,
                reports.c.text,
                reports.c.place,
                reports.c.latitude,
                reports.c.longitude,
                reports.c.received_at,
                reports.c.incident_id,
                reports.c.priority,
            )
            .where(reports.c.received_at >= since)
            .order_by(reports.c.received_at, reports.c.id)
        )
        found = list(rows)
        counts = {
            row.id: (row.report_count, row.priority)
            for row in await connection.execute(
                select(incidents.c.id, incidents.c.report_count, incidents.c.priority).where(
                    incidents.c.id.in_({row.incident_id for row in found if row.incident_id})
                )
            )
        }
        for row in found:
            cluster = self.index.by_incident.get(row.incident_id) if row.incident_id else None
            if cluster is not None:
                cluster.last_at = max(cluster.last_at, row.received_at)
                continue
            words = self.normaliser.words_of(row.text, row.place)
            cluster = self.index.new_cluster(words, row.latitude, row.longitude, row.received_at)
            cluster.priority = row.priority
            if row.incident_id is None:
                cluster.first_report_id = row.id
            elif words:
                self.index.set_incident(cluster, row.incident_id)
                cluster.size, cluster.priority = counts.get(row.incident_id, (1, row.priority))
        self._dirty = False
        log.info("triage: cluster index rebuilt from %d recent reports", len(found))

    def prune(self, now: datetime) -> int:
        return self.index.prune(now)


# --- statements ------------------------------------------------------------------------------


def _row(
    report: NewReport,
    cluster: Cluster,
    alert_id: int | None,
    priority: float,
    reasons: Sequence[Reason],
    now: datetime,
) -> dict[str, Any]:
    return {
        "source": report.source,
        "target": report.target,
        "external_id": report.external_id,
        "url": report.url,
        "author_name": report.author_name,
        "author_pseudonym": report.author_pseudonym,
        "contact": report.contact,
        "text": report.text,
        "language": report.language,
        "latitude": report.latitude,
        "longitude": report.longitude,
        "place": report.place,
        "media": list(report.media) or None,
        "in_reply_to": report.in_reply_to,
        "alert_id": alert_id,
        "incident_id": cluster.incident_id,
        "state": ReportState.new.value,
        "priority": priority,
        "priority_reasons": [reason.as_dict() for reason in reasons],
        "received_at": report.received_at,
        "updated_at": now,
    }
