"""The service with every platform emulator wired in: webhooks pushed to the service's own
/api/v1/hooks/<target>, polled targets read from the emulators, one token per role."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.roles import Role
from broadcaster import users
from broadcaster.auth.tokens import create_token
from broadcaster.emulated import EmulatedPlatforms, start_emulated_platforms
from broadcaster.settings import (
    SHIPPED_CONFIG_DIR,
    AlertSettings,
    LoadedSettings,
    Settings,
    TriageSettings,
)
from broadcaster.storage.schema import alert_versions, alerts, deliveries, reports
from broadcaster.storage.schema import users as users_table
from broadcaster.triage import runtime
from broadcaster.triage.runtime import TRIAGE, Triage
from broadcaster.web_app import create_app
from channels.emulators.sms import AUTH_TOKEN
from channels.sms import twilio_signature
from tests.channels import samples
from tests.conftest import REPO_ROOT

INBOUND = REPO_ROOT / "tests" / "data" / "inbound"
WEBHOOK_CHANNELS = ("x", "facebook", "instagram", "sms")
PEOPLE = {
    "responder": Role.responder,
    "responder2": Role.responder,
    "officer": Role.duty_officer,
    "approver": Role.approver,
    "admin": Role.administrator,
}


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class TriageApp:
    client: TestClient[web.Request, web.Application]
    platforms: EmulatedPlatforms
    tokens: dict[str, str]
    clock: FakeClock
    engine: AsyncEngine
    user_ids: dict[str, int] = field(default_factory=dict)

    @property
    def triage(self) -> Triage:
        return self.client.app[TRIAGE]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def hook_url(self, target: str) -> str:
        return str(self.client.make_url(f"/api/v1/hooks/{target}"))

    async def call(
        self, method: str, path: str, who: str | None = "responder", json: object = None
    ) -> tuple[int, Any]:
        headers = self.auth(who) if who else {}
        response = await self.client.request(method, f"/api/v1{path}", headers=headers, json=json)
        body = (
            await response.json()
            if response.content_type.endswith("json")
            else await response.text()
        )
        return response.status, body

    async def post_hook(self, target: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        response = await self.client.post(f"/api/v1/hooks/{target}", data=body, headers=headers)
        return response.status, await response.text()

    async def report_count(self) -> int:
        async with self.engine.connect() as connection:
            return int(await connection.scalar(select(func.count()).select_from(reports)) or 0)


def settings_for_tests(**triage: Any) -> Settings:
    # Polling and escalation run only when a test asks: the loops' first run is an hour away.
    values: dict[str, Any] = {"poll_interval_seconds": 3600.0, **triage}
    return Settings(
        alerts=AlertSettings().relative_to(SHIPPED_CONFIG_DIR), triage=TriageSettings(**values)
    )


@pytest.fixture
async def platforms() -> AsyncIterator[EmulatedPlatforms]:
    started = await start_emulated_platforms(timeout_seconds=5.0)
    yield started
    await started.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_app_fixture(*, writer_process: bool = False, **triage: Any) -> Callable[..., Any]:
    """An app fixture; `writer_process`: reports are written in a child process, as `serve`
    writes them (off elsewhere: a child per test costs a second of start-up)."""

    async def fixture(
        engine: AsyncEngine,
        platforms: EmulatedPlatforms,
        clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch,
    ) -> AsyncIterator[TriageApp]:
        tokens: dict[str, str] = {}
        ids: dict[str, int] = {}
        async with engine.begin() as connection:
            for username, role in PEOPLE.items():
                user = await users.add_user(connection, username, role, password=None)
                tokens[username] = (await create_token(connection, user.id, "tests")).value
                ids[username] = user.id
        monkeypatch.setattr(runtime, "utc_now", clock)
        loaded = LoadedSettings(
            settings_for_tests(**triage),
            None,
            {"session_key": SecretStr("k" * 32)},
            platforms.directory,
        )
        web_app = create_app(loaded, engine, triage_writer_process=writer_process)
        async with TestClient(TestServer(web_app)) as client:
            app = TriageApp(client, platforms, tokens, clock, engine, ids)
            for channel in WEBHOOK_CHANNELS:
                platforms.emulators[channel].webhook_url = app.hook_url(f"{channel}-live")
            yield app

    return fixture


triage_app = pytest.fixture(make_app_fixture())


# --- signing recorded payloads as each platform does ---------------------------------------------


def recorded(name: str) -> bytes:
    return (INBOUND / name).read_bytes().strip()


def x_signature(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "x-twitter-webhooks-signature": "sha256=" + base64.b64encode(digest).decode(),
    }


def meta_signature(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + digest}


def twilio_headers(url: str, body: bytes, token: str = AUTH_TOKEN) -> dict[str, str]:
    fields = parse_qsl(body.decode(), keep_blank_values=True)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": twilio_signature(token, url, fields),
    }


def signed_recording(app: TriageApp, channel: str, name: str) -> tuple[bytes, dict[str, str]]:
    """A recorded payload of `channel`, signed with its emulator's secret."""
    body = recorded(name)
    emulators = app.platforms.emulators
    if channel == "x":
        return body, x_signature(emulators["x"].consumer_secret, body)  # type: ignore[attr-defined]
    if channel in ("facebook", "instagram"):
        return body, meta_signature(emulators[channel].app_secret, body)  # type: ignore[attr-defined]
    return body, twilio_headers(app.hook_url(f"{channel}-live"), body)


def path_of(name: str) -> Path:
    return INBOUND / name


# --- an alert in force, as the dispatcher leaves it ---------------------------------------------


async def released_alert(
    engine: AsyncEngine,
    *,
    post_id: str,
    channel: str = "x",
    status: str = "Actual",
    msg_type: str = "Alert",
    now: datetime,
) -> int:
    """An alert whose current version went out (released) with one delivery that posted
    `post_id` on `channel`; its area is the sample Riverside area (around 38.05, -121.95),
    and it expires six hours after `now`."""
    content = samples.content().model_dump(mode="json")
    content["status"] = status
    content["msg_type"] = msg_type
    for info in content["infos"]:
        info["expires"] = (now + timedelta(hours=6)).isoformat()
    if msg_type != "Alert":
        content["references"] = ["alerts@county.example.gov,CB-1-1,2026-11-21T03:00:00+00:00"]
    async with engine.begin() as connection:
        author = await connection.scalar(select(func.min(users_table.c.id)))
        if author is None:
            author = (
                await users.add_user(connection, "author", Role.duty_officer, password=None)
            ).id
        alert_id = int(
            (
                await connection.execute(
                    alerts.insert()
                    .values(mode="live", created_by=author, created_at=now)
                    .returning(alerts.c.id)
                )
            ).scalar_one()
        )
        version_id = int(
            (
                await connection.execute(
                    alert_versions.insert()
                    .values(
                        alert_id=alert_id,
                        number=1,
                        state="released",
                        status=status,
                        msg_type=msg_type,
                        content=content,
                        content_hash="0" * 64,
                        author_id=author,
                        authors=[author],
                        created_at=now,
                        released_at=now,
                    )
                    .returning(alert_versions.c.id)
                )
            ).scalar_one()
        )
        await connection.execute(
            alerts.update().where(alerts.c.id == alert_id).values(current_version_id=version_id)
        )
        await connection.execute(
            deliveries.insert().values(
                version_id=version_id,
                channel=channel,
                target=f"{channel}-live",
                target_mode="live",
                kind="publish",
                state="delivered",
                idempotency_key=f"test:{alert_id}:{channel}",
                external_id=post_id,
                created_at=now,
            )
        )
    return alert_id
