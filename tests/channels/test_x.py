"""X: weighted-length threads, X's error bodies, OAuth 1.0a and webhook signatures, reconciliation,
mentions polling and cancel-by-delete, each through tweepy against the X emulator."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import re
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import tweepy.errors
from oauthlib.oauth1 import Client as OAuthClient

from approvals.alert import EXERCISE_MARKING, MsgType, Status
from channels.base import (
    AlertVersion,
    AmbiguousError,
    AuthError,
    PermanentError,
    Post,
    Receipt,
    Target,
    TargetMode,
    TransientError,
    WebhookRejected,
)
from channels.emulators.base import Fault, FaultKind
from channels.emulators.x import XEmulator
from channels.x import SIGNATURE_HEADER, XChannel, XSettings, map_error
from channels.x_text import MAX_PARTS, render_alert
from tests.channels import samples

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
    from twitter_text import parse_tweet

LINK = "https://alerts.county.example.gov/alerts/1"


@pytest.fixture
async def emulator() -> AsyncIterator[XEmulator]:
    emulator = XEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
async def channel(emulator: XEmulator) -> AsyncIterator[XChannel]:
    channel = XChannel(emulator.target("x-county", timeout_seconds=2.0))
    yield channel
    await channel.aclose()


def _edited(version: AlertVersion, **changes: Any) -> AlertVersion:
    info = version.content.infos[0].model_copy(update=changes)
    content = version.content.model_copy(update={"infos": (info, *version.content.infos[1:])})
    return dataclasses.replace(version, content=content)


async def _publish(channel: XChannel, posts: list[Post], key: str = "d1") -> list[Receipt]:
    receipts: list[Receipt] = []
    for post in posts:
        previous = receipts[-1] if receipts else None
        receipts.append(await channel.publish(post, f"{key}:{post.part}", reply_to=previous))
    return receipts


def _squashed(text: str) -> str:
    return re.sub(r"\s+", "", text)


# --- rendering -----------------------------------------------------------------------------------

CJK = "河滨区洪水正在上涨。请立即前往高地，不要涉水驾车。"  # noqa: RUF001 (Chinese punctuation)
RENDER_CASES = {
    "short fits one post": (samples.version(), 1),
    "long becomes a thread": (samples.version(long=True), 5),
    "CJK weighs two per character": (_edited(samples.version(), description=CJK * 12), 3),
    "emoji weigh two": (_edited(samples.version(), description="🌊 " * 150), 3),
    "unbroken text is cut inside the word": (_edited(samples.version(), description="a" * 700), 4),
}


@pytest.mark.parametrize(("version", "parts"), RENDER_CASES.values(), ids=RENDER_CASES.keys())
def test_render_fits_every_post_within_280_weighted_and_loses_nothing(
    version: AlertVersion, parts: int
) -> None:
    posts = render_alert(version)
    assert len(posts) == parts
    for post in posts:
        # Counted independently with twitter-text: what X itself will count.
        assert post.length == parse_tweet(post.text).weightedLength <= 280
        assert post.limit == 280
        assert post.text.endswith(f" ({post.part}/{parts})") == (parts > 1)
    assert LINK in posts[0].text
    info = version.content.infos[0]
    sent = "".join(re.sub(r" \(\d/\d\)$", "", post.text) for post in posts).replace(LINK, "")
    written = "".join(
        filter(None, (info.headline, info.instruction, info.description, info.contact))
    )
    assert _squashed(sent) == _squashed(written)


def test_cjk_posts_hold_half_the_characters_of_latin_ones() -> None:
    posts = render_alert(_edited(samples.version(), description=CJK * 12))
    body = [post for post in posts if post.part > 1]
    assert body
    assert all(len(post.text) <= 150 for post in body)  # 2 units a character: ~140 per post


def test_a_link_weighs_23_however_long_it_is() -> None:
    long_link = "https://alerts.county.example.gov/alerts/" + "a" * 200
    version = dataclasses.replace(samples.version(long=True), public_url=long_link)
    [first, *_] = render_alert(version)
    assert long_link in first.text
    assert len(first.text) > 280 >= first.length


def test_too_long_for_six_posts_ends_with_an_ellipsis_and_keeps_the_link() -> None:
    version = _edited(samples.version(), description=samples.LONG_DESCRIPTION * 5)
    posts = render_alert(version)
    assert len(posts) == MAX_PARTS
    assert posts[-1].text.endswith(f"… ({MAX_PARTS}/{MAX_PARTS})")
    assert LINK in posts[0].text
    assert all(post.length <= 280 for post in posts)


def test_action_comes_before_explanation_in_the_first_post() -> None:
    [first, *_] = render_alert(samples.version(long=True))
    headline, instruction = first.text.split("\n\n")[:2]
    assert headline == "Evacuate Riverside now: levee failure"
    assert instruction == "Leave now for high ground. Do not drive through flood water."


def test_exercise_marking_leads_every_part_but_is_never_doubled() -> None:
    posts = render_alert(samples.version(status=Status.exercise, long=True))
    assert len(posts) > 1
    for post in posts:
        assert post.text.startswith(EXERCISE_MARKING)
        assert post.text.count(EXERCISE_MARKING) == 1


@pytest.mark.parametrize(
    ("msg_type", "label"), [(MsgType.update, "UPDATE: "), (MsgType.cancel, "CANCELLED: ")]
)
def test_updates_and_cancellations_say_so_first(msg_type: MsgType, label: str) -> None:
    [post] = render_alert(samples.version(2, msg_type=msg_type))
    assert post.text.startswith(label)


def test_each_further_language_gets_its_own_post_in_the_thread() -> None:
    version = samples.version(languages=("en-US", "es-US", "fr-CA", "zh-CN"))
    posts = render_alert(version)
    assert [post.language for post in posts] == ["en-US", "es-US", "fr-CA", "zh-CN"]
    assert posts[1].text.startswith("Evacúe Riverside ahora")
    assert posts[3].text.startswith("立即撤离河滨区")
    assert all(LINK in post.text for post in posts[1:])


def test_without_a_public_page_the_alerts_own_web_link_is_used() -> None:
    version = dataclasses.replace(samples.version(), public_url=None)
    [post] = render_alert(version)
    assert post.text.endswith("https://county.example.gov/alerts")


# --- publishing and threads ----------------------------------------------------------------------


async def test_a_thread_is_a_chain_of_replies(channel: XChannel, emulator: XEmulator) -> None:
    posts = channel.render(samples.version(long=True))
    receipts = await _publish(channel, posts)
    recorded = emulator.effects_of("post")
    assert [effect.data["reply_to"] for effect in recorded] == [
        None,
        *[receipt.external_id for receipt in receipts[:-1]],
    ]
    assert {emulator.tweets[r.external_id].conversation_id for r in receipts} == {
        receipts[0].external_id
    }
    first = receipts[0]
    assert first.url == f"https://x.com/i/web/status/{first.external_id}"
    assert first.posted_at is not None and abs(first.posted_at.timestamp() - time.time()) < 60


async def test_links_come_back_wrapped_in_tco_yet_reconciliation_finds_the_post(
    channel: XChannel, emulator: XEmulator
) -> None:
    version = _edited(samples.version(), headline="Fire & flood: <leave> Riverside now")
    [post] = channel.render(version)
    emulator.add_fault(Fault(FaultKind.commit_then_error, path="^/2/tweets$"))
    with pytest.raises(AmbiguousError):
        await channel.publish(post, "amp:1")
    [tweet] = emulator.tweets.values()
    # What X's API shows: t.co links and HTML-escaped text, not the text we sent.
    page = await channel._api().get_users_tweets(emulator.account.id, user_auth=True)
    assert "https://t.co/" in page["data"][0]["text"]
    assert "&amp;" in page["data"][0]["text"]
    found = await channel.find_published(post, "amp:1")
    assert found is not None and found.external_id == tweet.id


async def test_reconciling_a_thread_part_checks_its_place_in_the_thread(
    channel: XChannel, emulator: XEmulator
) -> None:
    posts = channel.render(samples.version(long=True))
    first = await channel.publish(posts[0], "t:1")
    emulator.add_fault(Fault(FaultKind.commit_then_error, path="^/2/tweets$"))
    with pytest.raises(AmbiguousError):
        await channel.publish(posts[1], "t:2", reply_to=first)
    found = await channel.find_published(posts[1], "t:2")
    assert found is not None
    assert found.extra["reply_to"] == first.external_id
    # The same words claimed as a thread's first post are not it: that post is a reply.
    as_first = dataclasses.replace(posts[1], part=1)
    assert await channel.find_published(as_first, "t:1") is None


async def test_posting_the_same_text_twice_is_a_permanent_duplicate(channel: XChannel) -> None:
    [post] = channel.render(samples.version())
    await channel.publish(post, "dup:1")
    with pytest.raises(PermanentError) as caught:
        await channel.publish(post, "dup:2")
    assert caught.value.code == "duplicate"
    assert caught.value.status == 403
    assert "duplicate content" in caught.value.message


async def test_a_recipient_is_refused(channel: XChannel) -> None:
    [post] = channel.render(samples.version())
    with pytest.raises(PermanentError, match="no recipient"):
        await channel.publish(post, "r:1", recipient="+15550100")


# --- X's errors ----------------------------------------------------------------------------------


async def test_x_refuses_an_overlong_post_with_400_and_it_is_permanent(
    channel: XChannel, emulator: XEmulator
) -> None:
    with pytest.raises(tweepy.errors.HTTPException) as raw:
        await channel._api().create_tweet(text="a" * 281, user_auth=True)
    error = await map_error(raw.value, "test", write=True)
    assert isinstance(error, PermanentError) and not isinstance(error, AmbiguousError)
    assert error.status == 400 and "too long" in error.message
    assert emulator.effects_of("post") == []


async def test_our_own_check_stops_an_overlong_post_before_it_is_sent(
    channel: XChannel, emulator: XEmulator
) -> None:
    with pytest.raises(PermanentError) as caught:
        await channel.publish(Post(text="日" * 141), "long:1")
    assert caught.value.code == "too-long"
    assert emulator.effects_of("fault") == [] and emulator.tweets == {}


async def test_an_app_only_token_cannot_post_and_that_is_an_auth_error(
    channel: XChannel, emulator: XEmulator
) -> None:
    client = channel._api()
    client.bearer_token = emulator.bearer_token
    with pytest.raises(tweepy.errors.HTTPException) as raw:
        await client.create_tweet(text="hello", user_auth=False)
    error = await map_error(raw.value, "test", write=True)
    assert isinstance(error, AuthError)
    assert error.status == 403 and "Application-Only" in error.message
    # The same bearer token may read mentions: X allows app-only there.
    page = await client.get_users_mentions(emulator.account.id, user_auth=False)
    assert page == {"meta": {"result_count": 0}}


async def test_replying_to_a_deleted_post_is_retried_later(
    channel: XChannel, emulator: XEmulator
) -> None:
    posts = channel.render(samples.version(long=True))
    first = await channel.publish(posts[0], "gone:1")
    await channel._api().delete_tweet(first.external_id, user_auth=True)
    with pytest.raises(TransientError) as caught:
        await channel.publish(posts[1], "gone:2", reply_to=first)
    assert caught.value.code == "reply-target" and caught.value.retry_after == 5.0


async def test_a_used_up_15_minute_window_waits_for_x_rate_limit_reset(
    channel: XChannel, emulator: XEmulator
) -> None:
    emulator.window_limits["create"] = 1
    posts = channel.render(samples.version(long=True))
    await channel.publish(posts[0], "w:1")
    with pytest.raises(TransientError) as caught:
        await channel.publish(posts[1], "w:2")
    assert caught.value.status == 429
    assert caught.value.retry_after is not None and 895 <= caught.value.retry_after <= 901


async def test_a_used_up_24_hour_cap_waits_for_its_own_reset_not_the_15_minute_one(
    channel: XChannel, emulator: XEmulator
) -> None:
    emulator.create_limit_24h = 1
    posts = channel.render(samples.version(long=True))
    await channel.publish(posts[0], "c:1")
    with pytest.raises(TransientError) as caught:
        await channel.publish(posts[1], "c:2")
    assert caught.value.retry_after is not None
    assert 86_000 <= caught.value.retry_after <= 86_401


async def test_x_unreachable_is_transient_even_for_a_post(emulator: XEmulator) -> None:
    channel = XChannel(emulator.target("x-down"))
    await emulator.stop()
    try:
        [post] = channel.render(samples.version())
        with pytest.raises(TransientError) as caught:
            await channel.publish(post, "down:1")
        assert not isinstance(caught.value, AmbiguousError)
    finally:
        await channel.aclose()


@pytest.mark.parametrize("kind", [FaultKind.server_error, FaultKind.timeout])
async def test_failed_reads_are_transient_not_ambiguous(
    emulator: XEmulator, kind: FaultKind
) -> None:
    channel = XChannel(emulator.target("x-read", timeout_seconds=0.5))
    emulator.add_fault(Fault(kind, path="/mentions$", status=503, delay=1.0))
    try:
        with pytest.raises(TransientError):
            await channel.fetch_inbound("1")
    finally:
        await channel.aclose()


async def test_credentials_never_reach_the_logs(
    channel: XChannel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    [post] = channel.render(samples.version())
    await channel.publish(post, "log:1")
    await channel.fetch_inbound(None)
    for name in channel.credential_names:
        assert channel.target.credentials[name].get_secret_value() not in caplog.text


# --- the emulator checks OAuth 1.0a as X does ----------------------------------------------------


def _signed(emulator: XEmulator, url: str, **options: Any) -> dict[str, str]:
    client = OAuthClient(
        emulator.consumer_key,
        emulator.consumer_secret,
        emulator.access_token,
        emulator.access_token_secret,
        **options,
    )
    _uri, headers, _body = client.sign(url, "GET")
    return dict(headers)


@pytest.mark.parametrize(
    ("how", "status"),
    [
        ("as signed", 200),
        ("sent twice (nonce replay)", 401),
        ("query changed after signing", 401),
        ("timestamp 20 minutes old", 401),
    ],
)
async def test_the_emulator_verifies_oauth1_signatures(
    emulator: XEmulator, how: str, status: int
) -> None:
    path = f"/2/users/{emulator.account.id}/mentions"
    query = "max_results=10&since_id=1"
    options = {"timestamp": str(int(time.time()) - 1200)} if "old" in how else {}
    headers = _signed(emulator, f"https://api.twitter.com{path}?{query}", **options)
    sent = query.replace("since_id=1", "since_id=2") if "changed" in how else query
    async with aiohttp.ClientSession() as session:
        if "twice" in how:
            await session.get(f"{emulator.url}{path}?{sent}", headers=headers)
        async with session.get(f"{emulator.url}{path}?{sent}", headers=headers) as response:
            assert response.status == status
            if status == 401:
                assert (await response.json())["title"] == "Unauthorized"
            else:
                assert response.headers["x-rate-limit-limit"] == "180"


# --- mentions polling ----------------------------------------------------------------------------


async def test_polling_reads_replies_as_people_wrote_them(
    channel: XChannel, emulator: XEmulator
) -> None:
    [receipt] = await _publish(channel, channel.render(samples.version()))
    await emulator.generate_replies(1, "Is Main St & 5th flooded? see county.example.gov", None)
    [message], cursor = await channel.fetch_inbound(None)
    # X prefixes "@CountyAlertsEmu ", escapes & and wraps links; a responder sees none of that.
    assert message.text == "Is Main St & 5th flooded? see http://county.example.gov"
    assert message.in_reply_to == receipt.external_id
    assert message.author_name == "Riverside Resident"
    assert message.url == f"https://x.com/riverside_res/status/{message.external_id}"
    assert message.received_at.tzinfo is not None
    assert cursor == message.external_id


async def test_polling_follows_pages_after_the_cursor_oldest_first(
    channel: XChannel, emulator: XEmulator
) -> None:
    await _publish(channel, channel.render(samples.version()))
    await emulator.generate_replies(3, "before", None)
    _, cursor = await channel.fetch_inbound(None)
    made = await emulator.generate_replies(230, "flooded", None)
    messages, newest = await channel.fetch_inbound(cursor)
    assert [m.external_id for m in messages] == [reply["id"] for reply in made]
    assert newest == made[-1]["id"]


async def test_a_first_poll_reads_only_the_newest_page(
    channel: XChannel, emulator: XEmulator
) -> None:
    await _publish(channel, channel.render(samples.version()))
    made = await emulator.generate_replies(120, "old news", None)
    messages, cursor = await channel.fetch_inbound(None)
    assert len(messages) == 100
    assert cursor == made[-1]["id"]


# --- Account Activity webhook --------------------------------------------------------------------


def test_crc_answer_is_the_hmac_of_the_token_with_the_consumer_secret(
    channel: XChannel, emulator: XEmulator
) -> None:
    answer = channel.answer_webhook_challenge({"crc_token": "challenge-123"})
    assert answer is not None and answer.status == 200
    digest = hmac.new(emulator.consumer_secret.encode(), b"challenge-123", hashlib.sha256)
    expected = "sha256=" + base64.b64encode(digest.digest()).decode()
    assert json.loads(answer.body) == {"response_token": expected}
    assert channel.answer_webhook_challenge({}) is None


async def test_webhook_reads_replies_but_not_our_own_posts_or_reposts(
    channel: XChannel, emulator: XEmulator
) -> None:
    [receipt] = await _publish(channel, channel.render(samples.version()))
    said = "Water at the door on Elm St & the bridge is closed, " + "please send a boat " * 6
    [reply] = await emulator.generate_replies(1, said.strip(), receipt.external_id)
    tweets = [emulator.tweets[receipt.external_id], emulator.tweets[reply["id"]]]
    body, headers = emulator.activity_event(tweets)
    event = json.loads(body)
    assert event["tweet_create_events"][1]["truncated"] is True  # over 140: full text aside
    event["tweet_create_events"].append({**event["tweet_create_events"][1], "id_str": "9"})
    event["tweet_create_events"][-1]["retweeted_status"] = {"id_str": receipt.external_id}
    body = json.dumps(event).encode()
    headers = emulator.activity_event([])[1] | {SIGNATURE_HEADER: _signature(emulator, body)}
    [message] = channel.parse_webhook("https://example.org/hooks/x", headers, body)
    assert message.text == said.strip()
    assert message.external_id == reply["id"]
    assert message.in_reply_to == receipt.external_id
    assert message.received_at.tzinfo is not None


def _signature(emulator: XEmulator, body: bytes) -> str:
    digest = hmac.new(emulator.consumer_secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({SIGNATURE_HEADER: ""}, 401),
        ({SIGNATURE_HEADER: "sha256=" + base64.b64encode(b"x" * 32).decode()}, 403),
        ({"X-Twitter-Webhooks-Signature": "sha256=AAAA"}, 403),
    ],
)
def test_webhook_without_the_right_signature_is_rejected(
    channel: XChannel, headers: dict[str, str], status: int
) -> None:
    body = json.dumps({"for_user_id": "1", "tweet_create_events": []}).encode()
    with pytest.raises(WebhookRejected) as caught:
        channel.parse_webhook("https://example.org/hooks/x", headers, body)
    assert caught.value.status == status


def test_a_signed_body_that_is_not_an_event_is_a_bad_request(
    channel: XChannel, emulator: XEmulator
) -> None:
    body = b"not json"
    headers = {SIGNATURE_HEADER.title(): _signature(emulator, body)}
    with pytest.raises(WebhookRejected) as caught:
        channel.parse_webhook("https://example.org/hooks/x", headers, body)
    assert caught.value.status == 400


async def test_the_emulator_only_delivers_to_a_webhook_that_passes_the_crc_check(
    channel: XChannel, emulator: XEmulator
) -> None:
    from aiohttp import web

    calls: list[str] = []

    async def wrong_crc(request: web.Request) -> web.Response:
        calls.append(request.method)
        return web.json_response({"response_token": "sha256=bm9wZQ=="})

    app = web.Application()
    app.router.add_route("*", "/hook", wrong_crc)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    emulator.webhook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        await _publish(channel, channel.render(samples.version()))
        await emulator.generate_replies(1, "help", None)
    finally:
        await runner.cleanup()
    assert calls == ["GET"]
    [failed] = emulator.effects_of("webhook_failed")
    assert failed.data["reason"] == "CRC check failed"


# --- cancel: correction first, then delete the whole thread --------------------------------------


async def test_retract_posts_the_correction_then_deletes_the_whole_thread(
    channel: XChannel, emulator: XEmulator
) -> None:
    receipts = await _publish(channel, channel.render(samples.version(long=True)))
    cancel = samples.version(2, msg_type=MsgType.cancel)
    done = await channel.retract(receipts[0], cancel)

    [correction] = emulator.effects_of("post")[len(receipts) :]
    assert correction.data["reply_to"] is None  # a new post, seen in timelines
    assert correction.data["text"].startswith("CANCELLED: All clear")
    assert done.external_id == correction.data["id"]
    deletes = emulator.effects_of("delete")
    assert sorted(e.data["id"] for e in deletes) == sorted(r.external_id for r in receipts)
    assert deletes[0].data["id"] == receipts[0].external_id  # the headline goes first
    assert correction.seq < deletes[0].seq
    assert done.extra["corrects"] == receipts[0].external_id


async def test_retract_is_safe_to_repeat(channel: XChannel, emulator: XEmulator) -> None:
    [receipt] = await _publish(channel, channel.render(samples.version()))
    cancel = samples.version(2, msg_type=MsgType.cancel)
    first = await channel.retract(receipt, cancel)
    again = await channel.retract(receipt, cancel)
    assert again.external_id == first.external_id
    assert len(emulator.effects_of("post")) == 2
    assert len(emulator.effects_of("delete")) == 1


async def test_retracting_a_later_part_only_deletes_it(
    channel: XChannel, emulator: XEmulator
) -> None:
    receipts = await _publish(channel, channel.render(samples.version(long=True)))
    await channel.retract(receipts[2], samples.version(2, msg_type=MsgType.cancel))
    assert [e.data["id"] for e in emulator.effects_of("delete")] == [receipts[2].external_id]
    assert len(emulator.effects_of("post")) == len(receipts)


# --- configuration -------------------------------------------------------------------------------


def test_the_account_id_comes_from_the_access_token(emulator: XEmulator) -> None:
    channel = XChannel(emulator.target("x-id"))
    assert channel._user_id == emulator.account.id


async def test_without_an_id_in_the_token_the_account_is_asked_who_it_is(
    channel: XChannel, emulator: XEmulator
) -> None:
    channel._user_id = None
    await _publish(channel, channel.render(samples.version()))
    await emulator.generate_replies(1, "Where is the shelter?", None)
    [message], _ = await channel.fetch_inbound(None)
    assert message.text == "Where is the shelter?"
    assert channel._user_id == emulator.account.id


def test_missing_credentials_are_named(emulator: XEmulator) -> None:
    target = emulator.target("x-missing")
    partial = Target(target.settings, {"consumer_key": target.credentials["consumer_key"]})
    with pytest.raises(ValueError, match="consumer_secret, access_token, access_token_secret"):
        XChannel(partial)


def test_settings_refuse_unknown_fields() -> None:
    with pytest.raises(ValueError, match="screen_name"):
        XSettings.model_validate({"name": "x", "mode": TargetMode.live, "screen_name": "me"})
