"""A local X API v2 that tweepy talks to as it talks to api.twitter.com.

What it checks as X does: the OAuth 1.0a HMAC-SHA1 signature of every request (computed over
https://api.twitter.com + path and the raw query, as the client signed it), the timestamp window
and nonce reuse; app-only bearer tokens refused where X wants a user; the twitter-text weighted
length; duplicate text; replies to posts that are gone; the 15-minute and 24-hour rate windows with
X's x-rate-limit-* and x-user-limit-24hour-* headers. Errors come in X's JSON shapes and status
codes; answers carry X's quirks (t.co-wrapped links, &amp;-escaped text, snowflake ids,
created_at with milliseconds).

Public replies are stored as mentions for polling and, when `webhook_url` is set, pushed there
as Account Activity tweet_create_events signed with the consumer secret, after the CRC check X
runs on every new webhook URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any, ClassVar, Final
from urllib.parse import parse_qsl, quote, unquote

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from channels.base import Channel, Target, TargetMode
from channels.emulators.base import Emulator
from channels.x import API_ORIGIN, SIGNATURE_HEADER, XChannel, XSettings, crc_response_token
from channels.x_text import MAX_WEIGHTED_LENGTH, weighted_length

with warnings.catch_warnings():
    # twitter_text loads its emoji table with pkg_resources, which setuptools marks deprecated.
    warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
    from twitter_text import extract_urls_with_indices

__all__ = ["EMULATOR", "XEmulator"]

_SNOWFLAKE_EPOCH_MS: Final = 1288834974657
_TIMESTAMP_WINDOW: Final = 300  # seconds an OAuth timestamp may be off, as X allows
_WINDOW_15_MIN: Final = 15 * 60
_WINDOW_24_H: Final = 24 * 60 * 60
# How far back X serves: a user timeline's newest 3,200 posts (800 with exclude=replies), an
# account's newest 800 mentions.
_TIMELINE_DEPTH: Final = 3200
_REPLIES_EXCLUDED_DEPTH: Final = 800
_MENTIONS_DEPTH: Final = 800


@dataclass
class _Tweet:
    id: str
    text: str  # exactly as posted
    author_id: str
    created_at: datetime
    reply_to: str | None
    conversation_id: str
    deleted: bool = False


@dataclass(frozen=True)
class _User:
    id: str
    username: str
    name: str


@dataclass
class _Window:
    """One rate-limit window: `limit` requests per `seconds`, reset at a fixed epoch."""

    limit: int
    seconds: int
    reset: float = 0.0
    used: int = 0

    def take(self, now: float) -> bool:
        if now >= self.reset:
            self.reset, self.used = now + self.seconds, 0
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(frozen=True)
class _Caller:
    user_id: str | None  # None: app-only bearer token


@dataclass(frozen=True)
class _Route:
    window: str  # rate-limit window name
    user_only: bool  # X refuses app-only bearer tokens here


_Handler = Callable[[web.Request, _Caller], Awaitable[web.Response]]


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class XEmulator(Emulator):
    name: ClassVar[str] = "x"

    account: ClassVar[_User] = _User("1580000000000000001", "CountyAlertsEmu", "County Alerts")
    public: ClassVar[tuple[_User, ...]] = (
        _User("1700000000000000011", "riverside_res", "Riverside Resident"),
        _User("1700000000000000012", "elm_st_neighbour", "Elm St Neighbour"),
        _User("1700000000000000013", "bridge_commuter", "Bridge Commuter"),
    )

    def __init__(self) -> None:
        super().__init__()
        # Fresh credentials per emulator, shaped like X's: an access token is "<user id>-...".
        self.consumer_key = secrets.token_urlsafe(18)
        self.consumer_secret = secrets.token_urlsafe(37)
        self.bearer_token = "AAAAAAAAAAAAAAAAAAAAA" + secrets.token_urlsafe(60)
        self.access_token = f"{self.account.id}-{secrets.token_urlsafe(30)}"
        self.access_token_secret = secrets.token_urlsafe(33)
        # Requests per 15 minutes for each route, per user (X's Pro access); posting also has a
        # 24-hour cap per user. Tests lower them to see the 429 X gives when a window is used up.
        self.window_limits: dict[str, int] = {
            "create": 100,
            "delete": 50,
            "me": 75,
            "mentions": 180,
            "timeline": 900,
        }
        self.create_limit_24h = 10_000
        self.tweets: dict[str, _Tweet] = {}
        self._nonces: set[tuple[str, str]] = set()
        self._windows: dict[str, _Window] = {}
        self._last_id = 0
        self._crc_checked_url: str | None = None

    # --- wiring ----------------------------------------------------------------------------------

    def target(
        self,
        name: str = "test",
        mode: TargetMode = TargetMode.live,
        *,
        valid_credentials: bool = True,
        timeout_seconds: float = 10.0,
    ) -> Target:
        settings = XSettings(
            name=name, mode=mode, base_url=self.url, timeout_seconds=timeout_seconds
        )
        # Rejected credentials: the keys X knows, with secrets that no longer match.
        consumer_secret = self.consumer_secret if valid_credentials else secrets.token_urlsafe(37)
        token_secret = self.access_token_secret if valid_credentials else secrets.token_urlsafe(33)
        credentials = {
            "consumer_key": self.consumer_key,
            "consumer_secret": consumer_secret,
            "access_token": self.access_token,
            "access_token_secret": token_secret,
        }
        return Target(settings, {key: SecretStr(value) for key, value in credentials.items()})

    def channel(self, target: Target) -> Channel:
        return XChannel(target)  # the adapter reroutes to target.settings.base_url itself

    def seed_posts(
        self, texts: list[str], *, at: datetime | None = None, reply_to: str | None = None
    ) -> list[str]:
        """Posts the account made without this adapter (another tool, a person at the
        console), oldest first, at `at` (now if None; earlier for posts made hours ago), each
        replying to `reply_to` if given; their ids."""
        parent = self.tweets.get(reply_to) if reply_to else None
        return [self._store(text, self.account.id, parent, at).id for text in texts]

    def add_routes(self, router: web.UrlDispatcher) -> None:
        routes: list[tuple[str, str, str, bool, _Handler]] = [
            ("POST", "/2/tweets", "create", True, self._create_tweet),
            ("DELETE", "/2/tweets/{id}", "delete", True, self._delete_tweet),
            ("GET", "/2/users/me", "me", True, self._me),
            ("GET", "/2/users/{id}/mentions", "mentions", False, self._mentions),
            ("GET", "/2/users/{id}/tweets", "timeline", False, self._timeline),
        ]
        for method, path, window, user_only, handler in routes:
            router.add_route(method, path, self._guarded(_Route(window, user_only), handler))
        router.add_route("*", "/{tail:.*}", self._no_such_page)

    def reset_state(self) -> None:
        self.tweets.clear()
        self._nonces.clear()
        self._windows.clear()
        self._crc_checked_url = None

    # --- X's answers to trouble ------------------------------------------------------------------

    def rate_limited(self, request: web.Request, retry_after: float) -> web.StreamResponse:
        window = _route_window(request)
        headers = {
            "x-rate-limit-limit": str(self.window_limits.get(window, 15)),
            "x-rate-limit-remaining": "0",
            "x-rate-limit-reset": str(math.ceil(time.time() + retry_after)),
        }
        return _problem(429, headers=headers)

    def server_error(self, request: web.Request, status: int) -> web.StreamResponse:
        return _problem(status)

    # --- public replies --------------------------------------------------------------------------

    async def generate_replies(
        self, count: int, text: str | None, to: str | None
    ) -> list[dict[str, Any]]:
        parent = self.tweets.get(to) if to else self._newest_own()
        if parent is None or parent.deleted:
            raise web.HTTPBadRequest(text=f"no live post {to!r} on the X emulator to reply to")
        made: list[dict[str, Any]] = []
        for number in range(count):
            author = self.public[number % len(self.public)]
            said = text or "Is the evacuation order still in force?"
            reply = self._store(f"@{self.account.username} {said}", author.id, parent)
            self.record("reply_generated", id=reply.id, text=said, to=parent.id, author=author.id)
            if self.webhook_url:
                await self._push(reply, self.webhook_url)
            made.append({"id": reply.id, "text": said, "to": parent.id, "author": author.username})
        return made

    async def _push(self, tweet: _Tweet, url: str) -> None:
        """Deliver one tweet_create_event to the webhook, as X does, and never raise: a webhook
        that is down loses the event (X retries a few times, then drops it; polling catches up)."""
        timeout = aiohttp.ClientTimeout(total=5)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                if self._crc_checked_url != url and not await self._crc_check(session, url):
                    self.record("webhook_failed", url=url, id=tweet.id, reason="CRC check failed")
                    return
                body, headers = self.activity_event([tweet])
                async with session.post(url, data=body, headers=headers) as response:
                    self.record("webhook", url=url, id=tweet.id, status=response.status)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:  # ValueError: bad JSON
            self.record("webhook_failed", url=url, id=tweet.id, reason=type(error).__name__)

    async def _crc_check(self, session: aiohttp.ClientSession, url: str) -> bool:
        token = secrets.token_urlsafe(24)
        async with session.get(url, params={"crc_token": token}) as response:
            if response.status != 200:
                return False
            answer = await response.json(content_type=None)
        expected = crc_response_token(self.consumer_secret, token)
        if not isinstance(answer, dict) or answer.get("response_token") != expected:
            return False
        self._crc_checked_url = url
        return True

    def activity_event(self, tweets: list[_Tweet]) -> tuple[bytes, dict[str, str]]:
        """An Account Activity POST body with X's signature header, for these tweets."""
        body = json.dumps(
            {
                "for_user_id": self.account.id,
                "tweet_create_events": [self._v1(tweet) for tweet in tweets],
            }
        ).encode()
        digest = hmac.new(self.consumer_secret.encode(), body, hashlib.sha256).digest()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: "sha256=" + base64.b64encode(digest).decode(),
        }
        return body, headers

    # --- routes ----------------------------------------------------------------------------------

    def _guarded(self, route: _Route, handler: _Handler) -> Callable[..., Awaitable[Any]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            windows: list[tuple[str, _Window]] = []
            try:
                caller = await self._authenticate(request)
                if route.user_only and caller.user_id is None:
                    return _problem(
                        403,
                        title="Unsupported Authentication",
                        detail="Authenticating with OAuth 2.0 Application-Only is forbidden for "
                        "this endpoint.  Supported authentication types are [OAuth 1.0a User "
                        "Context, OAuth 2.0 User Context].",
                        type_="https://api.twitter.com/2/problems/unsupported-authentication",
                    )
                now = time.time()
                windows.append((route.window, self._window(route.window, _WINDOW_15_MIN)))
                if route.window == "create":
                    windows.append(("create-24h", self._window("create-24h", _WINDOW_24_H)))
                for _name, window in windows:
                    if not window.take(now):
                        return self._used_up(windows)
                response = await handler(request, caller)
            except _Refused as refused:
                response = refused.response
            # X sends the window's state with every answer to an authenticated request.
            response.headers.update(_window_headers(windows))
            return response

        return guarded

    async def _create_tweet(self, request: web.Request, caller: _Caller) -> web.Response:
        if request.content_type != "application/json":
            message = "Requests with bodies must have content-type of application/json."
            raise _Refused(_invalid(message))
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise _Refused(_invalid("The request body is not valid JSON.")) from None
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise _Refused(_invalid("Post text must be a non-empty string.", parameter="text"))
        if weighted_length(text) > MAX_WEIGHTED_LENGTH:
            raise _Refused(
                _invalid(
                    "Your Tweet text is too long. For more information on how X determines text "
                    "length see https://github.com/twitter/twitter-text.",
                    parameter="text",
                    value=text,
                )
            )
        reply = body.get("reply") or {}
        parent_id = reply.get("in_reply_to_tweet_id") if isinstance(reply, dict) else None
        parent = self.tweets.get(str(parent_id)) if parent_id is not None else None
        if parent_id is not None and (parent is None or parent.deleted):
            raise _Refused(
                _problem(
                    403,
                    detail="You attempted to reply to a Tweet that is deleted or not visible to "
                    "you.",
                )
            )
        if any(
            t.text == text and t.author_id == caller.user_id and not t.deleted
            for t in self.tweets.values()
        ):
            raise _Refused(
                _problem(
                    403, detail="You are not allowed to create a Tweet with duplicate content."
                )
            )
        tweet = self._store(text, self.account.id, parent)
        self.record("post", id=tweet.id, text=text, reply_to=parent.id if parent else None)
        shown, _urls = _wrapped(tweet)
        data = {"id": tweet.id, "text": shown, "edit_history_tweet_ids": [tweet.id]}
        return web.json_response({"data": data}, status=201)

    async def _delete_tweet(self, request: web.Request, caller: _Caller) -> web.Response:
        tweet_id = request.match_info["id"]
        tweet = self.tweets.get(tweet_id)
        if tweet is None or tweet.deleted:
            raise _Refused(
                _problem(
                    404,
                    title="Not Found Error",
                    detail=f"Could not find tweet with id: [{tweet_id}].",
                    type_="https://api.twitter.com/2/problems/resource-not-found",
                )
            )
        if tweet.author_id != caller.user_id:
            raise _Refused(_problem(403, detail="You are not allowed to delete this Tweet."))
        tweet.deleted = True
        self.record("delete", id=tweet_id)
        return web.json_response({"data": {"deleted": True}})

    async def _me(self, _request: web.Request, _caller: _Caller) -> web.Response:
        user = self.account
        data = {"id": user.id, "name": user.name, "username": user.username}
        return web.json_response({"data": data})

    async def _mentions(self, request: web.Request, _caller: _Caller) -> web.Response:
        self._known_user(request)
        handle = f"@{self.account.username.lower()}"
        found = [
            tweet
            for tweet in self.tweets.values()
            if tweet.author_id != self.account.id
            and (self._is_own(tweet.reply_to) or handle in tweet.text.lower())
        ]
        return self._page(request, found, depth=_MENTIONS_DEPTH)

    async def _timeline(self, request: web.Request, _caller: _Caller) -> web.Response:
        user_id = self._known_user(request)
        exclude = set(filter(None, request.query.get("exclude", "").split(",")))
        found = [
            tweet
            for tweet in self.tweets.values()
            if tweet.author_id == user_id and not ("replies" in exclude and tweet.reply_to)
        ]
        depth = _REPLIES_EXCLUDED_DEPTH if "replies" in exclude else _TIMELINE_DEPTH
        return self._page(request, found, depth=depth)

    async def _no_such_page(self, request: web.Request) -> web.Response:
        body = {"errors": [{"message": "Sorry, that page does not exist", "code": 34}]}
        return web.json_response(body, status=404)

    # --- authentication: OAuth 1.0a (RFC 5849) and app-only bearer -----------------------------

    async def _authenticate(self, request: web.Request) -> _Caller:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            if hmac.compare_digest(header[len("Bearer ") :].encode(), self.bearer_token.encode()):
                return _Caller(user_id=None)
            raise _Refused(_unauthorized())
        oauth = _oauth_header(header)
        if oauth is None:
            raise _Refused(_unauthorized())
        try:
            timestamp = int(oauth["oauth_timestamp"])
            consumer_key, token = oauth["oauth_consumer_key"], oauth["oauth_token"]
            signature, nonce = oauth["oauth_signature"], oauth["oauth_nonce"]
        except (KeyError, ValueError):
            raise _Refused(_unauthorized()) from None
        well_formed = (
            oauth.get("oauth_signature_method") == "HMAC-SHA1"
            and oauth.get("oauth_version", "1.0") == "1.0"
            and abs(time.time() - timestamp) <= _TIMESTAMP_WINDOW
            and (consumer_key, nonce) not in self._nonces
            and consumer_key == self.consumer_key
            and token == self.access_token
        )
        if not well_formed:
            raise _Refused(_unauthorized())
        parameters = parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True)
        if request.content_type == "application/x-www-form-urlencoded":
            parameters += parse_qsl(await request.text(), keep_blank_values=True)
        parameters += [(k, v) for k, v in oauth.items() if k not in ("oauth_signature", "realm")]
        base = signature_base_string(
            request.method, API_ORIGIN + request.rel_url.raw_path, parameters
        )
        key = f"{_encode(self.consumer_secret)}&{_encode(self.access_token_secret)}"
        expected = base64.b64encode(hmac.new(key.encode(), base.encode(), hashlib.sha1).digest())
        if not hmac.compare_digest(expected, signature.encode()):
            raise _Refused(_unauthorized())
        self._nonces.add((consumer_key, nonce))
        return _Caller(user_id=self.account.id)

    # --- state -----------------------------------------------------------------------------------

    def _store(
        self, text: str, author_id: str, parent: _Tweet | None, at: datetime | None = None
    ) -> _Tweet:
        tweet_id = self._next_id() if at is None else self._id_at(at)
        tweet = _Tweet(
            id=tweet_id,
            text=text,
            author_id=author_id,
            created_at=at or datetime.now(UTC),
            reply_to=parent.id if parent else None,
            conversation_id=parent.conversation_id if parent else tweet_id,
        )
        self.tweets[tweet_id] = tweet
        return tweet

    def _next_id(self) -> str:
        # A snowflake: milliseconds since X's epoch in the high bits, so ids grow with time.
        now_ms = int(time.time() * 1000) - _SNOWFLAKE_EPOCH_MS
        self._last_id = max(now_ms << 22, self._last_id + 1)
        return str(self._last_id)

    def _id_at(self, at: datetime) -> str:
        """A snowflake for a post made at `at`: its time in the high bits, unique in the rest."""
        base = (int(at.timestamp() * 1000) - _SNOWFLAKE_EPOCH_MS) << 22
        sequence = 0
        while str(base + sequence) in self.tweets:
            sequence += 1
        return str(base + sequence)

    def _newest_own(self) -> _Tweet | None:
        own = [t for t in self.tweets.values() if t.author_id == self.account.id and not t.deleted]
        return own[-1] if own else None

    def _is_own(self, tweet_id: str | None) -> bool:
        tweet = self.tweets.get(tweet_id or "")
        return tweet is not None and tweet.author_id == self.account.id

    def _user(self, user_id: str) -> _User | None:
        return next((u for u in (self.account, *self.public) if u.id == user_id), None)

    def _known_user(self, request: web.Request) -> str:
        user_id = request.match_info["id"]
        if not user_id.isdigit():
            raise _Refused(
                _invalid(f"The `id` query parameter value [{user_id}] is not valid", parameter="id")
            )
        if self._user(user_id) is None:
            raise _Refused(
                _problem(
                    404,
                    title="Not Found Error",
                    detail=f"Could not find user with id: [{user_id}].",
                    type_="https://api.twitter.com/2/problems/resource-not-found",
                )
            )
        return user_id

    def _window(self, name: str, seconds: int) -> _Window:
        if name not in self._windows:
            limit = self.create_limit_24h if name == "create-24h" else self.window_limits[name]
            self._windows[name] = _Window(limit, seconds)
        return self._windows[name]

    def _used_up(self, windows: list[tuple[str, _Window]]) -> web.Response:
        return _problem(429, headers=_window_headers(windows))

    # --- X's tweet objects -----------------------------------------------------------------------

    def _page(self, request: web.Request, tweets: list[_Tweet], *, depth: int) -> web.Response:
        """One page of a v2 timeline: newest first, since_id/until_id, start_time/end_time
        (inclusive, whole seconds), max_results 5..100, opaque pagination tokens, the requested
        tweet.fields and the author_id expansion. Only the newest `depth` posts are served at
        all (X: 3,200 of a user's posts, 800 mentions), whatever the filters."""
        query = request.query
        try:
            size = int(query.get("max_results", "10"))
            since = int(query.get("since_id", "0"))
            until = int(query.get("until_id", str(2**63)))
            token = query.get("pagination_token")
            before = _decode_token(token) if token is not None else 2**63
        except ValueError:
            message = "since_id, until_id, max_results and pagination_token must be valid"
            raise _Refused(_invalid(message)) from None
        if not 5 <= size <= 100:
            raise _Refused(
                _invalid(
                    f"The `max_results` query parameter value [{size}] is not between 5 and 100",
                    parameter="max_results",
                )
            )
        start = _query_time(query, "start_time")
        end = _query_time(query, "end_time")
        if start is not None and end is not None and start >= end:
            raise _Refused(
                _invalid(
                    f"Invalid 'start_time':'{query['start_time']}'. 'start_time' must be before "
                    f"'end_time':'{query['end_time']}'",
                    parameter="start_time",
                )
            )
        servable = sorted(
            (t for t in tweets if not t.deleted), key=lambda t: int(t.id), reverse=True
        )[:depth]
        live = [
            t
            for t in servable
            if since < int(t.id) < min(until, before)
            and (start is None or t.created_at >= start)
            and (end is None or t.created_at < end + timedelta(seconds=1))
        ]
        page, more = live[:size], len(live) > size
        if not page:
            return web.json_response({"meta": {"result_count": 0}})
        fields = set(query.get("tweet.fields", "").split(","))
        meta: dict[str, Any] = {
            "result_count": len(page),
            "newest_id": page[0].id,
            "oldest_id": page[-1].id,
        }
        if more:
            meta["next_token"] = _encode_token(int(page[-1].id))
        answer: dict[str, Any] = {"data": [self._v2(t, fields) for t in page], "meta": meta}
        if "author_id" in query.get("expansions", "").split(","):
            authors = dict.fromkeys(t.author_id for t in page)
            users = [self._user(author) for author in authors]
            answer["includes"] = {
                "users": [{"id": u.id, "name": u.name, "username": u.username} for u in users if u]
            }
        return web.json_response(answer)

    def _v2(self, tweet: _Tweet, fields: set[str]) -> dict[str, Any]:
        shown, urls = _wrapped(tweet)
        data: dict[str, Any] = {
            "id": tweet.id,
            "text": shown,
            "edit_history_tweet_ids": [tweet.id],
        }
        if "created_at" in fields:
            data["created_at"] = _iso_millis(tweet.created_at)
        if "author_id" in fields:
            data["author_id"] = tweet.author_id
        if "conversation_id" in fields:
            data["conversation_id"] = tweet.conversation_id
        parent = self.tweets.get(tweet.reply_to or "")
        if "in_reply_to_user_id" in fields and parent:
            data["in_reply_to_user_id"] = parent.author_id
        if "referenced_tweets" in fields and tweet.reply_to:
            data["referenced_tweets"] = [{"type": "replied_to", "id": tweet.reply_to}]
        if "entities" in fields and urls:
            data["entities"] = {"urls": urls}
        return data

    def _v1(self, tweet: _Tweet) -> dict[str, Any]:
        """A v1.1 tweet object, the shape Account Activity webhooks carry."""
        shown, urls = _wrapped(tweet)
        user = self._user(tweet.author_id) or _User(tweet.author_id, "unknown", "unknown")
        parent = self.tweets.get(tweet.reply_to or "")
        prefix = len(f"@{self.account.username} ") if tweet.reply_to else 0
        v1: dict[str, Any] = {
            "created_at": tweet.created_at.strftime("%a %b %d %H:%M:%S +0000 %Y"),
            "id": int(tweet.id),
            "id_str": tweet.id,
            "text": shown,
            "display_text_range": [prefix, len(shown)],
            "source": '<a href="https://mobile.twitter.com" rel="nofollow">Twitter Web App</a>',
            "truncated": False,
            "in_reply_to_status_id": int(parent.id) if parent else None,
            "in_reply_to_status_id_str": parent.id if parent else None,
            "in_reply_to_user_id": int(parent.author_id) if parent else None,
            "in_reply_to_user_id_str": parent.author_id if parent else None,
            "in_reply_to_screen_name": self.account.username if parent else None,
            "user": {
                "id": int(user.id),
                "id_str": user.id,
                "name": user.name,
                "screen_name": user.username,
                "protected": False,
            },
            "geo": None,
            "coordinates": None,
            "place": None,
            "is_quote_status": False,
            "entities": {"hashtags": [], "urls": urls, "user_mentions": [], "symbols": []},
            "favorited": False,
            "retweeted": False,
            "lang": "en",
            "timestamp_ms": str(int(tweet.created_at.timestamp() * 1000)),
        }
        if len(shown) > 140:  # longer tweets arrive truncated, the full text aside
            v1["text"], v1["truncated"] = shown[:139] + "…", True
            v1["extended_tweet"] = {"full_text": shown, "display_text_range": [prefix, len(shown)]}
        return v1


EMULATOR = XEmulator


# --- helpers -------------------------------------------------------------------------------


def signature_base_string(method: str, base_uri: str, parameters: list[tuple[str, str]]) -> str:
    """RFC 5849 3.4.1: METHOD & encoded base URI & encoded, sorted, encoded parameters."""
    pairs = sorted((_encode(key), _encode(value)) for key, value in parameters)
    normalized = "&".join(f"{key}={value}" for key, value in pairs)
    return "&".join((method.upper(), _encode(base_uri), _encode(normalized)))


def _encode(text: str) -> str:
    # RFC 5849 3.6: everything but the RFC 3986 unreserved characters, percent-encoded in UTF-8.
    return quote(text, safe="~")


_OAUTH_PARAM = re.compile(r'([\w.-]+)="([^"]*)"')


def _oauth_header(header: str) -> dict[str, str] | None:
    if not header.startswith("OAuth "):
        return None
    found = {unquote(key): unquote(value) for key, value in _OAUTH_PARAM.findall(header)}
    return found or None


def _route_window(request: web.Request) -> str:
    path, method = request.path, request.method
    if path == "/2/tweets":
        return "create"
    if path.startswith("/2/tweets/") and method == "DELETE":
        return "delete"
    if path == "/2/users/me":
        return "me"
    return "mentions" if path.endswith("/mentions") else "timeline"


def _window_headers(windows: list[tuple[str, _Window]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, window in windows:
        prefix = "x-user-limit-24hour" if name == "create-24h" else "x-rate-limit"
        headers[f"{prefix}-limit"] = str(window.limit)
        headers[f"{prefix}-remaining"] = str(window.remaining())
        headers[f"{prefix}-reset"] = str(math.ceil(window.reset))
    return headers


def _problem(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
) -> web.Response:
    """X's v2 problem body: {title, detail, type, status}."""
    phrase = HTTPStatus(status).phrase
    body = {"title": title or phrase, "detail": detail or phrase, "type": type_, "status": status}
    return web.json_response(body, status=status, headers=headers)


def _invalid(message: str, *, parameter: str | None = None, value: Any = None) -> web.Response:
    """X's 400 for a request it will not take: one error per bad parameter."""
    error: dict[str, Any] = {"message": message}
    if parameter is not None:
        error["parameters"] = {parameter: [value] if value is not None else []}
    body = {
        "errors": [error],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": "https://api.twitter.com/2/problems/invalid-request",
    }
    return web.json_response(body, status=400)


def _unauthorized() -> web.Response:
    return _problem(401)


def _wrapped(tweet: _Tweet) -> tuple[str, list[dict[str, Any]]]:
    """The text as X shows it through the API: every link wrapped in t.co, and &, < and >
    escaped as HTML entities; plus the url entities that map each t.co link back."""
    text = tweet.text
    pieces: list[str] = []
    urls: list[dict[str, Any]] = []
    cursor = 0
    for found in extract_urls_with_indices(text):
        start, end = found["indices"]
        original = found["url"]
        slug = hashlib.sha256(f"{tweet.id}:{original}".encode()).hexdigest()[:10]
        short = f"https://t.co/{slug}"
        pieces.append(_escape(text[cursor:start]))
        position = sum(len(piece) for piece in pieces)
        pieces.append(short)
        expanded = original if "://" in original else f"http://{original}"
        urls.append(
            {
                "start": position,
                "end": position + len(short),
                "url": short,
                "expanded_url": expanded,
                "display_url": re.sub(r"^https?://", "", original),
            }
        )
        cursor = end
    pieces.append(_escape(text[cursor:]))
    return "".join(pieces), urls


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _query_time(query: Mapping[str, str], name: str) -> datetime | None:
    """start_time/end_time: RFC 3339 in whole seconds (X refuses milliseconds there)."""
    value = query.get(name)
    if value is None:
        return None
    try:
        if "." in value:
            raise ValueError(value)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError(value)
    except ValueError:
        raise _Refused(
            _invalid(
                f"Invalid '{name}':'{value}'. '{name}' must be in the format "
                "YYYY-MM-DDTHH:mm:ssZ (ISO 8601/RFC 3339)",
                parameter=name,
            )
        ) from None
    return moment.astimezone(UTC)


def _iso_millis(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _encode_token(before_id: int) -> str:
    return base64.b32encode(f"before:{before_id}".encode()).decode().rstrip("=").lower()


def _decode_token(token: str) -> int:
    padded = token.upper() + "=" * (-len(token) % 8)
    try:
        kind, _, value = base64.b32decode(padded).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise ValueError(token) from None
    if kind != "before":
        raise ValueError(token)
    return int(value)
