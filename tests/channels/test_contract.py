"""One contract, every channel: each adapter against its emulator, through the real client library.

Each platform module `channels.emulators.<name>` exports `EMULATOR`, an Emulator subclass that can
build a target and an adapter wired to itself. The suite below runs once per platform.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from approvals.alert import EXERCISE_MARKING, MsgType, Status
from channels.base import (
    AlertVersion,
    AmbiguousError,
    AuthError,
    Channel,
    ChannelError,
    CountMethod,
    InboundMessage,
    InboundMode,
    Post,
    Receipt,
    RetractMethod,
    TargetMode,
    TransientError,
    WebhookRejected,
)
from channels.emulators.base import Emulator, Fault, FaultKind
from tests.channels import samples

PLATFORMS = ["x", "facebook", "instagram", "mastodon", "telegram", "sms", "email", "webhook", "cap"]


def _emulator_class(platform: str) -> type[Emulator]:
    try:
        module = importlib.import_module(f"channels.emulators.{platform}")
    except ModuleNotFoundError as missing:
        if missing.name == f"channels.emulators.{platform}":
            pytest.skip(f"no emulator for {platform} yet")
        raise
    emulator: type[Emulator] = module.EMULATOR
    return emulator


@dataclass
class Pair:
    emulator: Emulator
    channel: Channel

    @property
    def recipient(self) -> str | None:
        return self.emulator.sample_recipient if self.channel.needs_recipient else None

    def posts(self) -> list[dict[str, object]]:
        return [effect.as_dict() for effect in self.emulator.effects_of("post")]


@pytest.fixture(params=PLATFORMS)
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    emulator = _emulator_class(request.param)()
    await emulator.start()
    # Two seconds: a fault's delay (3 s) still outlasts it, and a loaded machine's pause does not
    # (one second once timed out an ordinary Graph request in a full run).
    channel = emulator.channel(emulator.target("contract", TargetMode.live, timeout_seconds=2.0))
    try:
        yield Pair(emulator, channel)
    finally:
        await channel.aclose()
        await emulator.stop()


def _versions(channel: Channel) -> dict[str, AlertVersion]:
    name = channel.name
    return {
        "short": samples.version(channels=(name,)),
        "long": samples.version(long=True, channels=(name,)),
        "exercise": samples.version(status=Status.exercise, channels=(name,)),
        "languages": samples.version(
            languages=("en-US", "es-US", "fr-CA", "zh-CN"), channels=(name,)
        ),
    }


async def _publish_all(
    channel: Channel, posts: list[Post], key: str, recipient: str | None = None
) -> list[Receipt]:
    receipts: list[Receipt] = []
    for post in posts:
        previous = receipts[-1] if receipts else None
        receipts.append(
            await channel.publish(
                post, f"{key}:{post.part}", reply_to=previous, recipient=recipient
            )
        )
    return receipts


# --- rendering -----------------------------------------------------------------------------------


async def test_every_post_is_within_the_platforms_limit(pair: Pair) -> None:
    limits = pair.channel.limits
    for label, version in _versions(pair.channel).items():
        posts = pair.channel.render(version)
        assert posts, f"{label}: nothing rendered"
        assert len(posts) <= limits.max_parts, f"{label}: {len(posts)} parts"
        for post in posts:
            assert post.parts == len(posts)
            if limits.max_length is not None and limits.counted_by is not CountMethod.unlimited:
                assert post.limit == limits.max_length
                assert 0 < post.length <= limits.max_length, f"{label} part {post.part}"
        assert [post.part for post in posts] == list(range(1, len(posts) + 1))


async def test_exercise_marking_on_every_post_and_never_on_actual(pair: Pair) -> None:
    versions = _versions(pair.channel)
    for post in pair.channel.render(versions["exercise"]):
        assert EXERCISE_MARKING in post.text, f"part {post.part} lacks the exercise marking"
    for label in ("short", "long", "languages"):
        for post in pair.channel.render(versions[label]):
            assert EXERCISE_MARKING not in post.text


async def test_render_is_deterministic(pair: Pair) -> None:
    version = _versions(pair.channel)["long"]
    assert pair.channel.render(version) == pair.channel.render(version)


# --- publishing ----------------------------------------------------------------------------------


async def test_publish_puts_exactly_the_rendered_post_on_the_platform(pair: Pair) -> None:
    posts = pair.channel.render(_versions(pair.channel)["long"])
    receipts = await _publish_all(pair.channel, posts, "contract-publish", pair.recipient)
    recorded = pair.posts()
    assert [effect["text"] for effect in recorded] == [post.text for post in posts]
    assert [effect["id"] for effect in recorded] == [receipt.external_id for receipt in receipts]
    assert all(receipt.target == "contract" for receipt in receipts)


async def test_find_published_is_none_for_a_post_never_made(pair: Pair) -> None:
    [post, *_] = pair.channel.render(_versions(pair.channel)["short"])
    assert (
        await pair.channel.find_published(post, "never-published:1", recipient=pair.recipient)
        is None
    )


# --- faults --------------------------------------------------------------------------------------


async def test_rate_limit_is_transient_with_the_platforms_own_wait(pair: Pair) -> None:
    [post, *_] = pair.channel.render(_versions(pair.channel)["short"])
    pair.emulator.add_fault(Fault(FaultKind.rate_limit, retry_after=42))
    with pytest.raises(TransientError) as caught:
        await pair.channel.publish(post, "contract-429:1", recipient=pair.recipient)
    assert caught.value.retry_after is not None
    assert 40 <= caught.value.retry_after <= 44
    assert pair.posts() == []


@pytest.mark.parametrize("kind", [FaultKind.server_error, FaultKind.outage])
async def test_server_failure_before_posting_is_retryable(pair: Pair, kind: FaultKind) -> None:
    [post, *_] = pair.channel.render(_versions(pair.channel)["short"])
    pair.emulator.add_fault(Fault(kind, status=503, duration=60))
    with pytest.raises((TransientError, AmbiguousError)):
        await pair.channel.publish(post, "contract-5xx:1", recipient=pair.recipient)
    assert pair.posts() == []


async def test_success_then_error_is_ambiguous_and_reconciled(pair: Pair) -> None:
    [post, *_] = pair.channel.render(_versions(pair.channel)["short"])
    pair.emulator.add_fault(Fault(FaultKind.commit_then_error, status=500))
    with pytest.raises((AmbiguousError, TransientError)) as caught:
        await pair.channel.publish(post, "contract-ambiguous:1", recipient=pair.recipient)
    if not pair.channel.limits.idempotency_keys:
        # Without idempotency keys a blind retry would post twice: it must say "ambiguous".
        assert isinstance(caught.value, AmbiguousError)
    [recorded] = pair.posts()
    found = await pair.channel.find_published(
        post, "contract-ambiguous:1", recipient=pair.recipient
    )
    assert found is not None
    assert found.external_id == recorded["id"]


async def test_idempotent_platforms_never_post_a_key_twice(pair: Pair) -> None:
    if not pair.channel.limits.idempotency_keys:
        pytest.skip(f"{pair.channel.name} has no idempotency keys; reconciliation covers it")
    [post, *_] = pair.channel.render(_versions(pair.channel)["short"])
    first = await pair.channel.publish(post, "contract-idem:1", recipient=pair.recipient)
    again = await pair.channel.publish(post, "contract-idem:1", recipient=pair.recipient)
    assert again.external_id == first.external_id
    assert len(pair.posts()) == 1


@pytest.mark.parametrize("kind", [FaultKind.timeout, FaultKind.reset])
async def test_lost_connection_is_ambiguous_and_nothing_was_posted(
    pair: Pair, kind: FaultKind
) -> None:
    [post, *_] = pair.channel.render(_versions(pair.channel)["short"])
    pair.emulator.add_fault(Fault(kind, delay=3.0))
    with pytest.raises(AmbiguousError):
        await pair.channel.publish(post, "contract-lost:1", recipient=pair.recipient)
    assert (
        await pair.channel.find_published(post, "contract-lost:1", recipient=pair.recipient) is None
    )


async def test_rejected_credentials_are_an_auth_error(pair: Pair) -> None:
    channel = pair.emulator.channel(
        pair.emulator.target("contract-bad", TargetMode.live, valid_credentials=False)
    )
    try:
        [post, *_] = channel.render(_versions(channel)["short"])
        with pytest.raises(AuthError):
            await channel.publish(post, "contract-auth:1", recipient=pair.recipient)
    finally:
        await channel.aclose()
    assert pair.posts() == []


async def test_errors_never_carry_secrets(pair: Pair) -> None:
    channel = pair.emulator.channel(
        pair.emulator.target("contract-bad", TargetMode.live, valid_credentials=False)
    )
    try:
        [post, *_] = channel.render(_versions(channel)["short"])
        with pytest.raises(ChannelError) as caught:
            await channel.publish(post, "contract-secret:1", recipient=pair.recipient)
        for secret in channel.target.credentials.values():
            value = secret.get_secret_value()
            assert value not in str(caught.value)
            assert value not in repr(caught.value.args)
    finally:
        await channel.aclose()


# --- cancel and correct --------------------------------------------------------------------------


async def test_retract_cancels_or_corrects_on_the_platform(pair: Pair) -> None:
    name = pair.channel.name
    original = samples.version(channels=(name,))
    [receipt, *_] = await _publish_all(
        pair.channel, pair.channel.render(original), "contract-orig", pair.recipient
    )
    cancel = samples.version(2, msg_type=MsgType.cancel, channels=(name,))
    done = await pair.channel.retract(receipt, cancel)
    method = pair.channel.limits.retract
    if method is RetractMethod.delete:
        assert [e.data["id"] for e in pair.emulator.effects_of("delete")] == [receipt.external_id]
    elif method is RetractMethod.edit:
        [edit] = pair.emulator.effects_of("edit")
        assert edit.data["id"] == receipt.external_id
        assert "All clear" in edit.data["text"]
    else:
        correction = pair.posts()[-1]
        assert correction["id"] == done.external_id != receipt.external_id
        assert "All clear" in str(correction["text"]) or "Cancel" in str(correction["text"])
        if method is RetractMethod.reply:
            assert correction["reply_to"] == receipt.external_id


# --- inbound -------------------------------------------------------------------------------------


async def test_public_replies_come_in(pair: Pair) -> None:
    inbound = pair.channel.limits.inbound
    if inbound is InboundMode.none:
        pytest.skip(f"the public cannot answer on {pair.channel.name}")
    [receipt] = await _publish_all(
        pair.channel,
        pair.channel.render(samples.version(channels=(pair.channel.name,))),
        "in",
        pair.recipient,
    )
    if inbound in (InboundMode.webhook, InboundMode.poll_and_webhook):
        await _check_webhook(pair, receipt)
    if inbound in (InboundMode.poll, InboundMode.poll_and_webhook):
        await _check_polling(pair, receipt)


async def _check_polling(pair: Pair, receipt: Receipt) -> None:
    await pair.emulator.generate_replies(
        2, "We are trapped on the roof at 12 Elm St", receipt.external_id
    )
    messages, cursor = await pair.channel.fetch_inbound(None)
    replies = [m for m in messages if m.in_reply_to == receipt.external_id]
    assert len(replies) >= 2
    assert all(m.source == pair.channel.name and m.external_id for m in replies)
    assert any("trapped" in m.text for m in replies)
    again, cursor = await pair.channel.fetch_inbound(cursor)
    assert list(again) == []
    await pair.emulator.generate_replies(1, "Is the bridge open?", receipt.external_id)
    newest, _ = await pair.channel.fetch_inbound(cursor)
    assert [m.text for m in newest] == ["Is the bridge open?"]


async def _check_webhook(pair: Pair, receipt: Receipt) -> None:
    received: list[InboundMessage] = []
    rejected: list[int] = []
    deliveries: list[tuple[str, dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        if request.method == "GET":
            answer = pair.channel.answer_webhook_challenge(dict(request.query))
            if answer is None:
                return web.Response(status=404)
            return web.Response(
                status=answer.status, text=answer.body, content_type=answer.content_type
            )
        body = await request.read()
        deliveries.append((str(request.url), dict(request.headers), body))
        try:
            received.extend(
                pair.channel.parse_webhook(str(request.url), dict(request.headers), body)
            )
        except WebhookRejected as error:
            rejected.append(error.status)
            return web.Response(status=error.status)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_route("*", "/hooks/contract", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    pair.emulator.webhook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/contract"
    try:
        await pair.emulator.generate_replies(
            1, "We are trapped on the roof at 12 Elm St", receipt.external_id
        )
        for _ in range(50):
            if received or rejected:
                break
            await asyncio.sleep(0.05)
        assert rejected == []
        assert [m.text for m in received] == ["We are trapped on the roof at 12 Elm St"]
        assert received[0].in_reply_to == receipt.external_id
        url, headers, body = deliveries[0]
        with pytest.raises(WebhookRejected) as forged:
            pair.channel.parse_webhook(url, headers, body.replace(b"trapped", b"safe!!!"))
        assert forged.value.status in (401, 403)
        unsigned = {k: v for k, v in headers.items() if "signature" not in k.lower()}
        with pytest.raises(WebhookRejected) as missing:
            pair.channel.parse_webhook(url, unsigned, body)
        assert missing.value.status in (401, 403)
    finally:
        await runner.cleanup()
