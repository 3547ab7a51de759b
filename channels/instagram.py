"""Instagram channel: the alert as an image post (the alert card) with the alert text as its
caption, through the Graph API's two-step content publishing; comments as inbound (signed
webhook, with polling as the fallback).

Publishing: POST /{ig-user-id}/media (image_url, caption) makes an invisible container, and
Instagram fetches the card from image_url then; POST /{ig-user-id}/media_publish (creation_id)
makes the post. Only the second step can leave a post behind, so only its failures are
ambiguous; a failed first step is safe to retry.

The card: the service renders it (channels.cards) and serves it at
{card_base_url}/{identifier}/{language}.jpg, which must be reachable from the internet because
Instagram fetches it. JPEG, because content publishing takes JPEG only.

Multi-language alerts: one post whose card shows the first language and whose caption carries
every language that fits in 2,200 characters (the first in full), plus the link to the full
alert. One post per language would flood followers' feeds and spend the account's 100 posts a
day four times as fast during an emergency with many updates.

Cancel and correct (RetractMethod.correction_post): Instagram's API cannot change a caption, and
a deleted post tells nobody it was wrong. So a retract comments the correction on the original
post (for everyone who comes back to it) and then publishes the new version as its own post
with its own card (so it reaches followers' feeds). Each step first looks for what an earlier
attempt already made, so a retried retract never posts twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from pydantic import Field

from approvals.alert import EXERCISE_MARKING, is_exercise
from channels.base import (
    AlertVersion,
    AmbiguousError,
    Channel,
    CountMethod,
    InboundMessage,
    InboundMode,
    Limits,
    PermanentError,
    Post,
    Receipt,
    RetractMethod,
    Target,
    TargetSettings,
    WebhookAnswer,
)
from channels.cards import CardFormat, card_url
from channels.meta_graph import (
    CommentCursor,
    GraphClient,
    MetaSettings,
    answer_challenge,
    compose_alert_text,
    credential,
    find_recent,
    graph_time,
    new_comments,
    refuse_extras,
    same_text,
    webhook_changes,
    webhook_json,
)

__all__ = [
    "MAX_CAPTION_LENGTH",
    "MAX_HASHTAGS",
    "MAX_MENTIONS",
    "InstagramChannel",
    "InstagramSettings",
]

MAX_CAPTION_LENGTH: Final = 2_200
MAX_HASHTAGS: Final = 30
MAX_MENTIONS: Final = 20
CORRECTION_COMMENT_LENGTH: Final = 500  # a comment is read under the post: keep it short
ALT_TEXT_LENGTH: Final = 1_000
HASHTAG: Final = re.compile(r"(?<![\w&])#(?=\w)")
MENTION: Final = re.compile(r"(?<![\w.@])@(?=[\w.])")
FULLWIDTH_NUMBER_SIGN: Final = "\uff03"
FULLWIDTH_COMMERCIAL_AT: Final = "\uff20"


class InstagramSettings(MetaSettings):
    """An Instagram professional account target. Credentials: access_token (a Page or user
    token with instagram_basic, instagram_content_publish, instagram_manage_comments),
    app_secret (signs webhooks, and appsecret_proof on every call), verify_token (the webhook
    subscription's)."""

    ig_user_id: str = Field(pattern=r"^\d+$")
    # Where the service serves alert cards; Instagram must be able to fetch from it.
    card_base_url: str = Field(pattern=r"^https?://\S+$")


class InstagramChannel(Channel):
    name: ClassVar[str] = "instagram"
    webhook_signs_url: ClassVar[bool] = False  # Meta signs the body only
    limits: ClassVar[Limits] = Limits(
        max_length=MAX_CAPTION_LENGTH,
        counted_by=CountMethod.characters,
        max_parts=1,
        can_delete=False,
        can_edit=False,
        idempotency_keys=False,  # reconciled by caption
        retract=RetractMethod.correction_post,
        inbound=InboundMode.poll_and_webhook,
        # 100 posts per moving 24 hours is a quota, not a rate: a burst is allowed, and hitting
        # it comes back as a TransientError (9/2207042).
        max_rate_per_second=None,
    )
    settings_model: ClassVar[type[TargetSettings]] = InstagramSettings
    credential_names: ClassVar[tuple[str, ...]] = ("access_token", "app_secret", "verify_token")

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        if not isinstance(target.settings, InstagramSettings):
            raise TypeError(f"instagram target {target.name!r} needs InstagramSettings")
        self.settings: InstagramSettings = target.settings
        self._app_secret = credential(target, "app_secret")
        self._verify_token = credential(target, "verify_token")
        self._graph = GraphClient(
            access_token=credential(target, "access_token"),
            app_secret=self._app_secret,
            timeout=self.settings.timeout_seconds,
            base_url=self.settings.base_url,
            where=f"instagram target {target.name!r}",
        )

    # --- rendering -----------------------------------------------------------------------------

    def render(self, version: AlertVersion) -> list[Post]:
        caption = tame_tags(compose_alert_text(version, MAX_CAPTION_LENGTH))
        first = version.content.infos[0]
        return [
            Post(
                text=caption,
                length=len(caption),
                limit=MAX_CAPTION_LENGTH,
                media_url=card_url(
                    self.settings.card_base_url, version.identifier, first.language, CardFormat.jpeg
                ),
                language=first.language,
                extra={"alt_text": _alt_text(version)},
            )
        ]

    # --- publishing ----------------------------------------------------------------------------

    async def publish(
        self,
        post: Post,
        key: str,
        *,
        reply_to: Receipt | None = None,
        recipient: str | None = None,
    ) -> Receipt:
        refuse_extras(self.target.name, reply_to, recipient)
        if not post.media_url:
            raise PermanentError(
                f"instagram target {self.target.name!r}: an Instagram post needs an image; "
                "render it with this channel so it carries the alert card's URL"
            )
        account = self.settings.ig_user_id
        fields: dict[str, str | int] = {"image_url": post.media_url, "caption": post.text}
        alt_text = post.extra.get("alt_text")
        if isinstance(alt_text, str) and alt_text:
            fields["alt_text"] = alt_text
        # Step 1 makes nothing public: whatever goes wrong here, retrying is safe.
        container = await self._graph.post(
            f"{account}/media", "creating the media container", may_publish=False, **fields
        )
        creation_id = container.get("id")
        if not creation_id:
            raise PermanentError(
                f"instagram target {self.target.name!r}: Graph made no container (no id)"
            )
        published = await self._graph.post(
            f"{account}/media_publish",
            f"publishing container {creation_id}",
            may_publish=True,
            creation_id=str(creation_id),
        )
        media_id = published.get("id")
        if not media_id:
            raise AmbiguousError(
                f"instagram target {self.target.name!r}: Graph answered media_publish without "
                "an id; the post may exist: reconcile before retrying"
            )
        return Receipt(
            self.name,
            self.target.name,
            str(media_id),
            None,  # the permalink costs another call; find_published reports it
            datetime.now(UTC),
            {"key": key, "container_id": str(creation_id)},
        )

    async def find_published(
        self, post: Post, key: str, *, recipient: str | None = None
    ) -> Receipt | None:
        """Look for exactly this caption among every post the account made in the last
        `reconcile_window_minutes` (a TransientError, never None, when that is more than
        `reconcile_max_pages` pages; with Instagram's 100 posts a day it is one page)."""
        item = await find_recent(
            self._graph,
            f"{self.settings.ig_user_id}/media",
            post.text,
            self.settings,
            text_field="caption",
            time_field="timestamp",
            fields="id,caption,timestamp,permalink",
        )
        if item is None:
            return None
        return Receipt(
            self.name,
            self.target.name,
            str(item["id"]),
            item.get("permalink"),
            graph_time(item["timestamp"]) if item.get("timestamp") else None,
            {"key": key, "reconciled": True},
        )

    async def retract(self, receipt: Receipt, cancel: AlertVersion) -> Receipt:
        comment_id, comment_error = await self._ensure_correction_comment(receipt, cancel)
        [post] = self.render(cancel)
        key = f"retract:{receipt.external_id}:{cancel.identifier}"
        correction = await self.find_published(post, key) or await self.publish(post, key)
        extra: dict[str, Any] = {**correction.extra, "corrects": receipt.external_id}
        if comment_id:
            extra["comment_id"] = comment_id
        if comment_error:
            extra["comment_error"] = comment_error
        return Receipt(
            correction.channel,
            correction.target,
            correction.external_id,
            correction.url,
            correction.posted_at,
            extra,
        )

    async def _ensure_correction_comment(
        self, receipt: Receipt, cancel: AlertVersion
    ) -> tuple[str | None, str | None]:
        """Comment the correction on the original post, unless an earlier attempt did. A post
        that refuses comments (deleted, comments off) does not stop the correction post."""
        text = tame_tags(compose_alert_text(cancel, CORRECTION_COMMENT_LENGTH))
        try:
            existing = await self._graph.get(
                f"{receipt.external_id}/comments",
                f"reading comments on post {receipt.external_id}",
                fields="id,text,from",
                limit=50,
            )
            for comment in existing.get("data") or []:
                author = comment.get("from") or {}
                ours = str(author.get("id", self.settings.ig_user_id)) == self.settings.ig_user_id
                if ours and same_text(comment.get("text"), text):
                    return str(comment["id"]), None
            made = await self._graph.post(
                f"{receipt.external_id}/comments",
                f"commenting the correction on post {receipt.external_id}",
                may_publish=True,
                message=text,
            )
        except PermanentError as refused:
            return None, refused.message
        return (str(made["id"]) if made.get("id") else None), None

    # --- inbound -------------------------------------------------------------------------------

    async def fetch_inbound(
        self, cursor: str | None
    ) -> tuple[Sequence[InboundMessage], str | None]:
        """Comments on the account's newest posts that `cursor` has not seen."""
        account = self.settings.ig_user_id
        seen = CommentCursor.parse(cursor)
        recent = await self._graph.get(
            f"{account}/media",
            "listing the account's recent posts",
            fields="id,timestamp",
            limit=self.settings.poll_recent_posts,
        )
        media_ids = [str(item["id"]) for item in recent.get("data") or [] if "id" in item]
        # The comments edge promises no order, so read a bounded number of pages per post.
        found = await new_comments(
            self._graph,
            media_ids,
            seen,
            fields="id,text,timestamp,username,from",
            time_field="timestamp",
            max_pages=2,
        )
        messages = [
            message
            for media_id, comment, at in found
            if (message := self._comment(media_id, comment, at)) is not None
        ]
        next_cursor = seen.after([(str(comment["id"]), at) for _, comment, at in found])
        return messages, next_cursor.dump() or cursor

    def _comment(
        self, media_id: str, comment: Mapping[str, Any], at: datetime
    ) -> InboundMessage | None:
        author = comment.get("from") or {}
        if str(author.get("id")) == self.settings.ig_user_id:
            return None  # our own correction comments
        return InboundMessage(
            source=self.name,
            external_id=str(comment["id"]),
            text=str(comment.get("text") or ""),
            received_at=at,
            author_id=str(author["id"]) if author.get("id") else None,
            author_name=author.get("username") or comment.get("username"),
            in_reply_to=media_id,
            raw=dict(comment),
        )

    def answer_webhook_challenge(self, query: Mapping[str, str]) -> WebhookAnswer | None:
        return answer_challenge(query, self._verify_token)

    def parse_webhook(
        self, url: str, headers: Mapping[str, str], body: bytes
    ) -> Sequence[InboundMessage]:
        payload = webhook_json(self._app_secret, headers, body)
        messages: list[InboundMessage] = []
        for entry, value in webhook_changes(payload, "instagram", "comments"):
            media = value.get("media") or {}
            if "id" not in value or "id" not in media:
                continue
            at = graph_time(entry["time"]) if "time" in entry else datetime.now(UTC)
            message = self._comment(
                str(media["id"]),
                {"id": value["id"], "text": value.get("text"), "from": value.get("from")},
                at,
            )
            if message is not None:
                messages.append(message)
        return messages

    async def aclose(self) -> None:
        self._graph.close()


def tame_tags(caption: str) -> str:
    """Instagram refuses captions with more than 30 hashtags or 20 @mentions: past those, the
    sign becomes its full-width twin, which reads the same and links nothing."""
    hashtags_tamed = _past_limit(caption, HASHTAG, MAX_HASHTAGS, FULLWIDTH_NUMBER_SIGN)
    return _past_limit(hashtags_tamed, MENTION, MAX_MENTIONS, FULLWIDTH_COMMERCIAL_AT)


def _past_limit(text: str, pattern: re.Pattern[str], limit: int, twin: str) -> str:
    starts = [match.start() for match in pattern.finditer(text)][limit:]
    if not starts:
        return text
    chars = list(text)
    for start in starts:
        chars[start] = twin
    return "".join(chars)


def _alt_text(version: AlertVersion) -> str:
    """What the card says, for screen readers: the marking on a drill, headline, instruction."""
    first = version.content.infos[0]
    headline = first.headline.replace(EXERCISE_MARKING, "").strip()
    parts = [EXERCISE_MARKING] if is_exercise(version.content.status) else []
    parts += [f"{first.event}: {headline}", first.instruction or ""]
    text = ". ".join(part.strip().rstrip(".") for part in parts if part.strip()) + "."
    return text if len(text) <= ALT_TEXT_LENGTH else text[: ALT_TEXT_LENGTH - 1] + "…"
