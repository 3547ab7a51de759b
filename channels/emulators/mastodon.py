"""A Mastodon server, as much of it as the adapter and Mastodon.py touch.

Faithful where it matters: Bearer tokens and their scopes checked (a read-only token gets 403
"outside the authorized scopes" on a write); statuses counted as Mastodon counts them (every URL
as 23 characters) with its 422 body; Idempotency-Key honoured per account for an hour as Mastodon
does (the repeated request gets the same status and nothing new happens); status content
rendered to HTML the way Mastodon renders plain text (paragraphs, <br />, links split into
visible and invisible spans, mention h-cards), with the typed text at /source; 300 requests per
5 minutes per token, counted before the request does anything, with X-RateLimit-* headers
(reset in ISO 8601) on every answer; notifications paged by max_id, since_id and min_id, newest
first, with Link headers; 503 as Mastodon's JSON and other 5xx as Rails' HTML error page.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final

from aiohttp import web
from pydantic import SecretStr

from channels.base import Channel, Target, TargetMode
from channels.emulators.base import Emulator
from channels.mastodon import MastodonChannel, MastodonSettings

__all__ = ["EMULATOR", "MastodonEmulator"]

MAX_CHARACTERS: Final = 500
URL_WEIGHT: Final = 23
IDEMPOTENCY_SECONDS: Final = 3600.0  # Mastodon keeps an Idempotency-Key for one hour
RATE_LIMIT: Final = 300  # requests per RATE_PERIOD per token
RATE_PERIOD: Final = 300.0
_URL = re.compile(r"https?://[^\s<>\"]+")
_MENTION = re.compile(r"(?<![\w/])@([A-Za-z0-9_]+)(?:@([A-Za-z0-9.-]+))?")
_ID_BASE: Final = 113_000_000_000_000_000  # Mastodon ids are snowflake-like numeric strings


@dataclass
class _Account:
    id: str
    username: str
    display_name: str
    domain: str | None = None  # None: local to this server

    @property
    def acct(self) -> str:
        return self.username if self.domain is None else f"{self.username}@{self.domain}"


@dataclass
class _Status:
    id: str
    account: _Account
    text: str
    created_at: datetime
    visibility: str
    language: str | None
    in_reply_to_id: str | None = None
    in_reply_to_account_id: str | None = None
    edited_at: datetime | None = None
    mentions: list[_Account] = field(default_factory=list)


@dataclass
class _Notification:
    id: str
    type: str
    created_at: datetime
    account: _Account
    status: _Status


class MastodonEmulator(Emulator):
    name: ClassVar[str] = "mastodon"

    def __init__(self) -> None:
        super().__init__()
        self.token = secrets.token_urlsafe(32)  # read and write, as the adapter needs
        self.read_only_token = secrets.token_urlsafe(32)  # a token issued without write
        self.tokens: dict[str, frozenset[str]] = {
            self.token: frozenset({"read", "write"}),
            self.read_only_token: frozenset({"read"}),
        }
        self.rate_limit = RATE_LIMIT
        self.account = _Account(str(_ID_BASE + 1), "county_alerts", "County Alerts (emulator)")
        self.public = [
            _Account(str(_ID_BASE + 100 + n), f"resident{n}", f"Resident {n}", "example.social")
            for n in range(1, 6)
        ]
        self.reset_state()

    def reset_state(self) -> None:
        self._ids = itertools.count(_ID_BASE + 1000)
        self.statuses: dict[str, _Status] = {}
        self.notifications: list[_Notification] = []
        self._keys: dict[tuple[str, str], tuple[str, float]] = {}
        self._windows: dict[str, tuple[float, int]] = {}
        self._replies = itertools.count(1)

    # --- wiring --------------------------------------------------------------------------------

    def target(
        self,
        name: str = "test",
        mode: TargetMode = TargetMode.live,
        *,
        valid_credentials: bool = True,
        timeout_seconds: float = 10.0,
    ) -> Target:
        token = self.token if valid_credentials else secrets.token_urlsafe(32)
        settings = MastodonSettings(
            name=name, mode=mode, base_url=self.url, timeout_seconds=timeout_seconds
        )
        return Target(settings, {"access_token": SecretStr(token)})

    def channel(self, target: Target) -> Channel:
        return MastodonChannel(target)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v1/instance", self._instance_v1)
        router.add_get("/api/v2/instance", self._instance_v2)
        router.add_get("/api/v1/accounts/verify_credentials", self._verify_credentials)
        router.add_get("/api/v1/accounts/{id}/statuses", self._account_statuses)
        router.add_post("/api/v1/statuses", self._post_status)
        router.add_get("/api/v1/statuses/{id}", self._get_status)
        router.add_get("/api/v1/statuses/{id}/source", self._status_source)
        router.add_put("/api/v1/statuses/{id}", self._edit_status)
        router.add_delete("/api/v1/statuses/{id}", self._delete_status)
        router.add_get("/api/v1/notifications", self._notifications)

    # --- the platform's own failures ---------------------------------------------------------

    def rate_limited(self, request: web.Request, retry_after: float) -> web.StreamResponse:
        reset = datetime.now(UTC) + timedelta(seconds=retry_after)
        return web.json_response(
            {"error": "Too many requests"},
            status=429,
            headers={
                "X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": _iso(reset),
            },
        )

    def server_error(self, request: web.Request, status: int) -> web.StreamResponse:
        if status == 503:
            # What Mastodon's API answers when a dependency (Redis, the database) is down.
            return web.json_response(
                {"error": "There was a temporary problem serving your request, please try again"},
                status=503,
            )
        # Anything else is Rails' static error page, HTML, not JSON.
        page = (
            "<!DOCTYPE html><html><head><title>We're sorry, but something went wrong (500)"
            "</title></head><body><p>We're sorry, but something went wrong on our end.</p>"
            "</body></html>"
        )
        return web.Response(status=status, text=page, content_type="text/html")

    # --- auth and rate limits ----------------------------------------------------------------

    def _authorise(self, request: web.Request, scope: str = "read") -> str:
        """The request's token, if it is valid and has `scope`; else Mastodon's refusal."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise _refusal(web.HTTPUnauthorized, "This method requires an authenticated user")
        given = header[len("Bearer ") :]
        scopes = next(
            (
                scopes
                for token, scopes in self.tokens.items()
                if secrets.compare_digest(given, token)
            ),
            None,
        )
        if scopes is None:
            raise _refusal(web.HTTPUnauthorized, "The access token is invalid")
        if scope not in scopes:
            raise _refusal(web.HTTPForbidden, "This action is outside the authorized scopes")
        # Counted before anything happens, as Mastodon's throttle runs before the controller.
        now = time.time()
        start, used = self._windows.get(given, (now, 0))
        if now - start >= RATE_PERIOD:
            start, used = now, 0
        self._windows[given] = (start, used + 1)
        if used + 1 > self.rate_limit:
            raise web.HTTPTooManyRequests(
                text=json.dumps({"error": "Too many requests"}),
                content_type="application/json",
                headers=self._rate_headers(given),
            )
        return given

    def _rate_headers(self, token: str) -> dict[str, str]:
        start, used = self._windows.get(token, (time.time(), 0))
        reset = datetime.fromtimestamp(start + RATE_PERIOD, UTC)
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(self.rate_limit - used, 0)),
            "X-RateLimit-Reset": _iso(reset),
        }

    def _answer(
        self,
        token: str,
        body: Any,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        headers = {**self._rate_headers(token), **(headers or {})}
        return web.json_response(body, status=status, headers=headers)

    # --- instance ------------------------------------------------------------------------------

    async def _instance_v1(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "uri": "emulator.local",
                "title": "Mastodon emulator",
                "version": "4.3.0",
                "configuration": {"statuses": {"max_characters": MAX_CHARACTERS}},
            }
        )

    async def _instance_v2(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "domain": "emulator.local",
                "title": "Mastodon emulator",
                "version": "4.3.0",
                "api_versions": {"mastodon": 2},
                "configuration": {
                    "statuses": {
                        "max_characters": MAX_CHARACTERS,
                        "characters_reserved_per_url": URL_WEIGHT,
                    }
                },
            }
        )

    # --- accounts ------------------------------------------------------------------------------

    async def _verify_credentials(self, request: web.Request) -> web.StreamResponse:
        token = self._authorise(request)
        return self._answer(token, self._account_json(self.account))

    async def _account_statuses(self, request: web.Request) -> web.StreamResponse:
        token = self._authorise(request)
        account_id = request.match_info["id"]
        if account_id != self.account.id and all(a.id != account_id for a in self.public):
            return self._answer(token, {"error": "Record not found"}, status=404)
        query = request.query
        statuses = [s for s in self.statuses.values() if s.account.id == account_id]
        if query.get("exclude_replies") in ("1", "true"):
            statuses = [
                s
                for s in statuses
                if s.in_reply_to_id is None or s.in_reply_to_account_id == account_id
            ]
        page = _page(statuses, query, key=lambda s: s.id, most=40)
        return self._answer(token, [self._status_json(s) for s in page])

    # --- statuses ------------------------------------------------------------------------------

    async def _post_status(self, request: web.Request) -> web.StreamResponse:
        token = self._authorise(request, "write")
        form = await _params(request)
        key = request.headers.get("Idempotency-Key")
        now = time.monotonic()
        if key:
            known = self._keys.get((self.account.id, key))
            if known is not None and now - known[1] < IDEMPOTENCY_SECONDS:
                # The same request again: the status it made, and nothing new happens.
                return self._answer(token, self._status_json(self.statuses[known[0]]))
        text = str(form.get("status") or "")
        if error := _validate(text):
            return self._answer(token, {"error": error}, status=422)
        visibility = str(form.get("visibility") or "public")
        if visibility not in ("public", "unlisted", "private", "direct"):
            return self._answer(
                token,
                {"error": "Validation failed: Visibility is not included in the list"},
                status=422,
            )
        in_reply_to = form.get("in_reply_to_id")
        parent = None
        if in_reply_to:
            parent = self.statuses.get(str(in_reply_to))
            if parent is None:
                return self._answer(token, {"error": "Record not found"}, status=404)
        language = str(form.get("language") or "") or None
        status = self._new_status(
            self.account,
            text,
            visibility=visibility,
            language=language if language and re.fullmatch(r"[a-z]{2,3}", language) else None,
            parent=parent,
        )
        if key:
            self._keys[(self.account.id, key)] = (status.id, now)
        self.record(
            "post",
            id=status.id,
            text=text,
            reply_to=status.in_reply_to_id,
            key=key,
            language=status.language,
            visibility=visibility,
        )
        return self._answer(token, self._status_json(status))

    async def _get_status(self, request: web.Request) -> web.StreamResponse:
        token = self._authorise(request)
        status = self.statuses.get(request.match_info["id"])
        if status is None:
            return self._answer(token, {"error": "Record not found"}, status=404)
        return self._answer(token, self._status_json(status))

    async def _status_source(self, request: web.Request) -> web.StreamResponse:
        token = self._authorise(request)
        status = self.statuses.get(request.match_info["id"])
        if status is None or status.account is not self.account:
            return self._answer(token, {"error": "Record not found"}, status=404)
        return self._answer(token, {"id": status.id, "text": status.text, "spoiler_text": ""})

    async def _edit_status(self, request: web.Request) -> web.StreamResponse:
        token = self._authorise(request, "write")
        status = self.statuses.get(request.match_info["id"])
        if status is None:
            return self._answer(token, {"error": "Record not found"}, status=404)
        if status.account is not self.account:
            return self._answer(token, {"error": "This action is not allowed"}, status=403)
        form = await _params(request)
        text = str(form.get("status") or "")
        if error := _validate(text):
            return self._answer(token, {"error": error}, status=422)
        status.text = text
        status.edited_at = datetime.now(UTC)
        self.record("edit", id=status.id, text=text)
        return self._answer(token, self._status_json(status))

    async def _delete_status(self, request: web.Request) -> web.StreamResponse:
        token = self._authorise(request, "write")
        status = self.statuses.get(request.match_info["id"])
        if status is None:
            return self._answer(token, {"error": "Record not found"}, status=404)
        if status.account is not self.account:
            return self._answer(token, {"error": "This action is not allowed"}, status=403)
        del self.statuses[status.id]
        self.record("delete", id=status.id)
        # Mastodon answers with the deleted status plus its source text (for delete-and-redraft).
        return self._answer(token, {**self._status_json(status), "text": status.text})

    # --- notifications -------------------------------------------------------------------------

    async def _notifications(self, request: web.Request) -> web.StreamResponse:
        token = self._authorise(request)
        query = request.query
        types = query.getall("types[]", [])
        excluded = query.getall("exclude_types[]", [])
        chosen = [
            n
            for n in self.notifications
            if (not types or n.type in types) and n.type not in excluded
        ]
        page = _page(chosen, query, key=lambda n: n.id, most=80)
        headers: dict[str, str] = {}
        if page:
            base = f"{self.url}/api/v1/notifications"
            headers["Link"] = (
                f'<{base}?max_id={page[-1].id}>; rel="next", <{base}?min_id={page[0].id}>; '
                'rel="prev"'
            )
        return self._answer(token, [self._notification_json(n) for n in page], headers=headers)

    # --- public replies ------------------------------------------------------------------------

    async def generate_replies(
        self, count: int, text: str | None, to: str | None
    ) -> list[dict[str, Any]]:
        """Residents on other servers reply to our status `to` (or the newest): each reply
        mentions us, so it arrives as a mention notification, as on Mastodon."""
        own = [s for s in self.statuses.values() if s.account is self.account]
        parent = self.statuses.get(to) if to else (own[-1] if own else None)
        if parent is None:
            raise web.HTTPNotFound(text=f"no status {to!r} to reply to")
        made: list[dict[str, Any]] = []
        for _ in range(count):
            number = next(self._replies)
            author = self.public[(number - 1) % len(self.public)]
            body = text or f"Reply {number}: what should we do?"
            status = self._new_status(
                author,
                f"@{self.account.acct} {body}",
                visibility="public",
                language="en",
                parent=parent,
            )
            notification = _Notification(
                str(next(self._ids)), "mention", status.created_at, author, status
            )
            self.notifications.append(notification)
            self.record("reply_generated", id=status.id, text=body, to=parent.id)
            made.append(self._status_json(status))
        return made

    # --- building objects ----------------------------------------------------------------------

    def _new_status(
        self,
        account: _Account,
        text: str,
        *,
        visibility: str,
        language: str | None,
        parent: _Status | None,
    ) -> _Status:
        mentions = [
            known
            for match in _MENTION.finditer(text)
            for known in [self.account, *self.public]
            if known.username == match.group(1)
        ]
        status = _Status(
            id=str(next(self._ids)),
            account=account,
            text=text,
            created_at=datetime.now(UTC),
            visibility=visibility,
            language=language,
            in_reply_to_id=parent.id if parent else None,
            in_reply_to_account_id=parent.account.id if parent else None,
            mentions=mentions,
        )
        self.statuses[status.id] = status
        return status

    def _account_json(self, account: _Account) -> dict[str, Any]:
        host = account.domain or self.url.removeprefix("http://")
        return {
            "id": account.id,
            "username": account.username,
            "acct": account.acct,
            "display_name": account.display_name,
            "locked": False,
            "bot": account is self.account,
            "created_at": "2024-01-01T00:00:00.000Z",
            "note": "",
            "url": f"http://{host}/@{account.username}",
            "avatar": f"http://{host}/avatars/original/missing.png",
            "followers_count": 1200,
            "following_count": 3,
            "statuses_count": len(self.statuses),
            "emojis": [],
            "fields": [],
        }

    def _status_json(self, status: _Status) -> dict[str, Any]:
        account = self._account_json(status.account)
        return {
            "id": status.id,
            "created_at": _iso(status.created_at),
            "in_reply_to_id": status.in_reply_to_id,
            "in_reply_to_account_id": status.in_reply_to_account_id,
            "sensitive": False,
            "spoiler_text": "",
            "visibility": status.visibility,
            "language": status.language,
            "uri": f"{account['url'].replace('/@', '/users/')}/statuses/{status.id}",
            "url": f"{account['url']}/{status.id}",
            "replies_count": sum(
                1 for other in self.statuses.values() if other.in_reply_to_id == status.id
            ),
            "reblogs_count": 0,
            "favourites_count": 0,
            "edited_at": _iso(status.edited_at) if status.edited_at else None,
            "content": self._to_html(status.text),
            "reblog": None,
            "account": account,
            "media_attachments": [],
            "mentions": [
                {
                    "id": m.id,
                    "username": m.username,
                    "acct": m.acct,
                    "url": self._account_json(m)["url"],
                }
                for m in status.mentions
            ],
            "tags": [],
            "emojis": [],
            "card": None,
            "poll": None,
        }

    def _notification_json(self, notification: _Notification) -> dict[str, Any]:
        return {
            "id": notification.id,
            "type": notification.type,
            "created_at": _iso(notification.created_at),
            "account": self._account_json(notification.account),
            "status": self._status_json(notification.status),
        }

    def _to_html(self, text: str) -> str:
        """Plain text as Mastodon's TextFormatter renders it."""
        paragraphs = re.split(r"\n\n+", text.strip())
        return "".join(
            f"<p>{self._inline_html(p).replace(chr(10), '<br />')}</p>" for p in paragraphs
        )

    def _inline_html(self, text: str) -> str:
        out: list[str] = []
        position = 0
        for match in re.finditer(f"{_URL.pattern}|{_MENTION.pattern}", text):
            out.append(html.escape(text[position : match.start()], quote=False))
            token = match.group()
            if token.startswith("@"):
                known = [a for a in [self.account, *self.public] if a.username == match.group(1)]
                if known:
                    url = self._account_json(known[0])["url"]
                    out.append(
                        f'<span class="h-card" translate="no"><a href="{html.escape(url)}" '
                        f'class="u-url mention">@<span>{html.escape(known[0].username)}</span>'
                        "</a></span>"
                    )
                else:
                    out.append(html.escape(token, quote=False))
            else:
                out.append(_link_html(token))
            position = match.end()
        out.append(html.escape(text[position:], quote=False))
        return "".join(out)


def _refusal(kind: type[web.HTTPException], error: str) -> web.HTTPException:
    return kind(text=json.dumps({"error": error}), content_type="application/json")


def _link_html(url: str) -> str:
    # Mastodon shows a link without its scheme, at most 30 characters, the rest hidden.
    scheme, rest = url.split("://", 1)
    shown, hidden = rest[:30], rest[30:]
    ellipsis = "ellipsis" if hidden else ""
    return (
        f'<a href="{html.escape(url)}" target="_blank" rel="nofollow noopener" translate="no">'
        f'<span class="invisible">{html.escape(scheme)}://</span>'
        f'<span class="{ellipsis}">{html.escape(shown)}</span>'
        f'<span class="invisible">{html.escape(hidden)}</span></a>'
    )


def _validate(text: str) -> str | None:
    if not text.strip():
        return "Validation failed: Text can't be blank"
    counted = len(_URL.sub("x" * URL_WEIGHT, text))
    if counted > MAX_CHARACTERS:
        return f"Validation failed: Text character limit of {MAX_CHARACTERS} exceeded"
    return None


async def _params(request: web.Request) -> dict[str, Any]:
    """Form or JSON body, as Rails accepts both."""
    if request.content_type == "application/json":
        body = await request.json()
        return dict(body) if isinstance(body, dict) else {}
    return dict(await request.post())


def _order(identifier: str) -> tuple[int, str]:
    return len(identifier), identifier


def _page(
    items: list[Any], query: Mapping[str, str], *, key: Callable[[Any], str], most: int
) -> list[Any]:
    """Mastodon's id paging, newest first: max_id (older than), since_id (newer than, newest
    page), min_id (newer than, the page right after it); `limit` up to `most`."""
    limit = min(int(query.get("limit", 20)), most)
    ordered = sorted(items, key=lambda item: _order(key(item)))
    if max_id := query.get("max_id"):
        ordered = [i for i in ordered if _order(key(i)) < _order(max_id)]
    if since_id := query.get("since_id"):
        ordered = [i for i in ordered if _order(key(i)) > _order(since_id)]
    if min_id := query.get("min_id"):
        ordered = [i for i in ordered if _order(key(i)) > _order(min_id)]
        return list(reversed(ordered[:limit]))
    return list(reversed(ordered[-limit:])) if ordered else []


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


EMULATOR = MastodonEmulator
