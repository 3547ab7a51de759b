"""The whole path in a real browser (Debian's Chromium, driven by Playwright): the officer drafts
from a template and submits it by typing ACTUAL; two approvers approve with their codes; the
deliveries reach every emulated platform and appear on the live board; a public reply reaches
the responder's queue on a 360 px phone; the officer cancels and corrects, and the correction
reaches every channel; the administrator checks the audit log. A screenshot of every page is
saved to test-artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.storage.schema import deliveries
from tests.console.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESK,
    PASSWORD,
    PHONE,
    Screens,
    Service,
    fits_screen,
    needs_chromium,
    running_service,
)

pytestmark = needs_chromium
playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

EIGHT = ("cap", "email", "facebook", "mastodon", "sms", "telegram", "webhook", "x")
WAIT_MS = 30_000


async def _tab_to(page: Any, selector: str, limit: int = 40) -> None:
    """Press Tab until `selector` has the focus: proves it is reachable by keyboard alone."""
    for _ in range(limit):
        if await page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"{selector} cannot be reached with the Tab key")


async def _sign_in(
    browser: Any,
    service: Service,
    screens: Screens,
    who: str,
    *,
    viewport: dict[str, int] = DESK,
    keyboard: bool = False,
) -> Any:
    context = await browser.new_context(base_url=service.url, viewport=viewport)
    page = await context.new_page()
    await page.goto("/console")
    await expect(page).to_have_url(re.compile(r"/sign-in\?next=/console"))
    if keyboard:
        await _tab_to(page, "#username")
        await page.keyboard.type(who)
        await page.keyboard.press("Tab")
        await page.keyboard.type(PASSWORD)
        await screens.shot(page, f"sign-in {who}")
        await page.keyboard.press("Enter")
    else:
        await page.get_by_label("Username").fill(who)
        await page.get_by_label("Password").fill(PASSWORD)
        await screens.shot(page, f"sign-in {who}")
        await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/sign-in/code"))
    code_box = page.get_by_label("6-digit code from your authenticator app")
    await code_box.fill(await service.codes.fresh(who))
    await screens.shot(page, f"second factor {who}")
    if keyboard:
        await code_box.press("Enter")
    else:
        await page.get_by_role("button", name="Continue").click()
    await expect(page).to_have_url(re.compile(r"/console$"))
    await screens.shot(page, f"home {who}")
    return page


async def _approve(page: Any, service: Service, screens: Screens, who: str, alert_id: int) -> None:
    await page.get_by_role("navigation").get_by_role("link", name="Approvals").click()
    await screens.shot(page, f"approvals queue {who}")
    await page.locator(f'a[href="/console/approvals/{alert_id}"]').click()
    await expect(
        page.get_by_role("heading", name="The exact text on every channel")
    ).to_be_visible()
    for channel in EIGHT:
        await expect(page.get_by_role("heading", name=channel, exact=True)).to_be_visible()
    await screens.shot(page, f"review alert {alert_id} {who}")
    await page.get_by_label(re.compile("Code from your authenticator app")).fill(
        await service.codes.fresh(who)
    )
    await page.get_by_role("button", name=re.compile(r"^Approve this ACTUAL")).click()
    await expect(page.get_by_role("status")).to_contain_text(
        re.compile("approval is recorded|released")
    )
    await screens.shot(page, f"approved {alert_id} {who}")


async def _all_delivered(board: Any) -> None:
    await expect(board.locator("[data-live-summary]")).to_have_text(
        re.compile(r"^(\d+) of \1 delivered\.$"), timeout=WAIT_MS
    )


def _texts(service: Service, channel: str) -> str:
    return " ".join(str(effect.data) for effect in service.platforms.emulators[channel].effects)


async def _reached(service: Service, channel: str, *texts: str) -> bool:
    """Whether every text is in what the platform recorded. The SMTP emulator records in its
    own thread just after it accepts the message, so allow it a moment."""
    for _ in range(50):
        if all(text in _texts(service, channel) for text in texts):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_the_whole_path_in_a_browser(engine_file: AsyncEngine) -> None:
    screens = Screens()
    async with running_service(engine_file) as service, playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            await _path(browser, service, screens, engine_file)
        finally:
            await browser.close()
    assert screens.count >= 30


async def _path(browser: Any, service: Service, screens: Screens, engine: AsyncEngine) -> None:
    # --- the duty officer drafts from a template, by keyboard --------------------------------
    officer = await _sign_in(browser, service, screens, "officer", keyboard=True)
    await officer.get_by_role("navigation").get_by_role("link", name="New alert").click()
    await screens.shot(officer, "new alert choose mode")
    # The drill templates live on their own page, in their own colours, pattern and words.
    await officer.get_by_role("link", name=re.compile("^EXERCISE")).click()
    await expect(officer.locator(".banner-exercise")).to_contain_text("EXERCISE")
    await expect(officer.get_by_role("link", name="EXERCISE: Evacuation order")).to_be_visible()
    await expect(officer.get_by_role("link", name="Evacuation order", exact=True)).to_have_count(0)
    await screens.shot(officer, "exercise templates")
    await officer.get_by_role("link", name="Start an ACTUAL alert instead").click()
    await expect(officer.locator(".banner-actual")).to_contain_text("ACTUAL")
    await screens.shot(officer, "actual templates")
    await officer.get_by_role("link", name="Evacuation order").click()
    await officer.get_by_label(re.compile("^Area to leave")).fill("Kalihi Valley")
    await officer.get_by_label(re.compile("^What threatens it")).fill("a wildfire moving south")
    await officer.get_by_label(re.compile("^Leave before")).fill("3:30 PM")
    await officer.get_by_label(re.compile("^Route out")).fill("Likelike Highway toward Kaneohe")
    await officer.get_by_label(re.compile("^Where to go")).fill("Farrington High School gym")
    await screens.shot(officer, "template form")
    await officer.get_by_role("button", name="Save draft and preview every channel").click()
    await expect(officer.get_by_role("status")).to_contain_text("Draft saved")
    alert_id = int(re.search(r"/console/alerts/(\d+)", officer.url).group(1))  # type: ignore[union-attr]
    preview = officer.get_by_role("list", name="Preview on every channel")
    await expect(preview.get_by_role("listitem")).to_have_count(len(EIGHT))
    await expect(officer.locator(".banner-actual")).to_contain_text("A REAL ALERT")
    await screens.shot(officer, "draft with side-by-side preview")

    # Submitting without typing the mode is refused; typing it (and Enter) submits.
    await officer.get_by_role("button", name="Submit ACTUAL alert for approval").click()
    await expect(officer.get_by_role("alert")).to_contain_text("Type ACTUAL to confirm")
    await screens.shot(officer, "submit refused without typing ACTUAL")
    confirm = officer.get_by_label("Type ACTUAL to confirm")
    await confirm.focus()
    await officer.keyboard.type("ACTUAL")
    await confirm.press("Enter")
    await expect(officer.get_by_role("status")).to_contain_text("Submitted")
    await screens.shot(officer, "submitted")

    # --- two approvers approve; the officer watches the board fill in live -------------------
    board = await officer.context.new_page()
    await board.goto(f"/console/alerts/{alert_id}/deliveries")
    await expect(board.locator("[data-live-summary]")).to_have_text("0 of 0 delivered.")
    await screens.shot(board, "delivery board before release")
    first = await _sign_in(browser, service, screens, "approver1")
    await _approve(first, service, screens, "approver1", alert_id)
    second = await _sign_in(browser, service, screens, "approver2")
    await _approve(second, service, screens, "approver2", alert_id)
    await _all_delivered(board)  # arrived over server-sent events: the page was never reloaded
    await expect(board.get_by_role("link", name=re.compile("^Open post"))).not_to_have_count(0)
    await screens.shot(board, "delivery board delivered")
    for channel in EIGHT:
        assert await _reached(service, channel, "Kalihi Valley"), f"nothing reached {channel}"

    # --- a public reply reaches the responder's queue, on a phone ---------------------------
    responder = await _sign_in(browser, service, screens, "responder", viewport=PHONE)
    await responder.get_by_role("navigation").get_by_role("link", name="Public reports").click()
    await expect(responder.locator("[data-live-summary]")).to_contain_text("0 open reports")
    await screens.shot(responder, "queue empty on a phone")
    await service.platforms.emulators["mastodon"].generate_replies(
        1, "Trapped on the roof in Kalihi Valley with my kids, water rising, please help", None
    )
    row = responder.get_by_role("link", name=re.compile("Trapped on the roof"))
    await expect(row).to_be_visible(timeout=WAIT_MS)  # polled, then pushed to the open page
    await fits_screen(responder, PHONE["width"])
    await screens.shot(responder, "queue with the public reply on a phone")
    await row.click()
    await expect(responder.get_by_text("Also looking at this report")).to_be_visible()
    await fits_screen(responder, PHONE["width"])
    await screens.shot(responder, "report on a phone")
    await responder.get_by_role("button", name="Do it").click()  # acknowledge
    await expect(responder.get_by_role("status")).to_contain_text("Done")
    await expect(responder.locator(".state-acknowledged")).to_be_visible()
    await screens.shot(responder, "report acknowledged")

    # --- the officer cancels and corrects; the correction reaches every channel -------------
    await officer.goto(f"/console/alerts/{alert_id}")
    await officer.get_by_role("link", name="Cancel & correct").click()
    fix = officer.locator(".post").filter(has_text="CORRECTION to evacuation order", visible=True)
    await expect(fix.first).to_be_visible()
    await screens.shot(officer, "cancel and correct")
    await officer.get_by_role("button", name="Draft the correction").click()
    await expect(officer.get_by_role("status")).to_contain_text("Correction drafted")
    await officer.get_by_role("link", name="Edit the text").click()
    # The instruction, not only the description: it is what the SMS carries (the preview shows).
    await officer.get_by_label("What people must do").first.fill(
        "Leave before 3:30 PM by Likelike Highway. Go to McKinley High School, not Farrington."
    )
    await screens.shot(officer, "editing the correction")
    await officer.get_by_role("button", name="Save and preview").click()
    await officer.get_by_label("Type ACTUAL to confirm").fill("ACTUAL")
    await officer.get_by_role("button", name="Submit ACTUAL alert for approval").click()
    await expect(officer.get_by_role("status")).to_contain_text("Submitted")
    await screens.shot(officer, "correction submitted")
    await _approve(first, service, screens, "approver1", alert_id)
    await _approve(second, service, screens, "approver2", alert_id)
    await _all_delivered(board)
    await expect(board.get_by_text("cancel/correct earlier post").first).to_be_visible()
    await screens.shot(board, "delivery board after the correction")
    async with engine.connect() as connection:
        retracts = (
            await connection.execute(
                select(deliveries.c.channel, deliveries.c.state).where(
                    deliveries.c.kind == "retract"
                )
            )
        ).all()
    assert {channel for channel, _ in retracts} == set(EIGHT)
    assert {state for _, state in retracts} == {"delivered"}
    for channel in EIGHT:
        assert await _reached(
            service,
            channel,
            "CORRECTION to evacuation order",
            "Go to McKinley High School, not Farrington",
        ), f"the correction did not reach {channel}"

    # --- the administrator: people, channels, the audit log and its verification -------------
    admin = await _sign_in(browser, service, screens, "admin")
    for link, name in (
        ("Users", "users"),
        ("Channels", "channels"),
        ("Audit log", "audit log"),
    ):
        await admin.get_by_role("navigation").get_by_role("link", name=link).click()
        await screens.shot(admin, name)
    await admin.get_by_role("button", name="Verify the whole log").click()
    await expect(admin.get_by_role("status")).to_contain_text("The log is intact")
    await screens.shot(admin, "audit log verified")
    await admin.goto("/console/admin/retention")
    await screens.shot(admin, "retention")

    # --- signing out ends the session; the back button shows nothing ------------------------
    await officer.get_by_role("button", name="Sign out").click()
    await expect(officer.get_by_role("status")).to_contain_text("You have signed out")
    await screens.shot(officer, "signed out")
    await officer.goto(f"/console/alerts/{alert_id}")
    await expect(officer).to_have_url(re.compile(r"/sign-in\?next="))
