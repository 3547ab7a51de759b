"""What a responder finishes in the console that only the API could do before: approving or
refusing another responder's held free-text reply (sent on the platform only once approved,
never by its writer, never after a refusal), marking a report as a duplicate of another, and
starting a misinformation incident's rumour-control alert draft. Wrong people and bad input get
a clear message on the page, never a 500. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from approvals.roles import Role
from broadcaster import users
from broadcaster.emulated import EmulatedPlatforms, start_emulated_platforms
from broadcaster.storage.schema import (
    alert_versions,
    alerts,
    audit_log,
    incidents,
    report_replies,
    reports,
)
from broadcaster.targets import Directory
from broadcaster.web_keys import ENGINE
from tests.channels import samples
from tests.console.conftest import Console


@pytest.fixture
async def platforms() -> AsyncIterator[EmulatedPlatforms]:
    started = await start_emulated_platforms()
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
def directory(platforms: EmulatedPlatforms) -> Directory:
    return platforms.directory


async def _second_responder(console: Console) -> None:
    async with console.app[ENGINE].begin() as connection:
        console.people["responder2"] = await users.add_user(
            connection, "responder2", Role.responder, password=None
        )
    await console.sign_in_directly("responder2")


async def _x_report(console: Console, platforms: EmulatedPlatforms, said: str) -> int:
    """A member of the public answers our post on X; the signed webhook makes a report."""
    adapter = platforms.directory.adapter("x-live")
    await adapter.publish(adapter.render(samples.version())[0], "alert-x")
    emulator = platforms.emulators["x"]
    emulator.webhook_url = str(console.client.make_url("/api/v1/hooks/x-live"))
    await emulator.generate_replies(1, said, None)
    async with console.app[ENGINE].connect() as connection:
        found = await connection.scalar(select(reports.c.id).where(reports.c.text.contains(said)))
    assert found is not None, "the webhook made no report"
    return int(found)


def _x_posts(platforms: EmulatedPlatforms) -> list[dict[str, Any]]:
    return [effect.data for effect in platforms.emulators["x"].effects_of("post")]


async def _held_reply(console: Console, report_id: int, said: str) -> int:
    written = await console.post(f"/console/reports/{report_id}/reply", "responder", {"text": said})
    assert written.headers["Location"] == f"/console/reports/{report_id}?done=replied"
    async with console.app[ENGINE].connect() as connection:
        row = (
            await connection.execute(
                select(report_replies.c.id, report_replies.c.state).where(
                    report_replies.c.report_id == report_id
                )
            )
        ).one()
    assert row.state == "pending_approval"
    return int(row.id)


async def _reply_state(console: Console, reply_id: int) -> str:
    async with console.app[ENGINE].connect() as connection:
        return str(
            await connection.scalar(
                select(report_replies.c.state).where(report_replies.c.id == reply_id)
            )
        )


async def _audit_actions(console: Console) -> list[str]:
    async with console.app[ENGINE].connect() as connection:
        return list(
            (await connection.execute(select(audit_log.c.action).order_by(audit_log.c.seq)))
            .scalars()
            .all()
        )


async def test_a_held_reply_is_sent_only_when_a_second_responder_approves_it(
    console: Console, platforms: EmulatedPlatforms
) -> None:
    await console.sign_in_directly("responder")
    await _second_responder(console)
    await console.sign_in_directly("officer")
    report_id = await _x_report(console, platforms, "trapped at 12 Elm St, water rising")
    reply_id = await _held_reply(console, report_id, "Crew is 5 min away, stay on the roof")
    posted = len(_x_posts(platforms))
    approve = f"/console/reports/{report_id}/replies/{reply_id}/approve"

    # Its writer sees it waiting, with no button to approve their own.
    mine = await (await console.get(f"/console/reports/{report_id}", "responder")).text()
    assert "Replies waiting for a second responder" in mine
    assert "Crew is 5 min away, stay on the roof" in mine
    assert "you cannot approve your own" in mine
    assert approve not in mine

    # The queue tells everyone, and links to the report.
    queue = await (await console.get("/console/reports", "responder2")).text()
    assert "1 reply waits for a second responder" in queue
    assert f'href="/console/reports/{report_id}#held"' in queue
    assert "reply by responder," in queue
    own_queue = await (await console.get("/console/reports/rows", "responder")).text()
    assert "reply by you (another responder must approve it)" in own_queue

    # The second responder sees who wrote it, when, and both buttons.
    theirs = await (await console.get(f"/console/reports/{report_id}", "responder2")).text()
    assert "Written by responder" in theirs and approve in theirs
    assert f"/console/reports/{report_id}/replies/{reply_id}/reject" in theirs

    # Refused: its writer (a clear message), a role without the permission, a form without CSRF.
    writer = await console.post(approve, "responder")
    assert writer.status == 403
    assert "its writer cannot" in await writer.text()
    officer = await console.post(approve, "officer")
    assert officer.status == 403 and "work_reports" in await officer.text()
    forged = await console.post(approve, "responder2", csrf=False)
    assert forged.status == 403
    assert len(_x_posts(platforms)) == posted  # not a byte went out
    assert await _reply_state(console, reply_id) == "pending_approval"

    approved = await console.post(approve, "responder2")
    assert approved.status == 303
    assert approved.headers["Location"] == f"/console/reports/{report_id}?done=reply_approved"
    assert _x_posts(platforms)[-1]["text"] == "Crew is 5 min away, stay on the roof"
    assert len(_x_posts(platforms)) == posted + 1
    assert await _reply_state(console, reply_id) == "sent"
    page = await (await console.get(f"{approved.headers['Location']}", "responder2")).text()
    assert "Reply approved and sent." in page and "approved by responder2" in page
    assert "Replies waiting for a second responder" not in page
    assert (
        "wait for a second responder"
        not in await (await console.get("/console/reports", "responder")).text()
    )

    # Deciding again, or a reply that does not exist: a message on the page, never a 500.
    again = await console.post(approve, "responder2")
    assert again.status == 409 and "not waiting for approval" in await again.text()
    assert len(_x_posts(platforms)) == posted + 1  # sent once
    missing = await console.post(
        f"/console/reports/{report_id}/replies/{reply_id + 1000}/approve", "responder2"
    )
    assert missing.status == 404 and "has no reply" in await missing.text()
    no_report = await console.post(
        f"/console/reports/99999/replies/{reply_id}/approve", "responder2"
    )
    assert no_report.status == 404
    assert (await _audit_actions(console)).count("report.reply_approve") == 1


async def test_a_refused_reply_is_never_sent(
    console: Console, platforms: EmulatedPlatforms
) -> None:
    await console.sign_in_directly("responder")
    await _second_responder(console)
    report_id = await _x_report(console, platforms, "is the bridge on Main St open?")
    reply_id = await _held_reply(console, report_id, "lol no idea")
    posted = len(_x_posts(platforms))
    base = f"/console/reports/{report_id}/replies/{reply_id}"

    own = await console.post(f"{base}/reject", "responder")  # nor refuse their own
    assert own.status == 403
    refused = await console.post(f"{base}/reject", "responder2")
    assert refused.headers["Location"] == f"/console/reports/{report_id}?done=reply_refused"
    page = await (await console.get(refused.headers["Location"], "responder2")).text()
    assert "Reply refused. It will never be sent." in page and "rejected" in page
    assert await _reply_state(console, reply_id) == "rejected"

    late = await console.post(f"{base}/approve", "responder2")
    assert late.status == 409 and "rejected" in await late.text()
    assert len(_x_posts(platforms)) == posted
    assert "report.reply_reject" in await _audit_actions(console)


async def _form_report(console: Console, said: str, token: str) -> int:
    sent = await console.client.post("/report", data={"text": said, "token": token * 20})
    assert sent.status == 200
    async with console.app[ENGINE].connect() as connection:
        found = await connection.scalar(select(reports.c.id).where(reports.c.text == said))
    assert found is not None, "the form made no report"
    return int(found)


async def test_a_report_is_marked_as_a_duplicate_of_another(console: Console) -> None:
    first = await _form_report(console, "Power lines down across Oak Avenue", "a")
    second = await _form_report(console, "Gas smell near the library downtown", "b")
    await console.sign_in_directly("responder")
    await console.sign_in_directly("officer")
    act = f"/console/reports/{second}/act"
    page = await (await console.get(f"/console/reports/{second}", "responder")).text()
    assert 'value="duplicate"' in page and 'for="duplicate_of"' in page

    for given, status, words in (
        ("", 422, "give the number of the report it repeats"),
        ("soon", 422, "give the number of the report it repeats"),
        ("9" * 30, 422, "give the number of the report it repeats"),
        (str(second), 422, "a report cannot repeat itself"),
        ("99999", 422, "there is no report 99999"),
    ):
        refused = await console.post(
            act, "responder", {"action": "duplicate", "duplicate_of": given}
        )
        assert refused.status == status, given
        html = await refused.text()
        assert words in html, given
        assert 'role="alert"' in html and "Work it" in html  # the page, with its message
    assert (await console.post(act, "officer", {"action": "duplicate"})).status == 403

    marked = await console.post(
        act, "responder", {"action": "duplicate", "duplicate_of": f"#{first}"}
    )
    assert marked.headers["Location"] == f"/console/reports/{second}?done=report_done"
    async with console.app[ENGINE].connect() as connection:
        row = (
            await connection.execute(
                select(reports.c.state, reports.c.duplicate_of).where(reports.c.id == second)
            )
        ).one()
    assert (row.state, row.duplicate_of) == ("duplicate", first)
    shown = await (await console.get(f"/console/reports/{second}", "responder")).text()
    assert "state-duplicate" in shown and f'href="/console/reports/{first}"' in shown
    assert "report.duplicate" in await _audit_actions(console)


async def _incident(console: Console) -> tuple[int, int]:
    """Two people report the same false claim: one incident; (its id, the first report)."""
    first = await _form_report(console, "The Miller Creek dam has burst, leave now", "c")
    await _form_report(console, "Miller Creek dam has burst leave now!", "d")
    async with console.app[ENGINE].connect() as connection:
        incident_id = await connection.scalar(
            select(reports.c.incident_id).where(reports.c.id == first)
        )
    assert incident_id is not None, "the two reports were not grouped"
    return int(incident_id), first


async def test_rumour_control_is_started_from_a_misinformation_incident(
    console: Console,
) -> None:
    incident_id, report_id = await _incident(console)
    await console.sign_in_directly("responder")
    await console.sign_in_directly("officer")
    start = f"/console/incidents/{incident_id}/rumour-control"

    listed = await (await console.get("/console/incidents", "responder")).text()
    assert f'id="incident-{incident_id}"' in listed and start not in listed
    assert "Not marked as misinformation" in listed
    early = await console.post(start, "responder")
    assert early.status == 409 and "not marked as misinformation" in await early.text()

    marked = await console.post(
        f"/console/reports/{report_id}/act", "responder", {"action": "misinformation"}
    )
    assert marked.status == 303
    listed = await (await console.get("/console/incidents", "responder")).text()
    assert f'action="{start}"' in listed and f'for="claim-{incident_id}"' in listed

    assert (await console.post(start, "officer")).status == 403  # not a responder
    assert (await console.post(start, "responder", csrf=False)).status == 403
    unknown = await console.post("/console/incidents/99999/rumour-control", "responder")
    assert unknown.status == 404 and "there is no incident 99999" in await unknown.text()

    started = await console.post(start, "responder", {"claim": "the dam has burst"})
    assert started.status == 303
    found = re.fullmatch(r"/console/alerts/(\d+)\?done=rumour_started", started.headers["Location"])
    assert found is not None
    alert_id = int(found.group(1))
    async with console.app[ENGINE].connect() as connection:
        draft = (
            await connection.execute(
                select(alert_versions.c.state, alert_versions.c.content)
                .join(alerts, alerts.c.current_version_id == alert_versions.c.id)
                .where(alerts.c.id == alert_id)
            )
        ).one()
        linked = await connection.scalar(
            select(incidents.c.rumour_alert_id).where(incidents.c.id == incident_id)
        )
    assert draft.state == "draft" and linked == alert_id
    assert '"the dam has burst"' in draft.content["infos"][0]["description"]
    alert_page = await console.get(started.headers["Location"], "responder")
    assert alert_page.status == 200
    assert "A duty officer completes it" in await alert_page.text()

    listed = await (await console.get("/console/incidents", "responder")).text()
    assert f'href="/console/alerts/{alert_id}"' in listed and f'action="{start}"' not in listed
    twice = await console.post(start, "responder")
    assert twice.status == 409 and "already started" in await twice.text()
    assert "incident.rumour_control" in await _audit_actions(console)
