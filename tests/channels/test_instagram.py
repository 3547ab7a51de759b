"""Instagram channel: caption and card, two-step publishing with the card fetched over HTTP,
what each step's failure means, the correction comment + correction post, and comments in.
Graph error mapping and Meta webhook signatures shared with Facebook: test_facebook.py."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from PIL import Image

from approvals.alert import EXERCISE_MARKING, MsgType, Status
from channels.base import (
    AlertVersion,
    AmbiguousError,
    PermanentError,
    Target,
    TransientError,
    WebhookRejected,
)
from channels.cards import CardFormat, render_card
from channels.emulators.base import Fault, FaultKind
from channels.emulators.instagram import CARDS_PATH, IG_USER_ID, PUBLISH_QUOTA, InstagramEmulator
from channels.instagram import (
    MAX_CAPTION_LENGTH,
    InstagramChannel,
    InstagramSettings,
    tame_tags,
)
from tests.channels import samples


@pytest.fixture
async def emulator() -> AsyncIterator[InstagramEmulator]:
    async with InstagramEmulator() as running:
        assert isinstance(running, InstagramEmulator)
        yield running


@pytest.fixture
async def channel(emulator: InstagramEmulator) -> AsyncIterator[InstagramChannel]:
    adapter = InstagramChannel(emulator.target("county", timeout_seconds=2.0))
    yield adapter
    await adapter.aclose()


def _version(**kwargs: Any) -> AlertVersion:
    return samples.version(channels=("instagram",), **kwargs)


def _adapter_with(emulator: InstagramEmulator, **changes: Any) -> InstagramChannel:
    target = emulator.target("changed")
    return InstagramChannel(Target(target.settings.model_copy(update=changes), target.credentials))


# --- rendering -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "kwargs", "card_language", "in_caption", "alt_marked"),
    [
        ("actual", {}, "en-US", ["Evacuate Riverside now"], False),
        ("exercise", {"status": Status.exercise}, "en-US", [EXERCISE_MARKING], True),
        (
            "languages",
            {"languages": ("es-US", "en-US", "fr-CA", "zh-CN")},
            "es-US",
            ["Evacúe Riverside", "Evacuate Riverside", "Évacuez Riverside", "立即撤离河滨区"],
            False,
        ),
        (
            "long languages",
            {"long": True, "languages": ("en-US", "es-US", "fr-CA", "zh-CN")},
            "en-US",
            ["The levee on the east bank", "Evacúe Riverside", "立即撤离河滨区"],
            False,
        ),
    ],
)
def test_render_one_post_with_the_card_of_the_first_language(
    channel: InstagramChannel,
    label: str,
    kwargs: dict[str, Any],
    card_language: str,
    in_caption: list[str],
    alt_marked: bool,
) -> None:
    version = _version(**kwargs)
    [post] = channel.render(version)
    assert post.media_url == (
        f"{channel.settings.card_base_url}/{version.identifier}/{card_language}.jpg"
    )
    assert post.language == card_language
    assert 0 < post.length == len(post.text) <= MAX_CAPTION_LENGTH == post.limit
    for text in in_caption:
        assert text in post.text, f"{label}: {text!r} missing from the caption"
    alt_text = post.extra["alt_text"]
    assert (EXERCISE_MARKING in alt_text) is alt_marked
    assert (EXERCISE_MARKING in post.text) is alt_marked
    assert "Flood" in alt_text and "Leave now for high ground" in alt_text


def test_tame_tags_keeps_instagrams_hashtag_and_mention_limits() -> None:
    caption = (
        " ".join(f"#tag{i}" for i in range(35)) + " " + " ".join(f"@who{i}" for i in range(25))
    )
    caption += " write to alerts@county.example.gov, apt #4"
    tamed = tame_tags(caption)
    assert tamed.count("#") == 30 and tamed.count("@") == 20 + 1  # the address is no mention
    assert tamed.startswith("#tag0 #tag1") and "\uff03tag30" in tamed and "\uff20who20" in tamed
    assert len(tamed) == len(caption)
    assert tame_tags("no tags here") == "no tags here"


def test_settings_refuse_a_card_base_url_that_is_not_a_url() -> None:
    with pytest.raises(ValueError, match="card_base_url"):
        InstagramSettings(name="ig", mode="live", ig_user_id="1", card_base_url="cards/")


# --- publishing ----------------------------------------------------------------------------------


async def test_publish_fetches_the_card_then_publishes_the_container(
    channel: InstagramChannel, emulator: InstagramEmulator
) -> None:
    [post] = channel.render(_version())
    receipt = await channel.publish(post, "d-1:1")
    [container] = emulator.effects_of("container")
    [published] = emulator.effects_of("post")
    assert container.data["image_url"] == post.media_url
    assert container.seq < published.seq
    assert published.data["id"] == receipt.external_id
    assert receipt.extra["container_id"] == container.data["id"]
    assert emulator.containers[container.data["id"]].alt_text == post.extra["alt_text"]


async def test_an_unreachable_card_is_transient_and_posts_nothing(
    emulator: InstagramEmulator,
) -> None:
    adapter = _adapter_with(emulator, card_base_url=f"{emulator.url}/nowhere")
    try:
        [post] = adapter.render(_version())
        with pytest.raises(TransientError) as caught:
            await adapter.publish(post, "d-1:1")
    finally:
        await adapter.aclose()
    assert caught.value.code == "9004/2207052"
    assert "card_base_url" in caught.value.message
    assert emulator.effects_of("container") == emulator.effects_of("post") == []


async def test_a_png_card_is_refused_for_good(
    channel: InstagramChannel, emulator: InstagramEmulator
) -> None:
    [post] = channel.render(_version())
    assert post.media_url is not None
    png = dataclasses.replace(post, media_url=post.media_url.replace(".jpg", ".png"))
    with pytest.raises(PermanentError) as caught:
        await channel.publish(png, "d-1:1")
    assert caught.value.code == "36001/2207005"
    assert emulator.effects_of("post") == []


async def test_a_caption_over_the_limit_is_permanent(channel: InstagramChannel) -> None:
    [post] = channel.render(_version())
    long = dataclasses.replace(post, text="x" * (MAX_CAPTION_LENGTH + 1))
    with pytest.raises(PermanentError) as caught:
        await channel.publish(long, "d-1:1")
    assert caught.value.code == "100/2207010"


@pytest.mark.parametrize("kind", [FaultKind.timeout, FaultKind.reset])
async def test_a_lost_container_step_is_safe_to_retry(
    emulator: InstagramEmulator, kind: FaultKind
) -> None:
    """Only media_publish makes a post: losing the first step's answer is not ambiguous."""
    emulator.add_fault(Fault(kind, path=f"/{IG_USER_ID}/media$", delay=1.0))
    adapter = _adapter_with(emulator, timeout_seconds=0.5)
    try:
        [post] = adapter.render(_version())
        with pytest.raises(TransientError) as caught:
            await adapter.publish(post, "d-1:1")
        assert not isinstance(caught.value, AmbiguousError)
        assert emulator.effects_of("post") == []
        await adapter.publish(post, "d-1:1")  # the retry goes through
    finally:
        await adapter.aclose()
    assert len(emulator.effects_of("post")) == 1


async def test_a_server_error_on_media_publish_is_ambiguous(
    channel: InstagramChannel, emulator: InstagramEmulator
) -> None:
    emulator.add_fault(Fault(FaultKind.server_error, path="/media_publish$", status=500))
    [post] = channel.render(_version())
    with pytest.raises(AmbiguousError):
        await channel.publish(post, "d-1:1")


async def test_the_daily_publishing_quota_is_transient(
    channel: InstagramChannel, emulator: InstagramEmulator
) -> None:
    [post] = channel.render(_version())
    await channel.publish(post, "d-1:1")
    emulator._published.extend([emulator._published[0]] * (PUBLISH_QUOTA - 1))
    with pytest.raises(TransientError) as caught:
        await channel.publish(post, "d-2:1")
    assert caught.value.code == "9/2207042"
    assert len(emulator.effects_of("post")) == 1


async def test_the_instagram_rate_limit_is_80002_with_its_wait(
    channel: InstagramChannel, emulator: InstagramEmulator
) -> None:
    emulator.add_fault(Fault(FaultKind.rate_limit, retry_after=200))
    [post] = channel.render(_version())
    with pytest.raises(TransientError) as caught:
        await channel.publish(post, "d-1:1")
    assert caught.value.code == "80002" and caught.value.retry_after == 200


async def test_find_published_reports_the_permalink(channel: InstagramChannel) -> None:
    [post] = channel.render(_version())
    receipt = await channel.publish(post, "d-1:1")
    found = await channel.find_published(post, "d-1:1")
    assert found is not None and found.external_id == receipt.external_id
    assert found.url is not None and found.url.startswith("https://www.instagram.com/p/")


# --- cancel and correct: a comment on the original, then a correction post -----------------------


async def test_retract_comments_on_the_original_then_posts_the_correction(
    channel: InstagramChannel, emulator: InstagramEmulator
) -> None:
    [post] = channel.render(_version())
    original = await channel.publish(post, "d-1:1")
    cancel = _version(number=2, msg_type=MsgType.cancel)
    done = await channel.retract(original, cancel)
    _, comment, correction = emulator.effects_of("post")
    assert comment.data["reply_to"] == original.external_id
    assert "All clear" in comment.data["text"] and len(comment.data["text"]) <= 500
    assert correction.data["id"] == done.external_id != original.external_id
    assert correction.data["media_url"].endswith(f"/{cancel.identifier}/en-US.jpg")
    assert done.extra["corrects"] == original.external_id
    assert done.extra["comment_id"] == comment.data["id"]


async def test_a_retried_retract_posts_nothing_twice(
    channel: InstagramChannel, emulator: InstagramEmulator
) -> None:
    [post] = channel.render(_version())
    original = await channel.publish(post, "d-1:1")
    cancel = _version(number=2, msg_type=MsgType.cancel)
    emulator.add_fault(Fault(FaultKind.commit_then_error, path="/media_publish$"))
    with pytest.raises(AmbiguousError):
        await channel.retract(original, cancel)
    first = len(emulator.effects_of("post"))
    done = await channel.retract(original, cancel)
    assert len(emulator.effects_of("post")) == first == 3  # original, comment, correction
    assert done.extra["reconciled"] is True


async def test_retract_still_posts_when_the_original_takes_no_comments(
    channel: InstagramChannel, emulator: InstagramEmulator
) -> None:
    [post] = channel.render(_version())
    original = await channel.publish(post, "d-1:1")
    del emulator.media[original.external_id]  # deleted in the app by a person
    done = await channel.retract(original, _version(number=2, msg_type=MsgType.cancel))
    assert "comment_error" in done.extra and "100/33" in done.extra["comment_error"]
    assert emulator.effects_of("post")[-1].data["id"] == done.external_id


# --- inbound -------------------------------------------------------------------------------------


async def test_polling_reads_followers_comments_but_not_our_own(
    channel: InstagramChannel, emulator: InstagramEmulator
) -> None:
    [post] = channel.render(_version())
    original = await channel.publish(post, "d-1:1")
    await emulator.generate_replies(60, None, original.external_id)  # two pages of 50
    await channel.retract(original, _version(number=2, msg_type=MsgType.cancel))
    messages, cursor = await channel.fetch_inbound(None)
    assert len(messages) == 60 == len({m.external_id for m in messages})
    assert all(m.in_reply_to == original.external_id for m in messages)
    assert all(m.author_name and m.author_id for m in messages)
    again, _ = await channel.fetch_inbound(cursor)
    assert list(again) == []


def _signed(secret: str, payload: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}"}, body


def _comment_change(comment_id: str, author_id: str, text: str) -> dict[str, Any]:
    return {
        "field": "comments",
        "value": {
            "from": {"id": author_id, "username": "ana.ruiz"},
            "media": {"id": "17900000000000001", "media_product_type": "FEED"},
            "id": comment_id,
            "text": text,
        },
    }


def test_parse_webhook_reads_instagram_comments(
    channel: InstagramChannel, emulator: InstagramEmulator
) -> None:
    payload = {
        "object": "instagram",
        "entry": [
            {
                "id": IG_USER_ID,
                "time": 1795230000,
                "changes": [
                    _comment_change("1801", "17841400000100001", "Is the shelter open?"),
                    _comment_change("1802", IG_USER_ID, "our own correction"),
                    {"field": "mentions", "value": {"media_id": "1", "comment_id": "2"}},
                ],
            }
        ],
    }
    headers, body = _signed(emulator.app_secret, payload)
    [message] = channel.parse_webhook("u", headers, body)
    assert (message.source, message.external_id, message.text) == (
        "instagram",
        "1801",
        "Is the shelter open?",
    )
    assert message.in_reply_to == "17900000000000001" and message.author_name == "ana.ruiz"
    page_payload = {**payload, "object": "page"}  # a Page webhook is not ours to read
    headers, body = _signed(emulator.app_secret, page_payload)
    assert list(channel.parse_webhook("u", headers, body)) == []
    with pytest.raises(WebhookRejected) as forged:
        channel.parse_webhook("u", headers, body.replace(b"shelter", b"bunker!"))
    assert forged.value.status == 403


# --- the emulator's stand-in card route ----------------------------------------------------------


async def test_the_stand_in_card_route_serves_real_cards(emulator: InstagramEmulator) -> None:
    version = _version(status=Status.exercise)
    emulator.add_card(version)
    async with aiohttp.ClientSession() as session:
        url = f"{emulator.url}{CARDS_PATH}/{version.identifier}/en-US.jpg"
        async with session.get(url) as registered:
            assert registered.content_type == "image/jpeg"
            assert await registered.read() == render_card(version, "en-US", CardFormat.jpeg)
        async with session.get(f"{emulator.url}{CARDS_PATH}/CB-77-1/fr-CA.png") as stand_in:
            image = Image.open(io.BytesIO(await stand_in.read()))
            assert (stand_in.content_type, image.format) == ("image/png", "PNG")
        async with session.get(f"{emulator.url}{CARDS_PATH}/CB-77-1/no language!.png") as bad:
            assert bad.status == 404
