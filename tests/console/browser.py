"""What the browser tests run: the whole service in this process - every platform emulator,
the web application with its in-process dispatcher and triage polling - on 127.0.0.1, people
with passwords and second factors, and Debian's Chromium driven by Playwright.

Chromium is never downloaded: the tests use /usr/bin/chromium (CI installs Debian's package)
and are skipped, saying why, only when it is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pyotp
import pytest
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.roles import Role
from broadcaster import contacts, users
from broadcaster.auth import totp
from broadcaster.dispatch.running import dispatching
from broadcaster.emulated import DEMO_LIST, EmulatedPlatforms, start_emulated_platforms
from broadcaster.settings import (
    SHIPPED_CONFIG_DIR,
    AlertSettings,
    DispatchSettings,
    LoadedSettings,
    Settings,
    TriageSettings,
)
from broadcaster.web_app import create_app
from broadcaster.web_keys import OUTBOX

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO_ROOT: Final = Path(__file__).resolve().parents[2]
SCREENSHOTS: Final = REPO_ROOT / "test-artifacts" / "screenshots"
PEOPLE: Final = {
    "officer": (Role.duty_officer, 1, "Dana Duty"),
    "approver1": (Role.approver, 2, "Alex First"),
    "approver2": (Role.approver, 3, "Sam Second"),
    "responder": (Role.responder, 1, "Riley Response"),
    "admin": (Role.administrator, 3, "Ada Admin"),
}
PASSWORD: Final = "a long passphrase for the drill"
PHONE: Final = {"width": 360, "height": 740}
DESK: Final = {"width": 1280, "height": 900}

# Every browser test module is marked with this: skipped, saying why, only without Chromium.
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"Debian's Chromium is not installed at {CHROMIUM} (.ci/run installs the `chromium` "
    "package when it is missing); the browser tests never download a browser",
)


async def fits_screen(page: Any, width: int) -> None:
    """Nothing wider than the screen: no sideways scrolling on a phone."""
    scroll = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{page.url} is {scroll} px wide on a {width} px screen"


STEP: Final = totp.STEP_SECONDS


# A code must stay acceptable at least this long after it is made: the browser still has to
# type it and submit it, and a code for a step about to leave the window would be refused then.
CODE_LIFETIME_AT_LEAST: Final = 10.0


def step_still_valid_for(step: int, now: float) -> float:
    """Seconds for which the service will still accept a code of `step` (one step of drift):
    it is accepted until the step after next begins."""
    return (step + totp.VALID_WINDOW + 1) * STEP - now


@dataclass
class Codes:
    """Fresh TOTP codes, each usable once: the earliest unused time step the service accepts
    now and will still accept for CODE_LIFETIME_AT_LEAST, waiting only if there is none."""

    secrets: dict[str, str]
    last_step: dict[str, int] = field(default_factory=dict)

    async def fresh(self, who: str) -> str:
        while True:
            now = time.time()
            current = int(now) // STEP
            step = max(current - totp.VALID_WINDOW, self.last_step.get(who, -1) + 1)
            while step_still_valid_for(step, now) < CODE_LIFETIME_AT_LEAST:
                step += 1
            if step <= current + totp.VALID_WINDOW:
                self.last_step[who] = step
                return pyotp.TOTP(self.secrets[who]).generate_otp(step)
            await asyncio.sleep(1.0)


@dataclass
class Service:
    url: str
    platforms: EmulatedPlatforms
    app: web.Application
    codes: Codes


def settings(directory: Any) -> LoadedSettings:
    return LoadedSettings(
        Settings(
            alerts=AlertSettings().relative_to(SHIPPED_CONFIG_DIR),
            # The emulators enforce no posting rate; replies are polled every second.
            dispatch=DispatchSettings(honour_platform_rates=False, poll_interval_seconds=0.2),
            triage=TriageSettings(poll_interval_seconds=1.0),
        ),
        None,
        {"session_key": SecretStr("browser-test-session-key-0123456789")},
        directory,
    )


async def _people(engine: AsyncEngine) -> dict[str, str]:
    secrets: dict[str, str] = {}
    async with engine.begin() as connection:
        for name, (role, rank, display) in PEOPLE.items():
            person = await users.add_user(
                connection, name, role, password=PASSWORD, display_name=display, rank=rank
            )
            secrets[name] = (await totp.enrol(connection, person.id, name)).secret
        await contacts.import_contacts(
            connection,
            DEMO_LIST,
            [contacts.ContactRow("+15555550101", "ana@example.org", None, None, "en")],
        )
    return secrets


@contextlib.asynccontextmanager
async def running_service(engine: AsyncEngine) -> AsyncIterator[Service]:
    platforms = await start_emulated_platforms()
    loaded = settings(platforms.directory)
    secrets = await _people(engine)
    app = create_app(loaded, engine)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        wake = app[OUTBOX].wake
        assert wake is not None
        async with dispatching(engine, loaded, "browser-test", wake):
            yield Service(url, platforms, app, Codes(secrets))
    finally:
        await runner.cleanup()
        await platforms.stop()


class Screens:
    """Saves a screenshot of every page the tests visit, numbered in the order seen."""

    def __init__(self, directory: Path = SCREENSHOTS) -> None:
        self.directory = directory
        self.count = 0
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("*.png"):
            old.unlink()

    async def shot(self, page: Any, name: str) -> Path:
        self.count += 1
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        path = self.directory / f"{self.count:02d}-{slug}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path
