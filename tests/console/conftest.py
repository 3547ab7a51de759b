"""The console over a clean database (SQLite and PostgreSQL), one person per role, a fake clock,
and helpers to act as a signed-in person: session cookies and CSRF tokens sent by hand, since
a browser's cookie jar is not what these tests are about (the Playwright tests drive one)."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from aiohttp import ClientResponse, DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.roles import Role
from broadcaster import users
from broadcaster.auth import totp
from broadcaster.auth.sessions import CSRF_FIELD, SESSION_COOKIE, SIGN_IN_COOKIE, digest
from broadcaster.auth.web_sessions import SESSIONS
from broadcaster.settings import (
    SHIPPED_CONFIG_DIR,
    AlertSettings,
    DatabaseSettings,
    LoadedSettings,
    Settings,
)
from broadcaster.storage.engine import create_engine
from broadcaster.targets import Directory
from broadcaster.users import User
from broadcaster.web_app import create_app

# One person per role; only `officer` gets a password (argon2 is slow on purpose).
PEOPLE = {
    "officer": (Role.duty_officer, 1),
    "approver1": (Role.approver, 2),
    "approver2": (Role.approver, 3),
    "responder": (Role.responder, 1),
    "admin": (Role.administrator, 3),
}
# The first person of each role speaks for it in the access tests.
PERSON_FOR = {role: next(n for n, (r, _) in PEOPLE.items() if r is role) for role in Role}
PASSWORD = "correct horse battery staple"
CSRF_INPUT = re.compile(rf'name="{CSRF_FIELD}" value="([^"]+)"')


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Console:
    client: TestClient[web.Request, web.Application]
    app: web.Application
    clock: FakeClock
    people: dict[str, User]
    totp_secrets: dict[str, str]
    cookies: dict[str, str] = field(default_factory=dict)  # username -> session cookie value

    def code(self, who: str, *, steps_ahead: int = 0) -> str:
        """A TOTP code for `who` at the fake clock's time (plus whole 30 s steps)."""
        moment = self.clock() + timedelta(seconds=30 * steps_ahead)
        return pyotp.TOTP(self.totp_secrets[who]).at(moment)

    async def sign_in_directly(self, who: str, *, second_factor: bool = True) -> str:
        """A session for `who` as if they had signed in (without argon2 and the forms)."""
        store = self.app[SESSIONS]
        value, session = await store.start(self.people[who], "127.0.0.1")
        if second_factor:
            await store.second_factor_verified(session.id, store.clock())
        self.cookies[who] = value
        return value

    def csrf_for(self, who: str) -> str:
        return self.app[SESSIONS].csrf_token(digest(self.cookies[who]))

    def headers(self, who: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if who is not None:
            headers["Cookie"] = f"{SESSION_COOKIE}={self.cookies[who]}"
        return headers

    async def get(self, path: str, who: str | None = None) -> ClientResponse:
        return await self.client.get(path, headers=self.headers(who), allow_redirects=False)

    async def post(
        self,
        path: str,
        who: str | None,
        data: Mapping[str, str] | None = None,
        *,
        csrf: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> ClientResponse:
        form = dict(data or {})
        if csrf and who is not None:
            form[CSRF_FIELD] = self.csrf_for(who)
        return await self.client.post(
            path, data=form, headers=self.headers(who, headers), allow_redirects=False
        )

    async def sign_in_form_token(self) -> tuple[str, str]:
        """Open the sign-in page: (its pre-session cookie, the form's CSRF token)."""
        response = await self.client.get("/sign-in")
        cookie = response.cookies[SIGN_IN_COOKIE].value
        found = CSRF_INPUT.search(await response.text())
        assert found is not None
        return cookie, found.group(1)


def loaded_settings(directory: Directory | None = None) -> LoadedSettings:
    return LoadedSettings(
        Settings(alerts=AlertSettings().relative_to(SHIPPED_CONFIG_DIR)),
        None,
        {"session_key": SecretStr("console-test-key-" + "k" * 16)},
        directory or Directory(),
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def directory() -> Directory:
    """The channel targets the console knows; flow tests use every emulator instead."""
    return Directory()


@pytest.fixture
async def console(
    engine: AsyncEngine, clock: FakeClock, directory: Directory
) -> AsyncIterator[Console]:
    people: dict[str, User] = {}
    secrets: dict[str, str] = {}
    async with engine.begin() as connection:
        for username, (role, rank) in PEOPLE.items():
            password = PASSWORD if username == "officer" else None
            person = await users.add_user(connection, username, role, password=password, rank=rank)
            people[username] = person
            secrets[username] = (await totp.enrol(connection, person.id, username)).secret
    app = create_app(loaded_settings(directory), engine)
    app[SESSIONS].clock = clock
    async with TestClient(TestServer(app), cookie_jar=DummyCookieJar()) as client:
        yield Console(client, app, clock, people, secrets)


@pytest.fixture
async def engine_file(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[AsyncEngine]:
    """The browser tests run on the embedded SQLite database (the pages' storage is tested on both
    backends elsewhere); a copy of the migrated template is fastest."""
    path = tmp_path / "browser.db"
    shutil.copyfile(sqlite_template, path)
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"))
    yield engine
    await engine.dispose()
