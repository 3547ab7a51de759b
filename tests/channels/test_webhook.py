"""Signed partner webhooks: the JSON a partner receives, a signature it can verify, the partner's
answers mapped onto the error tree, and redirects never followed."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr, ValidationError

from approvals.alert import EXERCISE_MARKING, MsgType, Status
from channels.base import (
    AmbiguousError,
    AuthError,
    ChannelError,
    PermanentError,
    Receipt,
    Target,
    TargetMode,
    TransientError,
)
from channels.emulators.webhook import SECRET, WebhookReceiverEmulator
from channels.webhook import WebhookChannel, WebhookSettings, retry_after_seconds
from tests.channels import samples

PARTNER_SECRET = "whsec_partner_test_91c2"


# --- a scripted partner: answers as told, remembers every request ------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Partner:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    # (status, headers, body) answered in turn; then 202 {"id": "p-1"}.
    script: list[tuple[int, dict[str, str], str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            Seen(request.method, request.path, dict(request.headers), await request.read())
        )
        if self.script:
            status, headers, body = self.script.pop(0)
            return web.Response(status=status, headers=headers, text=body)
        return web.json_response({"id": "p-1"}, status=202)

    def channel(self, **settings: Any) -> WebhookChannel:
        values: dict[str, Any] = {
            "name": "partner",
            "mode": TargetMode.live,
            "url": f"{self.url}/hook?token=abc",
            "timeout_seconds": 2.0,
            "allow_private_destinations": True,
            **settings,
        }
        return WebhookChannel(
            Target(WebhookSettings(**values), {"signing_secret": SecretStr(PARTNER_SECRET)})
        )


@pytest.fixture
async def partner() -> AsyncIterator[Partner]:
    scripted = Partner()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", scripted.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    scripted.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield scripted
    finally:
        await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiverEmulator]:
    emulator = WebhookReceiverEmulator()
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


def _body(post_text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(post_text)
    return data


def _channel() -> WebhookChannel:
    settings = WebhookSettings(name="p", mode=TargetMode.live, url="https://partner.example/hook")
    return WebhookChannel(Target(settings, {"signing_secret": SecretStr("x")}))


# --- what a partner receives ---------------------------------------------------------------------


def test_the_body_is_the_alert_as_json() -> None:
    [post] = _channel().render(samples.version())
    body = _body(post.text)
    assert {k: body[k] for k in ("identifier", "sender", "sent", "status", "msgType", "event")} == {
        "identifier": "CB-1-1",
        "sender": samples.SENDER,
        "sent": "2026-11-21T03:00:00-00:00",
        "status": "Actual",
        "msgType": "Alert",
        "event": "alert",
    }
    assert body["exercise"] is False and body["references"] == []
    [info] = body["infos"]
    assert info["headline"] == "Evacuate Riverside now: levee failure"
    assert info["areas"][0]["polygons"][0][0] == [38.0, -122.0]
    assert info["areas"][0]["circles"] == [{"lat": 38.05, "lon": -121.95, "radiusKm": 2.5}]
    assert info["areas"][0]["geocodes"] == [{"valueName": "SAME", "value": "006113"}]
    assert body["text"].startswith("Evacuate Riverside now: levee failure\n\nFlood water")
    assert body["text"].endswith("More: https://alerts.county.example.gov/alerts/1")
    assert body["capUrl"] is None
    assert post.limit is None and post.length == len(post.text) and post.parts == 1


def test_the_body_links_the_cap_xml_when_a_base_url_is_configured() -> None:
    settings = WebhookSettings(
        name="p",
        mode=TargetMode.live,
        url="https://partner.example/hook",
        cap_base_url="https://alerts.example.gov/cap/",
    )
    channel = WebhookChannel(Target(settings, {}))
    [post] = channel.render(samples.version())
    assert _body(post.text)["capUrl"] == "https://alerts.example.gov/cap/CB-1-1.xml"


@pytest.mark.parametrize("status", [Status.exercise, Status.test])
def test_exercise_marking_in_every_text(status: Status) -> None:
    version = samples.version(status=status, languages=("en-US", "es-US"))
    [post] = _channel().render(version)
    body = _body(post.text)
    assert body["exercise"] is True and body["status"] == status.value
    assert all(
        EXERCISE_MARKING in text for text in [body["text"], *(i["text"] for i in body["infos"])]
    )


def test_all_languages_travel_in_one_delivery() -> None:
    version = samples.version(languages=("en-US", "es-US", "fr-CA", "zh-CN"))
    [post] = _channel().render(version)
    body = _body(post.text)
    assert [info["language"] for info in body["infos"]] == ["en-US", "es-US", "fr-CA", "zh-CN"]
    assert "河滨区洪水正在上涨" in post.text  # not \u-escaped: partners read it as sent
    assert body["text"].startswith("Evacuate Riverside now")
    assert EXERCISE_MARKING not in post.text


@pytest.mark.parametrize(
    ("msg_type", "event"), [(MsgType.update, "update"), (MsgType.cancel, "cancel")]
)
def test_updates_and_cancels_reference_the_original(msg_type: MsgType, event: str) -> None:
    [post] = _channel().render(samples.version(2, msg_type=msg_type))
    body = _body(post.text)
    assert body["event"] == event and post.extra["event"] == event
    assert body["references"] == [f"{samples.SENDER},CB-1-1,2026-11-21T03:00:00-00:00"]


# --- signing -------------------------------------------------------------------------------------


async def test_a_partner_can_verify_the_signature_over_the_raw_body(partner: Partner) -> None:
    channel = partner.channel()
    [post] = channel.render(samples.version(2, msg_type=MsgType.cancel))
    try:
        receipt = await channel.publish(post, "delivery-7:1")
    finally:
        await channel.aclose()
    [seen] = partner.seen
    assert seen.body == post.text.encode("utf-8")
    timestamp = seen.headers["X-Broadcaster-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 5
    expected = hmac.new(
        PARTNER_SECRET.encode(), f"{timestamp}.".encode() + seen.body, hashlib.sha256
    ).hexdigest()
    assert seen.headers["X-Broadcaster-Signature"] == f"v1={expected}"
    assert seen.headers["Idempotency-Key"] == "delivery-7:1"
    assert seen.headers["X-Broadcaster-Event"] == "cancel"
    assert seen.headers["Content-Type"] == "application/json; charset=utf-8"
    assert (seen.path, receipt.external_id) == ("/hook", "p-1")


async def _raw_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, await response.json()


def _signed_headers(body: bytes, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {
        "Content-Type": "application/json",
        "Idempotency-Key": "raw:1",
        "X-Broadcaster-Timestamp": timestamp,
        "X-Broadcaster-Signature": f"v1={signature.hexdigest()}",
    }


async def test_the_receiver_accepts_a_correct_signature(receiver: WebhookReceiverEmulator) -> None:
    body = b'{"identifier":"CB-1-1"}'
    status, answer = await _raw_post(f"{receiver.url}/alerts", body, _signed_headers(body))
    assert status == 202 and answer["id"]
    assert [e.data["text"] for e in receiver.effects_of("post")] == [body.decode()]


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("forged body", "invalid_signature"),
        ("wrong secret", "invalid_signature"),
        ("no signature", "missing_signature"),
        ("stale timestamp", "stale_timestamp"),
    ],
)
async def test_the_receiver_refuses_what_it_cannot_believe(
    receiver: WebhookReceiverEmulator, case: str, error: str
) -> None:
    body = b'{"identifier":"CB-1-1","headline":"Evacuate"}'
    headers = _signed_headers(body)
    if case == "forged body":
        body = body.replace(b"Evacuate", b"Stay put")
    elif case == "wrong secret":
        headers = _signed_headers(body, secret="whsec_guess")
    elif case == "no signature":
        del headers["X-Broadcaster-Signature"]
    else:
        headers = _signed_headers(body, at=time.time() - 600)  # a replay from 10 minutes ago
    status, answer = await _raw_post(f"{receiver.url}/alerts", body, headers)
    assert (status, answer["error"]) == (401, error)
    assert receiver.effects_of("post") == []


async def test_a_clock_off_by_minutes_is_an_auth_error_naming_the_timestamp(
    receiver: WebhookReceiverEmulator,
) -> None:
    channel = WebhookChannel(receiver.target("skewed"))
    channel.clock = lambda: time.time() - 3600
    [post] = channel.render(samples.version())
    try:
        with pytest.raises(AuthError, match="timestamp"):
            await channel.publish(post, "skew:1")
    finally:
        await channel.aclose()


async def test_a_missing_secret_is_an_auth_error_before_anything_is_sent(partner: Partner) -> None:
    settings = WebhookSettings(
        name="nosecret", mode=TargetMode.live, url=partner.url, allow_private_destinations=True
    )
    channel = WebhookChannel(Target(settings, {}))
    [post] = channel.render(samples.version())
    try:
        with pytest.raises(AuthError, match="signing_secret"):
            await channel.publish(post, "k:1")
    finally:
        await channel.aclose()
    assert partner.seen == []


# --- the partner's answers -----------------------------------------------------------------------


def _http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now), usegmt=True)


ANSWERS: list[tuple[int, dict[str, str], str, type[ChannelError]]] = [
    (429, {"Retry-After": "42"}, '{"error":"rate_limited"}', TransientError),
    (429, {}, "", TransientError),
    (500, {}, '{"error":"server_error"}', AmbiguousError),
    (502, {}, "Bad Gateway", AmbiguousError),
    (503, {"Retry-After": "5"}, "", AmbiguousError),
    (401, {}, '{"error":"invalid_signature"}', AuthError),
    (403, {}, '{"error":"forbidden"}', AuthError),
    (400, {}, '{"error":"bad_request","message":"infos missing"}', PermanentError),
    (404, {}, "no such hook", PermanentError),
    (413, {}, "too large", PermanentError),
    (422, {}, '{"error":"idempotency_key_reused"}', PermanentError),
]


@pytest.mark.parametrize(("status", "headers", "body", "expected"), ANSWERS)
async def test_partner_answers_map_onto_the_error_tree(
    partner: Partner,
    status: int,
    headers: dict[str, str],
    body: str,
    expected: type[ChannelError],
) -> None:
    partner.script.append((status, headers, body))
    channel = partner.channel()
    [post] = channel.render(samples.version())
    try:
        with pytest.raises(ChannelError) as caught:
            await channel.publish(post, "k:1")
    finally:
        await channel.aclose()
    assert type(caught.value) is expected
    assert caught.value.status == status
    assert "target 'partner'" in caught.value.message
    assert "token=abc" not in caught.value.message  # the URL's query may hold a partner token
    if status == 429 and headers:
        assert isinstance(caught.value, TransientError) and caught.value.retry_after == 42


async def test_retry_after_as_an_http_date(partner: Partner) -> None:
    partner.script.append((429, {"Retry-After": _http_date(120)}, ""))
    channel = partner.channel()
    [post] = channel.render(samples.version())
    try:
        with pytest.raises(TransientError) as caught:
            await channel.publish(post, "k:1")
    finally:
        await channel.aclose()
    assert caught.value.retry_after is not None and 117 <= caught.value.retry_after <= 120


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirects_are_never_followed(partner: Partner, status: int) -> None:
    partner.script.append((status, {"Location": "http://169.254.169.254/latest?x=1"}, ""))
    channel = partner.channel()
    [post] = channel.render(samples.version())
    try:
        with pytest.raises(PermanentError) as caught:
            await channel.publish(post, "k:1")
    finally:
        await channel.aclose()
    assert "http://169.254.169.254/latest" in caught.value.message
    assert "redirects are not followed" in caught.value.message
    assert [seen.path for seen in partner.seen] == ["/hook"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("42", 42.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("-3", 0.0),
        ("soon", None),
        ("inf", None),
        ("nan", None),
        (None, None),
        ("", None),
    ],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value) == expected


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    now = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
    assert retry_after_seconds("Sat, 21 Nov 2026 03:01:30 GMT", now) == 90.0
    assert retry_after_seconds("Sat, 21 Nov 2026 02:00:00 GMT", now) == 0.0


# --- reconciliation ------------------------------------------------------------------------------


async def test_find_published_asks_the_partner_with_a_signed_get(partner: Partner) -> None:
    channel = partner.channel(lookup_url=f"{partner.url}/deliveries/{{key}}")
    [post] = channel.render(samples.version())
    partner.script += [(404, {}, '{"error":"not_found"}'), (200, {}, '{"id":"p-9"}')]
    try:
        assert await channel.find_published(post, "a/b:1") is None
        found = await channel.find_published(post, "a/b:1")
    finally:
        await channel.aclose()
    assert found is not None and found.external_id == "p-9"
    first = partner.seen[0]
    assert (first.method, first.path) == ("GET", "/deliveries/a/b:1")
    timestamp = first.headers["X-Broadcaster-Timestamp"]
    expected = hmac.new(PARTNER_SECRET.encode(), f"{timestamp}.".encode(), hashlib.sha256)
    assert first.headers["X-Broadcaster-Signature"] == f"v1={expected.hexdigest()}"


async def test_a_failed_lookup_is_transient_not_ambiguous(partner: Partner) -> None:
    channel = partner.channel(lookup_url=f"{partner.url}/deliveries/{{key}}")
    [post] = channel.render(samples.version())
    partner.script.append((503, {"Retry-After": "9"}, ""))
    try:
        with pytest.raises(TransientError) as caught:
            await channel.find_published(post, "k:1")
    finally:
        await channel.aclose()
    assert caught.value.retry_after == 9


async def test_without_a_lookup_url_reconciliation_relies_on_the_key(partner: Partner) -> None:
    channel = partner.channel()
    [post] = channel.render(samples.version())
    try:
        assert await channel.find_published(post, "k:1") is None
    finally:
        await channel.aclose()
    assert partner.seen == []


async def test_a_key_reused_for_a_different_alert_is_refused(
    receiver: WebhookReceiverEmulator,
) -> None:
    channel = WebhookChannel(receiver.target())
    [first] = channel.render(samples.version())
    [other] = channel.render(samples.version(long=True))
    try:
        await channel.publish(first, "same:1")
        with pytest.raises(PermanentError, match="idempotency_key_reused"):
            await channel.publish(other, "same:1")
    finally:
        await channel.aclose()
    assert len(receiver.effects_of("post")) == 1


# --- cancel and correct ------------------------------------------------------------------------


async def test_retract_posts_the_cancel_once_with_a_stable_key(
    receiver: WebhookReceiverEmulator,
) -> None:
    channel = WebhookChannel(receiver.target())
    cancel = samples.version(2, msg_type=MsgType.cancel)
    try:
        [post] = channel.render(samples.version())
        original = await channel.publish(post, "orig:1")
        done = await channel.retract(original, cancel)
        again = await channel.retract(original, cancel)  # a retried retraction
    finally:
        await channel.aclose()
    assert again.external_id == done.external_id != original.external_id
    [_, effect] = receiver.effects_of("post")
    assert effect.data["event"] == "cancel"
    assert effect.data["key"] == f"retract:{original.external_id}:CB-1-2"
    assert _body(effect.data["text"])["references"][0].split(",")[1] == "CB-1-1"


async def test_retract_refuses_what_is_not_a_retraction_of_this_delivery(
    receiver: WebhookReceiverEmulator,
) -> None:
    channel = WebhookChannel(receiver.target())
    stranger = Receipt("webhook", "test", "dlv_x", extra={"identifier": "CB-7-1"})
    try:
        with pytest.raises(PermanentError, match="does not reference CB-7-1"):
            await channel.retract(stranger, samples.version(2, msg_type=MsgType.cancel))
        with pytest.raises(PermanentError, match="new Alert"):
            await channel.retract(stranger, samples.version(2))
    finally:
        await channel.aclose()
    assert receiver.effects_of("post") == []


async def test_a_recipient_is_refused() -> None:
    channel = _channel()
    [post] = channel.render(samples.version())
    with pytest.raises(PermanentError, match="no recipient"):
        await channel.publish(post, "k:1", recipient="+15550100")


# --- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": "partner.example/hook"}, "url"),
        ({"lookup_url": "https://partner.example/deliveries"}, "{key}"),
        ({"cap_base_url": "ftp://x.example"}, "cap_base_url"),
        ({"base_url": "https://partner.example"}, "not base_url"),
    ],
)
def test_settings_say_what_is_wrong(changes: dict[str, str], message: str) -> None:
    values = {"name": "p", "mode": "live", "url": "https://partner.example/hook", **changes}
    with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("}", r"\}")):
        WebhookSettings.model_validate(values)
