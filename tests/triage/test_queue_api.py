"""The responders' queue over the API: most urgent first with reasons, filters, the states a
report moves through (each audited), who is viewing it, incidents, the redacted export, the
retention purge and rumour control."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from broadcaster.storage.schema import alert_versions, audit_log, incidents
from tests.triage.conftest import TriageApp, released_alert


async def _ingest(app: TriageApp, *texts: str, **extra: Any) -> list[int]:
    triage = app.triage
    batch = [
        triage.normaliser.report(
            source=str(extra.get("source", "x")),
            external_id=f"{extra.get('prefix', 'm')}{n}",
            text=text,
            received_at=app.clock() + timedelta(seconds=n),
            author_id=f"person-{n}",
            author_name=f"Person {n}",
            contact=extra.get("contact"),
            latitude=extra.get("latitude"),
            longitude=extra.get("longitude"),
            target=extra.get("target", "x-live"),
        )
        for n, text in enumerate(texts)
    ]
    results = await triage.ingestor.submit(batch)
    return [result.report_id for result in results if result.report_id is not None]


async def _reports(app: TriageApp, query: str = "") -> list[dict[str, Any]]:
    status, body = await app.call("GET", f"/reports{query}")
    assert status == 200, body
    return list(body["reports"])


async def test_the_queue_is_most_urgent_first_with_its_reasons(triage_app: TriageApp) -> None:
    await _ingest(
        triage_app,
        "is the library open tomorrow?",
        "We are trapped on the roof, my son is injured",
        "smoke near the fairgrounds",
    )
    found = await _reports(triage_app)
    assert [r["text"][:10] for r in found] == ["We are tra", "smoke near", "is the lib"]
    assert found[0]["reasons"][0]["text"] == "life-safety words: trapped, on the roof, injured"
    assert found[0]["priority"] > found[1]["priority"] > found[2]["priority"]


async def test_filters_by_state_priority_source_incident_and_area(triage_app: TriageApp) -> None:
    ids = await _ingest(triage_app, "trapped on Elm St", "is the shelter open?")
    [sms] = await _ingest(
        triage_app, "power line down", source="sms", prefix="s", target="sms-live"
    )
    await triage_app.call("POST", f"/reports/{ids[1]}/dismiss", json={})
    assert [r["id"] for r in await _reports(triage_app)] == [ids[0], sms]
    assert [r["id"] for r in await _reports(triage_app, "?state=dismissed")] == [ids[1]]
    assert len(await _reports(triage_app, "?state=all")) == 3
    assert [r["id"] for r in await _reports(triage_app, "?min_priority=50")] == [ids[0]]
    assert [r["id"] for r in await _reports(triage_app, "?source=sms")] == [sms]
    # Elm Street is in the gazetteer at 38.052, -121.948
    assert [r["id"] for r in await _reports(triage_app, "?area=38.05,-121.95,1")] == [ids[0]]
    assert await _reports(triage_app, "?area=40.0,-120.0,5") == []
    alert_id = await released_alert(triage_app.engine, post_id="1", now=triage_app.clock())
    inside = await _reports(triage_app, f"?area=alert:{alert_id}")
    assert [r["id"] for r in inside] == [ids[0]]


async def test_bad_filters_are_422_naming_the_field(triage_app: TriageApp) -> None:
    for query, field in [
        ("?state=closed", "query.state"),
        ("?area=somewhere", "query.area"),
        ("?area=alert:999", "query.area"),
        ("?min_priority=80&max_priority=20", "query"),
        ("?limit=0", "query.limit"),
    ]:
        status, body = await triage_app.call("GET", f"/reports{query}")
        assert status == 422, query
        assert body["errors"][0]["field"] == field, (query, body)


async def test_a_report_moves_through_its_states_and_each_step_is_audited(
    triage_app: TriageApp,
) -> None:
    [report_id] = await _ingest(triage_app, "trapped in the car, water rising")
    call = triage_app.call
    status, acknowledged = await call("POST", f"/reports/{report_id}/acknowledge")
    assert (status, acknowledged["state"]) == (200, "acknowledged")
    assert acknowledged["acknowledged_at"] is not None
    status, body = await call("POST", f"/reports/{report_id}/acknowledge")
    assert (status, body["state"]) == (409, "acknowledged")
    status, assigned = await call("POST", f"/reports/{report_id}/assign", json={"to": "responder2"})
    assert (status, assigned["assigned_to"]) == (200, "responder2")
    status, body = await call("POST", f"/reports/{report_id}/assign", json={"to": "officer"})
    assert status == 422
    assert body["errors"] == [
        {"field": "to", "message": "officer is a duty_officer, who cannot work reports"}
    ]
    status, resolved = await call(
        "POST", f"/reports/{report_id}/resolve", json={"note": "crew on scene"}
    )
    assert (status, resolved["state"]) == (200, "resolved")
    status, body = await call("POST", f"/reports/{report_id}/dismiss", json={})
    assert status == 409
    assert "already resolved" in body["detail"]
    async with triage_app.engine.connect() as connection:
        actions = [
            (row.actor, row.action, row.details["to"])
            for row in await connection.execute(
                select(audit_log).where(audit_log.c.subject == f"report:{report_id}")
            )
        ]
    assert actions == [
        ("responder", "report.acknowledge", "acknowledged"),
        ("responder", "report.assign", "assigned"),
        ("responder", "report.resolve", "resolved"),
    ]


async def test_a_duplicate_names_the_report_it_repeats(triage_app: TriageApp) -> None:
    first, second = await _ingest(triage_app, "bridge is out on Main", "tree on the road")
    status, body = await triage_app.call("POST", f"/reports/{second}/duplicate", json={})
    assert (status, body["errors"][0]["field"]) == (422, "of")
    status, body = await triage_app.call("POST", f"/reports/{second}/duplicate", json={"of": first})
    assert (status, body["state"], body["duplicate_of"]) == (200, "duplicate", first)
    status, _ = await triage_app.call("POST", "/reports/999/acknowledge")
    assert status == 404


async def test_closing_a_whole_incident_closes_every_report_in_it(triage_app: TriageApp) -> None:
    ids = await _ingest(
        triage_app,
        "gas leak smell on Elm Street",
        "strong gas leak smell Elm St",
        "gas leak elm street smells strong",
    )
    found = await _reports(triage_app)
    assert len({r["incident_id"] for r in found}) == 1
    status, _ = await triage_app.call(
        "POST", f"/reports/{ids[0]}/resolve", json={"whole_incident": True}
    )
    assert status == 200
    assert await _reports(triage_app) == []
    status, listing = await triage_app.call("GET", "/incidents?state=closed")
    assert [i["report_count"] for i in listing["incidents"]] == [3]


async def test_who_is_viewing_a_report_is_shown(triage_app: TriageApp) -> None:
    [report_id] = await _ingest(triage_app, "we need insulin")
    status, body = await triage_app.call("POST", f"/reports/{report_id}/viewing")
    assert (status, [v["username"] for v in body["viewers"]]) == (200, ["responder"])
    await triage_app.call("POST", f"/reports/{report_id}/viewing", who="responder2")
    status, report = await triage_app.call("GET", f"/reports/{report_id}")
    assert sorted(v["username"] for v in report["viewers"]) == ["responder", "responder2"]
    triage_app.clock.advance(minutes=5)  # nobody refreshed: nobody is looking any more
    status, report = await triage_app.call("GET", f"/reports/{report_id}")
    assert report["viewers"] == []


async def test_incidents_show_how_many_people_report_the_same_thing(
    triage_app: TriageApp,
) -> None:
    await _ingest(
        triage_app,
        "Main St bridge is flooded",
        "main street bridge flooded!!",
        "the Main St bridge is under water, flooded",
        "is the fairgrounds shelter open",
    )
    status, body = await triage_app.call("GET", "/incidents")
    assert status == 200
    [incident] = body["incidents"]
    assert incident["report_count"] == 3
    assert incident["place"] == "Main Street bridge"
    status, one = await triage_app.call("GET", f"/incidents/{incident['id']}")
    assert (status, one["id"]) == (200, incident["id"])


async def test_the_export_is_csv_without_personal_data(triage_app: TriageApp) -> None:
    await _ingest(
        triage_app,
        '=HYPERLINK("http://evil") call me on +1 (202) 555-0142 or ana@example.org, ask @ana_r',
        contact="+12025550142",
        latitude=38.052113,
        longitude=-121.948765,
    )
    response = await triage_app.client.get(
        "/api/v1/reports/export.csv", headers=triage_app.auth("responder")
    )
    assert response.status == 200
    assert response.content_type == "text/csv"
    text = await response.text()
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["text"] == '\'=HYPERLINK("[link]") call me on [phone] or [email], ask [handle]'
    assert (row["latitude"], row["longitude"]) == ("38.05", "-121.95")
    assert "Person 0" not in text and "12025550142" not in text and "555-0142" not in text
    assert row["author_pseudonym"]
    async with triage_app.engine.connect() as connection:
        exported = await connection.scalar(
            select(audit_log.c.actor).where(audit_log.c.action == "report.export")
        )
    assert exported == "responder"


async def test_reports_past_retention_are_purged_and_the_purge_audited(
    triage_app: TriageApp,
) -> None:
    old = await _ingest(triage_app, "old report", prefix="old")
    triage_app.clock.advance(days=31)
    await _ingest(triage_app, "new report", prefix="new")
    assert await triage_app.triage.purge() == len(old)
    assert [r["text"] for r in await _reports(triage_app, "?state=all")] == ["new report"]
    async with triage_app.engine.connect() as connection:
        details = await connection.scalar(
            select(audit_log.c.details).where(audit_log.c.action == "report.purge")
        )
    assert details is not None
    assert details["reports"] == 1 and details["retention_days"] == 30
    assert "old report" not in str(details)


async def test_rumour_control_starts_an_alert_draft_for_a_misinformation_incident(
    triage_app: TriageApp,
) -> None:
    ids = await _ingest(
        triage_app,
        "they say the dam on Elm Street broke, evacuate!!",
        "heard that the Elm St dam broke",
    )
    [incident_id] = {r["incident_id"] for r in await _reports(triage_app)}
    status, body = await triage_app.call(
        "POST", f"/incidents/{incident_id}/rumour-control", json={}
    )
    assert (status, body["state"]) == (409, "not_misinformation")
    await triage_app.call("POST", f"/reports/{ids[0]}/misinformation", json={})
    status, started = await triage_app.call(
        "POST",
        f"/incidents/{incident_id}/rumour-control",
        json={"claim": "the Elm Street dam has failed"},
    )
    assert status == 201, started
    alert_id = started["alert_id"]
    status, alert = await triage_app.call("GET", f"/alerts/{alert_id}", who="officer")
    assert (status, alert["id"]) == (200, alert_id)
    async with triage_app.engine.connect() as connection:
        version = (
            await connection.execute(
                select(alert_versions).where(alert_versions.c.alert_id == alert_id)
            )
        ).one()
        incident = (
            await connection.execute(select(incidents).where(incidents.c.id == incident_id))
        ).one()
    assert version.state == "draft"  # never released without approval
    assert {info["language"] for info in version.content["infos"]} == {"en-US", "es-US", "fr-CA"}
    assert "the Elm Street dam has failed" in version.content["infos"][0]["description"]
    assert incident.misinformation and incident.rumour_alert_id == alert_id
    status, _ = await triage_app.call("POST", f"/incidents/{incident_id}/rumour-control", json={})
    assert status == 409  # started once
    # A responder may start it but never send it.
    status, _ = await triage_app.call("POST", f"/alerts/{alert_id}/submit")
    assert status == 403
