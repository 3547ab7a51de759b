"""The officer's and approver's pages over real channel adapters (every platform emulator):
a template becomes a draft with every channel's exact text, an ACTUAL alert is submitted only
after the officer types ACTUAL, approvers see the text and the changes and approve with a code
used once, and Cancel & correct offers the paired texts."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from broadcaster.emulated import start_emulated_platforms
from broadcaster.targets import Directory
from tests.console.conftest import Console

EVACUATION = {
    "value-area": "Kalihi Valley",
    "value-hazard": "a wildfire moving south",
    "value-time": "3:30 PM",
    "value-route": "Likelike Highway",
    "value-shelter": "Farrington High School gym",
}
ALL_EIGHT = ("cap", "email", "facebook", "mastodon", "sms", "telegram", "webhook", "x")
CONTENT_HASH = re.compile(r'name="content_hash" value="([0-9a-f]{64})"')


@pytest.fixture
async def directory() -> AsyncIterator[Directory]:
    platforms = await start_emulated_platforms()
    try:
        yield platforms.directory
    finally:
        await platforms.stop()


def _form(values: dict[str, str], channels: tuple[str, ...] = ALL_EIGHT) -> list[tuple[str, str]]:
    return [*values.items(), *(("channels", name) for name in channels)]


async def _draft(console: Console, template: str = "evacuation", mode: str = "live") -> int:
    response = await console.client.post(
        f"/console/alerts/new/{mode}/template/{template}",
        data=[*_form(EVACUATION), ("csrf_token", console.csrf_for("officer"))],
        headers=console.headers("officer"),
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    found = re.fullmatch(r"/console/alerts/(\d+)\?done=drafted", response.headers["Location"])
    assert found is not None
    return int(found.group(1))


async def _approve(console: Console, who: str, alert_id: int, code: str | None) -> tuple[int, str]:
    page = await console.get(f"/console/approvals/{alert_id}", who)
    found = CONTENT_HASH.search(await page.text())
    assert found is not None
    data = {"content_hash": found.group(1)}
    if code is not None:
        data["code"] = code
    response = await console.post(f"/console/approvals/{alert_id}/approve", who, data)
    return response.status, await response.text()


async def test_a_template_draft_shows_every_channel_and_is_unmistakably_actual(
    console: Console,
) -> None:
    await console.sign_in_directly("officer")
    alert_id = await _draft(console)
    page = await console.get(f"/console/alerts/{alert_id}", "officer")
    html = await page.text()
    assert 'class="mode-actual"' in html
    assert "banner-actual" in html and "A REAL ALERT" in html
    assert "EXERCISE" not in html.replace("EXERCISE instead", "")
    for channel in ALL_EIGHT:
        assert f'id="pv-{channel}"' in html
    assert "Evacuation order for Kalihi Valley: leave now" in html
    assert re.search(r"\d+ / 280 \(", html)  # X counts against its limit
    assert "Type ACTUAL to confirm" in html


async def test_live_and_exercise_templates_never_cross(console: Console) -> None:
    await console.sign_in_directly("officer")
    wrong_way = await console.get(
        "/console/alerts/new/live/template/exercise-evacuation", "officer"
    )
    other_way = await console.get("/console/alerts/new/exercise/template/evacuation", "officer")
    assert wrong_way.status == other_way.status == 404
    live = await (await console.get("/console/alerts/new/live", "officer")).text()
    assert "exercise-" not in live and "/template/evacuation" in live
    drill = await (await console.get("/console/alerts/new/exercise", "officer")).text()
    assert "/template/exercise-evacuation" in drill and '/template/evacuation"' not in drill


async def test_an_actual_alert_is_submitted_only_when_the_officer_types_actual(
    console: Console,
) -> None:
    await console.sign_in_directly("officer")
    alert_id = await _draft(console)
    for typed in ("", "yes", "EXERCISE", "ACTUA"):
        refused = await console.post(
            f"/console/alerts/{alert_id}/submit", "officer", {"confirm_mode": typed}
        )
        assert refused.status == 422
        assert "Type ACTUAL to confirm that this is a real alert" in await refused.text()
    page = await (await console.get(f"/console/alerts/{alert_id}", "officer")).text()
    assert "state-draft" in page
    done = await console.post(
        f"/console/alerts/{alert_id}/submit", "officer", {"confirm_mode": " actual "}
    )
    assert done.status == 303
    assert (
        "state-submitted"
        in await (await console.get(f"/console/alerts/{alert_id}", "officer")).text()
    )


async def test_an_exercise_looks_different_and_asks_for_no_typed_word(console: Console) -> None:
    await console.sign_in_directly("officer")
    alert_id = await _draft(console, "exercise-evacuation", "exercise")
    html = await (await console.get(f"/console/alerts/{alert_id}", "officer")).text()
    assert 'class="mode-exercise"' in html and "banner-exercise" in html
    assert "Type ACTUAL" not in html and "Submit exercise for approval" in html
    assert (await console.post(f"/console/alerts/{alert_id}/submit", "officer")).status == 303


async def test_two_approvers_each_with_a_code_used_once_release_it(console: Console) -> None:
    for who in ("officer", "approver1", "approver2"):
        await console.sign_in_directly(who)
    first = await _draft(console)
    second = await _draft(console)
    for alert_id in (first, second):
        await console.post(
            f"/console/alerts/{alert_id}/submit", "officer", {"confirm_mode": "ACTUAL"}
        )

    queue = await (await console.get("/console/approvals", "approver1")).text()
    assert f"/console/approvals/{first}" in queue and f"/console/approvals/{second}" in queue
    review = await (await console.get(f"/console/approvals/{first}", "approver1")).text()
    assert "This is a new alert" in review and 'id="pv-sms"' in review
    assert "needs one from the last 10m" in review

    status, body = await _approve(console, "approver1", first, None)
    assert status == 422 and "needs a fresh code" in body
    code = console.code("approver1")
    assert (await _approve(console, "approver1", first, code))[0] == 303
    # The same code again, for another alert: refused, it was used.
    status, body = await _approve(console, "approver1", second, code)
    assert status == 422 and "already used" in body
    # One person counts once.
    again = await (await console.get(f"/console/approvals/{first}", "approver1")).text()
    assert "You have approved this version" in again
    assert (await _approve(console, "approver2", first, console.code("approver2")))[0] == 303
    board = await console.get(f"/console/alerts/{first}/deliveries", "officer")
    html = await board.text()
    assert board.status == 200 and "state-released" in html
    assert "Cancel &amp; correct" in html


async def test_a_rejection_reaches_the_officer_with_its_reason(console: Console) -> None:
    await console.sign_in_directly("officer")
    await console.sign_in_directly("approver1")
    alert_id = await _draft(console)
    await console.post(f"/console/alerts/{alert_id}/submit", "officer", {"confirm_mode": "ACTUAL"})
    empty = await console.post(f"/console/approvals/{alert_id}/reject", "approver1", {"reason": ""})
    assert empty.status == 422
    await console.post(
        f"/console/approvals/{alert_id}/reject", "approver1", {"reason": "Wrong shelter address"}
    )
    html = await (await console.get(f"/console/alerts/{alert_id}", "officer")).text()
    assert "Rejected:</strong> Wrong shelter address" in html
    assert "Edit the text" in html


async def test_the_author_is_never_offered_approval(console: Console) -> None:
    """A duty officer holds approve_alerts (a second officer may read a hand-written cancel),
    but never for their own alert, and not under a rule for approvers only."""
    await console.sign_in_directly("officer")
    alert_id = await _draft(console)
    await console.post(f"/console/alerts/{alert_id}/submit", "officer", {"confirm_mode": "ACTUAL"})
    review = await (await console.get(f"/console/approvals/{alert_id}", "officer")).text()
    assert "You cannot approve this alert" in review
    assert f'action="/console/approvals/{alert_id}/approve"' not in review


async def test_editing_shows_the_change_and_voids_approvals(console: Console) -> None:
    await console.sign_in_directly("officer")
    alert_id = await _draft(console)
    edit = await (await console.get(f"/console/alerts/{alert_id}/edit", "officer")).text()
    assert "Evacuation order for Kalihi Valley: leave now" in edit
    too_long = await console.post(
        f"/console/alerts/{alert_id}/edit",
        "officer",
        {"headline-0": "x" * 200, "channels": "sms"},
    )
    assert too_long.status == 422
    assert "headline is 200 characters" in await too_long.text()
    saved = await console.client.post(
        f"/console/alerts/{alert_id}/edit",
        data=[
            ("headline-0", "Evacuation order for Kalihi Valley: leave by 3 PM"),
            ("description-0", "A wildfire is moving south."),
            ("instruction-0", "Leave now by Likelike Highway."),
            *(("channels", name) for name in ALL_EIGHT),
            ("csrf_token", console.csrf_for("officer")),
        ],
        headers=console.headers("officer"),
        allow_redirects=False,
    )
    assert saved.status == 303
    html = await (await console.get(f"/console/alerts/{alert_id}", "officer")).text()
    assert "leave by 3 PM" in html


async def test_cancel_and_correct_offers_the_paired_texts(console: Console) -> None:
    for who in ("officer", "approver1", "approver2"):
        await console.sign_in_directly(who)
    alert_id = await _draft(console)
    await console.post(f"/console/alerts/{alert_id}/submit", "officer", {"confirm_mode": "ACTUAL"})
    await _approve(console, "approver1", alert_id, console.code("approver1"))
    await _approve(console, "approver2", alert_id, console.code("approver2"))
    page = await (await console.get(f"/console/alerts/{alert_id}/correct", "officer")).text()
    assert "CORRECTION to evacuation order" in page
    assert "Evacuation order CANCELLED" in page
    drafted = await console.post(f"/console/alerts/{alert_id}/correct", "officer")
    assert drafted.headers["Location"] == f"/console/alerts/{alert_id}?done=correction"
    html = await (await console.get(drafted.headers["Location"], "officer")).text()
    assert "state-draft" in html and "Update, version 2" in html
    assert "CORRECTION to evacuation order" in html
    # While a correction is being drafted there is nothing released to cancel or correct.
    assert (await console.get(f"/console/alerts/{alert_id}/correct", "officer")).status == 409
