"""The administrator's and responder's pages: pausing an account holds what waits for it;
changing a person ends their sessions; nobody disables themselves; the audit log verifies;
a report from the public form is worked from its page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update

from broadcaster.alerts.service import Actor
from broadcaster.emulated import start_emulated_platforms
from broadcaster.storage.schema import alert_versions, audit_log, channel_state, deliveries, reports
from broadcaster.storage.schema import users as user_table
from broadcaster.targets import Directory
from broadcaster.web_keys import ALERTS, ENGINE
from tests.console.conftest import Console


@pytest.fixture
async def directory() -> AsyncIterator[Directory]:
    platforms = await start_emulated_platforms()
    try:
        yield platforms.directory
    finally:
        await platforms.stop()


async def _actions(console: Console) -> list[str]:
    async with console.app[ENGINE].connect() as connection:
        return list(
            (await connection.execute(select(audit_log.c.action).order_by(audit_log.c.seq)))
            .scalars()
            .all()
        )


async def test_pausing_an_account_is_immediate_audited_and_reversible(console: Console) -> None:
    await console.sign_in_directly("admin")
    page = await (await console.get("/console/admin/channels", "admin")).text()
    assert "x-live" in page and "sms-exercise" in page
    paused = await console.post(
        "/console/admin/channels/x-live/pause", "admin", {"reason": "password leaked"}
    )
    assert paused.headers["Location"] == "/console/admin/channels?done=paused"
    async with console.app[ENGINE].connect() as connection:
        row = (
            await connection.execute(
                select(channel_state).where(channel_state.c.target == "x-live")
            )
        ).one()
    assert row.paused and row.pause_reason == "password leaked"
    html = await (await console.get("/console/admin/channels", "admin")).text()
    assert "password leaked" in html and "/console/admin/channels/x-live/resume" in html
    await console.post("/console/admin/channels/x-live/resume", "admin")
    assert (await _actions(console))[-2:] == ["channel.pause", "channel.resume"]
    missing = await console.post("/console/admin/channels/no-such-target/pause", "admin")
    assert missing.status == 404


async def test_changing_a_person_ends_their_sessions_but_never_ones_own(console: Console) -> None:
    await console.sign_in_directly("admin")
    await console.sign_in_directly("officer")
    assert (await console.get("/console", "officer")).status == 200
    changed = await console.post(
        "/console/admin/users/officer/role", "admin", {"role": "responder"}
    )
    assert changed.status == 303
    out = await console.get("/console", "officer")
    assert out.status == 303 and "why=changed" in out.headers["Location"]
    async with console.app[ENGINE].connect() as connection:
        role = await connection.scalar(
            select(user_table.c.role).where(user_table.c.username == "officer")
        )
    assert role == "responder"
    for path, data in (
        ("/console/admin/users/admin/role", {"role": "responder"}),
        ("/console/admin/users/admin/active", {"active": "false"}),
        ("/console/admin/users/admin/reset-second-factor", {}),
    ):
        refused = await console.post(path, "admin", data)
        assert refused.status == 409, path
    assert "user.set_role" in await _actions(console)


async def test_a_new_person_gets_a_password_shown_once(console: Console) -> None:
    await console.sign_in_directly("admin")
    weak = await console.post(
        "/console/admin/users",
        "admin",
        {"username": "kim", "role": "approver", "rank": "2", "password": "short"},
    )
    assert weak.status == 422 and "at least 12 characters" in await weak.text()
    added = await console.post(
        "/console/admin/users",
        "admin",
        {"username": "kim", "display_name": "Kim Ko", "role": "approver", "rank": "2"},
    )
    html = await added.text()
    assert added.status == 200
    shown = re.search(r'<code class="secret">([^<]+)</code>', html)
    assert shown is not None and len(shown.group(1)) >= 12
    again = await (await console.get("/console/admin/users", "admin")).text()
    assert shown.group(1) not in again  # never shown again
    twice = await console.post(
        "/console/admin/users", "admin", {"username": "kim", "role": "approver", "rank": "2"}
    )
    assert twice.status == 409


async def test_the_audit_log_is_shown_and_verified(console: Console) -> None:
    await console.sign_in_directly("admin")
    await console.post("/console/admin/channels/x-live/pause", "admin", {"reason": "drill"})
    html = await (await console.get("/console/audit?verify=1", "admin")).text()
    assert "The log is intact" in html and "channel.pause" in html


async def test_a_report_is_worked_from_its_page(console: Console) -> None:
    form = await console.client.post(
        "/report",
        data={"text": "Smoke in the school gym on King Street", "token": "t" * 20},
    )
    assert form.status == 200
    async with console.app[ENGINE].connect() as connection:
        report_id = await connection.scalar(select(reports.c.id))
    await console.sign_in_directly("responder")
    queue = await (await console.get("/console/reports", "responder")).text()
    assert "Smoke in the school gym" in queue
    assert 'data-live-events="/api/v1/reports/events"' in queue
    page = await (await console.get(f"/console/reports/{report_id}", "responder")).text()
    assert f'data-viewing="/api/v1/reports/{report_id}/viewing"' in page
    unknown = await console.post(
        f"/console/reports/{report_id}/act", "responder", {"action": "explode"}
    )
    assert unknown.status == 422
    assigned = await console.post(
        f"/console/reports/{report_id}/act", "responder", {"action": "assign"}
    )
    assert assigned.status == 303
    both = await console.post(
        f"/console/reports/{report_id}/reply", "responder", {"canned": "", "text": ""}
    )
    assert both.status == 422
    resolved = await console.post(
        f"/console/reports/{report_id}/act", "responder", {"action": "resolve", "note": "fire out"}
    )
    assert resolved.status == 303
    html = await (await console.get(f"/console/reports/{report_id}", "responder")).text()
    assert "state-resolved" in html and "Work it" not in html
    again = await console.post(
        f"/console/reports/{report_id}/act", "responder", {"action": "dismiss"}
    )
    assert again.status == 409 and "closed" in await again.text()
    assert (
        "Smoke in the school gym"
        not in await (await console.get("/console/reports/rows", "responder")).text()
    )


async def _released_alert(console: Console) -> int:
    """A live boil-water alert, drafted, submitted and approved through the service."""
    service = console.app[ALERTS]
    template = service.rules.templates.get("boil-water")
    values = {name: f"the {name}" for name in template.placeholders} | {"area": "Riverside"}
    content = service.from_template("boil-water", values, ["x", "mastodon"])
    officer = Actor(console.people["officer"])
    drafted = await service.draft(officer, content)
    submitted = await service.submit(officer, drafted.alert_id)
    async with console.app[ENGINE].connect() as connection:
        content_hash = await connection.scalar(
            select(alert_versions.c.content_hash).where(alert_versions.c.id == submitted.version_id)
        )
    approver = Actor(console.people["approver2"], second_factor_at=console.clock())
    await service.approve(approver, drafted.alert_id, str(content_hash))
    return drafted.alert_id


async def test_given_up_deliveries_are_listed_with_the_reason_and_can_be_tried_again(
    console: Console,
) -> None:
    alert_id = await _released_alert(console)
    async with console.app[ENGINE].begin() as connection:
        given_up = await connection.scalar(
            update(deliveries)
            .where(deliveries.c.target == "x-live")
            .values(state="dead", last_error="gave up after 8 tries: 503 Service Unavailable")
            .returning(deliveries.c.id)
        )
    await console.sign_in_directly("admin")
    html = await (await console.get("/console/admin/channels", "admin")).text()
    assert "503 Service Unavailable" in html
    assert f'href="/console/alerts/{alert_id}"' in html
    assert f"/console/admin/deliveries/{given_up}/requeue" in html

    # Officers see the board but may not send things again; nobody may without CSRF.
    await console.sign_in_directly("officer")
    refused = await console.post(f"/console/admin/deliveries/{given_up}/requeue", "officer")
    assert refused.status == 403
    again = await console.post(f"/console/admin/deliveries/{given_up}/requeue", "admin")
    assert again.headers["Location"] == "/console/admin/channels?done=requeued"
    async with console.app[ENGINE].connect() as connection:
        row = (
            await connection.execute(select(deliveries).where(deliveries.c.id == given_up))
        ).one()
    assert (row.state, row.attempts) == ("queued", 0)
    assert (await _actions(console))[-1] == "delivery.requeue"
    twice = await console.post(f"/console/admin/deliveries/{given_up}/requeue", "admin")
    assert twice.headers["Location"] == "/console/admin/channels?done=requeued_already"
    html = await (await console.get("/console/admin/channels", "admin")).text()
    assert "Nothing has been given up on." in html
    missing = await console.post("/console/admin/deliveries/99999999/requeue", "admin")
    assert missing.status == 404
    nonsense = await console.post("/console/admin/deliveries/9x/requeue", "admin")
    assert nonsense.status == 404
