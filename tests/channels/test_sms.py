"""SMS through the real twilio library against the Twilio emulator: rendering within segments,
Twilio's errors, STOP/START/HELP, reconciliation and signed inbound webhooks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import urlencode

import pytest
from pydantic import SecretStr, ValidationError
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from approvals.alert import EXERCISE_MARKING, AlertContent, Status
from channels.base import (
    AlertVersion,
    AmbiguousError,
    AuthError,
    PermanentError,
    Post,
    Target,
    TargetMode,
    TransientError,
    WebhookRejected,
)
from channels.emulators.base import Fault, FaultKind
from channels.emulators.sms import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    HELP_REPLY,
    STOP_REPLY,
    TwilioEmulator,
)
from channels.sms import SmsChannel, SmsSettings, _retry_after, twilio_signature
from channels.sms_text import GSM7, UCS2, segment_count
from tests.channels import samples

PHONE = "+12025550142"
OTHER = "+12025550199"
HOOK = "https://alerts.county.example.gov/hooks/sms"


@pytest.fixture
async def emulator() -> AsyncIterator[TwilioEmulator]:
    emulator = TwilioEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


def _target(emulator: TwilioEmulator, **settings: object) -> Target:
    base = emulator.target("county-sms", TargetMode.live, timeout_seconds=2.0)
    return replace(base, settings=base.settings.model_copy(update=settings))


@pytest.fixture
async def sms(emulator: TwilioEmulator) -> AsyncIterator[SmsChannel]:
    channel = SmsChannel(_target(emulator))
    yield channel
    await channel.aclose()


def _version(headline: str, instruction: str | None = None, **kwargs: object) -> AlertVersion:
    version = samples.version(channels=("sms",), **kwargs)  # type: ignore[arg-type]
    info = version.content.infos[0].model_copy(update={"headline": headline})
    if instruction is not None:
        info = info.model_copy(update={"instruction": instruction})
    content = version.content.model_copy(update={"infos": (info, *version.content.infos[1:])})
    return replace(version, content=AlertContent.model_validate(content.model_dump()))


def _post(text: str) -> Post:
    return Post(text=text, length=segment_count(text), limit=4)


# --- rendering -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headline", "encoding"),
    [
        ("Boil water notice for Riverside", GSM7),
        ("Don\u2019t drink tap water \u2013 boil it first\u2026", GSM7),  # typography, made GSM
        ("Évacuez à l'école: 3 €", GSM7),  # é, à and € are all in the GSM alphabet
        ("Evacúe Riverside ahora", UCS2),  # ú is not: the language needs UCS-2
        ("立即撤离河滨区", UCS2),
    ],
)
def test_stays_in_gsm7_when_the_words_allow(sms: SmsChannel, headline: str, encoding: str) -> None:
    [post] = sms.render(_version(headline))
    assert post.extra["encoding"] == encoding
    assert "\u2019" not in post.text and "\u2026" not in post.text
    assert post.length == segment_count(post.text)
    assert post.limit == 4


def test_marking_leads_every_exercise_sms_and_never_an_actual_one(sms: SmsChannel) -> None:
    exercise = samples.version(status=Status.exercise, channels=("sms",))
    [post] = sms.render(exercise)
    first, second, *_ = post.text.split("\n")
    assert first == EXERCISE_MARKING
    assert EXERCISE_MARKING not in second  # not repeated from the headline
    [actual] = sms.render(samples.version(channels=("sms",)))
    assert EXERCISE_MARKING not in actual.text
    assert actual.text.split("\n") == [
        "Evacuate Riverside now: levee failure",
        "Leave now for high ground. Do not drive through flood water.",
        "https://alerts.county.example.gov/alerts/1",
    ]


@pytest.mark.parametrize("max_segments", [1, 2, 4])
@pytest.mark.parametrize("language", ["en-US", "zh-CN"])
def test_a_long_instruction_is_cut_to_the_segment_budget_keeping_the_link(
    emulator: TwilioEmulator, max_segments: int, language: str
) -> None:
    sms = SmsChannel(_target(emulator, max_segments=max_segments))
    long = (
        "Move to the second floor or higher and take medicines, water and a phone. " * 12
    ).strip()
    if language == "zh-CN":
        long = "立即前往高处，携带药品、饮用水和手机。" * 30  # noqa: RUF001 (Chinese punctuation)
    version = _version("Flood warning" if language == "en-US" else "洪水警报", long)
    version = replace(
        version,
        content=version.content.model_copy(
            update={"infos": (version.content.infos[0].model_copy(update={"language": language}),)}
        ),
    )
    [post] = sms.render(version)
    assert post.length == segment_count(post.text) <= max_segments
    assert post.limit == max_segments
    assert post.text.endswith("https://alerts.county.example.gov/alerts/1")
    assert "..." in post.text
    headline = post.text.split("\n")[0]
    assert headline in ("Flood warning", "洪水警报")


def test_render_for_language_picks_the_contacts_language(sms: SmsChannel) -> None:
    version = samples.version(languages=("en-US", "es-US", "zh-CN"), channels=("sms",))
    assert [p.language for p in sms.render(version)] == ["en-US"]
    assert sms.render_for_language(version, "es").text.startswith("Evacúe")
    assert sms.render_for_language(version, "ZH-cn").text.startswith("立即撤离")
    assert sms.render_for_language(version, "de-DE").language == "en-US"
    assert sms.render_for_language(version, None).language == "en-US"


def test_settings_need_a_sender_and_cap_the_segments(emulator: TwilioEmulator) -> None:
    settings = emulator.target().settings
    assert isinstance(settings, SmsSettings)
    fields = settings.model_dump()
    with pytest.raises(ValidationError, match=r"from_number .* or messaging_service_sid"):
        SmsSettings.model_validate({**fields, "from_number": None})
    with pytest.raises(ValidationError, match="max_segments"):
        SmsSettings.model_validate({**fields, "max_segments": 5})
    with pytest.raises(ValidationError, match="account_sid"):
        SmsSettings.model_validate({**fields, "account_sid": "AC123"})


# --- sending and Twilio's errors -----------------------------------------------------------------


async def test_publish_reports_twilios_segment_count(
    emulator: TwilioEmulator, sms: SmsChannel
) -> None:
    [post] = sms.render(samples.version(languages=("zh-CN",), channels=("sms",)))
    receipt = await sms.publish(post, "k:1", recipient=PHONE)
    assert receipt.external_id.startswith("SM")
    assert receipt.extra["num_segments"] == post.length == 2
    assert receipt.extra["to"] == PHONE
    [effect] = emulator.effects_of("post")
    assert effect.data["to"] == PHONE
    assert effect.data["from"] == FROM_NUMBER


async def test_the_receipt_carries_twilios_message_fields(sms: SmsChannel) -> None:
    [post] = sms.render(samples.version(channels=("sms",)))
    before = datetime.now(UTC).replace(microsecond=0)
    receipt = await sms.publish(post, "k:1", recipient=PHONE)
    assert receipt.posted_at is not None
    assert receipt.posted_at.tzinfo is not None  # Twilio's RFC 2822 date, read as UTC
    assert before <= receipt.posted_at <= datetime.now(UTC)
    assert receipt.extra["status"] in {"queued", "accepted", "sending", "sent"}
    # The same message, as a lookup through the Messages resource reads it.
    found = await sms.find_published(post, "k:1", recipient=PHONE)
    assert found is not None
    assert (found.external_id, found.posted_at) == (receipt.external_id, receipt.posted_at)


async def test_a_messaging_service_sends_without_a_from_number(emulator: TwilioEmulator) -> None:
    target = _target(
        emulator, from_number=None, messaging_service_sid=emulator.messaging_service_sid
    )
    channel = SmsChannel(target)
    try:
        [post] = channel.render(samples.version(channels=("sms",)))
        receipt = await channel.publish(post, "k:1", recipient=PHONE)
    finally:
        await channel.aclose()
    assert receipt.external_id.startswith("SM")
    [effect] = emulator.effects_of("post")
    assert effect.data["to"] == PHONE


@pytest.mark.parametrize(
    ("recipient", "text", "code"),
    [
        ("+1202555014", "Hello", "21211"),  # E.164-shaped but not a North American number
        ("+12025550142", "a" * 1601, "21617"),
    ],
)
async def test_twilios_refusals_are_permanent_with_its_code(
    emulator: TwilioEmulator, sms: SmsChannel, recipient: str, text: str, code: str
) -> None:
    with pytest.raises(PermanentError) as caught:
        await sms.publish(_post(text), "k:1", recipient=recipient)
    assert caught.value.code == code
    assert caught.value.status == 400
    assert code in str(caught.value)
    assert emulator.effects_of("post") == []


async def test_a_number_not_on_the_account_is_refused(emulator: TwilioEmulator) -> None:
    sms = SmsChannel(_target(emulator, from_number="+12025550100"))
    try:
        with pytest.raises(PermanentError) as caught:
            await sms.publish(_post("Hello"), "k:1", recipient=PHONE)
    finally:
        await sms.aclose()
    assert caught.value.code == "21606"


@pytest.mark.parametrize("recipient", [None, "2025550142", "+1 202 555 0142"])
async def test_recipients_not_in_e164_never_reach_twilio(
    emulator: TwilioEmulator, sms: SmsChannel, recipient: str | None
) -> None:
    with pytest.raises(PermanentError, match=r"recipient|no recipient"):
        await sms.publish(_post("Hello"), "k:1", recipient=recipient)
    assert emulator.effects == []


async def test_wrong_auth_token_is_an_auth_error_without_the_token(
    emulator: TwilioEmulator,
) -> None:
    target = emulator.target("bad", valid_credentials=False)
    sms = SmsChannel(target)
    try:
        with pytest.raises(AuthError) as caught:
            await sms.publish(_post("Hello"), "k:1", recipient=PHONE)
    finally:
        await sms.aclose()
    assert caught.value.code == "20003"
    assert target.credentials["auth_token"].get_secret_value() not in str(caught.value)
    assert AUTH_TOKEN not in str(caught.value)


async def test_a_missing_auth_token_says_which_credential(emulator: TwilioEmulator) -> None:
    target = replace(emulator.target("bare"), credentials={})
    sms = SmsChannel(target)
    with pytest.raises(AuthError, match="auth_token credential is not set"):
        await sms.publish(_post("Hello"), "k:1", recipient=PHONE)


async def test_server_error_on_send_is_ambiguous_but_on_lookup_transient(
    emulator: TwilioEmulator, sms: SmsChannel
) -> None:
    emulator.add_fault(Fault(FaultKind.server_error, method="POST", status=500))
    with pytest.raises(AmbiguousError, match="reconcile"):
        await sms.publish(_post("Hello"), "k:1", recipient=PHONE)
    emulator.add_fault(Fault(FaultKind.rate_limit, method="GET", retry_after=7))
    with pytest.raises(TransientError) as limited:
        await sms.find_published(_post("Hello"), "k:1", recipient=PHONE)
    assert limited.value.code == "20429"
    assert limited.value.retry_after == 7
    emulator.add_fault(Fault(FaultKind.server_error, method="GET", status=503))
    with pytest.raises(TransientError) as unavailable:
        await sms.find_published(_post("Hello"), "k:1", recipient=PHONE)
    assert not isinstance(unavailable.value, AmbiguousError)
    assert unavailable.value.status == 503


def test_retry_after_as_seconds_or_http_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    assert _retry_after({"Retry-After": "30"}) == 30
    assert _retry_after({"Retry-After": later}) == pytest.approx(90, abs=2)
    assert _retry_after({"Retry-After": "soon"}) is None
    assert _retry_after({}) is None


# --- STOP, START, HELP ---------------------------------------------------------------------------


async def test_stop_blocks_sends_until_start(emulator: TwilioEmulator, sms: SmsChannel) -> None:
    await emulator.receive(PHONE, " Stop ")
    assert [e.data["text"] for e in emulator.effects_of("auto_reply")] == [STOP_REPLY]
    with pytest.raises(PermanentError, match="replied STOP") as caught:
        await sms.publish(_post("Boil water"), "k:1", recipient=PHONE)
    assert caught.value.code == "21610"
    await sms.publish(_post("Boil water"), "k:2", recipient=OTHER)  # others still get it
    await emulator.receive(PHONE, "START")
    await sms.publish(_post("Boil water"), "k:3", recipient=PHONE)
    assert [e.data["to"] for e in emulator.effects_of("post")] == [OTHER, PHONE]


async def test_help_is_answered_and_changes_nothing(
    emulator: TwilioEmulator, sms: SmsChannel
) -> None:
    await emulator.receive(PHONE, "help")
    assert [e.data["text"] for e in emulator.effects_of("auto_reply")] == [HELP_REPLY]
    assert emulator.effects_of("opt_out") == []
    await sms.publish(_post("Boil water"), "k:1", recipient=PHONE)


# --- reconciliation ------------------------------------------------------------------------------


async def test_find_published_matches_body_recipient_and_age(
    emulator: TwilioEmulator, sms: SmsChannel
) -> None:
    wanted, other = _post("Evacuate now"), _post("Boil water")
    sent = await sms.publish(wanted, "k:1", recipient=PHONE)
    await sms.publish(other, "k:2", recipient=PHONE)
    await sms.publish(wanted, "k:3", recipient=OTHER)
    found = await sms.find_published(wanted, "k:1", recipient=PHONE)
    assert found is not None and found.external_id == sent.external_id
    assert await sms.find_published(_post("Evacuate"), "k:1", recipient=PHONE) is None
    # A message older than the reconciliation window is some earlier alert, not this one.
    old = datetime.now(UTC) - timedelta(hours=4)
    emulator.messages[sent.external_id]["date_created"] = format_datetime(old)
    assert await sms.find_published(wanted, "k:1", recipient=PHONE) is None


# --- inbound webhook -----------------------------------------------------------------------------


def _form(**fields: str) -> tuple[dict[str, str], bytes]:
    params = {
        "MessageSid": "SM" + "a" * 32,
        "AccountSid": ACCOUNT_SID,
        "From": PHONE,
        "To": FROM_NUMBER,
        "Body": "We are trapped on the roof",
        "NumMedia": "0",
        **fields,
    }
    return params, urlencode(params).encode()


def _signed(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}


def test_our_signature_is_twilios() -> None:
    # The example in Twilio's security documentation.
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, list(params.items())) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_webhook_accepts_twilios_signature_and_rejects_the_rest(sms: SmsChannel) -> None:
    params, body = _form()
    [message] = sms.parse_webhook(HOOK, _signed(HOOK, params), body)
    assert (message.source, message.text, message.author_id) == ("sms", params["Body"], PHONE)
    assert message.external_id == params["MessageSid"]
    assert "keyword" not in message.raw
    # Twilio may sign the URL with or without the default port.
    with_port = HOOK.replace(".gov/", ".gov:443/")
    assert sms.parse_webhook(HOOK, _signed(with_port, params), body)
    with pytest.raises(WebhookRejected) as missing:
        sms.parse_webhook(HOOK, {}, body)
    assert missing.value.status == 401
    for headers, sent in [
        (_signed(HOOK, params, token="0" * 32), body),  # signed with another account's token
        (_signed(HOOK + "?x=1", params), body),  # signed for another URL
        (_signed(HOOK, params), body.replace(b"trapped", b"safe!!!")),  # body changed
        ({"x-twilio-signature": "not-a-signature"}, body),
        ({"x-twilio-signature": "ünïcode"}, body),
    ]:
        with pytest.raises(WebhookRejected) as forged:
            sms.parse_webhook(HOOK, headers, sent)
        assert forged.value.status == 403


@pytest.mark.parametrize(
    ("body", "keyword"),
    [("STOP", "stop"), ("unsubscribe ", "stop"), ("Yes", "start"), ("INFO", "help")],
)
def test_keyword_texts_come_through_marked(sms: SmsChannel, body: str, keyword: str) -> None:
    params, raw = _form(Body=body)
    [message] = sms.parse_webhook(HOOK, _signed(HOOK, params), raw)
    assert message.raw["keyword"] == keyword
    assert message.text == body


def test_status_callbacks_are_not_messages(sms: SmsChannel) -> None:
    params = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "delivered", "To": PHONE}
    body = urlencode(params).encode()
    assert sms.parse_webhook(HOOK, _signed(HOOK, params), body) == []


async def test_an_incoming_text_answers_the_last_message_that_number_got(
    emulator: TwilioEmulator, sms: SmsChannel
) -> None:
    first = await sms.publish(_post("Evacuate now"), "k:1", recipient=PHONE)
    await sms.publish(_post("Evacuate now"), "k:2", recipient=OTHER)
    params, body = _form(From=PHONE)
    [message] = sms.parse_webhook(HOOK, _signed(HOOK, params), body)
    assert message.in_reply_to == first.external_id
    params, body = _form(From="+12025550111")
    [stranger] = sms.parse_webhook(HOOK, _signed(HOOK, params), body)
    assert stranger.in_reply_to is None


def test_secrets_stay_out_of_settings_and_repr(emulator: TwilioEmulator) -> None:
    target = emulator.target()
    assert "auth_token" not in target.settings.model_dump()
    assert AUTH_TOKEN not in repr(target)
    assert isinstance(target.credentials["auth_token"], SecretStr)
    assert SmsChannel.credential_names == ("auth_token",)
    assert SmsChannel.limits.max_length == 4


def test_pictures_sent_by_mms_come_through(sms: SmsChannel) -> None:
    photo = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"
    params, body = _form(NumMedia="1", MediaUrl0=photo, MediaContentType0="image/jpeg")
    [message] = sms.parse_webhook(HOOK, _signed(HOOK, params), body)
    assert message.media_urls == (photo,)
