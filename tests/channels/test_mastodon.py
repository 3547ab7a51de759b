"""Mastodon specifics beyond the contract: the real Mastodon.py against the emulator."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr, ValidationError

from approvals.alert import EXERCISE_MARKING, MsgType, Status
from channels.base import (
    AmbiguousError,
    AuthError,
    PermanentError,
    Post,
    Receipt,
    Target,
    TargetMode,
    TransientError,
)
from channels.emulators.base import Fault, FaultKind
from channels.emulators.mastodon import MastodonEmulator
from channels.mastodon import (
    MASTODON_LIMIT,
    MastodonChannel,
    MastodonSettings,
    alert_paragraphs,
    html_to_text,
    mastodon_length,
    split_numbered,
)
from tests.channels import samples

LANGUAGES = ("en-US", "es-US", "fr-CA", "zh-CN")


@pytest.fixture
async def emulator() -> AsyncIterator[MastodonEmulator]:
    emulator = MastodonEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


def _channel(
    emulator: MastodonEmulator, token: str | None = None, **settings: Any
) -> MastodonChannel:
    target = emulator.target(timeout_seconds=1.0)
    if token is not None or settings:
        target = Target(
            target.settings.model_copy(update=settings),
            {"access_token": SecretStr(token or emulator.token)},
        )
    channel = emulator.channel(target)
    assert isinstance(channel, MastodonChannel)
    return channel


@pytest.fixture
async def channel(emulator: MastodonEmulator) -> AsyncIterator[MastodonChannel]:
    channel = _channel(emulator)
    yield channel
    await channel.aclose()


def _posts(emulator: MastodonEmulator) -> list[dict[str, Any]]:
    return [effect.data for effect in emulator.effects_of("post")]


async def _publish_thread(channel: MastodonChannel, posts: list[Post], key: str) -> list[Receipt]:
    receipts: list[Receipt] = []
    for post in posts:
        reply_to = receipts[-1] if receipts else None
        receipts.append(await channel.publish(post, f"{key}:{post.part}", reply_to=reply_to))
    return receipts


# --- rendering -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "parts", "languages"),
    [
        ({}, 1, ["en"]),
        ({"long": True}, 3, ["en"] * 3),
        ({"status": Status.exercise, "long": True}, 3, ["en"] * 3),
        ({"languages": LANGUAGES}, 4, ["en", "es", "fr", "zh"]),
        ({"languages": LANGUAGES, "long": True}, 6, ["en"] * 3 + ["es", "fr", "zh"]),
        ({"msg_type": MsgType.cancel}, 1, ["en"]),
    ],
)
async def test_rendered_posts_fit_and_the_server_takes_every_one(
    channel: MastodonChannel,
    emulator: MastodonEmulator,
    options: dict[str, Any],
    parts: int,
    languages: list[str],
) -> None:
    version = samples.version(channels=("mastodon",), **options)
    posts = channel.render(version)
    assert len(posts) == parts
    for post in posts:
        assert post.length == mastodon_length(post.text) <= MASTODON_LIMIT
        assert post.limit == MASTODON_LIMIT
    await _publish_thread(channel, posts, "render")
    recorded = _posts(emulator)
    assert [p["language"] for p in recorded] == languages
    # One thread: each status answers the one before it.
    assert [p["reply_to"] for p in recorded] == [None] + [p["id"] for p in recorded[:-1]]


async def test_a_long_alert_is_numbered_and_loses_no_words(channel: MastodonChannel) -> None:
    version = samples.version(long=True, status=Status.exercise, channels=("mastodon",))
    posts = channel.render(version)
    bodies = []
    for post in posts:
        lines = post.text.split("\n")
        assert lines[0] == EXERCISE_MARKING, "every part starts with the exercise marking"
        assert lines[-1] == f"({post.part}/{len(posts)})"
        bodies.append("\n".join(lines[1:-1]))
    expected = alert_paragraphs(version, version.content.infos[0])
    assert " ".join(" ".join(bodies).split()) == " ".join(" ".join(expected).split())
    assert posts[0].text.count(EXERCISE_MARKING) == 1, "the headline's marking is not repeated"


@pytest.mark.parametrize(
    ("label", "text", "length"),
    [
        ("plain", "Leave now", 9),
        ("a short link counts 23", "See https://a.io", 4 + 23),
        ("a long link counts its length", "See https://" + "a" * 40 + ".gov", 4 + 52),
        ("accents are one character each", "Évacuez", 7),
        ("CJK characters count one each", "立即撤离", 4),
    ],
)
def test_length_is_never_below_mastodons_count(label: str, text: str, length: int) -> None:
    assert mastodon_length(text) == length, label


async def test_a_short_link_that_tips_a_status_over_500_is_refused_as_mastodon_counts(
    channel: MastodonChannel, emulator: MastodonEmulator
) -> None:
    text = "x" * 470 + " https://a.io"  # 483 code points, but Mastodon counts 470 + 1 + 23
    assert mastodon_length(text) == 494
    assert len(text) <= MASTODON_LIMIT
    too_long = "y" * 480 + " https://a.io"
    assert mastodon_length(too_long) > MASTODON_LIMIT
    await channel.publish(Post(text=text), "fits:1")
    with pytest.raises(PermanentError) as caught:
        await channel.publish(Post(text=too_long), "too-long:1")
    assert caught.value.status == 422
    assert "character limit of 500" in caught.value.message
    assert len(_posts(emulator)) == 1


@pytest.mark.parametrize(
    ("paragraphs", "limit", "max_parts", "parts", "cut"),
    [
        (["short"], 50, 4, 1, False),
        (["word " * 30], 50, 8, 4, False),
        (["Sentence one is here. Sentence two is here. Sentence three."], 40, 4, 3, False),
        (["x" * 130], 50, 4, 3, False),  # no spaces at all: cut inside the word
        (["word " * 200], 50, 3, 3, True),  # too long for max_parts: ends with an ellipsis
    ],
)
def test_split_numbered_keeps_every_part_within_the_limit(
    paragraphs: list[str], limit: int, max_parts: int, parts: int, cut: bool
) -> None:
    texts = split_numbered(paragraphs, limit=limit, measure=len, marking=None, max_parts=max_parts)
    assert len(texts) == parts
    assert all(len(text) <= limit for text in texts)
    if parts > 1:
        assert [re.findall(r"\((\d+)/(\d+)\)$", t)[0] for t in texts] == [
            (str(n), str(parts)) for n in range(1, parts + 1)
        ]
    assert texts[-1].split("\n")[0].endswith("…") == cut
    if not cut:  # nothing lost, nothing repeated
        bodies = [t.rsplit("\n", 1)[0] if parts > 1 else t for t in texts]
        assert "".join("".join(bodies).split()) == "".join("".join(paragraphs).split())


def test_an_alert_beyond_the_thread_limit_keeps_the_link_and_ends_with_an_ellipsis(
    channel: MastodonChannel,
) -> None:
    version = samples.version(channels=("mastodon",))
    info = version.content.infos[0].model_copy(update={"description": samples.LONG_DESCRIPTION * 8})
    content = version.content.model_copy(update={"infos": (info,)})
    posts = channel.render(dataclasses.replace(version, content=content))
    assert len(posts) == channel.limits.max_parts
    assert version.public_url is not None and version.public_url in posts[0].text
    assert posts[-1].text.split("\n")[-2].endswith("…")
    assert all(post.length <= MASTODON_LIMIT for post in posts)


# --- publishing and idempotency --------------------------------------------------------------


async def test_a_repeated_idempotency_key_returns_the_same_status_and_posts_once(
    channel: MastodonChannel, emulator: MastodonEmulator
) -> None:
    [post] = channel.render(samples.version(channels=("mastodon",)))
    first = await channel.publish(post, "alert-7:1")
    again = await channel.publish(post, "alert-7:1")
    other = await channel.publish(post, "alert-8:1")
    assert again.external_id == first.external_id != other.external_id
    assert [p["key"] for p in _posts(emulator)] == ["alert-7:1", "alert-8:1"]
    assert first.url is not None and first.external_id in first.url
    assert first.posted_at is not None and first.posted_at.utcoffset() is not None


async def test_unlisted_visibility_is_sent(emulator: MastodonEmulator) -> None:
    channel = _channel(emulator, visibility="unlisted")
    try:
        await channel.publish(Post(text="Test"), "v:1")
    finally:
        await channel.aclose()
    assert _posts(emulator)[0]["visibility"] == "unlisted"


async def test_a_recipient_is_refused(channel: MastodonChannel) -> None:
    with pytest.raises(PermanentError):
        await channel.publish(Post(text="Test"), "r:1", recipient="+15550100")


# --- errors, as Mastodon says them -----------------------------------------------------------


async def test_a_token_without_write_scope_is_an_auth_error(emulator: MastodonEmulator) -> None:
    channel = _channel(emulator, token=emulator.read_only_token)
    try:
        with pytest.raises(AuthError) as caught:
            await channel.publish(Post(text="Test"), "scope:1")
    finally:
        await channel.aclose()
    assert caught.value.status == 403
    assert "outside the authorized scopes" in caught.value.message
    assert emulator.read_only_token not in caught.value.message


async def test_replying_to_a_status_that_does_not_exist_is_permanent(
    channel: MastodonChannel,
) -> None:
    ghost = Receipt(channel="mastodon", target="test", external_id="1")
    with pytest.raises(PermanentError) as caught:
        await channel.publish(Post(text="Part 2"), "ghost:2", reply_to=ghost)
    assert caught.value.status == 404
    assert "Record not found" in caught.value.message


async def test_the_servers_own_rate_limit_gives_the_wait_from_its_reset_header(
    channel: MastodonChannel, emulator: MastodonEmulator
) -> None:
    emulator.rate_limit = 2
    await channel.publish(Post(text="one"), "rl:1")
    await channel.publish(Post(text="two"), "rl:2")
    with pytest.raises(TransientError) as caught:
        await channel.publish(Post(text="three"), "rl:3")
    # The window is 5 minutes and began with the first request.
    assert caught.value.retry_after is not None
    assert 290 <= caught.value.retry_after <= 301
    assert len(_posts(emulator)) == 2


@pytest.mark.parametrize(
    ("status", "method", "expected"),
    [
        (500, "POST", AmbiguousError),  # Rails' HTML error page, after or before the write
        (503, "POST", AmbiguousError),  # Mastodon's JSON "temporary problem"
        (502, "GET", TransientError),
        (503, "GET", TransientError),
    ],
)
async def test_server_errors_are_ambiguous_on_posts_and_transient_on_reads(
    channel: MastodonChannel,
    emulator: MastodonEmulator,
    status: int,
    method: str,
    expected: type[Exception],
) -> None:
    emulator.add_fault(Fault(FaultKind.server_error, status=status, method=method))
    post = Post(text="Test")
    writing = method == "POST"
    call = channel.publish(post, "5xx:1") if writing else channel.find_published(post, "5xx:1")
    with pytest.raises(expected) as caught:
        await call
    assert str(status) in str(caught.value)


async def test_a_read_that_times_out_is_transient(
    channel: MastodonChannel, emulator: MastodonEmulator
) -> None:
    emulator.add_fault(Fault(FaultKind.timeout, method="GET", delay=2.0))
    with pytest.raises(TransientError):
        await channel.fetch_inbound(None)


async def test_a_server_that_cannot_be_reached_is_transient_even_for_a_post() -> None:
    emulator = MastodonEmulator()
    await emulator.start()
    channel = _channel(emulator)
    await emulator.stop()  # nothing listens there now: the request can never have arrived
    try:
        with pytest.raises(TransientError) as caught:
            await channel.publish(Post(text="Test"), "down:1")
    finally:
        await channel.aclose()
    assert "connection refused" in caught.value.message


# --- reconciliation --------------------------------------------------------------------------


async def test_find_published_confirms_the_exact_text_not_just_the_rendered_html(
    channel: MastodonChannel,
) -> None:
    # The same words, different line breaks: Mastodon's HTML matches once whitespace is
    # collapsed, but the source text shows it is not the post we are looking for.
    await channel.publish(Post(text="Evacuate now\n\nRiverside"), "near:1")
    assert await channel.find_published(Post(text="Evacuate now\nRiverside"), "x:1") is None
    found = await channel.find_published(Post(text="Evacuate now\n\nRiverside"), "x:1")
    assert found is not None


async def test_find_published_never_posts(
    channel: MastodonChannel, emulator: MastodonEmulator
) -> None:
    [post] = channel.render(samples.version(channels=("mastodon",)))
    assert await channel.find_published(post, "nothing:1") is None
    assert _posts(emulator) == []


# --- cancel and correct ----------------------------------------------------------------------


async def test_retract_edits_the_original_and_replies_with_the_cancellation(
    channel: MastodonChannel, emulator: MastodonEmulator
) -> None:
    [post] = channel.render(samples.version(channels=("mastodon",)))
    original = await channel.publish(post, "orig:1")
    cancel = samples.version(2, msg_type=MsgType.cancel, channels=("mastodon",))
    reply = await channel.retract(original, cancel)
    [edit] = [e.data for e in emulator.effects_of("edit")]
    assert edit["id"] == original.external_id
    assert edit["text"].startswith("CANCEL: All clear")
    correction = _posts(emulator)[-1]
    assert correction["id"] == reply.external_id
    assert correction["reply_to"] == original.external_id
    assert correction["text"] == edit["text"]
    # Retrying the retract (say after a timeout) edits to the same words and, thanks to the
    # fixed idempotency key, does not reply twice.
    again = await channel.retract(original, cancel)
    assert again.external_id == reply.external_id
    assert len(_posts(emulator)) == 2


async def test_retracting_a_deleted_status_still_posts_the_cancellation(
    channel: MastodonChannel, emulator: MastodonEmulator
) -> None:
    original = await channel.publish(Post(text="Evacuate"), "gone:1")
    del emulator.statuses[original.external_id]
    cancel = samples.version(2, msg_type=MsgType.cancel, channels=("mastodon",))
    reply = await channel.retract(original, cancel)
    assert _posts(emulator)[-1]["id"] == reply.external_id
    assert _posts(emulator)[-1]["reply_to"] is None, "posted on its own, not as a reply"
    assert "All clear" in _posts(emulator)[-1]["text"]


# --- inbound ---------------------------------------------------------------------------------


async def test_mentions_come_in_as_typed_with_who_and_what_they_answer(
    channel: MastodonChannel, emulator: MastodonEmulator
) -> None:
    original = await channel.publish(Post(text="Evacuate"), "in:1")
    await emulator.generate_replies(
        1, "Is Elm St <closed> & flooded? https://maps.example/p/1", original.external_id
    )
    [message], cursor = await channel.fetch_inbound(None)
    # The leading @county_alerts is Mastodon's mention markup, not what the person wrote.
    assert message.text == "Is Elm St <closed> & flooded? https://maps.example/p/1"
    assert message.in_reply_to == original.external_id
    assert message.author_name == "resident1@example.social"
    assert message.raw["mentions"] == ["county_alerts"]
    assert cursor == message.raw["notification_id"]


async def test_only_mentions_are_read(channel: MastodonChannel, emulator: MastodonEmulator) -> None:
    original = await channel.publish(Post(text="Evacuate"), "fav:1")
    await emulator.generate_replies(1, "help", original.external_id)
    mention = emulator.notifications[0]
    emulator.notifications.append(
        dataclasses.replace(mention, id="9" + mention.id, type="favourite")
    )
    messages, _ = await channel.fetch_inbound(None)
    assert [m.text for m in messages] == ["help"]


async def test_a_busy_spell_is_read_in_full_oldest_first_across_pages(
    channel: MastodonChannel, emulator: MastodonEmulator
) -> None:
    original = await channel.publish(Post(text="Evacuate"), "busy:1")
    await emulator.generate_replies(1, "first", original.external_id)
    _, cursor = await channel.fetch_inbound(None)
    for n in range(95):
        await emulator.generate_replies(1, f"reply {n}", original.external_id)
    messages, cursor = await channel.fetch_inbound(cursor)
    assert [m.text for m in messages] == [f"reply {n}" for n in range(95)]
    again, _ = await channel.fetch_inbound(cursor)
    assert list(again) == []


def test_mastodon_html_reads_back_as_the_text_typed() -> None:
    content = (
        '<p>Line one<br />Line two</p><p><a href="https://example.gov/a/very/long/path" '
        'rel="nofollow noopener" target="_blank"><span class="invisible">https://</span>'
        '<span class="ellipsis">example.gov/a/very/long/pa</span><span class="invisible">'
        "th</span></a> &amp; &lt;b&gt; it&#39;s</p>"
    )
    assert html_to_text(content) == (
        "Line one\nLine two\n\nhttps://example.gov/a/very/long/path & <b> it's"
    )


# --- the emulator checks what Mastodon checks ------------------------------------------------


async def test_the_emulator_refuses_missing_and_wrong_tokens_as_mastodon_does(
    emulator: MastodonEmulator,
) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{emulator.url}/api/v1/statuses"
        async with http.post(url, data={"status": "hi"}) as missing:
            assert missing.status == 401
            assert await missing.json() == {"error": "This method requires an authenticated user"}
        headers = {"Authorization": "Bearer forged"}
        async with http.post(url, data={"status": "hi"}, headers=headers) as forged:
            assert forged.status == 401
            assert await forged.json() == {"error": "The access token is invalid"}
    assert _posts(emulator) == []


async def test_the_emulator_takes_json_bodies_and_sends_rate_limit_headers(
    emulator: MastodonEmulator,
) -> None:
    headers = {"Authorization": f"Bearer {emulator.token}", "Idempotency-Key": "raw-1"}
    async with aiohttp.ClientSession() as http:
        url = f"{emulator.url}/api/v1/statuses"
        for _ in range(2):
            async with http.post(url, json={"status": "See https://x.io/a"}, headers=headers) as r:
                assert r.status == 200
                body = await r.json()
                assert r.headers["X-RateLimit-Limit"] == "300"
                assert re.fullmatch(
                    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", r.headers["X-RateLimit-Reset"]
                )
    assert '<span class="invisible">https://</span>' in body["content"]
    assert len(_posts(emulator)) == 1


def test_settings_name_the_server_and_refuse_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="base_url"):
        MastodonSettings(name="m", mode=TargetMode.live, base_url="mastodon.social")
    with pytest.raises(ValidationError):
        MastodonSettings.model_validate(
            {"name": "m", "mode": "live", "base_url": "https://m.example", "token": "x"}
        )
    settings = MastodonSettings(name="m", mode=TargetMode.live, base_url="https://m.example/")
    assert settings.base_url == "https://m.example"
    assert MastodonChannel.credential_names == ("access_token",)
