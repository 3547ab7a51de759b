"""Every source becomes a report: recorded webhook payloads (X, Facebook, Instagram, Twilio SMS),
polled platforms (X mentions, Facebook and Instagram comments, Mastodon, Telegram) and the
public form. Replays and re-polls never make a second report; forged signatures are refused
and leave nothing behind."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from broadcaster import contacts
from broadcaster.storage.schema import channel_state
from channels.emulators.telegram import TelegramEmulator
from tests.channels import samples
from tests.triage.conftest import TriageApp, recorded, signed_recording


async def _queue(app: TriageApp, query: str = "?state=all") -> list[dict[str, Any]]:
    status, body = await app.call("GET", f"/reports{query}")
    assert status == 200, body
    return list(body["reports"])


async def _publish(app: TriageApp, channel: str) -> str:
    """Post an alert on `channel`'s live target, so the public has something to answer."""
    adapter = app.platforms.directory.adapter(f"{channel}-live")
    post = adapter.render(samples.version())[0]
    recipient = "+12025550142" if channel == "sms" else None
    receipt = await adapter.publish(post, f"alert-{channel}", recipient=recipient)
    return receipt.external_id


# --- recorded webhook payloads -----------------------------------------------------------------

RECORDINGS = [
    # channel, file, language, words a responder must see in the reasons, the place found
    ("x", "x_account_activity.json", "en", "life-safety words: trapped", "Elm Street"),
    ("facebook", "facebook_feed_comment.json", "es", "life-safety words: atrapados", "Elm Street"),
    ("instagram", "instagram_comment.json", "fr", "life-safety words: coincés", "Elm Street"),
    ("sms", "twilio_sms.txt", "en", "hazards reported: bridge", "Main Street bridge"),
]


@pytest.mark.parametrize(
    ("channel", "name", "language", "reason", "place"), RECORDINGS, ids=[r[0] for r in RECORDINGS]
)
async def test_a_recorded_webhook_payload_becomes_one_report_however_often_it_comes(
    triage_app: TriageApp, channel: str, name: str, language: str, reason: str, place: str
) -> None:
    body, headers = signed_recording(triage_app, channel, name)
    first = await triage_app.post_hook(f"{channel}-live", body, headers)
    again = await triage_app.post_hook(f"{channel}-live", body, headers)
    assert first[0] == again[0] == 200
    [report] = await _queue(triage_app)
    assert report["source"] == channel
    assert report["target"] == f"{channel}-live"
    assert report["language"] == language
    assert report["place"] == place
    assert report["latitude"] is not None
    assert report["author_pseudonym"] and report["author_pseudonym"] not in body.decode()
    assert any(reason in r["text"] for r in report["reasons"]), report["reasons"]
    assert not report["text"].startswith("@")  # X's leading @handles are not the message
    if channel == "sms":
        assert report["contact"] == "+12025550142"  # the only way to answer an SMS
        assert first[1].endswith("<Response/>")  # TwiML: no automatic answer
    else:
        assert json.loads(first[1]) == {"received": 1, "new": 1}
        assert json.loads(again[1]) == {"received": 1, "new": 0}


@pytest.mark.parametrize(("channel", "name"), [(r[0], r[1]) for r in RECORDINGS])
async def test_a_forged_or_unsigned_webhook_is_refused_and_nothing_is_stored(
    triage_app: TriageApp, channel: str, name: str
) -> None:
    body, headers = signed_recording(triage_app, channel, name)
    signature_header = next(key for key in headers if "ignature" in key)
    unsigned = {key: value for key, value in headers.items() if key != signature_header}
    forged = {**headers, signature_header: headers[signature_header][:-6] + "AAAAA="}
    tampered_body = body[:-2] + bytes([body[-2] ^ 1]) + body[-1:]  # one bit changed
    assert (await triage_app.post_hook(f"{channel}-live", body, unsigned))[0] == 401
    assert (await triage_app.post_hook(f"{channel}-live", body, forged))[0] == 403
    status, text = await triage_app.post_hook(f"{channel}-live", tampered_body, headers)
    assert status == 403
    assert json.loads(text)["status"] == 403  # a problem document, not a traceback
    assert await triage_app.report_count() == 0
    metrics = await (await triage_app.client.get("/metrics")).text()
    assert (
        f'broadcaster_triage_webhooks_refused_total{{status="403",target="{channel}-live"}} 2.0'
        in metrics
    )


async def test_sms_stop_opts_the_sender_out_and_is_not_a_report(triage_app: TriageApp) -> None:
    body, headers = signed_recording(triage_app, "sms", "twilio_sms_stop.txt")
    assert (await triage_app.post_hook("sms-live", body, headers))[0] == 200
    assert await triage_app.report_count() == 0
    async with triage_app.engine.connect() as connection:
        assert await contacts.is_opted_out(connection, "+12025550142")
    status, audit_page = await triage_app.call("GET", "/audit?action=contacts.sms_stop", "officer")
    assert status == 200
    [entry] = audit_page["entries"]
    assert "+1202" not in json.dumps(entry)  # the audit log never holds the number


async def test_webhooks_for_unknown_targets_or_polled_channels_are_404(
    triage_app: TriageApp,
) -> None:
    for target in ("nowhere", "mastodon-live", "email-live"):
        status, _ = await triage_app.post_hook(target, b"{}", {})
        assert status == 404, target


async def test_platform_challenges_are_answered(triage_app: TriageApp) -> None:
    x = triage_app.platforms.emulators["x"]
    response = await triage_app.client.get("/api/v1/hooks/x-live", params={"crc_token": "abc"})
    assert response.status == 200
    assert (await response.json())["response_token"].startswith("sha256=")
    meta = triage_app.platforms.emulators["facebook"]
    response = await triage_app.client.get(
        "/api/v1/hooks/facebook-live",
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": meta.verify_token,  # type: ignore[attr-defined]
            "hub.challenge": "1158201444",
        },
    )
    assert (response.status, await response.text()) == (200, "1158201444")
    wrong = await triage_app.client.get(
        "/api/v1/hooks/facebook-live",
        params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
    )
    assert wrong.status == 403
    assert x is not None


# --- the emulators pushing live webhooks -------------------------------------------------------


@pytest.mark.parametrize("channel", ["x", "facebook", "instagram", "sms"])
async def test_public_replies_pushed_by_the_platform_reach_the_queue(
    triage_app: TriageApp, channel: str
) -> None:
    post_id = await _publish(triage_app, channel)
    emulator = triage_app.platforms.emulators[channel]
    await emulator.generate_replies(3, "Water rising fast on Elm St, we need a boat", None)
    found = await _queue(triage_app)
    assert len(found) == 3
    assert {report["source"] for report in found} == {channel}
    if channel != "sms":
        assert {report["in_reply_to"] for report in found} == {post_id}


# --- polled sources ----------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["x", "facebook", "instagram", "mastodon", "telegram"])
async def test_polled_replies_become_reports_and_a_re_poll_adds_nothing(
    triage_app: TriageApp, channel: str
) -> None:
    emulator = triage_app.platforms.emulators[channel]
    emulator.webhook_url = None  # polling is the only path here
    await _publish(triage_app, channel)
    poller = triage_app.triage.poller
    first = await poller.poll(f"{channel}-live")  # reads what is there: the cursor starts
    await emulator.generate_replies(2, "¿Está abierto el refugio? Estamos atrapados", None)
    second = await poller.poll(f"{channel}-live")
    third = await poller.poll(f"{channel}-live")
    assert first.error is None and second.error is None and third.error is None
    assert second.new == 2
    assert third.new == 0
    found = await _queue(triage_app)
    assert len(found) == 2
    assert all(report["language"] == "es" for report in found)
    async with triage_app.engine.connect() as connection:
        cursor = await connection.scalar(
            select(channel_state.c.inbound_cursor).where(
                channel_state.c.target == f"{channel}-live"
            )
        )
    assert cursor == second.cursor == third.cursor


async def test_a_lost_cursor_re_reads_messages_but_stores_them_once(
    triage_app: TriageApp,
) -> None:
    x = triage_app.platforms.emulators["x"]
    x.webhook_url = None
    await _publish(triage_app, "x")
    await x.generate_replies(3, "Is the shelter open?", None)
    poller = triage_app.triage.poller
    assert (await poller.poll("x-live")).new == 3
    async with triage_app.engine.begin() as connection:
        await connection.execute(channel_state.delete())
    again = await poller.poll("x-live")
    assert (again.received, again.new) == (3, 0)
    assert await triage_app.report_count() == 3


async def test_a_paused_target_is_not_polled(triage_app: TriageApp) -> None:
    async with triage_app.engine.begin() as connection:
        await connection.execute(
            channel_state.insert().values(
                channel="mastodon", target="mastodon-live", paused=True, breaker_state="closed"
            )
        )
    result = await triage_app.triage.poller.poll("mastodon-live")
    assert result.error == "paused"


async def test_telegram_location_messages_keep_their_coordinates(triage_app: TriageApp) -> None:
    telegram = triage_app.platforms.emulators["telegram"]
    assert isinstance(telegram, TelegramEmulator)
    telegram.public_message("Trapped here, water rising", private=True, location=(38.05, -121.95))
    await triage_app.triage.poller.poll("telegram-live")
    [report] = await _queue(triage_app)
    assert (report["latitude"], report["longitude"]) == (38.05, -121.95)


# --- the public form ---------------------------------------------------------------------------


async def test_a_form_report_is_stored_once_with_its_place(triage_app: TriageApp) -> None:
    form = {
        "text": "Tree down across the road, power lines sparking",
        "place": "Main St bridge",
        "name": "Ana",
        "contact": "+1 202 555 0199",
        "token": "t0k3n-for-one-report",
    }
    for _ in range(2):  # Send pressed twice
        response = await triage_app.client.post("/report", data=form)
        assert response.status == 200
        assert "Thank you" in await response.text()
    [report] = await _queue(triage_app)
    assert report["source"] == "form"
    # What the person typed is kept (it may say more than the gazetteer); the map position
    # comes from the gazetteer's entry for it.
    assert report["place"] == "Main St bridge"
    assert (report["latitude"], report["longitude"]) == (38.061, -121.962)
    assert (report["author_name"], report["contact"]) == ("Ana", "+1 202 555 0199")
    assert recorded("twilio_sms.txt")  # the recordings are in the repository


async def test_a_full_queue_answers_503_so_the_platform_sends_it_again(
    triage_app: TriageApp,
) -> None:
    body, headers = signed_recording(triage_app, "x", "x_account_activity.json")
    triage_app.triage.ingestor.queue_size = 0  # as if a flood had filled it
    response = await triage_app.client.post("/api/v1/hooks/x-live", data=body, headers=headers)
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert await triage_app.report_count() == 0
    triage_app.triage.ingestor.queue_size = 100  # the flood passes; the platform retries
    assert (await triage_app.post_hook("x-live", body, headers))[0] == 200
    assert await triage_app.report_count() == 1
