"""Facebook Page channel: the post text, Graph's real error bodies on the error tree, edits as
corrections, webhook handshake and signatures, comment polling, and facebook-sdk kept off the
event loop. Shared Graph behaviour (errors, webhooks, text) is tested here once for both Meta
channels; test_instagram.py covers what only Instagram does."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from approvals.alert import EXERCISE_MARKING, AlertContent, MsgType, Status
from channels.base import (
    AlertVersion,
    AmbiguousError,
    AuthError,
    ChannelError,
    PermanentError,
    Target,
    TargetMode,
    TransientError,
    WebhookRejected,
)
from channels.emulators.base import Fault, FaultKind
from channels.emulators.facebook import PAGE_ID, FacebookEmulator
from channels.facebook import MAX_POST_LENGTH, FacebookChannel, FacebookSettings
from channels.meta_graph import (
    BLOCK_SEPARATOR,
    GRAPH_URL,
    GraphSession,
    compose_alert_text,
    graph_error,
    retry_after_from_headers,
)
from tests.channels import samples

NOW = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)


@pytest.fixture
async def emulator() -> AsyncIterator[FacebookEmulator]:
    async with FacebookEmulator() as running:
        assert isinstance(running, FacebookEmulator)
        yield running


@pytest.fixture
async def channel(emulator: FacebookEmulator) -> AsyncIterator[FacebookChannel]:
    adapter = FacebookChannel(emulator.target("county", timeout_seconds=2.0))
    yield adapter
    await adapter.aclose()


def _version(**kwargs: Any) -> AlertVersion:
    return samples.version(channels=("facebook",), **kwargs)


def _signed(secret: str, payload: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}, body


# --- rendering -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "kwargs", "present", "absent"),
    [
        (
            "actual",
            {},
            ["Evacuate Riverside now: levee failure", "Leave now for high ground", "More: https"],
            [EXERCISE_MARKING],
        ),
        ("exercise", {"status": Status.exercise}, [EXERCISE_MARKING], []),
        ("test", {"status": Status.test}, [EXERCISE_MARKING], []),
        (
            "four languages in one post",
            {"languages": ("en-US", "es-US", "fr-CA", "zh-CN")},
            ["Evacuate Riverside", "Evacúe Riverside", "Évacuez Riverside", "立即撤离河滨区"],
            [EXERCISE_MARKING],
        ),
        ("long", {"long": True}, ["The levee on the east bank"], [EXERCISE_MARKING]),
        ("cancel", {"msg_type": MsgType.cancel}, ["All clear"], ["Evacuate Riverside now"]),
    ],
)
def test_render(
    channel: FacebookChannel,
    label: str,
    kwargs: dict[str, Any],
    present: list[str],
    absent: list[str],
) -> None:
    [post] = channel.render(_version(**kwargs))
    for text in present:
        assert text in post.text, f"{label}: {text!r} missing"
    for text in absent:
        assert text not in post.text, f"{label}: {text!r} should not be there"
    assert post.length == len(post.text) and post.limit == MAX_POST_LENGTH
    if EXERCISE_MARKING in present:
        assert post.text.startswith(EXERCISE_MARKING), "the marking must be the first thing read"


def test_actual_alert_never_carries_the_marking_even_if_its_text_does() -> None:
    content = samples.content(channels=("facebook",)).model_dump()
    content["infos"][0]["headline"] = f"{EXERCISE_MARKING} Evacuate Riverside"
    version = AlertVersion(
        1, 1, 1, "CB-9-1", samples.SENDER, samples.SENT, AlertContent.model_validate(content)
    )
    text = compose_alert_text(version, MAX_POST_LENGTH)
    assert EXERCISE_MARKING not in text
    assert "Evacuate Riverside" in text


@pytest.mark.parametrize(
    ("limit", "descriptions", "instructions"),
    [
        (10_000, 3, 3),  # everything fits: every language in full
        (2_200, 1, 3),  # the first language whole, the others headline + instruction
        (400, 0, 1),  # descriptions go first, the other languages keep their headlines
        (200, 0, 0),  # then instructions; the headlines and the link stay
    ],
)
def test_long_multilingual_alerts_shorten_the_other_languages_first(
    limit: int, descriptions: int, instructions: int
) -> None:
    version = _version(long=True, languages=("en-US", "es-US", "fr-CA"))
    text = compose_alert_text(version, limit)
    assert len(text) <= limit
    assert text.count(samples.LONG_DESCRIPTION.strip()) == descriptions
    assert text.count("Leave now for high ground") == instructions
    for headline in ("Evacuate Riverside", "Evacúe Riverside", "Évacuez Riverside"):
        assert headline in text
    assert text.index("Evacuate Riverside") < text.index("Evacúe Riverside")
    assert text.endswith("More: https://alerts.county.example.gov/alerts/1")


def test_text_within_a_tiny_limit_keeps_the_exercise_marking_first() -> None:
    text = compose_alert_text(_version(status=Status.exercise, long=True), 60)
    assert len(text) <= 60
    assert text.startswith(EXERCISE_MARKING)


def test_languages_are_separated_so_readers_find_their_own(channel: FacebookChannel) -> None:
    [post] = channel.render(_version(languages=("en-US", "es-US")))
    english, spanish = post.text.split(BLOCK_SEPARATOR)
    assert "Evacuate" in english and "Evacúe" in spanish
    assert "Zona: Riverside district" in spanish  # labels in the block's own language


# --- publishing and reconciling ------------------------------------------------------------------


async def test_publish_posts_to_the_page_feed_and_links_the_post(
    channel: FacebookChannel, emulator: FacebookEmulator
) -> None:
    [post] = channel.render(_version())
    receipt = await channel.publish(post, "d-1:1")
    page, number = receipt.external_id.split("_")
    assert page == PAGE_ID
    assert receipt.url == f"https://www.facebook.com/{PAGE_ID}/posts/{number}"
    assert [e.data["text"] for e in emulator.effects_of("post")] == [post.text]


async def test_a_duplicate_post_is_permanent_and_says_it_is_probably_there(
    channel: FacebookChannel,
) -> None:
    [post] = channel.render(_version())
    await channel.publish(post, "d-1:1")
    with pytest.raises(PermanentError) as caught:
        await channel.publish(post, "d-2:1")
    assert caught.value.code == "506/1455006"
    assert "find_published" in caught.value.message


async def test_find_published_matches_the_exact_text_only(channel: FacebookChannel) -> None:
    [post] = channel.render(_version())
    receipt = await channel.publish(post, "d-1:1")
    found = await channel.find_published(post, "d-1:1")
    assert found is not None and found.external_id == receipt.external_id
    [other] = channel.render(_version(status=Status.exercise))
    assert await channel.find_published(other, "d-2:1") is None


async def test_publish_refuses_threading_and_recipients(channel: FacebookChannel) -> None:
    [post] = channel.render(_version())
    receipt = await channel.publish(post, "d-1:1")
    with pytest.raises(PermanentError):
        await channel.publish(post, "d-1:2", reply_to=receipt)
    with pytest.raises(PermanentError):
        await channel.publish(post, "d-1:3", recipient="+15550100")


async def test_graph_calls_run_off_the_event_loop(emulator: FacebookEmulator) -> None:
    """facebook-sdk is blocking: while a slow Graph call is in flight the loop keeps serving
    (the emulator itself runs on this loop, so a blocked loop would deadlock and time out)."""
    adapter = FacebookChannel(emulator.target("slow", timeout_seconds=5.0))
    emulator.add_fault(Fault(FaultKind.timeout, path="/feed$", delay=0.6))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        [post] = adapter.render(_version())
        with pytest.raises(AmbiguousError):
            await adapter.publish(post, "d-1:1")
    finally:
        ticker.cancel()
        await adapter.aclose()
    assert ticks >= 8


async def test_a_timed_out_read_is_transient_and_its_message_holds_no_token(
    emulator: FacebookEmulator, channel: FacebookChannel
) -> None:
    # A GET carries the access token in its URL, and requests puts the URL in its messages.
    emulator.add_fault(Fault(FaultKind.timeout, path="/posts$", delay=3.0))
    [post] = channel.render(_version())
    with pytest.raises(TransientError) as caught:
        await channel.find_published(post, "d-1:1")
    assert emulator.access_token not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_an_unreachable_graph_is_transient_even_for_a_post(
    emulator: FacebookEmulator,
) -> None:
    target = emulator.target("down")
    settings = target.settings.model_copy(update={"base_url": "http://127.0.0.1:9"})
    adapter = FacebookChannel(Target(settings, target.credentials))
    try:
        [post] = adapter.render(_version())
        with pytest.raises(TransientError) as caught:
            await adapter.publish(post, "d-1:1")
        assert "nothing was sent" in caught.value.message
    finally:
        await adapter.aclose()


async def test_an_expired_token_is_an_auth_error_naming_the_fix(
    emulator: FacebookEmulator, channel: FacebookChannel
) -> None:
    emulator.token_expired = True
    [post] = channel.render(_version())
    with pytest.raises(AuthError) as caught:
        await channel.publish(post, "d-1:1")
    assert caught.value.code == "190/463"
    assert (
        "expired" in caught.value.message and "new long-lived access token" in caught.value.message
    )


async def test_a_wrong_app_secret_is_an_auth_error(emulator: FacebookEmulator) -> None:
    target = emulator.target("secret")
    wrong = {**target.credentials, "app_secret": SecretStr("not-the-app-secret")}
    adapter = FacebookChannel(Target(target.settings, wrong))
    try:
        [post] = adapter.render(_version())
        with pytest.raises(AuthError) as caught:
            await adapter.publish(post, "d-1:1")
        assert "app_secret" in caught.value.message
        assert "not-the-app-secret" not in str(caught.value)
    finally:
        await adapter.aclose()
    assert emulator.effects_of("post") == []


async def test_the_page_rate_limit_wait_comes_from_graphs_headers(
    emulator: FacebookEmulator, channel: FacebookChannel
) -> None:
    emulator.add_fault(Fault(FaultKind.rate_limit, retry_after=125))
    [post] = channel.render(_version())
    with pytest.raises(TransientError) as caught:
        await channel.publish(post, "d-1:1")
    assert caught.value.code == "80001"
    assert caught.value.retry_after == 125


def test_missing_credentials_are_named() -> None:
    settings = FacebookSettings(name="county", mode=TargetMode.live, page_id="1")
    with pytest.raises(ValueError, match="'page_access_token'"):
        FacebookChannel(
            Target(settings, {"app_secret": SecretStr("s"), "verify_token": SecretStr("v")})
        )


# --- Graph's error bodies on the error tree (shared by Facebook and Instagram) -------------------


def _body(code: int, message: str, subcode: int | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error.update(extra, fbtrace_id="AbCdEf")
    return {"error": error}


BUC_5_MINUTES = {
    "X-Business-Use-Case-Usage": json.dumps(
        {
            PAGE_ID: [
                {
                    "type": "pages",
                    "call_count": 100,
                    "total_cputime": 40,
                    "total_time": 40,
                    "estimated_time_to_regain_access": 5,
                }
            ]
        }
    )
}
APP_USAGE_FULL = {"X-App-Usage": '{"call_count":100,"total_cputime":20,"total_time":20}'}


@pytest.mark.parametrize(
    ("body", "status", "headers", "may_publish", "kind", "code", "retry_after"),
    [
        (
            _body(190, "Error validating access token: Session has expired", 463),
            400, {}, True, AuthError, "190/463", None,
        ),
        (
            _body(190, "Error validating access token: The session has been invalidated", 467),
            400, {}, True, AuthError, "190/467", None,
        ),
        (
            _body(200, "(#200) The user hasn't authorized the application to perform this action"),
            403, {}, True, AuthError, "200", None,
        ),
        (
            _body(10, "(#10) Application does not have permission for this action"),
            400, {}, True, AuthError, "10", None,
        ),
        (
            _body(4, "(#4) Application request limit reached", is_transient=True),
            400, APP_USAGE_FULL, True, TransientError, "4", None,
        ),
        (_body(17, "(#17) User request limit reached"), 400, {}, True, TransientError, "17", None),
        (_body(32, "(#32) Page request limit reached"), 400, {}, True, TransientError, "32", None),
        (
            _body(613, "Calls to this api have exceeded the rate limit."),
            400, {"Retry-After": "90"}, True, TransientError, "613", 90.0,
        ),
        (
            _body(80001, "(#80001) There have been too many calls to this Page account."),
            400, BUC_5_MINUTES, True, TransientError, "80001", 300.0,
        ),
        (
            _body(506, "(#506) Duplicate status message", 1455006),
            400, {}, True, PermanentError, "506/1455006", None,
        ),
        (
            _body(368, "The action attempted has been deemed abusive or is otherwise disallowed"),
            400, {}, True, PermanentError, "368", None,
        ),
        (
            _body(100, "(#100) Param message must be a string", kind="GraphMethodException"),
            400, {}, True, PermanentError, "100", None,
        ),
        (
            _body(2, "An unexpected error has occurred. Please retry your request later.",
                  is_transient=True),
            500, {}, True, AmbiguousError, "2", None,
        ),
        (
            _body(2, "An unexpected error has occurred. Please retry your request later.",
                  is_transient=True),
            500, {}, False, TransientError, "2", None,
        ),
        (
            _body(1, "An unknown error occurred", is_transient=True),
            500, {}, True, AmbiguousError, "1", None,
        ),
        (
            _body(9004, "Only photo or video can be accepted as media type.", 2207052,
                  error_user_title="Media download has failed."),
            400, {}, False, TransientError, "9004/2207052", None,
        ),
        (
            _body(9, "Application request limit reached", 2207042),
            400, {}, True, TransientError, "9/2207042", None,
        ),
        (
            _body(36001, "The image format is not supported.", 2207005),
            400, {}, False, PermanentError, "36001/2207005", None,
        ),
        (None, 502, {}, True, AmbiguousError, None, None),
        (None, 502, {}, False, TransientError, None, None),
        (None, 404, {}, True, PermanentError, None, None),
    ],
)  # fmt: skip
def test_graph_errors_map_onto_the_error_tree(
    body: dict[str, Any] | None,
    status: int,
    headers: dict[str, str],
    may_publish: bool,
    kind: type[ChannelError],
    code: str | None,
    retry_after: float | None,
) -> None:
    error = graph_error(
        body, status, headers, doing="facebook target 'county'", may_publish=may_publish
    )
    assert type(error) is kind
    assert error.code == code
    assert error.status == status
    assert error.message.startswith("facebook target 'county'")
    if isinstance(error, TransientError):
        assert error.retry_after == retry_after


def test_graph_error_messages_never_repeat_a_secret() -> None:
    body = _body(190, "Invalid OAuth access token: EAAGsecret123 is malformed")
    error = graph_error(body, 400, {}, doing="x", may_publish=True, secrets=["EAAGsecret123"])
    assert "EAAGsecret123" not in str(error)
    assert "[redacted]" in error.message


def test_retry_after_reads_an_http_date_and_ignores_garbage() -> None:
    when = format_datetime(NOW + timedelta(seconds=45), usegmt=True)
    assert retry_after_from_headers({"Retry-After": when}, now=NOW) == 45
    assert retry_after_from_headers({"X-Business-Use-Case-Usage": "not json"}) is None
    assert retry_after_from_headers(APP_USAGE_FULL) is None


# --- cancel and correct: edit in place -----------------------------------------------------------


async def test_retract_edits_the_original_and_stamps_the_replacement(
    channel: FacebookChannel, emulator: FacebookEmulator
) -> None:
    [post] = channel.render(_version())
    original = await channel.publish(post, "d-1:1")
    cancel = _version(number=2, msg_type=MsgType.cancel)
    done = await channel.retract(original, cancel)
    assert done.external_id == original.external_id
    [edit] = emulator.effects_of("edit")
    assert "All clear" in edit.data["text"]
    assert "Updated 2026-11-21 03:01 UTC: this replaces the earlier alert" in edit.data["text"]
    assert "Evacuate Riverside now" not in emulator.posts[original.external_id].message
    # Retrying sets the same text again and never adds a post.
    await channel.retract(original, cancel)
    assert len(emulator.effects_of("post")) == 1
    assert emulator.posts[original.external_id].message == edit.data["text"]


async def test_retract_of_an_exercise_keeps_the_marking(
    channel: FacebookChannel, emulator: FacebookEmulator
) -> None:
    [post] = channel.render(_version(status=Status.exercise))
    original = await channel.publish(post, "d-1:1")
    await channel.retract(
        original, _version(number=2, status=Status.exercise, msg_type=MsgType.cancel)
    )
    assert emulator.posts[original.external_id].message.startswith(EXERCISE_MARKING)


async def test_retract_of_a_deleted_post_is_permanent(
    channel: FacebookChannel, emulator: FacebookEmulator
) -> None:
    [post] = channel.render(_version())
    original = await channel.publish(post, "d-1:1")
    del emulator.posts[original.external_id]
    with pytest.raises(PermanentError) as caught:
        await channel.retract(original, _version(number=2, msg_type=MsgType.cancel))
    assert caught.value.code == "100/33"


async def test_a_failed_edit_is_retryable_not_ambiguous(
    channel: FacebookChannel, emulator: FacebookEmulator
) -> None:
    [post] = channel.render(_version())
    original = await channel.publish(post, "d-1:1")
    emulator.add_fault(Fault(FaultKind.commit_then_error, path=f"/{original.external_id}$"))
    with pytest.raises(TransientError):
        await channel.retract(original, _version(number=2, msg_type=MsgType.cancel))


# --- webhooks (shared by Facebook and Instagram) -------------------------------------------------


@pytest.mark.parametrize(
    ("query", "status", "body"),
    [
        ({"hub.mode": "subscribe", "hub.verify_token": "{token}", "hub.challenge": "1158201444"},
         200, "1158201444"),
        ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}, 403, None),
        ({"hub.mode": "unsubscribe", "hub.verify_token": "{token}", "hub.challenge": "1"},
         403, None),
        ({"hub.mode": "subscribe", "hub.challenge": "1"}, 403, None),
    ],
)  # fmt: skip
def test_webhook_verification_echoes_the_challenge_only_for_our_token(
    channel: FacebookChannel,
    emulator: FacebookEmulator,
    query: dict[str, str],
    status: int,
    body: str | None,
) -> None:
    filled = {k: v.replace("{token}", emulator.verify_token) for k, v in query.items()}
    answer = channel.answer_webhook_challenge(filled)
    assert answer is not None and answer.status == status
    if body is not None:
        assert answer.body == body and answer.content_type == "text/plain"


def test_a_request_without_hub_mode_is_not_a_challenge(channel: FacebookChannel) -> None:
    assert channel.answer_webhook_challenge({"foo": "bar"}) is None


def _feed_change(item: str, verb: str, author_id: str = "100000000000009") -> dict[str, Any]:
    return {
        "field": "feed",
        "value": {
            "from": {"id": author_id, "name": "Ana Ruiz"},
            "message": "Water in our basement on Elm St",
            "post_id": f"{PAGE_ID}_122100000000001",
            "comment_id": "122100000000001_998877",
            "created_time": 1795230000,
            "item": item,
            "parent_id": f"{PAGE_ID}_122100000000001",
            "verb": verb,
        },
    }


def test_parse_webhook_reads_new_comments_only(
    channel: FacebookChannel, emulator: FacebookEmulator
) -> None:
    payload = {
        "object": "page",
        "entry": [
            {
                "id": PAGE_ID,
                "time": 1795230001,
                "changes": [
                    _feed_change("comment", "add"),
                    _feed_change("comment", "edited"),
                    _feed_change("reaction", "add"),
                    _feed_change("comment", "add", author_id=PAGE_ID),  # the Page's own reply
                ],
            }
        ],
    }
    headers, body = _signed(emulator.app_secret, payload)
    [message] = channel.parse_webhook("https://x/hooks/facebook", headers, body)
    assert message.source == "facebook"
    assert message.external_id == "122100000000001_998877"
    assert message.in_reply_to == f"{PAGE_ID}_122100000000001"
    assert message.author_name == "Ana Ruiz" and message.author_id == "100000000000009"
    assert message.received_at == datetime.fromtimestamp(1795230000, UTC)


@pytest.mark.parametrize(
    ("change_headers", "status"),
    [
        (lambda h: {k: v for k, v in h.items() if k != "X-Hub-Signature-256"}, 401),
        (lambda h: {**h, "X-Hub-Signature-256": "sha256=" + "0" * 64}, 403),
        (lambda h: {**h, "X-Hub-Signature-256": h["X-Hub-Signature-256"].upper()}, 403),
        (lambda h: {**h, "X-Hub-Signature-256": "garbage"}, 403),
    ],
)
def test_parse_webhook_rejects_unsigned_and_forged_calls(
    channel: FacebookChannel, emulator: FacebookEmulator, change_headers: Any, status: int
) -> None:
    headers, body = _signed(emulator.app_secret, {"object": "page", "entry": []})
    with pytest.raises(WebhookRejected) as caught:
        channel.parse_webhook("https://x/hooks/facebook", change_headers(headers), body)
    assert caught.value.status == status


def test_parse_webhook_rejects_a_body_signed_with_another_secret(channel: FacebookChannel) -> None:
    headers, body = _signed("someone-elses-secret", {"object": "page", "entry": []})
    with pytest.raises(WebhookRejected) as caught:
        channel.parse_webhook("https://x/hooks/facebook", headers, body)
    assert caught.value.status == 403


def test_parse_webhook_takes_lowercase_header_names_and_refuses_signed_garbage(
    channel: FacebookChannel, emulator: FacebookEmulator
) -> None:
    body = b"not json"
    digest = hmac.new(emulator.app_secret.encode(), body, hashlib.sha256).hexdigest()
    with pytest.raises(WebhookRejected) as caught:
        channel.parse_webhook("u", {"x-hub-signature-256": f"sha256={digest}"}, body)
    assert caught.value.status == 400


async def test_generated_comments_arrive_signed_by_the_emulator(
    channel: FacebookChannel, emulator: FacebookEmulator
) -> None:
    """The emulator's push is verifiable by the adapter: the same bytes, the app's secret."""
    seen: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.read()))
        return web.Response()

    app = web.Application()
    app.router.add_post("/hooks/facebook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    emulator.webhook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/facebook"
    try:
        [post] = channel.render(_version())
        receipt = await channel.publish(post, "d-1:1")
        await emulator.generate_replies(2, "Road closed at Main St?", receipt.external_id)
    finally:
        await runner.cleanup()
    [(headers, body)] = seen
    assert headers["X-Hub-Signature"].startswith("sha1=")  # Meta sends both
    messages = channel.parse_webhook("u", headers, body)
    assert [m.text for m in messages] == ["Road closed at Main St?"] * 2
    assert {m.in_reply_to for m in messages} == {receipt.external_id}


# --- polling -------------------------------------------------------------------------------------


async def test_polling_reads_every_page_of_comments_once(
    channel: FacebookChannel, emulator: FacebookEmulator
) -> None:
    [post] = channel.render(_version())
    receipt = await channel.publish(post, "d-1:1")
    await emulator.generate_replies(120, None, receipt.external_id)  # three pages of 50
    messages, cursor = await channel.fetch_inbound(None)
    assert len(messages) == 120 == len({m.external_id for m in messages})
    assert [m.received_at for m in messages] == sorted(m.received_at for m in messages)
    again, cursor = await channel.fetch_inbound(cursor)
    assert list(again) == []
    await emulator.generate_replies(1, "Shelter open?", receipt.external_id)
    newest, _ = await channel.fetch_inbound(cursor)
    assert [m.text for m in newest] == ["Shelter open?"]


async def test_polling_skips_the_pages_own_comments(
    channel: FacebookChannel, emulator: FacebookEmulator
) -> None:
    [post] = channel.render(_version())
    receipt = await channel.publish(post, "d-1:1")
    await channel._graph.post(
        f"{receipt.external_id}/comments", "replying", may_publish=True, message="We hear you"
    )
    await emulator.generate_replies(1, "Help on Oak Ave", receipt.external_id)
    messages, _ = await channel.fetch_inbound(None)
    assert [m.text for m in messages] == ["Help on Oak Ave"]


async def test_polling_with_an_unreadable_cursor_starts_over(
    channel: FacebookChannel, emulator: FacebookEmulator
) -> None:
    [post] = channel.render(_version())
    receipt = await channel.publish(post, "d-1:1")
    await emulator.generate_replies(1, "Is the bridge open?", receipt.external_id)
    messages, cursor = await channel.fetch_inbound("{not json")
    assert [m.text for m in messages] == ["Is the bridge open?"]
    assert cursor is not None and cursor != "{not json"


# --- the emulator is Graph as facebook-sdk knows it ----------------------------------------------


async def test_facebook_sdk_pages_through_the_emulator_with_get_all_connections(
    channel: FacebookChannel, emulator: FacebookEmulator
) -> None:
    """get_all_connections deletes access_token from paging.next (a KeyError without it)."""
    import facebook

    [post] = channel.render(_version())
    receipt = await channel.publish(post, "d-1:1")
    await emulator.generate_replies(30, None, receipt.external_id)
    emulator.require_appsecret_proof = False  # plain facebook-sdk sends no proof
    graph = facebook.GraphAPI(
        access_token=emulator.access_token, timeout=5, session=GraphSession(emulator.url)
    )
    graph.version = "v21.0"

    def everything() -> list[dict[str, Any]]:
        return list(graph.get_all_connections(receipt.external_id, "comments", limit=7))

    comments = await asyncio.to_thread(everything)
    assert len(comments) == 30
    result = await asyncio.to_thread(graph.delete_object, receipt.external_id)
    assert result == {"success": True}  # a JSON 200, never a 204
    assert [e.data["id"] for e in emulator.effects_of("delete")] == [receipt.external_id]


def test_the_session_rewrites_only_the_graph_prefix() -> None:
    import requests

    session = GraphSession("http://127.0.0.1:8080")
    rewritten = session.prepare_request(requests.Request("GET", GRAPH_URL + "v21.0/me"))
    untouched = session.prepare_request(requests.Request("GET", "https://example.org/x"))
    assert rewritten.url == "http://127.0.0.1:8080/v21.0/me"
    assert untouched.url == "https://example.org/x"
    session.close()


async def test_usage_headers_come_with_every_answer(emulator: FacebookEmulator) -> None:
    proof = hmac.new(
        emulator.app_secret.encode(), emulator.access_token.encode(), hashlib.sha256
    ).hexdigest()
    query = {"access_token": emulator.access_token, "appsecret_proof": proof}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{emulator.url}/v21.0/{PAGE_ID}/posts", params=query) as response,
        session.get(f"{emulator.url}/v21.0/{PAGE_ID}/posts") as refused,
    ):
        assert response.status == 200
        assert json.loads(response.headers["X-App-Usage"])["call_count"] >= 0
        [usage] = json.loads(response.headers["X-Business-Use-Case-Usage"])[PAGE_ID]
        assert usage["type"] == "pages" and "estimated_time_to_regain_access" in usage
        assert refused.status == 400 and "X-App-Usage" in refused.headers
        assert (await refused.json())["error"]["type"] == "OAuthException"


async def test_the_app_rate_limit_is_code_4(
    channel: FacebookChannel, emulator: FacebookEmulator
) -> None:
    emulator.hourly_call_budget = 2
    [post] = channel.render(_version())
    await channel.find_published(post, "k")
    await channel.find_published(post, "k")
    with pytest.raises(TransientError) as caught:
        await channel.find_published(post, "k")
    assert caught.value.code == "4"  # surfaced to the dispatcher, not retried inside
