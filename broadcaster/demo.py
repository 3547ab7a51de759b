"""`broadcaster demo`: the whole service on embedded defaults, with demo users, for a first look.

The demo always uses its own SQLite file (var/demo/broadcaster.db), never the configured
database: it prints passwords, and those must never become valid on a real installation.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.roles import Role
from broadcaster import audit, contacts, users
from broadcaster.auth import totp
from broadcaster.contacts import ContactRow
from broadcaster.emulated import DEMO_LIST, start_emulated_platforms
from broadcaster.service import serve
from broadcaster.settings import DatabaseSettings, LoadedSettings
from broadcaster.targets import Directory
from channels.base import InboundMode
from channels.registry import CHANNELS

DEMO_DATABASE = Path("var/demo/broadcaster.db")


@dataclass(frozen=True)
class DemoUser:
    username: str
    display_name: str
    role: Role
    rank: int


DEMO_USERS = (
    DemoUser("officer", "Dana Duty (duty officer)", Role.duty_officer, 1),
    DemoUser("approver1", "Alex First (approver)", Role.approver, 2),
    DemoUser("approver2", "Sam Second (approver)", Role.approver, 3),
    DemoUser("responder", "Riley Response (responder)", Role.responder, 1),
    DemoUser("admin", "Ada Admin (administrator)", Role.administrator, 3),
)


# The demo list: people on the emulated SMS and email platforms (numbers in the 555-01xx range
# reserved for fiction), some with a location so area filtering has something to filter.
DEMO_CONTACTS = (
    ContactRow("+15555550101", "ana@example.org", 21.3069, -157.8583, "en"),
    ContactRow("+15555550102", "ben@example.org", 21.3156, -157.8581, "en"),
    ContactRow("+15555550103", "carla@example.org", None, None, "es"),
    ContactRow("+15555550104", None, 21.4389, -158.0001, "fr"),
)


def demo_settings(loaded: LoadedSettings, directory: Directory) -> LoadedSettings:
    database = DatabaseSettings(url=f"sqlite+aiosqlite:///{DEMO_DATABASE}")
    settings = loaded.settings.model_copy(update={"database": database})
    return LoadedSettings(
        settings, loaded.source, {"session_key": loaded.secret("session_key")}, directory
    )


@dataclass(frozen=True)
class DemoCredentials:
    password: str
    totp_uri: str  # the second factor (approvers and administrators need one)


async def ensure_demo_users(engine: AsyncEngine) -> dict[str, DemoCredentials]:
    """Create the demo users, or give existing ones fresh credentials; return them."""
    credentials: dict[str, DemoCredentials] = {}
    async with engine.begin() as connection:
        for demo in DEMO_USERS:
            password = secrets.token_urlsafe(12)
            if await users.get_user(connection, demo.username) is None:
                await users.add_user(
                    connection,
                    demo.username,
                    demo.role,
                    password=password,
                    display_name=demo.display_name,
                    rank=demo.rank,
                )
            else:
                await users.set_password(connection, demo.username, password)
            user = await users.require_user(connection, demo.username)
            enrolment = await totp.enrol(connection, user.id, user.username)
            credentials[demo.username] = DemoCredentials(password, enrolment.uri)
        await audit.append(
            connection,
            audit.AuditEntry(
                actor="system",
                action="demo.users_ready",
                details={"users": [d.username for d in DEMO_USERS]},
            ),
        )
    return credentials


async def ensure_demo_contacts(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await contacts.import_contacts(
            connection,
            DEMO_LIST,
            DEMO_CONTACTS,
            replace=True,
            description="Demo residents on the emulated SMS and email platforms",
        )


async def run_demo(loaded: LoadedSettings, *, port: int | None = None) -> None:
    credentials: dict[str, DemoCredentials] = {}
    platforms = await start_emulated_platforms()

    async def prepare(engine: AsyncEngine) -> None:
        credentials.update(await ensure_demo_users(engine))
        await ensure_demo_contacts(engine)

    def announce(url: str) -> None:
        # Platforms that push the public's replies deliver them to this service's webhooks.
        for name, emulator in platforms.emulators.items():
            if CHANNELS[name].limits.inbound in (InboundMode.webhook, InboundMode.poll_and_webhook):
                emulator.webhook_url = f"{url}/api/v1/hooks/{name}-live"
        lines = [
            "",
            "Crisis Broadcaster demo is running (embedded SQLite: var/demo/broadcaster.db).",
            "",
            "Demo users (passwords and second factors are new each time the demo starts):",
        ]
        for demo in DEMO_USERS:
            password = credentials[demo.username].password
            lines.append(f"  {demo.role.value:<14} {demo.username:<10} {password}")
        lines += ["", "Second factor (TOTP) for each, to add to an authenticator app:"]
        for demo in DEMO_USERS:
            lines.append(f"  {demo.username:<10} {credentials[demo.username].totp_uri}")
        lines += ["", "Platform emulators (every post the service makes lands here):"]
        for name, emulator in platforms.emulators.items():
            lines.append(f"  {name:<10} {emulator.url}/_emulator/effects")
        lines += [
            "",
            f"Console:   {url}/",
            f"Readiness: {url}/readyz",
            "",
            "Press Ctrl-C to stop.",
            "",
        ]
        print("\n".join(lines), flush=True)  # for the person at the terminal, not the log

    try:
        await serve(
            demo_settings(loaded, platforms.directory),
            prepare=prepare,
            on_ready=announce,
            port=port,
        )
    finally:
        await platforms.stop()
    print("Demo stopped.", file=sys.stderr, flush=True)
