"""Facebook Page channel: the alert as a Page feed post, corrections by editing that post,
comments as inbound (signed Page webhook, with polling as the fallback).

Multi-language alerts: one post with every language, first language first. A Page post holds
63,206 characters, so all languages fit; one post keeps one comment thread for responders and
one thing to reconcile. If an alert were ever too long, the other languages shorten first and
the link to the full alert stays (`compose_alert_text`).

Cancel and correct (RetractMethod.edit): the original post is edited in place to the new
version's text, stamped with when it was replaced. Wherever the post has been shared or
embedded it now shows the cancellation, the public's comments stay attached, and Facebook marks
it edited; deleting would leave everyone who saw it without a cancellation. An edit sets the
same text however often it is sent, so a retried retract never duplicates anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from pydantic import Field

from channels.base import (
    AlertVersion,
    AmbiguousError,
    Channel,
    CountMethod,
    InboundMessage,
    InboundMode,
    Limits,
    Post,
    Receipt,
    RetractMethod,
    Target,
    TargetSettings,
    WebhookAnswer,
)
from channels.meta_graph import (
    CommentCursor,
    GraphClient,
    MetaSettings,
    answer_challenge,
    compose_alert_text,
    credential,
    find_recent,
    graph_time,
    labels,
    new_comments,
    refuse_extras,
    webhook_changes,
    webhook_json,
)

__all__ = ["MAX_POST_LENGTH", "FacebookChannel", "FacebookSettings"]

MAX_POST_LENGTH: Final = 63_206  # characters in one Page post


class FacebookSettings(MetaSettings):
    """A Facebook Page target. Credentials: page_access_token (a long-lived Page token with
    pages_manage_posts, pages_read_engagement, pages_read_user_content), app_secret (signs
    webhooks, and appsecret_proof on every call), verify_token (the webhook subscription's)."""

    page_id: str = Field(pattern=r"^\d+$")


class FacebookChannel(Channel):
    name: ClassVar[str] = "facebook"
    webhook_signs_url: ClassVar[bool] = False  # Meta signs the body only
    limits: ClassVar[Limits] = Limits(
        max_length=MAX_POST_LENGTH,
        counted_by=CountMethod.characters,
        max_parts=1,
        can_delete=True,
        can_edit=True,
        idempotency_keys=False,  # Graph has none: an ambiguous post is reconciled by its text
        retract=RetractMethod.edit,
        inbound=InboundMode.poll_and_webhook,
        # Pages have a daily call budget (Business Use Case limits), not a posting rate.
        max_rate_per_second=None,
    )
    settings_model: ClassVar[type[TargetSettings]] = FacebookSettings
    credential_names: ClassVar[tuple[str, ...]] = (
        "page_access_token",
        "app_secret",
        "verify_token",
    )

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        if not isinstance(target.settings, FacebookSettings):
            raise TypeError(f"facebook target {target.name!r} needs FacebookSettings")
        self.settings: FacebookSettings = target.settings
        self._app_secret = credential(target, "app_secret")
        self._verify_token = credential(target, "verify_token")
        self._graph = GraphClient(
            access_token=credential(target, "page_access_token"),
            app_secret=self._app_secret,
            timeout=self.settings.timeout_seconds,
            base_url=self.settings.base_url,
            where=f"facebook target {target.name!r}",
        )

    # --- rendering -----------------------------------------------------------------------------

    def render(self, version: AlertVersion) -> list[Post]:
        text = compose_alert_text(version, MAX_POST_LENGTH)
        return [
            Post(
                text=text,
                length=len(text),
                limit=MAX_POST_LENGTH,
                language=version.content.infos[0].language,
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
        page = self.settings.page_id
        answer = await self._graph.post(
            f"{page}/feed", f"posting to Page {page}", may_publish=True, message=post.text
        )
        post_id = answer.get("id")
        if not post_id:
            raise AmbiguousError(
                f"facebook target {self.target.name!r}: Graph answered the post without an id; "
                "it may exist: reconcile before retrying"
            )
        return self._receipt(str(post_id), datetime.now(UTC), key=key)

    async def find_published(
        self, post: Post, key: str, *, recipient: str | None = None
    ) -> Receipt | None:
        """Graph has no idempotency keys: look for exactly this text among every post the
        Page made in the last `reconcile_window_minutes` (a TransientError, never None, when
        that is more than `reconcile_max_pages` pages)."""
        item = await find_recent(
            self._graph,
            f"{self.settings.page_id}/posts",
            post.text,
            self.settings,
            text_field="message",
            time_field="created_time",
            fields="id,message,created_time",
        )
        if item is None:
            return None
        posted = graph_time(item["created_time"]) if item.get("created_time") else None
        return self._receipt(str(item["id"]), posted, key=key, reconciled=True)

    async def retract(self, receipt: Receipt, cancel: AlertVersion) -> Receipt:
        text = self._replacement_text(cancel)
        # Setting the same text again changes nothing, so a failed edit is safe to retry.
        await self._graph.post(
            receipt.external_id,
            f"editing post {receipt.external_id} to {cancel.content.msg_type.value.lower()} it",
            may_publish=False,
            message=text,
        )
        return Receipt(
            channel=self.name,
            target=self.target.name,
            external_id=receipt.external_id,
            url=receipt.url,
            posted_at=datetime.now(UTC),
            extra={"edited": True, "version": cancel.identifier},
        )

    def _replacement_text(self, cancel: AlertVersion) -> str:
        stamp = cancel.sent.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        note = labels(cancel.content.infos[0].language)["replaced"].format(at=stamp)
        return compose_alert_text(cancel, MAX_POST_LENGTH, footer=note)

    def _receipt(
        self, post_id: str, posted_at: datetime | None, *, key: str, reconciled: bool = False
    ) -> Receipt:
        page, _, number = post_id.partition("_")
        url = f"https://www.facebook.com/{page}/posts/{number}" if number else None
        extra: dict[str, Any] = {"key": key}
        if reconciled:
            extra["reconciled"] = True
        return Receipt(self.name, self.target.name, post_id, url, posted_at, extra)

    # --- inbound -------------------------------------------------------------------------------

    async def fetch_inbound(
        self, cursor: str | None
    ) -> tuple[Sequence[InboundMessage], str | None]:
        """Comments on the Page's newest posts that `cursor` has not seen (the webhook is
        the main path; this catches what it missed)."""
        page = self.settings.page_id
        seen = CommentCursor.parse(cursor)
        recent = await self._graph.get(
            f"{page}/posts",
            f"listing Page {page}'s recent posts",
            fields="id,created_time",
            limit=self.settings.poll_recent_posts,
        )
        post_ids = [str(item["id"]) for item in recent.get("data") or [] if "id" in item]
        found = await new_comments(
            self._graph,
            post_ids,
            seen,
            fields="id,message,created_time,from,parent",
            time_field="created_time",
            extra={"order": "reverse_chronological", "filter": "stream"},
            newest_first=True,
        )
        messages = [
            message
            for post_id, comment, at in found
            if (message := self._comment(post_id, comment, at)) is not None
        ]
        next_cursor = seen.after([(str(comment["id"]), at) for _, comment, at in found])
        return messages, next_cursor.dump() or cursor

    def _comment(
        self, post_id: str, comment: Mapping[str, Any], at: datetime
    ) -> InboundMessage | None:
        author = comment.get("from") or {}
        if str(author.get("id")) == self.settings.page_id:
            return None  # the Page's own comments are ours, not the public's
        return InboundMessage(
            source=self.name,
            external_id=str(comment["id"]),
            text=str(comment.get("message") or ""),
            received_at=at,
            author_id=str(author["id"]) if author.get("id") else None,
            author_name=author.get("name"),
            in_reply_to=post_id,
            raw=dict(comment),
        )

    def answer_webhook_challenge(self, query: Mapping[str, str]) -> WebhookAnswer | None:
        return answer_challenge(query, self._verify_token)

    def parse_webhook(
        self, url: str, headers: Mapping[str, str], body: bytes
    ) -> Sequence[InboundMessage]:
        payload = webhook_json(self._app_secret, headers, body)
        messages: list[InboundMessage] = []
        for _entry, value in webhook_changes(payload, "page", "feed"):
            if value.get("item") != "comment" or value.get("verb") != "add":
                continue  # reactions, edits, removals, the Page's own posts
            if "comment_id" not in value or "post_id" not in value:
                continue
            at = graph_time(value["created_time"]) if "created_time" in value else None
            message = self._comment(
                str(value["post_id"]),
                {
                    "id": value["comment_id"],
                    "message": value.get("message"),
                    "from": value.get("from"),
                    "parent_id": value.get("parent_id"),
                },
                at or datetime.now(UTC),
            )
            if message is not None:
                messages.append(message)
        return messages

    async def aclose(self) -> None:
        self._graph.close()
