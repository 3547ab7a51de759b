"""An Instagram professional account on a local Graph API: two-step content publishing, media
listing, comments, and the Instagram comments webhook.

Graph behaviour it keeps: POST /{ig-user-id}/media fetches image_url over HTTP right then and
refuses with 9004/2207052 "Media download has failed" when it cannot get an image, with
36001/2207005 for an image that is not JPEG, 36003/2207009 outside 4:5..1.91:1 and
36000/2207004 over 8 MiB; captions over 2,200 characters or with more than 30 hashtags are
refused (100/2207010); POST /{ig-user-id}/media_publish makes the post, at most 100 per moving
24 hours (9/2207042); a container publishes once.

Faults: a post only comes into being at media_publish, so commit_then_error, timeout and reset
faults without a path of their own apply to POST .../media_publish (see `add_fault`).

Stand-in for the service's public card route: GET /_emulator/cards/{identifier}/{language}.jpg
(or .png) renders `channels.cards.render_card` for a version registered with `add_card`, or
for a built-in exercise sample. In production the broadcaster serves
{card_base_url}/{identifier}/{language}.jpg itself; `target()` points card_base_url here.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final

import aiohttp
from aiohttp import web
from PIL import Image, UnidentifiedImageError
from pydantic import SecretStr, ValidationError

from approvals.alert import AlertContent
from channels.base import AlertVersion, Channel, Target, TargetMode
from channels.cards import CardFormat, render_card
from channels.emulators.base import CONTROL_PREFIX, Fault, FaultKind
from channels.emulators.meta import (
    GraphCall,
    MetaGraphEmulator,
    graph_error_response,
    graph_timestamp,
    now_seconds,
    only,
)
from channels.instagram import MAX_CAPTION_LENGTH, MAX_HASHTAGS, InstagramChannel, InstagramSettings

__all__ = ["EMULATOR", "InstagramEmulator"]

IG_USER_ID: Final = "17841400000012345"
USERNAME: Final = "countyemergency"
MAX_IMAGE_BYTES: Final = 8 * 1024 * 1024
PUBLISH_QUOTA: Final = 100  # posts per moving 24 hours
CARDS_PATH: Final = f"{CONTROL_PREFIX}/cards"
_HASHTAG: Final = re.compile(r"(?<![\w&])#\w")


@dataclass
class _Comment:
    id: str
    media_id: str
    text: str
    created: datetime
    author_id: str
    username: str

    def as_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "timestamp": graph_timestamp(self.created),
            "username": self.username,
            "from": {"id": self.author_id, "username": self.username},
            "media": {"id": self.media_id},
            "like_count": 0,
        }


@dataclass
class _Media:
    id: str
    caption: str
    media_url: str
    created: datetime
    comments: list[_Comment] = field(default_factory=list)

    def as_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "caption": self.caption,
            "media_type": "IMAGE",
            "media_product_type": "FEED",
            "media_url": self.media_url,
            "permalink": f"https://www.instagram.com/p/{_shortcode(self.id)}/",
            "timestamp": graph_timestamp(self.created),
            "username": USERNAME,
        }


@dataclass
class _Container:
    id: str
    image_url: str
    caption: str
    alt_text: str | None
    published_id: str | None = None


class InstagramEmulator(MetaGraphEmulator):
    name = "instagram"
    account_id = IG_USER_ID
    usage_type = "instagram"
    rate_limit_code = 80002
    rate_limit_message = (
        "(#80002) There have been too many calls to this Instagram account. Wait a bit and "
        "try again. For more info, please refer to "
        "https://developers.facebook.com/docs/graph-api/overview/rate-limiting."
    )
    webhook_object = "instagram"
    residents: ClassVar[tuple[str, ...]] = ("ana.ruiz", "samlee_88", "priya.s", "tombecker")

    def __init__(self) -> None:
        self.containers: dict[str, _Container] = {}
        self.media: dict[str, _Media] = {}  # newest last
        self.comments: dict[str, _Comment] = {}
        self.cards: dict[str, AlertVersion] = {}
        self._published: deque[float] = deque()
        super().__init__()

    # --- for tests and demos -------------------------------------------------------------------

    def target(
        self,
        name: str = "test",
        mode: TargetMode = TargetMode.live,
        *,
        valid_credentials: bool = True,
        timeout_seconds: float = 10.0,
    ) -> Target:
        settings = InstagramSettings(
            name=name,
            mode=mode,
            base_url=self.url,
            timeout_seconds=timeout_seconds,
            ig_user_id=IG_USER_ID,
            # Stands in for the service's public card route (see the module docstring).
            card_base_url=f"{self.url}{CARDS_PATH}",
        )
        token = self.access_token if valid_credentials else "EAAGrevoked0token0for0tests"
        credentials = {
            "access_token": SecretStr(token),
            "app_secret": SecretStr(self.app_secret),
            "verify_token": SecretStr(self.verify_token),
        }
        return Target(settings, credentials)

    def channel(self, target: Target) -> Channel:
        return InstagramChannel(target)

    def add_card(self, version: AlertVersion) -> None:
        """Serve the real card for this version at the stand-in card route."""
        self.cards[version.identifier] = version

    def add_fault(self, fault: Fault) -> None:
        # An Instagram post exists only once media_publish runs; a container is invisible. So
        # faults that lose the answer to a write apply to the publish step unless a path says
        # otherwise: "the post was made, the answer lost" can only happen there.
        if fault.path == ".*" and fault.kind in (
            FaultKind.commit_then_error,
            FaultKind.timeout,
            FaultKind.reset,
        ):
            fault.path = r"/media_publish$"
        super().add_fault(fault)

    async def generate_replies(
        self, count: int, text: str | None, to: str | None
    ) -> list[dict[str, Any]]:
        """Followers comment on media `to` (or the newest): stored for polling and pushed to
        `webhook_url` as a signed Instagram comments webhook, awaited."""
        media = self.media.get(to) if to else next(reversed(self.media.values()), None)
        if media is None:
            raise web.HTTPNotFound(text=f"no media {to!r} to comment on")
        made: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        for number in range(count):
            index = (len(self.comments) + number) % len(self.residents)
            comment = _Comment(
                id=self.new_id(),
                media_id=media.id,
                text=text or f"Is my street included? ({number + 1})",
                created=now_seconds(),
                author_id=str(17841400000100001 + index),
                username=self.residents[index],
            )
            media.comments.append(comment)
            self.comments[comment.id] = comment
            self.record("reply_generated", id=comment.id, text=comment.text, to=media.id)
            made.append(comment.as_graph())
            changes.append(
                {
                    "field": "comments",
                    "value": {
                        "from": {"id": comment.author_id, "username": comment.username},
                        "media": {"id": media.id, "media_product_type": "FEED"},
                        "id": comment.id,
                        "text": comment.text,
                    },
                }
            )
        await self.deliver_webhook(changes)
        return made

    def seed_posts(self, texts: list[str], *, at: datetime | None = None) -> list[str]:
        """Posts the account made without this adapter (the Instagram app), oldest first, at
        `at` (now if None; earlier for posts made hours ago); their ids. Outside the
        publishing quota, as posts made in the app are."""
        made: list[str] = []
        for text in texts:
            created = (at or now_seconds()).replace(microsecond=0)
            media = _Media(self.new_id(), text, f"{self.url}/seeded.jpg", created)
            self.media[media.id] = media
            made.append(media.id)
        return made

    def reset_state(self) -> None:
        super().reset_state()
        self.containers.clear()
        self.media.clear()
        self.comments.clear()
        self._published.clear()

    # --- the stand-in card route ---------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        super().add_routes(router)
        router.add_get(CARDS_PATH + "/{identifier}/{language}.{suffix}", self._card)

    async def _card(self, request: web.Request) -> web.Response:
        identifier = request.match_info["identifier"]
        language = request.match_info["language"]
        try:
            card_format = CardFormat.from_suffix(request.match_info["suffix"])
            version = self.cards.get(identifier) or _stand_in(identifier, language)
            image = await asyncio.to_thread(render_card, version, language, card_format)
        except (ValueError, ValidationError) as error:
            raise web.HTTPNotFound(text=str(error)) from None
        return web.Response(body=image, content_type=card_format.media_type)

    # --- Graph ---------------------------------------------------------------------------------

    async def graph(self, call: GraphCall) -> web.StreamResponse | None:
        if call.node == IG_USER_ID:
            return await self._account(call)
        if call.node in self.containers and call.method == "GET" and call.edge is None:
            container = self.containers[call.node]
            status = "PUBLISHED" if container.published_id else "FINISHED"
            return web.json_response({"id": container.id, "status_code": status})
        if call.node in self.media:
            return self._media(call, self.media[call.node])
        if call.node in self.comments and call.method == "GET" and call.edge is None:
            fields = call.fields(("id", "text", "timestamp"))
            return web.json_response(only(self.comments[call.node].as_graph(), fields))
        return None

    async def _account(self, call: GraphCall) -> web.StreamResponse | None:
        if call.edge is None and call.method == "GET":
            return web.json_response({"id": IG_USER_ID, "username": USERNAME})
        if call.edge == "media" and call.method == "POST":
            return await self._create_container(call)
        if call.edge == "media_publish" and call.method == "POST":
            return self._publish(call)
        if call.edge == "media" and call.method == "GET":
            fields = call.fields(("id",))
            newest_first = sorted(self.media.values(), key=_age, reverse=True)
            chosen = self.timed(
                call, [(m.created, only(m.as_graph(), fields)) for m in newest_first]
            )
            if isinstance(chosen, web.Response):
                return chosen
            return web.json_response(self.page(call, chosen))
        if call.edge == "content_publishing_limit" and call.method == "GET":
            used = self._quota_used()
            return web.json_response(
                {
                    "data": [
                        {
                            "quota_usage": used,
                            "config": {"quota_total": PUBLISH_QUOTA, "quota_duration": 86400},
                        }
                    ]
                }
            )
        return None

    async def _create_container(self, call: GraphCall) -> web.Response:
        image_url = call.params.get("image_url")
        caption = call.params.get("caption", "")
        if not image_url:
            return graph_error_response(
                400, "(#100) The parameter image_url is required", 100, kind="GraphMethodException"
            )
        if len(caption) > MAX_CAPTION_LENGTH or len(_HASHTAG.findall(caption)) > MAX_HASHTAGS:
            return graph_error_response(
                400,
                "Invalid parameter",
                100,
                subcode=2207010,
                is_transient=False,
                user_title="Caption too long",
                user_msg=f"The caption is limited to {MAX_CAPTION_LENGTH} characters and "
                f"{MAX_HASHTAGS} hashtags.",
            )
        refused = await self._fetch_image(image_url)
        if refused is not None:
            return refused
        container = _Container(self.new_id(), image_url, caption, call.params.get("alt_text"))
        self.containers[container.id] = container
        self.record("container", id=container.id, image_url=image_url, text=caption)
        return web.json_response({"id": container.id})

    async def _fetch_image(self, url: str) -> web.Response | None:
        """Fetch image_url as Instagram does when the container is made; None if it will do."""
        try:
            timeout = aiohttp.ClientTimeout(total=10)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url) as response,
            ):
                ok = response.status == 200
                data = await response.content.read(MAX_IMAGE_BYTES + 1) if ok else b""
        except (aiohttp.ClientError, TimeoutError, ValueError):
            ok, data = False, b""
        if not ok or not data:
            return _media_fetch_failed(url)
        if len(data) > MAX_IMAGE_BYTES:
            return graph_error_response(
                400,
                "The image size is too large.",
                36000,
                subcode=2207004,
                is_transient=False,
                user_title="Image size too large",
                user_msg="The image is too large to download. It should be less than 8 MiB.",
            )
        try:
            with Image.open(io.BytesIO(data)) as image:
                image_format, (width, height) = image.format, image.size
        except (UnidentifiedImageError, OSError):
            return _media_fetch_failed(url)
        if image_format != "JPEG":
            return graph_error_response(
                400,
                "The image format is not supported.",
                36001,
                subcode=2207005,
                is_transient=False,
                user_title="Unsupported format",
                user_msg="The image format is not supported. Supported formats are: JPEG",
            )
        if not 0.8 <= width / height <= 1.91:
            return graph_error_response(
                400,
                "The aspect ratio is not supported.",
                36003,
                subcode=2207009,
                is_transient=False,
                user_title="Cannot publish this image",
                user_msg="The submitted image with aspect ratio "
                f"('{width}/{height}') cannot be published. Please submit an image with a "
                "valid aspect ratio.",
            )
        return None

    def _publish(self, call: GraphCall) -> web.Response:
        container = self.containers.get(call.params.get("creation_id", ""))
        if container is None:
            return graph_error_response(
                400,
                "The requested resource does not exist",
                24,
                subcode=2207006,
                is_transient=False,
                user_title="Media not found",
                user_msg="The media with the given ID cannot be found.",
            )
        if container.published_id is not None:
            return graph_error_response(
                400,
                "Media ID is not available",
                9007,
                subcode=2207027,
                is_transient=False,
                user_title="Media not ready for publishing",
                user_msg="The media is not ready to be published.",
            )
        if self._quota_used() >= PUBLISH_QUOTA:
            return graph_error_response(
                400,
                "Application request limit reached",
                9,
                subcode=2207042,
                is_transient=False,
                user_title="Maximum number of posts reached",
                user_msg="The maximum number of posts that were published has been reached.",
            )
        media = _Media(self.new_id(), container.caption, container.image_url, now_seconds())
        self.media[media.id] = media
        container.published_id = media.id
        self._published.append(time.monotonic())
        self.record(
            "post", id=media.id, text=media.caption, reply_to=None, media_url=media.media_url
        )
        return web.json_response({"id": media.id})

    def _quota_used(self) -> int:
        now = time.monotonic()
        while self._published and now - self._published[0] > timedelta(days=1).total_seconds():
            self._published.popleft()
        return len(self._published)

    def _media(self, call: GraphCall, media: _Media) -> web.StreamResponse | None:
        if call.edge is None and call.method == "GET":
            return web.json_response(only(media.as_graph(), call.fields(("id",))))
        if call.edge != "comments":
            return None
        if call.method == "GET":
            fields = call.fields(("id", "text", "timestamp"))
            newest_first = sorted(media.comments, key=lambda c: (c.created, c.id), reverse=True)
            return web.json_response(
                self.page(call, [only(c.as_graph(), fields) for c in newest_first])
            )
        if call.method == "POST":
            message = call.params.get("message", "")
            if not message.strip():
                return graph_error_response(400, "(#100) The parameter message is required", 100)
            comment = _Comment(
                self.new_id(), media.id, message, now_seconds(), IG_USER_ID, USERNAME
            )
            media.comments.append(comment)
            self.comments[comment.id] = comment
            self.record("post", id=comment.id, text=message, reply_to=media.id)
            return web.json_response({"id": comment.id})
        return None


def _age(media: _Media) -> tuple[datetime, int]:
    # Newest first by creation time, then (within one second) by id, which grows.
    return media.created, int(media.id)


def _media_fetch_failed(url: str) -> web.Response:
    return graph_error_response(
        400,
        "Only photo or video can be accepted as media type.",
        9004,
        subcode=2207052,
        is_transient=False,
        user_title="Media download has failed.",
        user_msg=f"The media could not be fetched from this uri: {url}",
    )


def _shortcode(media_id: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    number, code = int(media_id), ""
    while number:
        number, digit = divmod(number, 64)
        code = alphabet[digit] + code
    return code or "A"


def _stand_in(identifier: str, language: str) -> AlertVersion:
    """A sample version for card requests the emulator was not told about: an Exercise, so a
    stand-in card never looks like a real alert."""
    content = AlertContent.model_validate(
        {
            "status": "Exercise",
            "msg_type": "Alert",
            "infos": [
                {
                    "language": language,
                    "categories": ["Safety"],
                    "event": "Emulator card",
                    "urgency": "Unknown",
                    "severity": "Unknown",
                    "certainty": "Unknown",
                    "headline": f"Stand-in card for alert {identifier}",
                    "instruction": "Served by the Instagram emulator in place of the "
                    "service's public card route.",
                }
            ],
            "channels": ["instagram"],
        }
    )
    return AlertVersion(
        alert_id=0,
        version_id=0,
        number=1,
        identifier=identifier,
        sender="emulator@localhost",
        sent=datetime(1970, 1, 1, tzinfo=UTC),
        content=content,
    )


EMULATOR = InstagramEmulator
