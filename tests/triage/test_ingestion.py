"""Ingestion on SQLite and PostgreSQL: idempotent on (source, external id), similar reports
folded into incidents, scored with what the alerts and the reporter's history say, and nothing
lost when the database is slow or failing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from sqlalchemy import select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.settings import TriageSettings
from broadcaster.storage.schema import incidents, reports
from broadcaster.triage.batch_sql import sqlite_time
from broadcaster.triage.context import AlertContext
from broadcaster.triage.ingest import IngestBusy, Ingestor, IngestSlow
from broadcaster.triage.live import LiveHub
from broadcaster.triage.metrics import TriageMetrics
from broadcaster.triage.normalise import NewReport, Normaliser, pseudonym_key
from broadcaster.triage.pipeline import Ingested, Pipeline
from broadcaster.triage.rules import load_triage_rules
from broadcaster.triage.views import ReportOut
from tests.triage.conftest import released_alert

NOW = datetime(2026, 11, 21, 20, 0, tzinfo=UTC)


@dataclass
class Parts:
    normaliser: Normaliser
    pipeline: Pipeline
    engine: AsyncEngine

    def report(self, external_id: str, text: str, **extra: object) -> NewReport:
        values: dict[str, object] = {
            "source": "x",
            "external_id": external_id,
            "text": text,
            "received_at": NOW,
            "author_id": f"author-{external_id}",
            **extra,
        }
        return self.normaliser.report(**values)  # type: ignore[arg-type]

    async def write(self, *batch: NewReport) -> tuple[list[Ingested], list[ReportOut]]:
        return await self.pipeline.write(batch, NOW)

    async def rows(self) -> list[dict[str, object]]:
        async with self.engine.connect() as connection:
            found = await connection.execute(select(reports).order_by(reports.c.id))
            return [dict(row) for row in found.mappings()]


@pytest.fixture
def parts(engine: AsyncEngine) -> Parts:
    rules = load_triage_rules(TriageSettings())
    normaliser = Normaliser(rules, pseudonym_key(SecretStr("k" * 32)))
    return Parts(normaliser, Pipeline(engine, rules, normaliser, AlertContext()), engine)


async def test_a_message_is_stored_once_however_often_it_arrives(parts: Parts) -> None:
    first = parts.report("1", "Is the shelter open?")
    same_again = parts.report("1", "Is the shelter open?")
    other_source = parts.report("1", "Is the shelter open?", source="mastodon")
    results, changed = await parts.write(first, same_again, other_source)
    assert [r.created for r in results] == [True, False, True]
    assert results[0].report_id == results[1].report_id != results[2].report_id
    replay, changed_again = await parts.write(first)
    assert replay == [Ingested(results[0].report_id, False)]
    assert changed_again == []
    assert len(await parts.rows()) == 2
    assert len(changed) == 2  # the live queue hears about each new report once


async def test_similar_reports_become_one_incident_that_counts_its_reporters(
    parts: Parts,
) -> None:
    texts = [
        "We are trapped on the roof at 12 Elm St",
        "trapped on roof Elm Street please help",
        "stuck on our roof on elm st!!",
        "atrapados en el techo, calle Elm",
        "Is the fairgrounds shelter open?",
    ]
    await parts.write(parts.report("1", texts[0]))  # alone: no incident yet
    assert (await parts.rows())[0]["incident_id"] is None
    await parts.write(*(parts.report(str(n), text) for n, text in enumerate(texts[1:], 2)))
    rows = await parts.rows()
    incident = rows[0]["incident_id"]
    assert incident is not None
    assert [row["incident_id"] for row in rows] == [incident] * 4 + [None]
    async with parts.engine.connect() as connection:
        count = await connection.scalar(
            select(incidents.c.report_count).where(incidents.c.id == incident)
        )
    assert count == 4
    # The first report now shows it is not alone (re-scored when the incident grew).
    reasons = [reason["text"] for reason in rows[0]["priority_reasons"]]  # type: ignore[attr-defined]
    assert "3 similar reports" in reasons


async def test_earlier_reports_are_rescored_as_their_incident_doubles(parts: Parts) -> None:
    text = "power lines down and sparking on Elm Street"
    await parts.write(parts.report("0", text))
    _, changed = await parts.write(parts.report("1", text))
    # The second report and the first (now "1 similar report") are both shown again.
    assert sorted(report.id for report in changed) == [1, 2]
    for n in range(2, 8):
        await parts.write(parts.report(str(n), text))
    rows = await parts.rows()
    first_reasons = [reason["text"] for reason in rows[0]["priority_reasons"]]  # type: ignore[attr-defined]
    assert "7 similar reports" in first_reasons  # eight reports: the band of 8 was reached
    assert rows[0]["priority"] == rows[-1]["priority"]


async def test_replies_to_an_alert_in_force_and_reports_inside_its_area_rank_higher(
    parts: Parts,
) -> None:
    alert_id = await released_alert(parts.engine, post_id="1900", now=NOW)
    answering = parts.report("10", "Is this still in force?", in_reply_to="1900")
    inside = parts.report("11", "trees down", latitude=38.05, longitude=-121.95)
    elsewhere = parts.report("12", "trees down", latitude=40.0, longitude=-120.0)
    await parts.write(answering, inside, elsewhere)
    rows = {row["external_id"]: row for row in await parts.rows()}
    assert rows["10"]["alert_id"] == alert_id
    texts = {
        key: [reason["text"] for reason in row["priority_reasons"]]  # type: ignore[attr-defined]
        for key, row in rows.items()
    }
    assert f"answers alert #{alert_id}, in force" in texts["10"]
    assert f"inside the area of alert #{alert_id}" in texts["11"]
    assert not any("alert" in text for text in texts["12"])


async def test_a_cancelled_or_exercise_alert_raises_no_priority(parts: Parts) -> None:
    exercise = await released_alert(parts.engine, post_id="1", status="Exercise", now=NOW)
    cancelled = await released_alert(parts.engine, post_id="2", msg_type="Cancel", now=NOW)
    await parts.write(
        parts.report("a", "is this real?", in_reply_to="1", latitude=38.05, longitude=-121.95),
        parts.report("b", "is this real?", in_reply_to="2"),
    )
    rows = await parts.rows()
    assert [row["alert_id"] for row in rows] == [exercise, cancelled]  # what they answer...
    for row in rows:  # ... but neither is in force
        assert all("alert #" not in r["text"] for r in row["priority_reasons"])  # type: ignore[attr-defined]


async def test_a_reporter_who_spread_misinformation_before_ranks_lower(parts: Parts) -> None:
    await parts.write(parts.report("1", "the dam broke!!", author_id="prankster"))
    async with parts.engine.begin() as connection:
        await connection.execute(update(reports).values(state="misinformation"))
    await parts.write(parts.report("2", "we are trapped", author_id="prankster"))
    await parts.write(parts.report("3", "we are trapped", author_id="someone-else"))
    rows = await parts.rows()
    assert rows[1]["priority"] < rows[2]["priority"]  # type: ignore[operator]
    assert "reporter sent misinformation before (1)" in [
        reason["text"]
        for reason in rows[1]["priority_reasons"]  # type: ignore[attr-defined]
    ]


async def test_a_restart_rebuilds_the_incidents_from_the_database(
    parts: Parts, engine: AsyncEngine
) -> None:
    await parts.write(parts.report("1", "gas leak smell on Elm Street"))
    await parts.write(parts.report("2", "strong gas leak smell on Elm St"))
    restarted = Pipeline(engine, parts.pipeline.rules, parts.normaliser, AlertContext())
    await restarted.write([parts.report("3", "gas leak on elm street, smells strong")], NOW)
    rows = await parts.rows()
    assert len({row["incident_id"] for row in rows}) == 1


# --- the queue in front of the database ---------------------------------------------------------


class FailingPipeline(Pipeline):
    """The real pipeline, behind a database that refuses the first `failures` batches."""

    failures = 0

    async def write(
        self, batch: Sequence[NewReport], now: datetime, *, show: bool = True
    ) -> tuple[list[Ingested], list[ReportOut]]:
        if self.failures:
            self.failures -= 1
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return await super().write(batch, now, show=show)


@pytest.fixture
async def ingestor(
    parts: Parts,
) -> AsyncIterator[tuple[Ingestor, FailingPipeline, CollectorRegistry]]:
    pipeline = FailingPipeline(parts.engine, parts.pipeline.rules, parts.normaliser, AlertContext())
    registry = CollectorRegistry()
    metrics = TriageMetrics(registry)
    ingestor = Ingestor(pipeline, LiveHub(), metrics, lambda: NOW, queue_size=100, wait_seconds=30)
    await ingestor.start()
    yield ingestor, pipeline, registry
    await ingestor.stop()


async def test_a_failing_database_delays_reports_but_loses_none(
    parts: Parts, ingestor: tuple[Ingestor, FailingPipeline, CollectorRegistry]
) -> None:
    queue, pipeline, metrics = ingestor
    pipeline.failures = 2  # retried after 0.1 s and 0.25 s
    batch = [parts.report(str(n), f"report number {n}") for n in range(20)]
    results = await asyncio.gather(*(queue.submit([report]) for report in batch))
    assert all(result[0].created for result in results)
    assert len(await parts.rows()) == 20
    assert metrics.get_sample_value("broadcaster_triage_ingest_write_failures_total") == 2


async def test_a_slow_database_says_so_and_still_stores_the_report(
    parts: Parts, ingestor: tuple[Ingestor, FailingPipeline, CollectorRegistry]
) -> None:
    queue, pipeline, metrics = ingestor
    pipeline.failures = 5  # 0.1+0.25+0.5+1+2 s of retries: longer than the wait
    queue.wait_seconds = 1.5
    with pytest.raises(IngestSlow):
        await queue.submit([parts.report("slow", "still waiting")])
    assert queue.depth == 1
    assert (metrics.get_sample_value("broadcaster_triage_ingest_oldest_wait_seconds") or 0) >= 1.5
    assert metrics.get_sample_value("broadcaster_triage_ingest_queue_depth") == 1
    await queue.flush()
    assert [row["external_id"] for row in await parts.rows()] == ["slow"]


async def test_a_full_queue_refuses_before_accepting_anything(
    parts: Parts, ingestor: tuple[Ingestor, FailingPipeline, CollectorRegistry]
) -> None:
    queue, pipeline, metrics = ingestor
    pipeline.failures = 1
    waiting = asyncio.create_task(queue.submit([parts.report(str(n), "flood") for n in range(100)]))
    await asyncio.sleep(0)
    with pytest.raises(IngestBusy):
        await queue.submit([parts.report("one-too-many", "flood")])
    assert metrics.get_sample_value("broadcaster_triage_ingest_refused_total") == 1
    assert len(await waiting) == 100
    assert len(await parts.rows()) == 100


async def test_a_batch_is_stored_in_the_order_received_with_its_details(parts: Parts) -> None:
    # One statement writes the whole batch on PostgreSQL (the rows as one JSON document): ids
    # must still follow received_at, and times, lists and reasons come back as they went in.
    later = parts.report("b", "is the bridge open? 🌉", media=["https://m.example/1.jpg"])
    earlier = parts.report(
        "a", "trapped on the roof, injured", received_at=NOW - timedelta(minutes=1)
    )
    await parts.write(later, earlier)
    first, second = await parts.rows()
    assert (first["external_id"], second["external_id"]) == ("a", "b")
    assert first["received_at"] == NOW - timedelta(minutes=1)
    assert second["received_at"] == NOW
    assert second["media"] == ["https://m.example/1.jpg"]
    assert first["media"] is None
    assert second["text"] == "is the bridge open? 🌉"
    codes = {reason["code"] for reason in first["priority_reasons"]}  # type: ignore[attr-defined]
    assert "life_safety" in codes
    assert first["priority"] > second["priority"]  # type: ignore[operator]


async def test_a_batch_longer_than_one_statement_is_stored_whole_and_in_order(
    parts: Parts,
) -> None:
    # SQLite writes a batch as multi-row INSERTs of up to 500 rows: every row, once, ids in
    # the order received, and what was stored before (in another statement's range) skipped.
    await parts.write(parts.report("m-700", "already here"))
    batch = [
        parts.report(f"m-{n}", f"report number {n}", received_at=NOW + timedelta(seconds=n))
        for n in range(1200)
    ]
    results, _ = await parts.write(*batch, batch[3])
    assert [result.created for result in results].count(True) == 1199
    assert not results[700].created and not results[-1].created
    assert results[-1].report_id == results[3].report_id
    rows = await parts.rows()
    assert len(rows) == 1200
    later = rows[1:]
    assert [row["external_id"] for row in later] == [f"m-{n}" for n in range(1200) if n != 700]
    assert later[-1]["received_at"] == NOW + timedelta(seconds=1199)


def test_sqlite_values_are_written_as_sqlalchemy_writes_them() -> None:
    # The SQLite insert converts values itself: times must be the exact text SQLAlchemy
    # writes (they are compared and sorted as text in SQL), JSON the same document.
    dialect = sqlite.dialect()
    as_time = reports.c.received_at.type.dialect_impl(dialect).bind_processor(dialect)
    as_json = reports.c.media.type.dialect_impl(dialect).bind_processor(dialect)
    assert as_time is not None and as_json is not None
    for moment in (
        NOW,
        datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-7))),
    ):
        assert sqlite_time(moment) == as_time(moment)
    assert sqlite_time(None) is None
    with pytest.raises(ValueError, match="naive"):
        sqlite_time(datetime(2026, 1, 1))  # naive: the point of the test
    for value in (None, ["https://m.example/1.jpg"], [{"code": "x", "points": 1.5}]):
        assert json.dumps(value) == as_json(value)


async def test_a_coordinate_that_is_not_a_number_is_no_location(parts: Parts) -> None:
    [result], _ = await parts.write(
        parts.report("nan", "flooded road", latitude=float("nan"), longitude=float("inf"))
    )
    assert result.created
    [row] = await parts.rows()
    assert (row["latitude"], row["longitude"]) == (None, None)


async def test_a_connection_lost_between_batches_delays_a_report_but_loses_none(
    parts: Parts, engine: AsyncEngine
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the writer keeps a connection between batches on PostgreSQL only")
    registry = CollectorRegistry()
    metrics = TriageMetrics(registry)
    queue = Ingestor(parts.pipeline, LiveHub(), metrics, lambda: NOW, queue_size=10)
    await queue.start()
    try:
        await queue.submit([parts.report("1", "first")])
        async with engine.connect() as connection:  # as a server restart or a proxy would
            await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        [result] = await queue.submit([parts.report("2", "second")])
    finally:
        await queue.stop()
    assert result.created
    assert [row["external_id"] for row in await parts.rows()] == ["1", "2"]
    assert registry.get_sample_value("broadcaster_triage_ingest_write_failures_total") == 1


async def test_a_message_the_database_could_not_store_as_sent_is_cleaned_not_stuck(
    parts: Parts,
) -> None:
    # A NUL (refused by PostgreSQL) or a lone surrogate (refused by both: not UTF-8) would fail
    # the whole batch at every retry and hold up every report behind it.
    sent = parts.report("nul\x00", "trapped\x00 on the roof \ud83d", author_name="Ann\x00")
    [result, _second], _ = await parts.write(sent, parts.report("2", "bridge closed"))
    assert result.created
    first, second = await parts.rows()
    assert (first["external_id"], first["text"]) == ("nul", "trapped on the roof ?")
    assert first["author_name"] == "Ann"
    assert second["text"] == "bridge closed"
    [replayed], _ = await parts.write(sent)  # the same message again is still the same report
    assert replayed == Ingested(result.report_id, False)
