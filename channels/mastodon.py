"""Mastodon: an alert as a public status (a numbered thread when long), mentions polled back.

Mastodon.py is synchronous (requests), so every call runs in a worker thread. Each call gets its
own `Mastodon` client over one shared `requests.Session`: the client keeps rate-limit bookkeeping
(`ratelimit_reset`) per instance, and a per-call client makes the reset we read after a 429 the
one from that very response, whatever else runs concurrently.

Publishing sends an Idempotency-Key, so a repeated key within Mastodon's one-hour window returns
the status already made. After an ambiguous failure `find_published` never re-posts: it reads the
account's recent statuses and confirms the exact text through /source.

This module also holds the pure text helpers the Telegram adapter shares (`alert_paragraphs`,
`split_numbered`): how an alert reads and how it is cut into numbered parts is one fact.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Literal, TypeVar

import requests
from mastodon import (
    Mastodon,
    MastodonAPIError,
    MastodonError,
    MastodonNetworkError,
    MastodonRatelimitError,
    MastodonServerError,
    MastodonUnauthorizedError,
)
from pydantic import field_validator
from requests.adapters import HTTPAdapter

from approvals.alert import EXERCISE_MARKING, Info, MsgType, is_exercise
from channels.base import (
    AlertVersion,
    AmbiguousError,
    AuthError,
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
    TransientError,
)

__all__ = [
    "MASTODON_LIMIT",
    "MastodonChannel",
    "MastodonSettings",
    "alert_paragraphs",
    "mastodon_length",
    "split_numbered",
    "summary_paragraphs",
]

# --- text helpers shared with channels.telegram (pure) ------------------------------------------

Measure = Callable[[str], int]
ELLIPSIS: Final = "…"
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？])")  # noqa: RUF001 (CJK full stops)
_WORD_BREAK = re.compile(r"\s+")


def _headline(version: AlertVersion, info: Info) -> str:
    # The marking gets a line of its own on every part, so the headline need not repeat it.
    headline = info.headline.strip()
    if headline.startswith(EXERCISE_MARKING):
        headline = headline[len(EXERCISE_MARKING) :].lstrip(" :-–—")  # noqa: RUF001
    label = {MsgType.update: "UPDATE: ", MsgType.cancel: "CANCEL: "}.get(
        version.content.msg_type, ""
    )
    return label + headline


def _link(version: AlertVersion, info: Info) -> str | None:
    # The public alert page carries every language and the latest version; the info's own web
    # page is the fallback.
    return version.public_url or info.web


def alert_paragraphs(version: AlertVersion, info: Info) -> list[str]:
    """One language of an alert, most important first: what, where, what to do, where to read
    more, then the detail and who to call. No field labels ("Area:"), which would be English in
    every language; only UPDATE/CANCEL before the headline, because that a message replaces an
    earlier one must be plain even to someone who reads nothing else."""
    paragraphs = [_headline(version, info)]
    areas = "; ".join(area.description for area in info.areas)
    for part in (areas, info.instruction, _link(version, info), info.description, info.contact):
        if part and part.strip():
            paragraphs.append(part.strip())
    return paragraphs


def summary_paragraphs(version: AlertVersion, info: Info) -> list[str]:
    """The short form of one language: what, where, what to do, and the link to the rest."""
    paragraphs = [_headline(version, info)]
    areas = "; ".join(area.description for area in info.areas)
    for part in (areas, info.instruction, _link(version, info)):
        if part and part.strip():
            paragraphs.append(part.strip())
    return paragraphs


def _split_keeping(text: str, pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    """`text` split at `pattern`: [(separator_before, piece)], the first separator empty."""
    pieces: list[tuple[str, str]] = []
    start, separator = 0, ""
    for match in pattern.finditer(text):
        if match.start() > start:
            pieces.append((separator, text[start : match.start()]))
            separator, start = match.group(), match.end()
    if start < len(text):
        pieces.append((separator, text[start:]))
    return pieces


def _longest_prefix(text: str, budget: int, measure: Measure, suffix: str = "") -> int:
    """The length of the longest prefix of `text` that fits `budget` with `suffix` after it."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if measure(text[:middle] + suffix) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def _units(paragraph: str, budget: int, measure: Measure) -> list[tuple[str, str]]:
    """One paragraph as units that each fit `budget`: the whole paragraph if it fits, else its
    sentences, else their words, else pieces of a word too long for a part (a very long link,
    or text written without spaces); each with the separator that goes before it."""
    if measure(paragraph) <= budget:
        return [("", paragraph)]
    units: list[tuple[str, str]] = []
    for separator, sentence in _split_keeping(paragraph, _SENTENCE_BREAK):
        if measure(sentence) <= budget:
            units.append((separator, sentence))
            continue
        for number, (space, word) in enumerate(_split_keeping(sentence, _WORD_BREAK)):
            before = space if number else separator
            while measure(word) > budget:
                size = max(1, _longest_prefix(word, budget, measure))
                units.append((before, word[:size]))
                before, word = "", word[size:]
            if word:
                units.append((before, word))
    return units


def _pack(paragraphs: Sequence[str], budget: int, measure: Measure) -> list[str]:
    """Fill parts of at most `budget` with whole units, in order; a part never starts with a
    separator, and paragraphs stay a blank line apart."""
    chunks: list[str] = []
    current = ""
    for paragraph in paragraphs:
        for number, (separator, unit) in enumerate(_units(paragraph, budget, measure)):
            joiner = separator if number else "\n\n"
            candidate = f"{current}{joiner}{unit}" if current else unit
            if measure(candidate) <= budget:
                current = candidate
            else:
                chunks.append(current)
                current = unit
    if current:
        chunks.append(current)
    return chunks


def _shorten(text: str, budget: int, measure: Measure) -> str:
    """`text` ending in an ellipsis, cut at a word boundary where one is near, within `budget`."""
    if measure(text + ELLIPSIS) <= budget:
        return text + ELLIPSIS
    size = _longest_prefix(text, budget, measure, ELLIPSIS)
    space = max(text.rfind(" ", 0, size + 1), text.rfind("\n", 0, size + 1))
    if space > size * 3 // 4:  # a word boundary not far back: cut there, not mid-word
        size = space
    return text[:size].rstrip() + ELLIPSIS


def split_numbered(
    paragraphs: Sequence[str],
    *,
    limit: int,
    measure: Measure,
    marking: str | None,
    max_parts: int,
) -> list[str]:
    """The paragraphs as one post if they fit `limit`, else as numbered parts "(1/3)" of at most
    `max_parts`, each within `limit` and each starting with `marking` (the exercise marking) when
    given. Past `max_parts` the last part ends with an ellipsis: the paragraphs put the link to
    the full alert early, so it is never what gets cut."""
    head = f"{marking}\n" if marking else ""
    body = "\n\n".join(paragraphs)
    if measure(head + body) <= limit:
        return [head + body]
    if max_parts <= 1:
        return [head + _shorten(body, limit - measure(head), measure)]
    chunks: list[str] = []
    budget = limit
    for parts in range(2, max_parts + 1):
        budget = limit - measure(head) - measure(f"\n({parts}/{parts})")
        chunks = _pack(paragraphs, budget, measure)
        if len(chunks) <= parts:
            break
    else:
        chunks = chunks[:max_parts]
        chunks[-1] = _shorten(chunks[-1] + " ", budget, measure)
    total = len(chunks)
    return [f"{head}{chunk}\n({number}/{total})" for number, chunk in enumerate(chunks, 1)]


# --- Mastodon ----------------------------------------------------------------------------------

MASTODON_LIMIT: Final = 500
# Mastodon counts every URL as 23 characters, however long; counting a URL as at least 23 and
# everything else by code point is never less than Mastodon's own count (grapheme clusters).
MASTODON_URL_WEIGHT: Final = 23
_URL = re.compile(r"https?://[^\s<>\"]+")


def mastodon_length(text: str) -> int:
    """The length Mastodon checks against 500, counted so that it is never an undercount."""
    urls = _URL.findall(text)
    return len(_URL.sub("", text)) + sum(max(len(url), MASTODON_URL_WEIGHT) for url in urls)


def _language_code(language: str | None) -> str | None:
    # Mastodon takes ISO 639-1 (or 639-3) codes; CAP gives RFC 5646 tags like "es-US".
    if not language:
        return None
    primary = language.split("-")[0].lower()
    return primary if 2 <= len(primary) <= 3 else None


class MastodonSettings(TargetSettings):
    """A Mastodon account: its server, and how public its alerts are."""

    base_url: str  # the server, e.g. "https://mastodon.social" (an emulator in tests)
    # "public" reaches the public timelines and hashtag searches; "unlisted" only followers and
    # the profile. Alerts are public by default: reaching strangers is the point.
    visibility: Literal["public", "unlisted"] = "public"

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, base_url: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", base_url):
            raise ValueError(
                f"base_url {base_url!r} must be the Mastodon server's address, "
                "e.g. https://mastodon.social"
            )
        return base_url.rstrip("/")


T = TypeVar("T")
# One thread is at most this many statuses: the first language as a numbered thread, every
# further language one status. Past that the public alert page (linked early in every post)
# carries the rest; a longer thread floods followers' timelines in the middle of an emergency.
MAX_PARTS: Final = 8
RECENT_STATUSES: Final = 40  # how far back find_published looks (Mastodon's page maximum)
NOTIFICATION_PAGE: Final = 40
MAX_NOTIFICATION_PAGES: Final = 5  # per poll; the cursor picks up the rest next time


class MastodonChannel(Channel):
    """Posts to one Mastodon account; reads its mentions."""

    name: ClassVar[str] = "mastodon"
    limits: ClassVar[Limits] = Limits(
        max_length=MASTODON_LIMIT,
        counted_by=CountMethod.characters,
        max_parts=MAX_PARTS,
        can_delete=True,
        can_edit=True,
        idempotency_keys=True,
        retract=RetractMethod.reply,
        inbound=InboundMode.poll,
        # 300 API calls per 5 minutes per account; statuses have their own 300 per 3 hours,
        # a bucket no alert volume comes near.
        max_rate_per_second=1.0,
    )
    settings_model: ClassVar[type[TargetSettings]] = MastodonSettings
    credential_names: ClassVar[tuple[str, ...]] = ("access_token",)

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        if not isinstance(target.settings, MastodonSettings):
            raise TypeError(f"target {target.name!r}: expected MastodonSettings settings")
        self.settings: MastodonSettings = target.settings
        token = target.credentials.get("access_token")
        if token is None:
            raise ValueError(
                f"target {target.name!r}: the mastodon channel needs the 'access_token' "
                "credential (Preferences > Development > your application > access token)"
            )
        self._token = token
        self._session = requests.Session()
        # requests already defaults to no retries; mounting says so where a reader looks.
        self._session.mount("http://", HTTPAdapter(max_retries=0))
        self._session.mount("https://", HTTPAdapter(max_retries=0))
        self._account_id: str | None = None

    # --- rendering ---------------------------------------------------------------------------

    def render(self, version: AlertVersion) -> list[Post]:
        """The first language as a numbered thread; each further language as one status of its
        own, tagged with its language so followers' language filters work."""
        content = version.content
        marking = EXERCISE_MARKING if is_exercise(content.status) else None
        first, *others = content.infos
        others = others[: MAX_PARTS - 1]
        sections = [
            (first, text)
            for text in split_numbered(
                alert_paragraphs(version, first),
                limit=MASTODON_LIMIT,
                measure=mastodon_length,
                marking=marking,
                max_parts=MAX_PARTS - len(others),
            )
        ]
        for info in others:
            [text] = split_numbered(
                summary_paragraphs(version, info),
                limit=MASTODON_LIMIT,
                measure=mastodon_length,
                marking=marking,
                max_parts=1,
            )
            sections.append((info, text))
        return [
            Post(
                text=text,
                part=number,
                parts=len(sections),
                length=mastodon_length(text),
                limit=MASTODON_LIMIT,
                language=info.language,
            )
            for number, (info, text) in enumerate(sections, 1)
        ]

    def _retraction_text(self, cancel: AlertVersion) -> str:
        first = cancel.content.infos[0]
        marking = EXERCISE_MARKING if is_exercise(cancel.content.status) else None
        [text] = split_numbered(
            alert_paragraphs(cancel, first),
            limit=MASTODON_LIMIT,
            measure=mastodon_length,
            marking=marking,
            max_parts=1,
        )
        return text

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
                f"target {self.target.name!r}: the mastodon channel posts to its account and "
                "takes no recipient"
            )
        return await self._post_status(
            post.text,
            key,
            in_reply_to=reply_to.external_id if reply_to else None,
            language=_language_code(post.language),
        )

    async def _post_status(
        self, text: str, key: str, *, in_reply_to: str | None, language: str | None
    ) -> Receipt:
        visibility = self.settings.visibility
        status = await self._call(
            "post a status",
            lambda api: api.status_post(
                text,
                in_reply_to_id=in_reply_to,
                visibility=visibility,
                language=language,
                idempotency_key=key,
            ),
            writes=True,
        )
        return self._receipt(status, key)

    async def find_published(
        self, post: Post, key: str, *, recipient: str | None = None
    ) -> Receipt | None:
        """The newest of the account's recent statuses whose text is exactly `post.text`.

        The rendered HTML is compared first (cheap, one request for the page); a candidate is
        then confirmed against the status source, which is the text exactly as posted."""
        account_id = await self._own_account_id()
        statuses = await self._call(
            "read the account's recent statuses",
            lambda api: api.account_statuses(
                account_id, limit=RECENT_STATUSES, exclude_reblogs=True
            ),
        )
        wanted = _collapse(post.text)
        for status in statuses:
            if _collapse(html_to_text(str(status.get("content") or ""))) != wanted:
                continue
            if await self._source_text(str(status["id"])) == post.text:
                return self._receipt(status, key)
        return None

    async def _source_text(self, status_id: str) -> str | None:
        source = await self._call(
            "read a status's source", lambda api: api.status_source(status_id)
        )
        text = source.get("text")
        return text if isinstance(text, str) else None

    # --- cancel and correct ------------------------------------------------------------------

    async def retract(self, receipt: Receipt, cancel: AlertVersion) -> Receipt:
        """Edit the original to the cancel's words, then reply to it with the same words.

        The reply is what reaches people: it lands in followers' home timelines as a new status
        and sits under the original in its thread. The edit is for everyone who meets the
        original later, through a boost or a link: it no longer says to act, and Mastodon tells
        the people who boosted it that it changed. Both steps are safe to repeat: an edit to
        the same text changes nothing, and the reply carries a fixed idempotency key."""
        text = self._retraction_text(cancel)
        original = receipt.external_id
        try:
            await self._call(
                "edit the original status",
                lambda api: api.status_update(original, status=text),
            )
        except PermanentError as error:
            if error.status != 404:
                raise
            # Removed already (by us or a moderator): the reply below still goes out.
        key = f"retract:{original}:{cancel.identifier}"
        language = _language_code(cancel.content.infos[0].language)
        try:
            return await self._post_status(text, key, in_reply_to=original, language=language)
        except PermanentError as error:
            if error.status != 404:
                raise
        # The original is gone: the cancellation still has to reach people, as a status of its
        # own. A new key: the failed reply's key stays bound to that request.
        return await self._post_status(
            text, key + ":standalone", in_reply_to=None, language=language
        )

    # --- inbound -----------------------------------------------------------------------------

    async def fetch_inbound(
        self, cursor: str | None
    ) -> tuple[Sequence[InboundMessage], str | None]:
        """Mentions since `cursor` (the newest notification id seen), oldest first.

        With a cursor, pages go forward with min_id, which returns the notifications right
        after it, so a busy spell is read in full over several polls rather than skipped
        (since_id would return only the newest page and silently drop the gap)."""
        found: dict[str, Any] = {}
        if cursor is None:
            page = await self._notifications(None)
            found.update((str(n["id"]), n) for n in page)
        else:
            after = cursor
            for _ in range(MAX_NOTIFICATION_PAGES):
                page = await self._notifications(after)
                if not page:
                    break
                found.update((str(n["id"]), n) for n in page)
                after = max(found, key=_id_order)
                if len(page) < NOTIFICATION_PAGE:
                    break
        ordered = sorted(found, key=_id_order)
        messages = [
            message
            for notification_id in ordered
            if (message := self._inbound(found[notification_id])) is not None
        ]
        return messages, (ordered[-1] if ordered else cursor)

    async def _notifications(self, min_id: str | None) -> list[Any]:
        page = await self._call(
            "read mentions",
            lambda api: api.notifications(
                types=["mention"], min_id=min_id, limit=NOTIFICATION_PAGE
            ),
        )
        return list(page)

    def _inbound(self, notification: Mapping[str, Any]) -> InboundMessage | None:
        status = notification.get("status")
        if notification.get("type") != "mention" or not status:
            return None
        account = status.get("account") or {}
        mentions = [str(m.get("acct")) for m in status.get("mentions") or []]
        in_reply_to = status.get("in_reply_to_id")
        created = status.get("created_at")
        return InboundMessage(
            source=self.name,
            external_id=str(status["id"]),
            text=_strip_leading_mentions(html_to_text(str(status.get("content") or ""))),
            received_at=_utc(created),
            author_id=str(account["id"]) if account.get("id") is not None else None,
            author_name=account.get("acct"),
            in_reply_to=str(in_reply_to) if in_reply_to is not None else None,
            url=status.get("url"),
            media_urls=tuple(
                str(media["url"])
                for media in status.get("media_attachments") or []
                if media.get("url")
            ),
            raw={
                "notification_id": str(notification["id"]),
                "visibility": status.get("visibility"),
                "language": status.get("language"),
                "mentions": mentions,
            },
        )

    # --- talking to the server ---------------------------------------------------------------

    def _client(self) -> Mastodon:
        return Mastodon(
            access_token=self._token.get_secret_value(),
            api_base_url=self.settings.base_url,
            ratelimit_method="throw",  # never sleep inside the library: the dispatcher waits
            request_timeout=self.settings.timeout_seconds,
            version_check_mode="none",  # no /api/v1/instance round trip per client
            session=self._session,
            user_agent="crisis-broadcaster",
        )

    async def _own_account_id(self) -> str:
        if self._account_id is None:
            account = await self._call(
                "verify the account", lambda api: api.account_verify_credentials()
            )
            self._account_id = str(account["id"])
        return self._account_id

    async def _call(self, doing: str, call: Callable[[Mastodon], T], *, writes: bool = False) -> T:
        """Run one library call in a thread; map its errors onto the ChannelError tree.

        `writes` marks a call that creates something and is not safe to repeat blindly: when
        its answer is lost, whether it happened is unknown (AmbiguousError)."""
        client = self._client()
        try:
            return await asyncio.to_thread(call, client)
        except MastodonError as error:
            raise self._mapped(error, doing, client, writes) from None

    def _mapped(
        self, error: MastodonError, doing: str, client: Mastodon, writes: bool
    ) -> ChannelError:
        where = f"mastodon target {self.target.name!r} ({self.settings.base_url})"
        if isinstance(error, MastodonRatelimitError):
            # Mastodon.py has already read X-RateLimit-Reset (ISO 8601) into this client's
            # ratelimit_reset, as epoch seconds corrected by the server's Date header.
            reset = client.ratelimit_reset
            wait = max(0.0, float(reset) - time.time()) if reset is not None else None
            when = f"; it resets in {wait:.0f} s" if wait is not None else ""
            return TransientError(
                f"{where}: rate limited while trying to {doing}{when}",
                retry_after=wait,
                status=429,
            )
        if isinstance(error, MastodonNetworkError):
            sent = not _never_sent(error)
            cause = _network_cause(error)
            if writes and sent:
                return AmbiguousError(
                    f"{where}: the connection failed ({cause}) while trying to {doing}; the "
                    "status may exist: reconcile before posting again"
                )
            return TransientError(
                f"{where}: the connection failed ({cause}) while trying to {doing}"
            )
        if isinstance(error, MastodonAPIError):
            status, reason, detail = _api_error_parts(error)
            said = f"HTTP {status} {reason}".strip() + (f": {detail}" if detail else "")
            if isinstance(error, MastodonUnauthorizedError) or status == 403:
                return AuthError(
                    f"{where}: the server refused the access token ({said}) while trying to "
                    f"{doing}; issue a new token with the write:statuses and read scopes",
                    status=status,
                )
            if isinstance(error, MastodonServerError) or (status is not None and status >= 500):
                if writes:
                    return AmbiguousError(
                        f"{where}: server error ({said}) while trying to {doing}; the status "
                        "may exist: reconcile before posting again",
                        status=status,
                    )
                return TransientError(
                    f"{where}: server error ({said}) while trying to {doing}", status=status
                )
            if status == 429:
                return TransientError(f"{where}: rate limited ({said})", status=429)
            return PermanentError(
                f"{where}: the server refused to {doing} ({said}); it will refuse it again "
                "as it is",
                status=status,
            )
        return PermanentError(f"{where}: could not {doing}: {type(error).__name__}")

    def _receipt(self, status: Mapping[str, Any], key: str) -> Receipt:
        created = status.get("created_at")
        return Receipt(
            channel=self.name,
            target=self.target.name,
            external_id=str(status["id"]),
            url=status.get("url"),
            posted_at=_utc(created),
            extra={"key": key, "uri": status.get("uri")},
        )

    async def aclose(self) -> None:
        self._session.close()


# --- helpers -----------------------------------------------------------------------------------


def _api_error_parts(error: MastodonAPIError) -> tuple[int | None, str, str | None]:
    # Mastodon.py raises MastodonAPIError('Mastodon API returned error', status, reason, error).
    args = error.args
    status = args[1] if len(args) > 1 and isinstance(args[1], int) else None
    reason = str(args[2]) if len(args) > 2 and args[2] else ""
    detail = str(args[3]) if len(args) > 3 and args[3] else None
    return status, reason, detail


def _network_cause(error: MastodonNetworkError) -> str:
    cause = error.__context__
    if isinstance(cause, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(cause, requests.exceptions.ConnectionError):
        return "connection refused or reset"
    return type(cause).__name__ if cause is not None else "network error"


def _never_sent(error: MastodonNetworkError) -> bool:
    """True when the request cannot have reached the server: the connection was never made."""
    cause = error.__context__
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(cause, requests.exceptions.ConnectionError):
        # requests wraps urllib3's MaxRetryError, whose reason says why it never connected.
        reason = getattr(cause.args[0], "reason", None) if cause.args else None
        return type(reason).__name__ in ("NewConnectionError", "NameResolutionError")
    return False


def _id_order(identifier: str) -> tuple[int, str]:
    # Mastodon ids are numeric strings (snowflakes); other servers use fixed-width sortable
    # strings. Length first, then text, orders both correctly without int() failing on either.
    return len(identifier), identifier


def _utc(value: object) -> datetime:
    """A status time in UTC: Mastodon.py parses it into local time; raw JSON has ISO 8601."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    raise ValueError(f"expected an ISO 8601 time from Mastodon, got {value!r}")


_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_PARAGRAPH = re.compile(r"</p>\s*<p[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_LEADING_MENTIONS = re.compile(r"^(?:@[\w.-]+(?:@[\w.-]+)?\s+)+")


def html_to_text(content: str) -> str:
    """Mastodon's status HTML back to the text a person typed: paragraphs and line breaks kept,
    links shown in full (Mastodon hides parts of long links in invisible spans)."""
    text = _PARAGRAPH.sub("\n\n", content)
    text = _BREAK.sub("\n", text)
    return html.unescape(_TAG.sub("", text)).strip()


def _strip_leading_mentions(text: str) -> str:
    # "@county_alerts We are trapped" -> "We are trapped": the addressees are in raw.mentions.
    return _LEADING_MENTIONS.sub("", text, count=1).strip() or text


def _collapse(text: str) -> str:
    return " ".join(text.split())
