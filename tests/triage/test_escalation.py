"""Escalation with a fake clock: a high-priority report nobody acknowledges within the
configured minutes is sent once to the on-call target (an SMS to the on-call phone here)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from broadcaster.storage.schema import audit_log, reports
from broadcaster.triage.escalation import SENDING
from channels.emulators.base import Fault, FaultKind
from tests.triage.conftest import TriageApp, make_app_fixture

ON_CALL = "+12025550199"

escalating_app = pytest.fixture(
    make_app_fixture(
        escalation_target="sms-exercise",
        escalation_recipient=ON_CALL,
        escalation_minutes=10.0,
    )
)


async def _ingest(app: TriageApp, text: str, external_id: str) -> int:
    report = app.triage.normaliser.report(
        source="x", external_id=external_id, text=text, received_at=app.clock(), target="x-live"
    )
    [result] = await app.triage.ingestor.submit([report])
    assert result.report_id is not None
    return result.report_id


def _pages(app: TriageApp) -> list[dict[str, Any]]:
    sms = app.platforms.emulators["sms"]
    return [effect.data for effect in sms.effects_of("post") if effect.data["to"] == ON_CALL]


async def test_an_unacknowledged_urgent_report_is_escalated_once_when_its_time_is_up(
    escalating_app: TriageApp,
) -> None:
    urgent = await _ingest(escalating_app, "We are trapped, water rising to the roof", "u1")
    await _ingest(escalating_app, "is the library open?", "calm")  # not high priority
    escalator = escalating_app.triage.escalator
    escalating_app.clock.advance(minutes=9, seconds=59)
    assert await escalator.sweep() == 0
    escalating_app.clock.advance(seconds=1)
    assert await escalator.sweep() == 1
    [page] = _pages(escalating_app)
    assert page["text"].startswith(f"URGENT: report #{urgent} (priority ")
    assert "life-safety words: trapped" in page["text"]
    escalating_app.clock.advance(minutes=30)
    assert await escalator.sweep() == 0  # once only
    _, report = await escalating_app.call("GET", f"/reports/{urgent}")
    assert report["escalated_at"] is not None
    async with escalating_app.engine.connect() as connection:
        actions = [
            row.action
            for row in await connection.execute(
                select(audit_log).where(audit_log.c.subject == f"report:{urgent}")
            )
        ]
    assert actions == ["report.escalate"]


async def test_an_acknowledged_report_is_not_escalated(escalating_app: TriageApp) -> None:
    report_id = await _ingest(escalating_app, "injured man on Elm St", "a1")
    escalating_app.clock.advance(minutes=5)
    await escalating_app.call("POST", f"/reports/{report_id}/acknowledge")
    escalating_app.clock.advance(minutes=60)
    assert await escalating_app.triage.escalator.sweep() == 0
    assert _pages(escalating_app) == []


async def test_a_rate_limited_page_is_sent_at_the_next_sweep(escalating_app: TriageApp) -> None:
    await _ingest(escalating_app, "drowning near the bridge", "r1")
    sms = escalating_app.platforms.emulators["sms"]
    sms.add_fault(Fault(FaultKind.rate_limit, path="Messages.json$", method="POST"))
    escalating_app.clock.advance(minutes=11)
    escalator = escalating_app.triage.escalator
    assert await escalator.sweep() == 0
    assert _pages(escalating_app) == []
    escalating_app.clock.advance(seconds=15)
    assert await escalator.sweep() == 1
    assert len(_pages(escalating_app)) == 1


refused_app = pytest.fixture(
    make_app_fixture(
        escalation_target="sms-exercise",
        escalation_recipient="not-a-number",
        escalation_minutes=1.0,
    )
)


async def test_a_page_the_platform_refuses_is_recorded_and_not_retried(
    refused_app: TriageApp,
) -> None:
    report_id = await _ingest(refused_app, "unconscious person in the car", "p1")
    refused_app.clock.advance(minutes=2)
    escalator = refused_app.triage.escalator
    assert await escalator.sweep() == 0
    refused_app.clock.advance(minutes=2)
    assert await escalator.sweep() == 0
    _, report = await refused_app.call("GET", f"/reports/{report_id}")
    assert "not an E.164 phone number" in report["escalation_error"]
    metrics = await (await refused_app.client.get("/metrics")).text()
    assert 'broadcaster_triage_escalations_total{outcome="failed"} 1.0' in metrics


async def test_a_page_lost_to_a_crash_mid_send_is_sent_by_a_later_sweep(
    escalating_app: TriageApp,
) -> None:
    report_id = await _ingest(escalating_app, "child drowning near the river", "c1")
    escalating_app.clock.advance(minutes=11)
    # A process claimed it and stopped before sending (what it leaves behind).
    async with escalating_app.engine.begin() as connection:
        await connection.execute(
            reports.update()
            .where(reports.c.id == report_id)
            .values(escalated_at=escalating_app.clock(), escalation_error=SENDING)
        )
    escalator = escalating_app.triage.escalator
    assert await escalator.sweep() == 0  # it may still be sending
    escalating_app.clock.advance(minutes=3)
    assert await escalator.sweep() == 1
    assert len(_pages(escalating_app)) == 1
    _, report = await escalating_app.call("GET", f"/reports/{report_id}")
    assert report["escalation_error"] is None
