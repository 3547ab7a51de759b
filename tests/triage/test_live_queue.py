"""End to end: a member of the public answers an alert on a platform, the platform's signed
webhook reaches the service, and the report appears on the responders' live queue (server-sent
events), filtered as each responder asked; what responders then do shows up live too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import ClientResponse

from tests.channels import samples
from tests.triage.conftest import TriageApp

WAIT = 5.0  # seconds; events arrive in milliseconds, this only bounds a broken test


@asynccontextmanager
async def live_queue(app: TriageApp, query: str = "") -> AsyncIterator[ClientResponse]:
    response = await app.client.get(f"/api/v1/reports/events{query}", headers=app.auth("responder"))
    assert response.status == 200
    assert response.content_type == "text/event-stream"
    try:
        yield response
    finally:
        response.close()


async def next_event(stream: ClientResponse) -> tuple[str, dict[str, Any]]:
    """The next event (name, data), skipping comments and keep-alives."""
    name, data = "message", ""

    async def read() -> tuple[str, dict[str, Any]]:
        nonlocal name, data
        while True:
            line = (await stream.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
            elif line == "" and data:
                return name, json.loads(data)

    return await asyncio.wait_for(read(), WAIT)


async def _alert_on(app: TriageApp, channel: str) -> str:
    adapter = app.platforms.directory.adapter(f"{channel}-live")
    recipient = "+12025550142" if channel == "sms" else None
    receipt = await adapter.publish(adapter.render(samples.version())[0], "a", recipient=recipient)
    return receipt.external_id


async def test_a_reply_on_x_reaches_the_live_queue_through_the_signed_webhook(
    triage_app: TriageApp,
) -> None:
    post_id = await _alert_on(triage_app, "x")
    async with live_queue(triage_app) as stream:
        await triage_app.platforms.emulators["x"].generate_replies(
            1, "We are trapped on the roof at 12 Elm St 🆘", post_id
        )
        name, report = await next_event(stream)
        assert name == "report"
        assert report["source"] == "x"
        assert report["in_reply_to"] == post_id
        assert report["state"] == "new"
        assert report["reasons"][0]["text"].startswith("life-safety words: trapped")
        assert report["place"] == "Elm Street"

        await triage_app.call("POST", f"/reports/{report['id']}/viewing", who="responder2")
        name, viewing = await next_event(stream)
        assert (name, viewing["report_id"]) == ("viewing", report["id"])
        assert [viewer["username"] for viewer in viewing["viewers"]] == ["responder2"]

        await triage_app.call("POST", f"/reports/{report['id']}/acknowledge")
        name, changed = await next_event(stream)
        assert (name, changed["state"]) == ("report", "acknowledged")

        await triage_app.call("POST", f"/reports/{report['id']}/resolve", json={})
        name, left = await next_event(stream)  # it leaves the open queue
        assert (name, left) == ("report_left", {"id": report["id"], "state": "resolved"})


async def test_each_responder_sees_only_what_their_filter_asks_for(
    triage_app: TriageApp,
) -> None:
    await _alert_on(triage_app, "x")
    await _alert_on(triage_app, "sms")
    async with (
        live_queue(triage_app, "?source=sms") as sms_only,
        live_queue(triage_app, "?min_priority=50") as urgent_only,
    ):
        await triage_app.platforms.emulators["x"].generate_replies(1, "is the shelter open?", None)
        await triage_app.platforms.emulators["sms"].generate_replies(
            1, "my neighbour is injured and can't get out", None
        )
        name, first_sms = await next_event(sms_only)
        assert (name, first_sms["source"]) == ("report", "sms")
        name, first_urgent = await next_event(urgent_only)
        assert first_urgent["id"] == first_sms["id"]  # the X question was below 50
        assert first_urgent["priority"] >= 50


async def test_the_live_queue_is_refused_without_the_permission(triage_app: TriageApp) -> None:
    response = await triage_app.client.get(
        "/api/v1/reports/events", headers=triage_app.auth("officer")
    )
    assert response.status == 403


async def test_a_reply_held_for_a_second_responder_and_its_approval_show_up_live(
    triage_app: TriageApp,
) -> None:
    # Open queues list the replies waiting for a second person: they must hear of both.
    post_id = await _alert_on(triage_app, "x")
    async with live_queue(triage_app) as stream:
        await triage_app.platforms.emulators["x"].generate_replies(1, "trapped at 12 Elm", post_id)
        _, report = await next_event(stream)
        _, held = await triage_app.call(
            "POST", f"/reports/{report['id']}/reply", json={"text": "Crew is 5 min away"}
        )
        name, changed = await next_event(stream)
        assert (name, changed["id"]) == ("report", report["id"])
        await triage_app.call(
            "POST", f"/reports/{report['id']}/replies/{held['id']}/approve", who="responder2"
        )
        name, changed = await next_event(stream)
        assert (name, changed["id"]) == ("report", report["id"])
