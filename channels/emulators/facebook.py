"""A Facebook Page on a local Graph API: feed posts, edits, deletes, comments, and the Page
webhook. facebook-sdk talks to it through the adapter's URL-rewriting session.

Graph behaviour it keeps: POST /{page-id}/feed answers {"id": "PAGEID_POSTID"}; a post identical
to the Page's last one is refused with 506/1455006; POST /{post-id} edits and answers
{"success": true}; DELETE answers 200 {"success": true} (never 204); GET /{post-id}/comments
pages with cursors and a `next` URL carrying the access token; errors are Graph's bodies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Final

from aiohttp import web
from pydantic import SecretStr

from channels.base import Channel, Target, TargetMode
from channels.emulators.meta import (
    GraphCall,
    MetaGraphEmulator,
    graph_error_response,
    graph_timestamp,
    now_seconds,
    only,
)
from channels.facebook import MAX_POST_LENGTH, FacebookChannel, FacebookSettings

__all__ = ["EMULATOR", "FacebookEmulator"]

PAGE_ID: Final = "104857600012345"
PAGE_NAME: Final = "County Emergency Management"


@dataclass
class _Comment:
    id: str
    post_id: str
    parent_id: str
    message: str
    created: datetime
    author_id: str
    author_name: str

    def as_graph(self) -> dict[str, Any]:
        graph: dict[str, Any] = {
            "id": self.id,
            "message": self.message,
            "created_time": graph_timestamp(self.created),
            "from": {"id": self.author_id, "name": self.author_name},
        }
        if self.parent_id != self.post_id:  # Graph leaves `parent` out for top-level comments
            graph["parent"] = {"id": self.parent_id}
        return graph


@dataclass
class _Post:
    id: str
    message: str
    created: datetime
    updated: datetime
    comments: list[_Comment] = field(default_factory=list)

    def as_graph(self) -> dict[str, Any]:
        page, post = self.id.split("_", 1)
        return {
            "id": self.id,
            "message": self.message,
            "created_time": graph_timestamp(self.created),
            "updated_time": graph_timestamp(self.updated),
            "permalink_url": f"https://www.facebook.com/{page}/posts/{post}",
            "from": {"id": PAGE_ID, "name": PAGE_NAME},
        }


class FacebookEmulator(MetaGraphEmulator):
    name = "facebook"
    account_id = PAGE_ID
    usage_type = "pages"
    rate_limit_code = 80001
    rate_limit_message = (
        "(#80001) There have been too many calls to this Page account. Wait a bit and try "
        "again. For more info, please refer to "
        "https://developers.facebook.com/docs/graph-api/overview/rate-limiting."
    )
    webhook_object = "page"
    residents: ClassVar[tuple[str, ...]] = ("Ana Ruiz", "Sam Lee", "Priya Shah", "Tom Becker")

    def __init__(self) -> None:
        self.posts: dict[str, _Post] = {}  # newest last
        self.comments: dict[str, _Comment] = {}
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
        settings = FacebookSettings(
            name=name,
            mode=mode,
            base_url=self.url,
            timeout_seconds=timeout_seconds,
            page_id=PAGE_ID,
        )
        token = self.access_token if valid_credentials else "EAAGrevoked0token0for0tests"
        credentials = {
            "page_access_token": SecretStr(token),
            "app_secret": SecretStr(self.app_secret),
            "verify_token": SecretStr(self.verify_token),
        }
        return Target(settings, credentials)

    def channel(self, target: Target) -> Channel:
        return FacebookChannel(target)  # base_url in the settings points its session here

    async def generate_replies(
        self, count: int, text: str | None, to: str | None
    ) -> list[dict[str, Any]]:
        """Residents comment on post `to` (or the newest post): stored for polling and pushed
        to `webhook_url` as a signed Page feed webhook, awaited."""
        post = self.posts.get(to) if to else next(reversed(self.posts.values()), None)
        if post is None:
            raise web.HTTPNotFound(text=f"no post {to!r} to reply to")
        made: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        for number in range(count):
            index = (len(self.comments) + number) % len(self.residents)
            author = self.residents[index]
            comment = _Comment(
                id=f"{post.id.split('_', 1)[1]}_{self.new_id()}",
                post_id=post.id,
                parent_id=post.id,
                message=text or f"Is my street included? ({number + 1})",
                created=now_seconds(),
                author_id=str(100000000000001 + index),
                author_name=author,
            )
            post.comments.append(comment)
            self.comments[comment.id] = comment
            self.record("reply_generated", id=comment.id, text=comment.message, to=post.id)
            made.append(comment.as_graph())
            changes.append({"field": "feed", "value": _webhook_value(comment, post)})
        await self.deliver_webhook(changes)
        return made

    def seed_posts(self, texts: list[str], *, at: datetime | None = None) -> list[str]:
        """Posts the Page made without this adapter (Meta Business Suite, another tool),
        oldest first, at `at` (now if None; earlier for posts made hours ago); their ids."""
        made: list[str] = []
        for text in texts:
            created = (at or now_seconds()).replace(microsecond=0)
            post = _Post(f"{PAGE_ID}_{self.new_id()}", text, created, created)
            self.posts[post.id] = post
            made.append(post.id)
        return made

    def reset_state(self) -> None:
        super().reset_state()
        self.posts.clear()
        self.comments.clear()

    # --- Graph ---------------------------------------------------------------------------------

    async def graph(self, call: GraphCall) -> web.StreamResponse | None:
        if call.node == PAGE_ID:
            return self._page(call)
        if call.node in self.posts:
            return self._post(call, self.posts[call.node])
        if call.node in self.comments and call.method == "GET" and call.edge is None:
            fields = call.fields(("id", "message", "created_time", "from"))
            return web.json_response(only(self.comments[call.node].as_graph(), fields))
        return None

    def _page(self, call: GraphCall) -> web.StreamResponse | None:
        if call.edge is None and call.method == "GET":
            return web.json_response({"id": PAGE_ID, "name": PAGE_NAME})
        if call.edge == "feed" and call.method == "POST":
            return self._create_post(call)
        if call.edge in ("feed", "posts", "published_posts") and call.method == "GET":
            fields = call.fields(("id", "message", "created_time"))
            newest_first = sorted(self.posts.values(), key=_age, reverse=True)
            chosen = self.timed(
                call, [(p.created, only(p.as_graph(), fields)) for p in newest_first]
            )
            if isinstance(chosen, web.Response):
                return chosen
            return web.json_response(self.page(call, chosen))
        return None

    def _create_post(self, call: GraphCall) -> web.Response:
        message = call.params.get("message", "")
        if not message.strip() and "link" not in call.params:
            return graph_error_response(400, "(#100) Missing message or attachment", 100)
        if len(message) > MAX_POST_LENGTH:
            return graph_error_response(
                400,
                f"(#100) Param message must be at most {MAX_POST_LENGTH} characters long",
                100,
                kind="GraphMethodException",
            )
        last = next(reversed(self.posts.values()), None)
        if last is not None and last.message == message:
            return graph_error_response(
                400,
                "(#506) Duplicate status message",
                506,
                subcode=1455006,
                user_title="Duplicate Status Update",
                user_msg="This status update is identical to the last one you posted. Try "
                "posting something different, or delete your previous update.",
            )
        created = now_seconds()
        post = _Post(f"{PAGE_ID}_{self.new_id()}", message, created, created)
        self.posts[post.id] = post
        self.record("post", id=post.id, text=message, reply_to=None)
        return web.json_response({"id": post.id})

    def _post(self, call: GraphCall, post: _Post) -> web.StreamResponse | None:
        if call.edge is None:
            if call.method == "GET":
                return web.json_response(
                    only(post.as_graph(), call.fields(("id", "message", "created_time")))
                )
            if call.method == "POST" and "message" in call.params:
                message = call.params["message"]
                if len(message) > MAX_POST_LENGTH:
                    return graph_error_response(
                        400,
                        f"(#100) Param message must be at most {MAX_POST_LENGTH} characters long",
                        100,
                        kind="GraphMethodException",
                    )
                post.message, post.updated = message, now_seconds()
                self.record("edit", id=post.id, text=message)
                return web.json_response({"success": True})
            if call.method == "DELETE":
                del self.posts[post.id]
                for comment in post.comments:
                    self.comments.pop(comment.id, None)
                self.record("delete", id=post.id)
                return web.json_response({"success": True})
            return None
        if call.edge != "comments":
            return None
        if call.method == "GET":
            ordered = sorted(post.comments, key=lambda c: (c.created, c.id))
            if call.params.get("order") == "reverse_chronological":
                ordered.reverse()
            if call.params.get("filter") != "stream":
                ordered = [c for c in ordered if c.parent_id == post.id]
            fields = call.fields(("id", "message", "created_time", "from"))
            return web.json_response(self.page(call, [only(c.as_graph(), fields) for c in ordered]))
        if call.method == "POST":
            message = call.params.get("message", "")
            if not message.strip():
                return graph_error_response(400, "(#100) Missing message or attachment", 100)
            comment = _Comment(
                id=f"{post.id.split('_', 1)[1]}_{self.new_id()}",
                post_id=post.id,
                parent_id=post.id,
                message=message,
                created=now_seconds(),
                author_id=PAGE_ID,
                author_name=PAGE_NAME,
            )
            post.comments.append(comment)
            self.comments[comment.id] = comment
            self.record("post", id=comment.id, text=message, reply_to=post.id)
            return web.json_response({"id": comment.id})
        return None


def _age(post: _Post) -> tuple[datetime, int]:
    # Graph's order: by creation time, then (within one second) by id, which grows.
    return post.created, int(post.id.split("_", 1)[1])


def _webhook_value(comment: _Comment, post: _Post) -> dict[str, Any]:
    """The `value` of a Page feed webhook change for a new comment."""
    return {
        "from": {"id": comment.author_id, "name": comment.author_name},
        "post": {
            "status_type": "mobile_status_update",
            "is_published": True,
            "updated_time": graph_timestamp(post.updated),
            "permalink_url": post.as_graph()["permalink_url"],
            "promotion_status": "inactive",
            "id": post.id,
        },
        "message": comment.message,
        "post_id": post.id,
        "comment_id": comment.id,
        "created_time": int(comment.created.timestamp()),
        "item": "comment",
        "parent_id": comment.parent_id,
        "verb": "add",
    }


EMULATOR = FacebookEmulator
