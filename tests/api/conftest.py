"""An API client over a clean database, with one signed-in token per role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pyotp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.roles import Role
from broadcaster import users
from broadcaster.auth import totp
from broadcaster.auth.tokens import create_token
from broadcaster.settings import SHIPPED_CONFIG_DIR, AlertSettings, LoadedSettings, Settings
from broadcaster.targets import Directory
from broadcaster.web_app import create_app

# Two people per role so tests can show that one person counts once and authors never approve.
PEOPLE = {
    "officer": (Role.duty_officer, 1),
    "officer2": (Role.duty_officer, 1),
    "approver1": (Role.approver, 2),
    "approver2": (Role.approver, 3),
    "approver3": (Role.approver, 3),
    "responder": (Role.responder, 1),
    "admin": (Role.administrator, 3),
}


@dataclass
class ApiClient:
    client: TestClient[web.Request, web.Application]
    tokens: dict[str, str]
    totp_secrets: dict[str, str]

    def totp(self, who: str) -> str:
        """A current second-factor code for `who` (each code can be used once)."""
        return pyotp.TOTP(self.totp_secrets[who]).now()

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def call(
        self, method: str, path: str, who: str | None = None, json: object = None
    ) -> tuple[int, object]:
        headers = self.auth(who) if who else {}
        response = await self.client.request(method, f"/api/v1{path}", headers=headers, json=json)
        body = (
            await response.json()
            if response.content_type.endswith("json")
            else await response.text()
        )
        return response.status, body


@pytest.fixture
def directory() -> Directory:
    """The channel targets the app knows; tests that publish override this with emulators."""
    return Directory()


@pytest.fixture
async def api(engine: AsyncEngine, directory: Directory) -> AsyncIterator[ApiClient]:
    tokens: dict[str, str] = {}
    secrets: dict[str, str] = {}
    async with engine.begin() as connection:
        for username, (role, rank) in PEOPLE.items():
            # No password: API tests sign in with tokens, and argon2 is slow on purpose.
            user = await users.add_user(connection, username, role, password=None, rank=rank)
            tokens[username] = (await create_token(connection, user.id, "tests")).value
            secrets[username] = (await totp.enrol(connection, user.id, username)).secret
    loaded = LoadedSettings(
        Settings(alerts=AlertSettings().relative_to(SHIPPED_CONFIG_DIR)),
        None,
        {"session_key": SecretStr("k" * 32)},
        directory,
    )
    async with TestClient(TestServer(create_app(loaded, engine))) as client:
        yield ApiClient(client, tokens, secrets)
