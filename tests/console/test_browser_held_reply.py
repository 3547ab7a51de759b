"""A held free-text reply in a real browser (Debian's Chromium, driven by Playwright): a member
of the public answers our post on X; one responder, on a phone, writes a reply, which waits; a
second responder finds it from the queue, reads it and approves it, and only then does X carry
it. Screenshots go to test-artifacts/screenshots/held-reply/."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.roles import Role
from broadcaster import users
from broadcaster.auth import totp
from broadcaster.storage.schema import reports
from tests.channels import samples
from tests.console.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    PHONE,
    SCREENSHOTS,
    Screens,
    Service,
    fits_screen,
    needs_chromium,
    running_service,
)

pytestmark = needs_chromium
playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

SAID = "Trapped in the attic at 40 Elm St with grandma, water at the stairs"
REPLY = "A boat crew is on its way to 40 Elm St. Stay in the attic and keep a light on."


async def _second_responder(engine: AsyncEngine, service: Service) -> None:
    async with engine.begin() as connection:
        person = await users.add_user(
            connection,
            "responder2",
            Role.responder,
            password=PASSWORD,
            display_name="Robin Second",
            rank=1,
        )
        service.codes.secrets["responder2"] = (
            await totp.enrol(connection, person.id, "responder2")
        ).secret


async def _sign_in(
    browser: Any, service: Service, screens: Screens, who: str, viewport: dict[str, int]
) -> Any:
    context = await browser.new_context(base_url=service.url, viewport=viewport)
    page = await context.new_page()
    await page.goto("/console/reports")
    await page.get_by_label("Username").fill(who)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_label("6-digit code from your authenticator app").fill(
        await service.codes.fresh(who)
    )
    await page.get_by_role("button", name="Continue").click()
    await expect(page).to_have_url(re.compile(r"/console/reports$"))  # back where they were going
    await screens.shot(page, f"queue {who}")
    return page


def _carried(service: Service) -> list[str]:
    return [str(e.data.get("text")) for e in service.platforms.emulators["x"].effects_of("post")]


async def test_a_held_reply_is_approved_by_a_second_responder_in_a_browser(
    engine_file: AsyncEngine,
) -> None:
    screens = Screens(SCREENSHOTS / "held-reply")
    async with running_service(engine_file) as service, playwright_api.async_playwright() as p:
        await _second_responder(engine_file, service)
        adapter = service.platforms.directory.adapter("x-live")
        await adapter.publish(adapter.render(samples.version())[0], "alert-x")
        emulator = service.platforms.emulators["x"]
        emulator.webhook_url = f"{service.url}/api/v1/hooks/x-live"
        await emulator.generate_replies(1, SAID, None)  # answered once the report is stored
        async with engine_file.connect() as connection:
            report_id = await connection.scalar(select(reports.c.id))
        assert report_id is not None, "the webhook made no report"
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            await _path(browser, service, screens, int(report_id))
        finally:
            await browser.close()
    assert screens.count >= 6


async def _path(browser: Any, service: Service, screens: Screens, report_id: int) -> None:
    # --- the first responder, on a phone, writes a reply: it waits -----------------------------
    writer = await _sign_in(browser, service, screens, "responder", PHONE)
    await writer.get_by_role("link", name=re.compile("Trapped in the attic")).click()
    await writer.get_by_label(re.compile("^Or write a reply")).fill(REPLY)
    await writer.get_by_role("button", name="Send reply").click()
    await expect(writer.get_by_role("status")).to_contain_text("Reply recorded")
    held = writer.get_by_role("region", name="Replies waiting for a second responder")
    await expect(held).to_contain_text(REPLY)
    await expect(held).to_contain_text("you cannot approve your own")
    await expect(writer.get_by_role("button", name="Approve and send")).to_have_count(0)
    await fits_screen(writer, PHONE["width"])
    await screens.shot(writer, "held reply seen by its writer on a phone")
    assert REPLY not in _carried(service)

    # --- the second responder finds it from the queue and approves it ------------------------
    second = await _sign_in(browser, service, screens, "responder2", PHONE)
    waiting = second.get_by_role("region", name="1 reply waits for a second responder")
    await expect(waiting).to_contain_text("reply by responder")
    await fits_screen(second, PHONE["width"])
    await screens.shot(second, "queue with a reply waiting")
    await waiting.get_by_role("link", name=f"Report {report_id}").click()
    await expect(second).to_have_url(re.compile(rf"/console/reports/{report_id}#held$"))
    held = second.get_by_role("region", name="Replies waiting for a second responder")
    await expect(held).to_contain_text("Written by responder")
    await expect(held).to_contain_text(REPLY)
    approve = held.get_by_role("button", name="Approve and send")
    await expect(approve).to_have_accessible_description(REPLY)
    await expect(held.get_by_role("button", name="Refuse (never sent)")).to_be_visible()
    await fits_screen(second, PHONE["width"])
    await screens.shot(second, "held reply seen by a second responder")
    assert REPLY not in _carried(service)  # nothing went out before the approval
    await approve.focus()
    await second.keyboard.press("Enter")
    await expect(second.get_by_role("status")).to_contain_text("Reply approved and sent.")
    await expect(second.get_by_role("region", name="Replies")).to_contain_text(
        "approved by responder2"
    )
    await screens.shot(second, "reply approved and sent")
    assert _carried(service).count(REPLY) == 1  # X carried it, once

    await second.get_by_role("navigation").get_by_role("link", name="Public reports").click()
    await expect(second.locator("[data-live-summary]")).not_to_contain_text("second responder")
    await screens.shot(second, "queue with nothing waiting")
