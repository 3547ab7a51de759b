"""What the Facebook Page and Instagram channels share: one Graph API client, finding a post
again after an ambiguous failure, and comment polling. What else they share has a module each:
the error mapping (meta_graph_errors), Meta's webhook handshake and signature
(meta_graph_webhooks) and the alert text both platforms post (meta_graph_text); the channels
import all of it from here.

The client is facebook-sdk 3.1.0 (`facebook.GraphAPI`): synchronous, built on requests, with
the host fixed to https://graph.facebook.com/. So every call runs in a worker thread
(`asyncio.to_thread`), always with a timeout, and each client gets its own `GraphSession`, a
requests.Session that points that fixed prefix at the target's `base_url` (an emulator in tests
and demos) and remembers the HTTP response, whose status and usage headers facebook-sdk drops.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import requests
from pydantic import Field
from requests.adapters import HTTPAdapter

from channels.base import (
    ChannelError,
    PermanentError,
    Receipt,
    Target,
    TargetSettings,
    TransientError,
)
from channels.meta_graph_errors import graph_error, network_error, retry_after_from_headers
from channels.meta_graph_text import BLOCK_SEPARATOR, compose_alert_text, labels
from channels.meta_graph_webhooks import answer_challenge, webhook_changes, webhook_json

with warnings.catch_warnings():
    # facebook-sdk 3.1.0 has a non-raw regex ("^\d\.\d{1,2}$"); compiling it without a cached
    # .pyc warns (DeprecationWarning on 3.11, SyntaxWarning from 3.12), an error under -W error.
    warnings.filterwarnings("ignore", "invalid escape sequence", DeprecationWarning)
    warnings.filterwarnings("ignore", "invalid escape sequence", SyntaxWarning)
    import facebook

__all__ = [
    "BLOCK_SEPARATOR",
    "GRAPH_URL",
    "GRAPH_VERSION",
    "RECONCILE_PAGE_CAP",
    "CommentCursor",
    "GraphClient",
    "GraphSession",
    "MetaSettings",
    "answer_challenge",
    "compose_alert_text",
    "credential",
    "find_recent",
    "graph_error",
    "graph_time",
    "labels",
    "new_comments",
    "refuse_extras",
    "retry_after_from_headers",
    "same_text",
    "webhook_changes",
    "webhook_json",
]

GRAPH_URL: Final[str] = facebook.FACEBOOK_GRAPH_URL  # "https://graph.facebook.com/"
# facebook-sdk's constructor only accepts 2.8..3.1 (long retired): set after construction.
GRAPH_VERSION: Final = "v21.0"
# TransientError.code when find_recent needs more pages than it may read.
RECONCILE_PAGE_CAP: Final = "reconcile-page-cap"


class MetaSettings(TargetSettings):
    """Settings both Meta channels share."""

    # How many of the account's newest posts fetch_inbound reads comments from (one Graph call
    # each): the webhook is the main path, polling the fallback.
    poll_recent_posts: int = Field(default=5, ge=1, le=25)
    # find_published compares every post the account made in this many minutes (Graph's
    # `since`) with the text, however many posts that is.
    reconcile_window_minutes: int = Field(default=180, ge=1, le=7 * 24 * 60)
    # Posts per page while it looks (Graph's `limit`, at most 100). The name is older than the
    # window: it once bounded the whole search.
    reconcile_recent_posts: int = Field(default=100, ge=1, le=100)
    # Pages per lookup: 10 pages of 100 hold a Page posting every 11 seconds for three hours.
    # A lookup that needs more fails as a TransientError (looked up again later), never as
    # "not found", which would post the alert twice.
    reconcile_max_pages: int = Field(default=10, ge=1, le=50)


def credential(target: Target, name: str) -> str:
    """One of the target's secrets, or an error saying which one to configure."""
    secret = target.credentials.get(name)
    if secret is None or not secret.get_secret_value():
        raise ValueError(
            f"target {target.name!r} has no credential {name!r}: map it to a secret "
            "(environment variable or file) in the channel's configuration"
        )
    return secret.get_secret_value()


# --- the client --------------------------------------------------------------------------------


class GraphSession(requests.Session):
    """A requests.Session for one Graph client: rewrites the fixed Graph host to `base_url`,
    never retries, and remembers the last response per thread for the error mapping."""

    def __init__(self, base_url: str | None) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/") + "/" if base_url else None
        self._local = threading.local()
        # requests' default adapter already has max_retries=0; mounting says so explicitly
        # (the dispatcher owns every retry).
        for prefix in ("https://", "http://"):
            self.mount(prefix, HTTPAdapter(max_retries=0))

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if self.base_url and isinstance(request.url, str) and request.url.startswith(GRAPH_URL):
            request.url = self.base_url + request.url[len(GRAPH_URL) :]
        return super().prepare_request(request)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = super().send(request, **kwargs)
        self._local.response = response
        return response

    def forget(self) -> None:
        self._local.response = None

    @property
    def last_response(self) -> requests.Response | None:
        response: requests.Response | None = getattr(self._local, "response", None)
        return response


class GraphClient:
    """One access token's Graph API client. Every call runs off the event loop."""

    def __init__(
        self,
        *,
        access_token: str,
        app_secret: str,
        timeout: float,
        base_url: str | None,
        where: str,
    ) -> None:
        self._session = GraphSession(base_url)
        self._graph = facebook.GraphAPI(
            access_token=access_token, timeout=timeout, session=self._session
        )
        self._graph.version = GRAPH_VERSION
        # appsecret_proof proves the call comes from the app's server; Meta refuses calls
        # without it when the app sets "Require App Secret".
        self._proof = hmac.new(
            app_secret.encode(), access_token.encode(), hashlib.sha256
        ).hexdigest()
        self._secrets = tuple(s for s in (access_token, app_secret, self._proof) if s)
        self.where = where  # "facebook target 'county'", for messages

    async def get(self, path: str, what: str, **params: str | int) -> dict[str, Any]:
        return await self._call("GET", path, what, params, may_publish=False)

    async def post(
        self, path: str, what: str, *, may_publish: bool, **data: str | int
    ) -> dict[str, Any]:
        return await self._call("POST", path, what, data, may_publish=may_publish)

    async def delete(self, path: str, what: str) -> dict[str, Any]:
        # A repeated DELETE changes nothing more: never ambiguous.
        return await self._call("DELETE", path, what, {}, may_publish=False)

    async def _call(
        self, method: str, path: str, what: str, fields: dict[str, str | int], *, may_publish: bool
    ) -> dict[str, Any]:
        return await asyncio.to_thread(self._blocking, method, path, what, fields, may_publish)

    def _blocking(
        self, method: str, path: str, what: str, fields: dict[str, str | int], may_publish: bool
    ) -> dict[str, Any]:
        values = {key: str(value) for key, value in fields.items()}
        values["appsecret_proof"] = self._proof
        # graph.request rather than put_object/get_connections: one path for every method, and
        # DELETE needs the proof too (delete_object takes no arguments).
        args, post_args = (values, None) if method != "POST" else ({}, values)
        self._session.forget()
        doing = f"{self.where}: {what}"
        try:
            result = self._graph.request(
                f"{self._graph.version}/{path}", args=args, post_args=post_args, method=method
            )
        except facebook.GraphAPIError as error:
            raise self._mapped(error.result, doing, may_publish) from None
        except requests.RequestException as error:
            # `from None`: requests' own messages carry the URL, and a GET's URL carries the token.
            raise network_error(error, doing, may_publish) from None
        except (KeyError, ValueError):
            # No content-type, or a body that is not the JSON it claims: not Graph answering.
            raise self._mapped(None, doing, may_publish) from None
        if not isinstance(result, dict):
            raise PermanentError(f"{doing}: Graph answered with {type(result).__name__}, not JSON")
        return result

    def _mapped(self, result: object, doing: str, may_publish: bool) -> ChannelError:
        response = self._session.last_response
        status = response.status_code if response is not None else None
        headers: Mapping[str, str] = response.headers if response is not None else {}
        body = result if isinstance(result, Mapping) else None
        return graph_error(
            body, status, headers, doing=doing, may_publish=may_publish, secrets=self._secrets
        )

    def close(self) -> None:
        self._session.close()


def graph_time(value: object) -> datetime:
    """Graph's "2026-11-21T03:00:00+0000", or a webhook's epoch seconds (or milliseconds)."""
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 100_000_000_000 else value
        return datetime.fromtimestamp(seconds, UTC)
    return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S%z").astimezone(UTC)


# --- publishing --------------------------------------------------------------------------------


def refuse_extras(target: str, reply_to: Receipt | None, recipient: str | None) -> None:
    if recipient is not None:
        raise PermanentError(f"target {target!r} posts to a Page and takes no recipient")
    if reply_to is not None:
        raise PermanentError(
            f"target {target!r}: Meta alerts are one post (max_parts=1) and are never threaded"
        )


def same_text(published: object, text: str) -> bool:
    """Graph may normalise line endings and trailing space; nothing else."""
    if not isinstance(published, str):
        return False

    def norm(value: str) -> str:
        return "\n".join(line.rstrip() for line in value.replace("\r\n", "\n").split("\n")).strip()

    return norm(published) == norm(text)


def _following(page: Mapping[str, Any]) -> dict[str, str | int] | None:
    """The query of the page after `page`, from paging.next (cursor-based answers carry
    `after`, time-based ones `until` and `__paging_token`), without the access token and
    proof in it: our client adds its own. None on the last page."""
    paging = page.get("paging")
    following = paging.get("next") if isinstance(paging, Mapping) else None
    if not isinstance(following, str) or not following:
        return None
    query = parse_qsl(urlsplit(following).query, keep_blank_values=True)
    return {key: value for key, value in query if key not in ("access_token", "appsecret_proof")}


async def find_recent(
    client: GraphClient,
    edge: str,
    text: str,
    settings: MetaSettings,
    *,
    text_field: str,
    time_field: str,
    fields: str,
) -> Mapping[str, Any] | None:
    """The newest item of `edge` (a Page's posts, an account's media) whose `text_field` is
    `text`, among everything made in the last `reconcile_window_minutes`.

    Exact within the window: pages are read until Graph has no next page, and when that is more
    than `reconcile_max_pages` pages the lookup raises a TransientError rather than answering
    None, which the dispatcher would take as "not posted" and post again. Graph may answer an
    empty page that still has a next one (visibility filtering), so only a missing `next`, or
    items older than the window, end the search."""
    start = datetime.now(UTC) - timedelta(minutes=settings.reconcile_window_minutes)
    params: dict[str, str | int] = {
        "fields": fields,
        "since": int(start.timestamp()),
        "limit": settings.reconcile_recent_posts,
    }
    what = f"looking for the post among {edge} of the last {settings.reconcile_window_minutes} min"
    for _ in range(settings.reconcile_max_pages):
        page = await client.get(edge, what, **params)
        past_window = False
        for item in page.get("data") or []:
            if not isinstance(item, Mapping):
                continue
            if same_text(item.get(text_field), text):
                return item
            at = item.get(time_field)
            # A backstop should Graph ever ignore `since`: nothing older is looked at.
            past_window = past_window or (at is not None and graph_time(at) < start)
        following = _following(page)
        if following is None or past_window:
            return None
        params = following
    raise TransientError(
        f"{client.where}: {what}: more than {settings.reconcile_max_pages} pages of "
        f'{settings.reconcile_recent_posts}; not answering "not found" without having looked '
        "at them all: look again later (or raise reconcile_max_pages)",
        code=RECONCILE_PAGE_CAP,
    )


# --- polling cursor ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CommentCursor:
    """Where polling got to: the newest comment time seen, and the ids seen at that second
    (Graph times have one-second resolution, so ids break the tie)."""

    newest: datetime | None = None
    ids_at_newest: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, cursor: str | None) -> CommentCursor:
        if not cursor:
            return cls()
        try:
            data = json.loads(cursor)
            return cls(datetime.fromtimestamp(float(data["t"]), UTC), frozenset(data["ids"]))
        except (ValueError, KeyError, TypeError):
            return cls()  # an unreadable cursor re-reads recent comments; dedupe drops repeats

    def is_new(self, comment_id: str, at: datetime) -> bool:
        if self.newest is None or at > self.newest:
            return True
        return at == self.newest and comment_id not in self.ids_at_newest

    def after(self, seen: Sequence[tuple[str, datetime]]) -> CommentCursor:
        newest, ids = self.newest, set(self.ids_at_newest)
        for comment_id, at in seen:
            if newest is None or at > newest:
                newest, ids = at, {comment_id}
            elif at == newest:
                ids.add(comment_id)
        return CommentCursor(newest, frozenset(ids))

    def dump(self) -> str | None:
        if self.newest is None:
            return None
        return json.dumps({"t": int(self.newest.timestamp()), "ids": sorted(self.ids_at_newest)})


async def new_comments(
    client: GraphClient,
    post_ids: Sequence[str],
    cursor: CommentCursor,
    *,
    fields: str,
    time_field: str,
    extra: Mapping[str, str] | None = None,
    newest_first: bool = False,
    max_pages: int = 5,
) -> list[tuple[str, Mapping[str, Any], datetime]]:
    """(post id, comment, time) for each comment on these posts that `cursor` has not seen,
    oldest first. With `newest_first` paging stops at the first comment older than the
    cursor; otherwise it reads up to `max_pages` pages per post."""
    found: list[tuple[str, Mapping[str, Any], datetime]] = []
    for post_id in post_ids:
        params: dict[str, str | int] = {"fields": fields, "limit": 50, **(extra or {})}
        for _ in range(max_pages):
            page = await client.get(f"{post_id}/comments", "reading comments", **params)
            older_seen = False
            for comment in page.get("data") or []:
                if not isinstance(comment, Mapping) or "id" not in comment:
                    continue
                at = graph_time(comment.get(time_field))
                if cursor.is_new(str(comment["id"]), at):
                    found.append((post_id, comment, at))
                elif cursor.newest is not None and at < cursor.newest:
                    older_seen = True
            after = (page.get("paging") or {}).get("cursors", {}).get("after")
            has_next = bool((page.get("paging") or {}).get("next"))
            if not has_next or not after or (newest_first and older_seen):
                break
            # The next page by cursor, never the `next` URL: that URL carries the access token.
            params["after"] = str(after)
    found.sort(key=lambda item: (item[2], str(item[1]["id"])))
    return found
