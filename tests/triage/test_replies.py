"""Answering reporters on the channel their report came from, through the real adapters and the
platform emulators: canned replies at once in the reporter's language, free text as the policy
says, SMS opt-outs honoured, and a clear refusal where the channel cannot carry a reply."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from broadcaster.triage.rules import FreeText
from channels.emulators.base import Fault, FaultKind
from tests.channels import samples
from tests.triage.conftest import TriageApp, signed_recording


async def _reply_from_the_public(app: TriageApp, channel: str, text: str) -> dict[str, Any]:
    """An alert on `channel`, a member of the public answering it, and the report that makes."""
    adapter = app.platforms.directory.adapter(f"{channel}-live")
    recipient = "+12025550142" if channel == "sms" else None
    await adapter.publish(
        adapter.render(samples.version())[0], f"alert-{channel}", recipient=recipient
    )
    emulator = app.platforms.emulators[channel]
    if channel in ("mastodon", "telegram"):
        emulator.webhook_url = None
        await app.triage.poller.poll(f"{channel}-live")
        await emulator.generate_replies(1, text, None)
        await app.triage.poller.poll(f"{channel}-live")
    else:
        await emulator.generate_replies(1, text, None)
    status, body = await app.call("GET", "/reports")
    assert status == 200
    [report] = body["reports"]
    return dict(report)


def _posts(app: TriageApp, channel: str) -> list[dict[str, Any]]:
    return [effect.data for effect in app.platforms.emulators[channel].effects_of("post")]


async def test_a_canned_reply_answers_the_post_on_x_in_the_reporters_language(
    triage_app: TriageApp,
) -> None:
    report = await _reply_from_the_public(triage_app, "x", "Estamos atrapados en el techo")
    status, reply = await triage_app.call(
        "POST", f"/reports/{report['id']}/reply", json={"canned": "received"}
    )
    assert status == 201, reply
    assert (reply["state"], reply["language"], reply["author"]) == ("sent", "es", "responder")
    assert reply["text"].startswith("Gracias. Recibimos su reporte")
    last = _posts(triage_app, "x")[-1]
    assert (last["reply_to"], last["id"]) == (report["external_id"], reply["external_id"])
    status, shown = await triage_app.call("GET", f"/reports/{report['id']}")
    assert [r["state"] for r in shown["replies"]] == ["sent"]


async def test_a_mastodon_reply_names_the_reporter_so_they_are_notified(
    triage_app: TriageApp,
) -> None:
    report = await _reply_from_the_public(triage_app, "mastodon", "is the shelter open?")
    status, reply = await triage_app.call(
        "POST", f"/reports/{report['id']}/reply", json={"canned": "official_info"}
    )
    assert status == 201, reply
    last = _posts(triage_app, "mastodon")[-1]
    assert last["text"].startswith(f"@{report['author_name']} Please rely only")
    assert last["reply_to"] == report["external_id"]


async def test_an_sms_reply_goes_to_the_sender_until_they_text_stop(
    triage_app: TriageApp,
) -> None:
    report = await _reply_from_the_public(triage_app, "sms", "Is the Main St bridge open?")
    status, reply = await triage_app.call(
        "POST", f"/reports/{report['id']}/reply", json={"canned": "call_911"}
    )
    assert status == 201, reply
    assert _posts(triage_app, "sms")[-1]["to"] == "+12025550142"
    body, headers = signed_recording(triage_app, "sms", "twilio_sms_stop.txt")
    await triage_app.post_hook("sms-live", body, headers)
    status, refused = await triage_app.call(
        "POST", f"/reports/{report['id']}/reply", json={"canned": "call_911"}
    )
    assert status == 409
    assert "texted STOP" in refused["detail"]


async def test_free_text_waits_for_a_second_responder(triage_app: TriageApp) -> None:
    report = await _reply_from_the_public(triage_app, "x", "trapped at 12 Elm St")
    status, held = await triage_app.call(
        "POST", f"/reports/{report['id']}/reply", json={"text": "Crew is 5 min away, stay put"}
    )
    assert (status, held["state"]) == (201, "pending_approval")
    posted_before = len(_posts(triage_app, "x"))
    approve = f"/reports/{report['id']}/replies/{held['id']}/approve"
    status, body = await triage_app.call("POST", approve)  # its writer
    assert (status, body["rule"]) == (403, "replies.free_text")
    assert len(_posts(triage_app, "x")) == posted_before  # not a byte went out
    status, sent = await triage_app.call("POST", approve, who="responder2")
    assert (status, sent["state"], sent["approved_by"]) == (200, "sent", "responder2")
    assert _posts(triage_app, "x")[-1]["text"] == "Crew is 5 min away, stay put"
    status, _ = await triage_app.call("POST", approve, who="responder2")
    assert status == 409  # sent once


async def test_a_rejected_free_text_reply_is_never_sent(triage_app: TriageApp) -> None:
    report = await _reply_from_the_public(triage_app, "x", "help")
    _, held = await triage_app.call(
        "POST", f"/reports/{report['id']}/reply", json={"text": "lol no"}
    )
    before = len(_posts(triage_app, "x"))
    status, rejected = await triage_app.call(
        "POST", f"/reports/{report['id']}/replies/{held['id']}/reject", who="responder2"
    )
    assert (status, rejected["state"]) == (200, "rejected")
    assert len(_posts(triage_app, "x")) == before


@pytest.mark.parametrize(
    ("policy", "status", "state"),
    [(FreeText.never, 403, None), (FreeText.allowed, 201, "sent")],
)
async def test_the_free_text_policy_is_what_the_rules_say(
    triage_app: TriageApp, policy: FreeText, status: int, state: str | None
) -> None:
    service = triage_app.triage.service
    replies = service.rules.replies.model_copy(update={"free_text": policy})
    service.rules = dataclasses.replace(service.rules, replies=replies)
    report = await _reply_from_the_public(triage_app, "x", "need water at the fairgrounds")
    got, body = await triage_app.call(
        "POST", f"/reports/{report['id']}/reply", json={"text": "Water arrives at 14:00"}
    )
    assert got == status, body
    assert body.get("state") == state


async def test_channels_that_cannot_carry_a_reply_say_why(triage_app: TriageApp) -> None:
    report = await _reply_from_the_public(triage_app, "facebook", "is my street included?")
    status, body = await triage_app.call(
        "POST", f"/reports/{report['id']}/reply", json={"canned": "received"}
    )
    assert status == 409
    assert "cannot comment" in body["detail"]
    assert len(_posts(triage_app, "facebook")) == 1  # the alert, and nothing else


async def test_a_platform_failure_is_a_502_and_the_reply_is_kept_as_failed(
    triage_app: TriageApp,
) -> None:
    report = await _reply_from_the_public(triage_app, "x", "trapped")
    triage_app.platforms.emulators["x"].add_fault(
        Fault(FaultKind.rate_limit, path="/2/tweets$", method="POST")
    )
    status, body = await triage_app.call(
        "POST", f"/reports/{report['id']}/reply", json={"canned": "received"}
    )
    assert status == 502
    assert body["reply"]["state"] == "failed"
    assert "TransientError" in body["reply"]["error"]
    assert "send it again" in body["detail"]


async def test_reply_requests_are_checked(triage_app: TriageApp) -> None:
    report = await _reply_from_the_public(triage_app, "x", "trapped")
    path = f"/reports/{report['id']}/reply"
    for payload, field in [
        ({}, "body"),
        ({"canned": "received", "text": "hi"}, "body"),
        ({"canned": "nonsense"}, "canned"),
        ({"text": "🆘" * 200}, "text"),  # emoji weigh double on X
    ]:
        status, body = await triage_app.call("POST", path, json=payload)
        assert status == 422, payload
        assert body["errors"][0]["field"] == field, body
