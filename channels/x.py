"""X (Twitter): post, thread, delete, reconcile, mentions polling and the Account Activity webhook.

Talks to the X API v2 through tweepy's AsyncClient with OAuth 1.0a user context (the app's
consumer key/secret and the account's access token/secret). tweepy fixes the host to
https://api.twitter.com; we hand it our own aiohttp session, which holds the timeout and, when the
target's base_url names another origin (an emulator), sends each request there with the path and
query unchanged, so the OAuth signature tweepy computed for api.twitter.com still verifies.

Nothing here retries: tweepy's wait_on_rate_limit stays off and every failure is mapped onto the
ChannelError tree with X's own reset time (channels/x_errors.py). X has no idempotency keys, so a
failed write whose outcome is unknown is an AmbiguousError; `find_published` then looks for the
exact text among the account's recent posts.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import html
import json
import logging
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final
from unicodedata import normalize

import aiohttp
import tweepy.errors
from pydantic import Field, ValidationError
from tweepy.asynchronous import AsyncClient
from yarl import URL

from channels.base import (
    AlertVersion,
    Channel,
    ChannelError,
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
    WebhookRejected,
)
from channels.x_answers import ActivityEvents, Created, Deleted, Me, Page, Tweet, User, V1Tweet
from channels.x_dates import created_at_time
from channels.x_errors import map_error
from channels.x_text import MAX_PARTS, MAX_WEIGHTED_LENGTH, render_alert, weighted_length
from channels.x_timeline import MAX_PAGES_CEILING, PAGE_SIZE, find_in_window, pages_back

__all__ = [
    "API_ORIGIN",
    "SIGNATURE_HEADER",
    "XChannel",
    "XSettings",
    "crc_response_token",
    "map_error",
]

# The origin tweepy sends every request to, and the one OAuth 1.0a signatures are computed for.
API_ORIGIN: Final = "https://api.twitter.com"
# Account Activity API: X signs each webhook POST with this header.
SIGNATURE_HEADER: Final = "x-twitter-webhooks-signature"
# X's ids are snowflakes: milliseconds since this epoch, shifted left 22 bits.
_SNOWFLAKE_EPOCH_MS: Final = 1288834974657
_TWEET_FIELDS: Final = [
    "author_id",
    "conversation_id",
    "created_at",
    "entities",
    "referenced_tweets",
]
_PAGE_SIZE: Final = 100
# X returns at most 800 mentions after a since_id; ten pages of 100 always reach the cursor.
_MENTION_PAGES: Final = 10
# Replies start with the handles they answer ("@CountyAlerts ..."); X's apps hide them and so do we.
_LEADING_MENTIONS = re.compile(r"^(?:@\w{1,15}\s+)+")
_TOKEN_USER_ID = re.compile(r"^(\d+)-")


def _no_request_dumps(record: logging.LogRecord) -> bool:
    # tweepy logs each request with its headers at DEBUG, Authorization included, and oauthlib
    # logs each signature base string: both carry the consumer key and the access token. Our
    # logs never carry credentials, whatever the log level.
    return not str(record.msg).startswith("Making API request")


def _no_signing_dumps(record: logging.LogRecord) -> bool:
    return record.levelno > logging.DEBUG


logging.getLogger("tweepy.asynchronous.client").addFilter(_no_request_dumps)
logging.getLogger("oauthlib.oauth1.rfc5849").addFilter(_no_signing_dumps)


class XSettings(TargetSettings):
    """An X account we post as. Leave `base_url` unset for the real X: requests are signed for
    https://api.twitter.com, so another origin only works for a server that checks signatures
    against that origin, as the emulator does."""

    # The account's numeric id (mentions and timeline lookups need it). Left out, it is read from
    # the access token, which X issues as "<user id>-<random>", or asked of GET /2/users/me.
    user_id: str | None = None
    # How far back find_published reads the account's posts after an ambiguous failure (X's
    # start_time): every post in this window is compared, however many there are.
    reconcile_window_minutes: int = Field(default=180, ge=1, le=7 * 24 * 60)
    # At most this many pages of 100 per lookup. X lets an account post 100 times per 15
    # minutes, so 15 pages hold a 180-minute window even at that pace; a lookup that needs more
    # fails as a TransientError (looked up again later), never as "not found" (posted twice).
    reconcile_max_pages: int = Field(default=15, ge=1, le=MAX_PAGES_CEILING)


def crc_response_token(consumer_secret: str, crc_token: str) -> str:
    """Account Activity CRC answer: "sha256=" + base64(HMAC-SHA256(consumer secret, token))."""
    digest = hmac.new(consumer_secret.encode(), crc_token.encode(), hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


class XChannel(Channel):
    """One X account. Long alerts become numbered threads; cancel deletes and posts a correction."""

    name: ClassVar[str] = "x"
    webhook_signs_url: ClassVar[bool] = False  # the signature covers the body only
    limits: ClassVar[Limits] = Limits(
        max_length=MAX_WEIGHTED_LENGTH,
        counted_by=CountMethod.twitter_weighted,
        max_parts=MAX_PARTS,
        can_delete=True,
        can_edit=False,  # the v2 API has no edit endpoint
        idempotency_keys=False,
        # Delete the original and post the correction first; see `retract` for why.
        retract=RetractMethod.delete,
        inbound=InboundMode.poll_and_webhook,
        # POST /2/tweets allows 100 requests per 15 minutes per user: 100/900 per second
        # sustained. A thread of six is a burst well within one window.
        max_rate_per_second=100 / 900,
    )
    settings_model: ClassVar[type[TargetSettings]] = XSettings
    credential_names: ClassVar[tuple[str, ...]] = (
        "consumer_key",
        "consumer_secret",
        "access_token",
        "access_token_secret",
    )

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        missing = [name for name in self.credential_names if name not in target.credentials]
        if missing:
            raise ValueError(
                f"X target {target.name!r} lacks credentials {', '.join(missing)}: give the app's "
                "consumer key/secret and the account's access token/secret (developer portal, "
                "Keys and tokens, with read and write permission)"
            )
        settings = target.settings
        self.settings = (
            settings
            if isinstance(settings, XSettings)
            else XSettings.model_validate(settings.model_dump())
        )
        self._origin = (self.settings.base_url or API_ORIGIN).rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._client: Any = None  # tweepy is untyped
        token = self._secret("access_token")
        found = _TOKEN_USER_ID.match(token)
        self._user_id = self.settings.user_id or (found.group(1) if found else None)

    # --- rendering ---------------------------------------------------------------------------

    def render(self, version: AlertVersion) -> list[Post]:
        return render_alert(version)

    # --- publishing --------------------------------------------------------------------------

    async def publish(
        self,
        post: Post,
        key: str,
        *,
        reply_to: Receipt | None = None,
        recipient: str | None = None,
    ) -> Receipt:
        if recipient is not None:
            raise PermanentError(
                f"X target {self.target.name!r} posts to its account; it takes no recipient "
                f"(got one for delivery {key!r})"
            )
        if weighted_length(post.text) > MAX_WEIGHTED_LENGTH:
            raise PermanentError(
                f"post {post.part}/{post.parts} for X target {self.target.name!r} weighs "
                f"{weighted_length(post.text)} of {MAX_WEIGHTED_LENGTH}: render it again",
                code="too-long",
            )
        parent = reply_to.external_id if reply_to is not None else None
        client = self._api()
        try:
            answer = await client.create_tweet(
                text=post.text, in_reply_to_tweet_id=parent, user_auth=True
            )
            created = Created.model_validate(answer)
        except Exception as error:
            raise await self._error(
                error, f"posting part {post.part}/{post.parts}", write=True
            ) from error
        return self._receipt(created.data.id, post, parent)

    async def find_published(
        self, post: Post, key: str, *, recipient: str | None = None
    ) -> Receipt | None:
        """X has no idempotency keys: look for exactly this text among everything the account
        posted in the last `reconcile_window_minutes`, however many posts that is (up to
        `reconcile_max_pages` pages, past which the lookup is a TransientError, never "not
        found"). A later part of a thread must also be a reply to one of the account's posts,
        and a first part must not be a reply at all."""
        start = datetime.now(UTC) - timedelta(minutes=self.settings.reconcile_window_minutes)
        wanted = _comparable(post.text)
        found = await find_in_window(
            self._own_tweets(f"reconciling {key!r}", start_time=start),
            lambda tweet: _comparable(tweet.display_text()) == wanted,
            first_part=post.part == 1,
            window_start=start,
        )
        return None if found is None else self._receipt(found.id, post, found.replied_to())

    # --- cancel and correct ------------------------------------------------------------------

    async def retract(self, receipt: Receipt, cancel: AlertVersion) -> Receipt:
        """Post the correction as a new post, then delete the original (its whole thread).

        Why both: deleting stops the wrong alert spreading (its reposts and embeds disappear
        with it), but a deletion is silent, and people who saw the alert need to be told it no
        longer stands; a new top-level post reaches their timelines. The correction goes out
        first, so the public never sees the alert vanish unexplained; it is not a reply, since
        a reply to a deleted post reads as "this post was deleted". Both steps are safe to
        repeat: a correction already posted is found again, a post already gone is skipped.
        """
        part = int(receipt.extra.get("part", 1))
        parts = int(receipt.extra.get("parts", 1))
        corrections: list[Receipt] = []
        if part == 1:  # one correction per alert, not one per thread part
            corrections = await self._post_correction(receipt, cancel)
        deleted = await self._delete_thread(receipt, whole_thread=part == 1 and parts > 1)
        first = corrections[0] if corrections else receipt
        return Receipt(
            channel=self.name,
            target=self.target.name,
            external_id=first.external_id,
            url=first.url,
            posted_at=first.posted_at,
            extra={
                "corrects": receipt.external_id,
                "deleted": deleted,
                "correction_ids": [correction.external_id for correction in corrections],
            },
        )

    async def _post_correction(self, original: Receipt, cancel: AlertVersion) -> list[Receipt]:
        receipts: list[Receipt] = []
        for post in self.render(cancel):
            key = f"retract:{original.external_id}:{post.part}"
            previous = receipts[-1] if receipts else None
            try:
                receipts.append(await self.publish(post, key, reply_to=previous))
            except PermanentError as error:
                # Retracting again after a failure half-way: the correction is already up.
                found = await self.find_published(post, key) if error.code == "duplicate" else None
                if found is None:
                    raise
                receipts.append(found)
        return receipts

    async def _delete_thread(self, receipt: Receipt, *, whole_thread: bool) -> list[str]:
        ids = [receipt.external_id]
        if whole_thread:
            # Later parts are replies in the first part's conversation, made by this account.
            # They are newer than the first part: read back to it (since_id), not further.
            later = self._own_tweets("finding the thread's parts", since_id=receipt.external_id)
            async with contextlib.aclosing(later) as pages:
                newest_first = [
                    tweet.id
                    async for page in pages
                    for tweet in page
                    if tweet.conversation_id == receipt.external_id
                ]
            ids += reversed(newest_first)
        client = self._api()
        for tweet_id in ids:
            try:
                answer = await client.delete_tweet(tweet_id, user_auth=True)
                deleted = Deleted.model_validate(answer).data.deleted
            except tweepy.errors.NotFound:
                continue  # already gone: deleting is done
            except Exception as error:
                # Deleting twice does no harm, so a lost answer is simply retried.
                raise await self._error(error, f"deleting post {tweet_id}", write=False) from error
            if not deleted:
                raise PermanentError(
                    f"X did not delete post {tweet_id} of target {self.target.name!r}; delete "
                    "it by hand and check the account can still post",
                )
        return ids

    # --- inbound: polling --------------------------------------------------------------------

    async def fetch_inbound(
        self, cursor: str | None
    ) -> tuple[Sequence[InboundMessage], str | None]:
        """Mentions of the account (replies included) newer than `cursor`, a tweet id.

        With no cursor yet, only the newest page is read: older mentions predate the service
        and would flood the triage queue with stale reports."""
        user_id = await self._account_id()
        client = self._api()
        messages: list[InboundMessage] = []
        newest = cursor
        token: str | None = None
        for _ in range(_MENTION_PAGES if cursor else 1):
            try:
                answer = await client.get_users_mentions(
                    user_id,
                    since_id=cursor,
                    pagination_token=token,
                    max_results=_PAGE_SIZE,
                    tweet_fields=_TWEET_FIELDS,
                    expansions=["author_id"],
                    user_fields=["name", "username"],
                    user_auth=True,
                )
                page = Page.model_validate(answer)
            except Exception as error:
                raise await self._error(error, "reading mentions", write=False) from error
            users = {user.id: user for user in page.includes.users}
            messages += [
                _mention(tweet, users.get(tweet.author_id or ""))
                for tweet in page.data
                if tweet.author_id != user_id
            ]
            if page.meta.newest_id and (newest is None or int(page.meta.newest_id) > int(newest)):
                newest = page.meta.newest_id
            token = page.meta.next_token
            if token is None:
                break
        messages.sort(key=lambda message: int(message.external_id))
        return messages, newest

    # --- inbound: Account Activity webhook -----------------------------------------------------

    def answer_webhook_challenge(self, query: Mapping[str, str]) -> WebhookAnswer | None:
        """X's CRC check (at registration and about hourly): prove we hold the consumer secret."""
        token = query.get("crc_token")
        if not token:
            return None
        response_token = crc_response_token(self._secret("consumer_secret"), token)
        return WebhookAnswer(200, json.dumps({"response_token": response_token}))

    def parse_webhook(
        self, url: str, headers: Mapping[str, str], body: bytes
    ) -> Sequence[InboundMessage]:
        """Verify X's signature on the raw body, then read the replies and mentions in it.

        The account's own posts arrive here too (X reports every tweet_create_event of the
        account), as do reposts of our alerts: neither is something the public asked us."""
        signature = next(
            (value for name, value in headers.items() if name.lower() == SIGNATURE_HEADER), None
        )
        if not signature:
            raise WebhookRejected(401, f"X webhook call without the {SIGNATURE_HEADER} header")
        digest = hmac.new(self._secret("consumer_secret").encode(), body, hashlib.sha256).digest()
        expected = "sha256=" + base64.b64encode(digest).decode()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise WebhookRejected(403, f"X webhook call with a wrong {SIGNATURE_HEADER}")
        try:
            events = ActivityEvents.model_validate_json(body)
        except ValidationError as error:
            raise WebhookRejected(
                400,
                f"X webhook body is not an Account Activity event: {error.error_count()} errors",
            ) from None
        return [
            _webhook_mention(tweet)
            for tweet in events.tweet_create_events
            if tweet.user.id_str != events.for_user_id and tweet.retweeted_status is None
        ]

    # --- the client ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._client = None

    def _secret(self, name: str) -> str:
        return self.target.credentials[name].get_secret_value()

    def _api(self) -> Any:
        if self._client is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
            )
            self._client = AsyncClient(
                consumer_key=self._secret("consumer_key"),
                consumer_secret=self._secret("consumer_secret"),
                access_token=self._secret("access_token"),
                access_token_secret=self._secret("access_token_secret"),
                return_type=dict,
                wait_on_rate_limit=False,  # the dispatcher retries; tweepy's wait breaks on OAuth1
            )
            self._client.session = _ApiSession(self._session, self._origin)
        return self._client

    async def _account_id(self) -> str:
        if self._user_id is None:
            try:
                me = Me.model_validate(await self._api().get_me(user_auth=True))
            except Exception as error:
                raise await self._error(error, "looking up the account id", write=False) from error
            self._user_id = me.data.id
        return self._user_id

    def _own_tweets(
        self, why: str, *, start_time: datetime | None = None, since_id: str | None = None
    ) -> AsyncGenerator[list[Tweet], None]:
        """The account's posts, newest first, page by page, back to `start_time` or `since_id`
        (exclusive), at most `reconcile_max_pages` pages (then a TransientError)."""
        where = f"X {why} for target {self.target.name!r}"

        async def fetch(token: str | None) -> tuple[tuple[Tweet, ...], str | None]:
            user_id = await self._account_id()
            try:
                answer = await self._api().get_users_tweets(
                    user_id,
                    start_time=start_time,
                    since_id=since_id,
                    max_results=PAGE_SIZE,
                    pagination_token=token,
                    tweet_fields=_TWEET_FIELDS,
                    user_auth=True,
                )
                page = Page.model_validate(answer)
            except Exception as error:
                raise await self._error(
                    error, f"{why}: reading the account's posts", write=False
                ) from error
            return page.data, page.meta.next_token

        return pages_back(fetch, max_pages=self.settings.reconcile_max_pages, where=where)

    def _receipt(self, tweet_id: str, post: Post, parent: str | None) -> Receipt:
        return Receipt(
            channel=self.name,
            target=self.target.name,
            external_id=tweet_id,
            url=f"https://x.com/i/web/status/{tweet_id}",
            posted_at=_snowflake_time(tweet_id),
            extra={"part": post.part, "parts": post.parts, "reply_to": parent},
        )

    async def _error(self, error: Exception, action: str, *, write: bool) -> ChannelError:
        return await map_error(error, f"X {action} for target {self.target.name!r}", write=write)


# --- helpers ---------------------------------------------------------------------------------


class _ApiSession:
    """What tweepy takes as `client.session`: sends its requests to `origin` instead of
    api.twitter.com with the path and the (already signed, already encoded) query unchanged."""

    def __init__(self, session: aiohttp.ClientSession, origin: str) -> None:
        self._session = session
        self._origin = origin

    def request(self, method: str, url: str | URL, **kwargs: Any) -> Any:
        text = str(url)
        if not text.startswith(API_ORIGIN):
            raise ValueError(f"tweepy asked for {text!r}, outside {API_ORIGIN}")
        return self._session.request(
            method, URL(self._origin + text[len(API_ORIGIN) :], encoded=True), **kwargs
        )


def _comparable(text: str) -> str:
    """Text as two posts are compared: X may normalise to NFC, trim, and shows links either
    with or without their scheme, so links are compared without it."""
    text = normalize("NFC", text).strip()
    return re.sub(r"https?://(\S+?)/?(?=\s|$)", r"\1", text)


def _snowflake_time(tweet_id: str) -> datetime | None:
    try:
        milliseconds = (int(tweet_id) >> 22) + _SNOWFLAKE_EPOCH_MS
    except ValueError:
        return None
    return datetime.fromtimestamp(milliseconds / 1000, UTC)


def _reader_text(text: str) -> str:
    return _LEADING_MENTIONS.sub("", text, count=1).strip() or text.strip()


def _mention(tweet: Tweet, author: User | None) -> InboundMessage:
    username = author.username if author else None
    return InboundMessage(
        source="x",
        external_id=tweet.id,
        text=_reader_text(tweet.display_text()),
        received_at=tweet.created_at or _snowflake_time(tweet.id) or datetime.now(UTC),
        author_id=tweet.author_id,
        author_name=author.name if author else None,
        in_reply_to=tweet.replied_to(),
        url=f"https://x.com/{username or 'i/web'}/status/{tweet.id}",
        raw=tweet.model_dump(mode="json", exclude_none=True),
    )


def _webhook_mention(tweet: V1Tweet) -> InboundMessage:
    if tweet.extended_tweet is not None:  # longer than 140: the full text is here
        text = tweet.extended_tweet.full_text
    else:
        text = tweet.full_text or tweet.text
    text = html.unescape(text)
    for url in tweet.entities.urls if tweet.entities else ():
        text = text.replace(url.url, url.expanded_url or url.url)
    received = created_at_time(tweet.created_at)
    if received is None:
        try:
            received = datetime.strptime(tweet.created_at, "%a %b %d %H:%M:%S %z %Y")
        except ValueError:
            received = _snowflake_time(tweet.id_str) or datetime.now(UTC)
    return InboundMessage(
        source="x",
        external_id=tweet.id_str,
        text=_reader_text(text),
        received_at=received,
        author_id=tweet.user.id_str,
        author_name=tweet.user.name,
        in_reply_to=tweet.in_reply_to_status_id_str,
        url=f"https://x.com/{tweet.user.screen_name}/status/{tweet.id_str}",
        raw=tweet.model_dump(mode="json", exclude_none=True),
    )
