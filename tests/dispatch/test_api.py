"""The delivery API as people use it: status with post links, channel health, pause and resume
(administrators, audited), the dead-letter list and requeue, and the live event stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.roles import Role
from broadcaster import users
from broadcaster.auth.tokens import create_token
from broadcaster.dispatch.dispatcher import Dispatcher
from broadcaster.settings import SHIPPED_CONFIG_DIR, AlertSettings, LoadedSettings
from broadcaster.storage.schema import audit_log
from broadcaster.web_app import create_app
from channels.emulators.base import Fault, FaultKind
from tests.dispatch.harness import PUBLIC_BASE, Platforms, add_contacts, fast_settings

PEOPLE = {
    "officer": Role.duty_officer,
    "approver": Role.approver,
    "admin": Role.administrator,
    "responder": Role.responder,
}


@dataclass
class Desk:
    client: TestClient[web.Request, web.Application]
    tokens: dict[str, str]
    dispatcher: Dispatcher

    async def call(self, method: str, path: str, who: str, body: object = None) -> tuple[int, Any]:
        response = await self.client.request(
            method,
            f"/api/v1{path}",
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
            json=body,
        )
        return response.status, await response.json()

    async def release(self, channels: list[str], area: str = "Riverside") -> int:
        status, template = await self.call("GET", "/templates/boil-water", "officer")
        values = {p["name"]: f"{p['name']} of {area}" for p in template["placeholders"]}
        values["area"] = area
        body = {"template": "boil-water", "values": values, "channels": channels}
        status, alert = await self.call("POST", "/alerts", "officer", body)
        assert status == 201, alert
        status, alert = await self.call("POST", f"/alerts/{alert['id']}/submit", "officer")
        assert status == 200, alert
        approval = {"content_hash": alert["current"]["content_hash"]}
        status, alert = await self.call(
            "POST", f"/alerts/{alert['id']}/approve", "approver", approval
        )
        assert status == 200 and alert["current"]["state"] == "released", alert
        return int(alert["id"])


@pytest.fixture
async def desk(engine: AsyncEngine, platforms: Platforms) -> AsyncIterator[Desk]:
    tokens: dict[str, str] = {}
    async with engine.begin() as connection:
        for name, role in PEOPLE.items():
            user = await users.add_user(connection, name, role, password=None, rank=3)
            tokens[name] = (await create_token(connection, user.id, "tests")).value
    await add_contacts(engine)
    settings = fast_settings(max_attempts=1)
    settings = settings.model_copy(
        update={"alerts": AlertSettings().relative_to(SHIPPED_CONFIG_DIR)}
    )
    loaded = LoadedSettings(
        settings, None, {"session_key": SecretStr("k" * 32)}, directory=platforms.directory
    )
    dispatcher = Dispatcher(
        engine, platforms.directory, settings, worker_id="api-test", public_base=PUBLIC_BASE
    )
    async with TestClient(TestServer(create_app(loaded, engine))) as client:
        yield Desk(client, tokens, dispatcher)


async def test_status_per_alert_channel_and_target_with_links(
    desk: Desk, platforms: Platforms
) -> None:
    alert_id = await desk.release(["x", "mastodon", "sms"])
    await desk.dispatcher.drain()
    status, body = await desk.call("GET", f"/alerts/{alert_id}/deliveries", "responder")
    assert status == 200, body
    [version] = body["versions"]
    # What each target says (states, attempts, errors) when it is not: the reason is in there.
    assert version["state"] == "completed", version["targets"]
    targets = {t["target"]: t for t in version["targets"]}
    assert set(targets) == {"x-live", "mastodon-live", "sms-live"}
    assert targets["sms-live"]["counts"] == {"delivered": 3}
    for name in ("x-live", "mastodon-live"):
        [delivery] = targets[name]["deliveries"]
        assert delivery["state"] == "delivered"
        assert delivery["url"].startswith("http"), name
    masked = [d["recipient"] for d in targets["sms-live"]["deliveries"]]
    assert all("***" in m for m in masked), "phone numbers must not be shown whole"

    status, problem = await desk.call("GET", "/alerts/9999/deliveries", "officer")
    assert status == 404 and "9999" in problem["detail"]


async def test_pause_holds_resume_releases_and_both_are_audited(
    desk: Desk, engine: AsyncEngine, platforms: Platforms
) -> None:
    status, body = await desk.call(
        "POST", "/channels/x-live/pause", "admin", {"reason": "account compromised"}
    )
    assert (status, body["paused"]) == (200, True)
    status, problem = await desk.call("POST", "/channels/x-live/pause", "officer", {})
    assert status == 403 and problem["permission"] == "manage_channels"

    alert_id = await desk.release(["x", "mastodon"])
    await desk.dispatcher.drain()
    assert not platforms.posts("x") and platforms.posts("mastodon")
    status, body = await desk.call("GET", "/channels", "admin")
    channels = {c["name"]: c for c in body["channels"]}
    assert channels["x-live"]["paused"] and channels["x-live"]["health"] == "paused"
    assert channels["x-live"]["pause_reason"] == "account compromised"
    assert channels["x-live"]["waiting"]["held"] == 1
    assert channels["mastodon-live"]["health"] == "ok"

    status, body = await desk.call("POST", "/channels/x-live/resume", "admin")
    assert (status, body["queued"]) == (200, 1)
    await desk.dispatcher.drain()
    assert platforms.posts("x")
    status, body = await desk.call("GET", f"/alerts/{alert_id}/deliveries", "officer")
    assert all(t["counts"] == {"delivered": 1} for t in body["versions"][0]["targets"])

    async with engine.connect() as connection:
        audited = (
            await connection.execute(
                select(audit_log.c.action, audit_log.c.actor, audit_log.c.details).where(
                    audit_log.c.action.like("channel.%")
                )
            )
        ).all()
    assert [(a.action, a.actor) for a in audited] == [
        ("channel.pause", "admin"),
        ("channel.resume", "admin"),
    ]
    assert audited[0].details["reason"] == "account compromised"

    status, problem = await desk.call("POST", "/channels/no-such-target/pause", "admin", {})
    assert status == 404 and "x-live" in problem["detail"]


async def test_the_dead_letter_list_and_requeue(desk: Desk, platforms: Platforms) -> None:
    webhook = platforms.emulator("webhook")
    webhook.add_fault(Fault(FaultKind.server_error, status=400, method="POST"))
    await desk.release(["webhook"])
    await desk.dispatcher.drain()  # the partner refuses it: dead at once, with its reason
    status, body = await desk.call("GET", "/deliveries?state=dead", "officer")
    assert status == 200
    [dead] = body["deliveries"]
    assert dead["target"] == "webhook-live"
    assert "400" in dead["last_error"]

    status, problem = await desk.call("POST", f"/deliveries/{dead['id']}/requeue", "officer")
    assert status == 403
    status, body = await desk.call("POST", f"/deliveries/{dead['id']}/requeue", "admin")
    assert (status, body["state"]) == (200, "queued")
    status, problem = await desk.call("POST", f"/deliveries/{dead['id']}/requeue", "admin")
    assert status == 409 and problem["state"] == "queued"
    await desk.dispatcher.drain()
    assert len(webhook.effects_of("post")) == 1
    status, body = await desk.call("GET", "/deliveries?state=dead", "officer")
    assert body["deliveries"] == []
    status, problem = await desk.call("GET", "/deliveries?state=lost", "officer")
    assert status == 422 and problem["errors"][0]["field"] == "query.state"
    # An id past what the database stores is a bad request, not a failure (the fuzzer's find).
    status, problem = await desk.call("GET", f"/deliveries?before={2**63}", "officer")
    assert status == 422 and problem["errors"][0]["field"] == "query.before"


async def test_live_events_stream_delivery_changes(desk: Desk) -> None:
    alert_id = await desk.release(["mastodon"])
    response = await desk.client.get(
        f"/api/v1/events?alert_id={alert_id}",
        headers={"Authorization": f"Bearer {desk.tokens['responder']}"},
    )
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    await desk.dispatcher.drain()
    states: list[str] = []

    async def read_until_delivered() -> None:
        while "delivered" not in states:
            line = (await response.content.readline()).decode()
            if line.startswith("data: "):
                event = json.loads(line[len("data: ") :])
                assert event["alert_id"] == alert_id
                assert event["target"] == "mastodon-live"
                states.append(event["state"])

    await asyncio.wait_for(read_until_delivered(), 10)
    assert states[-1] == "delivered"
    response.close()
