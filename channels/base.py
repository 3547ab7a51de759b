"""The Channel contract every platform adapter implements, and the values that cross it.

An adapter turns one approved alert version into posts within its platform's limits (`render`,
pure), publishes one post with an idempotency key (`publish`), answers "did that post go out?"
after an ambiguous failure (`find_published`), cancels or corrects on its platform (`retract`),
and, where the platform is polled, fetches what the public sent (`fetch_inbound`).

Adapters never retry: the dispatcher owns every retry and reads the adapter's errors:

    ChannelError              anything that went wrong talking to the platform
    ├── TransientError        try again later; .retry_after is the platform's own wait, if it said
    ├── PermanentError        this post will never succeed as it is (too long, duplicate, refused)
    ├── AuthError             credentials rejected or revoked: stop this target, alarm an operator
    └── AmbiguousError        the post may exist (timeout, reset, 5xx after sending):
                              call find_published before any retry
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr

from approvals.alert import AlertContent

__all__ = [
    "AlertVersion",
    "AmbiguousError",
    "AuthError",
    "Channel",
    "ChannelError",
    "CountMethod",
    "InboundMessage",
    "InboundMode",
    "Limits",
    "PermanentError",
    "Post",
    "Receipt",
    "RetractMethod",
    "Target",
    "TargetMode",
    "TargetSettings",
    "TransientError",
    "WebhookAnswer",
    "WebhookRejected",
]


# --- errors ------------------------------------------------------------------------------------


class ChannelError(Exception):
    """A failure talking to a platform; the message is safe to show an operator (no secrets)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status  # the platform's HTTP status, when there was one
        self.code = code  # the platform's own error code, e.g. Twilio "21211", Graph "506"


class TransientError(ChannelError):
    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        code: str | None = None,
    ):
        super().__init__(message, status=status, code=code)
        # Seconds the platform asked us to wait (Retry-After, a reset time, retry_after), or None.
        self.retry_after = retry_after


class PermanentError(ChannelError):
    pass


class AuthError(ChannelError):
    pass


class AmbiguousError(ChannelError):
    pass


# --- what a channel is and can do --------------------------------------------------------------


class CountMethod(StrEnum):
    characters = "characters"  # Unicode code points (Mastodon, Telegram)
    twitter_weighted = "twitter_weighted"  # twitter-text v3 weighted length (X)
    sms_segments = "sms_segments"  # GSM-7 or UCS-2 segments (SMS)
    unlimited = "unlimited"  # no practical limit (email, webhook, CAP)


class InboundMode(StrEnum):
    none = "none"  # the public cannot answer on this channel
    poll = "poll"  # fetch_inbound is called on a schedule with the last cursor
    webhook = "webhook"  # the platform calls /hooks/{channel}
    poll_and_webhook = "poll_and_webhook"  # webhook, with polling as the fallback


class RetractMethod(StrEnum):
    delete = "delete"  # remove the original post
    edit = "edit"  # rewrite the original post in place
    reply = "reply"  # answer the original post with the correction
    correction_post = "correction_post"  # a new post that names the one it corrects
    cap_cancel = "cap_cancel"  # a CAP Cancel/Update message that references the original


@dataclass(frozen=True)
class Limits:
    """A platform's limits and capabilities, declared as data (one place for each fact)."""

    max_length: int | None  # per post, in `counted_by` units; None when unlimited
    counted_by: CountMethod
    max_parts: int = 1  # >1: a long alert becomes a numbered thread of at most this many posts
    can_delete: bool = False
    can_edit: bool = False
    idempotency_keys: bool = False  # the platform itself drops a repeated key
    retract: RetractMethod = RetractMethod.correction_post
    inbound: InboundMode = InboundMode.none
    # The platform's documented sustained rate for one account, posts per second; the dispatcher
    # takes the lower of this and the configured rate.
    max_rate_per_second: float | None = None


class TargetMode(StrEnum):
    live = "live"  # reaches real people: Actual alerts only
    exercise = "exercise"  # a drill or test account: Exercise and Test alerts only


class TargetSettings(BaseModel):
    """One configured target of a channel. Adapters subclass it with their own fields; secrets
    are `SecretRef`s resolved by the service and handed to the adapter as `credentials`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str  # unique across the installation, e.g. "x-county", "sms-residents"
    mode: TargetMode
    base_url: str | None = None  # the platform's API root; an emulator's URL in tests and demos
    timeout_seconds: float = 10.0  # one request; past it the outcome is ambiguous


@dataclass(frozen=True)
class Target:
    """A target as an adapter receives it: settings plus resolved secrets."""

    settings: TargetSettings
    credentials: Mapping[str, SecretStr] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def mode(self) -> TargetMode:
        return self.settings.mode


# --- what crosses the contract -----------------------------------------------------------------


@dataclass(frozen=True)
class AlertVersion:
    """An approved alert version as channels see it: the content plus its CAP identity."""

    alert_id: int
    version_id: int
    number: int  # 1 for the first version of an alert, 2 for its first update/cancel, ...
    identifier: str  # CAP identifier, unique and stable
    sender: str  # CAP sender
    sent: datetime  # CAP sent (aware)
    content: AlertContent
    # Where a person can read the full alert (the public alert page / CAP link), if public.
    public_url: str | None = None


@dataclass(frozen=True)
class Post:
    """One message on a platform, already within its limits."""

    text: str
    part: int = 1  # 1-based position in a thread
    parts: int = 1  # thread length
    length: int = 0  # counted in the channel's own units (Limits.counted_by)
    limit: int | None = None  # the limit it was counted against
    subject: str | None = None  # email subject
    html: str | None = None  # email HTML body
    media_url: str | None = None  # an image the platform should fetch (Instagram card)
    language: str | None = None  # the info block's language this post renders
    extra: Mapping[str, Any] = field(default_factory=dict)  # adapter-specific, JSON-serialisable


@dataclass(frozen=True)
class Receipt:
    """Proof that a post exists on the platform."""

    channel: str
    target: str
    external_id: str  # the platform's id for the post (tweet id, status id, message SID, ...)
    url: str | None = None  # a link a person can open
    posted_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # JSON-serialisable


@dataclass(frozen=True)
class InboundMessage:
    """Something the public sent on a platform, before normalisation into a report."""

    source: str  # channel name
    external_id: str  # the platform's id for the message: (source, external_id) is unique
    text: str
    received_at: datetime
    author_id: str | None = None  # the platform's id for the author (pseudonymised later)
    author_name: str | None = None
    in_reply_to: str | None = None  # external id of the post it answers
    url: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    media_urls: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    body: str
    content_type: str = "application/json"


class WebhookRejected(Exception):
    """A webhook call that must not be believed: 401 (no signature) or 403 (wrong signature)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Channel(ABC):
    """One platform. Instances serve one target; they hold its HTTP session/client."""

    name: ClassVar[str]  # "x", "facebook", "instagram", "mastodon", "telegram", "sms", ...
    limits: ClassVar[Limits]
    settings_model: ClassVar[type[TargetSettings]] = TargetSettings
    # Credential names the adapter needs; config maps each to a SecretRef.
    credential_names: ClassVar[tuple[str, ...]] = ()
    # List channels (SMS, email) send each post to one recipient per delivery: a phone number or
    # an address from the target's distribution list. Others post once to the account.
    needs_recipient: ClassVar[bool] = False
    # Whether the webhook signature covers the URL called (Twilio's does). False: parse_webhook
    # ignores `url`, so the service need not work it out (about 7 µs a call in a flood).
    webhook_signs_url: ClassVar[bool] = True

    def __init__(self, target: Target) -> None:
        self.target = target

    @abstractmethod
    def render(self, version: AlertVersion) -> list[Post]:
        """The posts for this version, each within the limits; pure and deterministic."""

    @abstractmethod
    async def publish(
        self,
        post: Post,
        key: str,
        *,
        reply_to: Receipt | None = None,
        recipient: str | None = None,
    ) -> Receipt:
        """Publish one post. `key` is unique per delivery and part; `reply_to` threads it;
        `recipient` is required by list channels (needs_recipient) and refused by others."""

    @abstractmethod
    async def find_published(
        self, post: Post, key: str, *, recipient: str | None = None
    ) -> Receipt | None:
        """After an ambiguous failure: the receipt of `post` if it went out under `key`, else None.

        Platforms with idempotency keys look the key up; others search the account's recent
        posts for this exact text (and thread position)."""

    @abstractmethod
    async def retract(self, receipt: Receipt, cancel: AlertVersion) -> Receipt:
        """Cancel or correct the post behind `receipt` on this platform with `cancel`'s words."""

    async def fetch_inbound(
        self, cursor: str | None
    ) -> tuple[Sequence[InboundMessage], str | None]:
        """New public messages since `cursor`, and the next cursor. Polled channels override."""
        return [], cursor

    def answer_webhook_challenge(self, query: Mapping[str, str]) -> WebhookAnswer | None:
        """The platform's webhook verification GET (X CRC, Meta hub.challenge), or None."""
        return None

    def parse_webhook(
        self, url: str, headers: Mapping[str, str], body: bytes
    ) -> Sequence[InboundMessage]:
        """Verify a webhook POST's signature (constant time) and parse it; raise
        WebhookRejected when the signature is missing or wrong. Webhook channels override."""
        raise WebhookRejected(404, f"the {self.name} channel takes no webhooks")

    async def aclose(self) -> None:  # noqa: B027 (optional hook: most adapters hold a session)
        """Release the adapter's HTTP session or client."""
