"""Telegram: an alert as a channel post (numbered replies when long); comments polled back.

The bot posts to a channel where it is an administrator allowed to post. Comments come from the
channel's linked discussion group, where Telegram copies every channel post as an "automatic
forward"; the bot, an administrator there too, receives those copies and the comments answering
them through getUpdates.

Telegram has no idempotency keys, and the Bot API cannot read a channel's history, and bots get
no update for their own channel posts. What the bot does get is the automatic forward of each
post into the discussion group, carrying the post's text and channel message id: that is how
`find_published` reconciles. It reads pending updates without confirming them (no offset), and
remembers the forwards `fetch_inbound` has already confirmed. Without a linked discussion group
nothing can be reconciled and `find_published` answers None: a retry may then post twice, which
for an emergency alert is the lesser harm than not posting at all.

Traps in python-telegram-bot 22.8 handled here:
- `RetryAfter.retry_after` as an int is deprecated and warns, and RetryAfter's own constructor
  reads it: every 429 would raise PTBDeprecationWarning under `-W error`. Opting in to
  timedelta periods (PTB_TIMEDELTA, the library's documented switch) before the first request
  makes it a timedelta, without a warning.
- The token is part of every URL: httpx logs each request URL at INFO and the Bot logs its base
  URL at DEBUG; `Bot.initialize()` even raises InvalidToken with the token in the message. A
  log filter redacts tokens, initialize() is never called, and no library message reaches an
  error without redaction.
"""

from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Final, TypeVar

import httpx
from pydantic import field_validator
from telegram import Bot, Message, MessageOriginChannel, ReplyParameters
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

from approvals.alert import EXERCISE_MARKING, is_exercise
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
from channels.mastodon import alert_paragraphs, split_numbered

__all__ = ["TELEGRAM_LIMIT", "TelegramChannel", "TelegramSettings", "telegram_length"]

# PTB reads this at each call, not at import: set before any request can meet a 429 (see the
# module docstring). An operator's explicit setting wins.
os.environ.setdefault("PTB_TIMEDELTA", "true")

TELEGRAM_LIMIT: Final = 4096
MAX_PARTS: Final = 4  # 16k characters; past that the linked alert page carries the rest
LANGUAGE_DIVIDER: Final = "———"
DEFAULT_API: Final = "https://api.telegram.org"
UPDATES_PAGE: Final = 100  # getUpdates' maximum
MAX_UPDATE_PAGES: Final = 5  # per poll; the cursor picks up the rest next time
REMEMBERED_FORWARDS: Final = 1000

# Bot tokens look like "123456789:AAE..." (digits, colon, 35 URL-safe characters).
_TOKEN = re.compile(r"\d{3,}:[A-Za-z0-9_-]{30,}")


class _RedactBotTokens(logging.Filter):
    """Replace bot tokens in log records of the loggers that put request URLs in messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _TOKEN.search(message):
            record.msg, record.args = _TOKEN.sub("<bot-token>", message), None
        return True


for _logger in ("httpx", "telegram.Bot"):
    logging.getLogger(_logger).addFilter(_RedactBotTokens())


def telegram_length(text: str) -> int:
    """Length in UTF-16 code units, how Telegram measures text (entity offsets, the 4096
    limit): an emoji outside the BMP counts 2. Never less than the code-point count."""
    return len(text.encode("utf-16-le")) // 2


class TelegramSettings(TargetSettings):
    """A Telegram channel the bot posts to."""

    # "@public_channel_name", or the numeric id of a private channel ("-100..." as text).
    chat_id: str

    @field_validator("chat_id")
    @classmethod
    def _check_chat_id(cls, chat_id: str) -> str:
        if not re.fullmatch(r"@[A-Za-z][A-Za-z0-9_]{3,31}|-100\d{5,}", chat_id):
            raise ValueError(
                f"chat_id {chat_id!r} must be the channel's @username or its numeric id "
                "starting -100 (forward a channel post to @userinfobot to see it)"
            )
        return chat_id


T = TypeVar("T")


@dataclass(frozen=True)
class _Forward:
    """Telegram's copy of one of our channel posts in the discussion group."""

    post_id: int  # the channel post's message id
    text: str
    date: datetime


class TelegramChannel(Channel):
    """Posts to one Telegram channel through a bot; reads comments and direct messages."""

    name: ClassVar[str] = "telegram"
    limits: ClassVar[Limits] = Limits(
        max_length=TELEGRAM_LIMIT,
        counted_by=CountMethod.characters,
        max_parts=MAX_PARTS,
        can_delete=True,
        can_edit=True,
        idempotency_keys=False,
        retract=RetractMethod.reply,
        inbound=InboundMode.poll,
        # Telegram allows a bot about 20 messages a minute into one group or channel.
        max_rate_per_second=20 / 60,
    )
    settings_model: ClassVar[type[TargetSettings]] = TelegramSettings
    credential_names: ClassVar[tuple[str, ...]] = ("bot_token",)

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        if not isinstance(target.settings, TelegramSettings):
            raise TypeError(f"target {target.name!r}: expected TelegramSettings settings")
        self.settings: TelegramSettings = target.settings
        token = target.credentials.get("bot_token")
        if token is None or not token.get_secret_value():
            raise ValueError(
                f"target {target.name!r}: the telegram channel needs the 'bot_token' "
                "credential (from @BotFather)"
            )
        self._token = token.get_secret_value()
        chat_id = self.settings.chat_id
        self._chat_id: int | str = int(chat_id) if chat_id.startswith("-") else chat_id
        api = (self.settings.base_url or DEFAULT_API).rstrip("/")
        timeout = self.settings.timeout_seconds
        # No retries anywhere: HTTPXRequest has none and we add none (the dispatcher retries).
        self._requests = (
            HTTPXRequest(
                connection_pool_size=4,
                read_timeout=timeout,
                write_timeout=timeout,
                connect_timeout=timeout,
                pool_timeout=timeout,
            ),
            # getUpdates on its own single connection: two at once would make Telegram end one
            # of them with 409 Conflict.
            HTTPXRequest(
                connection_pool_size=1,
                read_timeout=timeout,
                write_timeout=timeout,
                connect_timeout=timeout,
                pool_timeout=timeout,
            ),
        )
        self._bot = Bot(
            self._token,
            base_url=f"{api}/bot",
            base_file_url=f"{api}/file/bot",
            request=self._requests[0],
            get_updates_request=self._requests[1],
        )
        # Automatic forwards seen: discussion-group message id -> the channel post it copies.
        self._forwards: OrderedDict[int, _Forward] = OrderedDict()

    # --- rendering ---------------------------------------------------------------------------

    def render(self, version: AlertVersion) -> list[Post]:
        """Every language in one message, first language first: a channel has one audience
        and 4096 characters hold several languages; a subscriber scrolls to theirs. Plain text
        (no parse_mode): an alert must never fail on an unescaped '_' or '<' in Markdown/HTML,
        and Telegram makes links clickable in plain text anyway."""
        content = version.content
        texts = _texts(version, max_parts=MAX_PARTS)
        return [
            Post(
                text=text,
                part=number,
                parts=len(texts),
                length=telegram_length(text),
                limit=TELEGRAM_LIMIT,
                language=content.infos[0].language,
            )
            for number, text in enumerate(texts, 1)
        ]

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
                f"target {self.target.name!r}: the telegram channel posts to its channel and "
                "takes no recipient"
            )
        return await self._send(post.text, reply_to.external_id if reply_to else None)

    async def _send(self, text: str, reply_to: str | None) -> Receipt:
        # allow_sending_without_reply: if the message we answer was deleted meanwhile, the
        # alert still goes out, unthreaded, rather than failing.
        reply = (
            ReplyParameters(message_id=int(reply_to), allow_sending_without_reply=True)
            if reply_to is not None
            else None
        )
        message = await self._call(
            "send a message",
            self._bot.send_message(chat_id=self._chat_id, text=text, reply_parameters=reply),
            writes=True,
        )
        return self._receipt(message.message_id, message.date)

    async def find_published(
        self, post: Post, key: str, *, recipient: str | None = None
    ) -> Receipt | None:
        """Our channel post with exactly this text, found through its automatic forward into
        the discussion group: among pending updates (read without confirming them) or the
        forwards `fetch_inbound` already confirmed. Newest first."""
        updates = await self._call(
            "read pending updates", self._bot.get_updates(timeout=0, limit=UPDATES_PAGE)
        )
        for update in updates:
            if update.message is not None:
                self._remember_forward(update.message)
        wanted = post.text.strip()
        for forward in reversed(self._forwards.values()):
            if forward.text.strip() == wanted:
                return self._receipt(forward.post_id, forward.date)
        return None

    # --- cancel and correct ------------------------------------------------------------------

    async def retract(self, receipt: Receipt, cancel: AlertVersion) -> Receipt:
        """Edit the original to the cancel's words, then post them as a reply to it.

        The reply is what reaches people: subscribers get a notification for a new message,
        and it quotes the alert it cancels. An edit notifies nobody, but it stops the original
        telling anyone who scrolls back, or arrives through a forward or a link, to act on it.
        Deleting would do neither, and Telegram lets bots delete only for 48 hours."""
        [text] = _texts(cancel, max_parts=1)
        try:
            await self._call(
                "edit the original message",
                self._bot.edit_message_text(
                    text, chat_id=self._chat_id, message_id=int(receipt.external_id)
                ),
            )
        except PermanentError as error:
            # Already edited to this text (a repeated retract), or gone: the reply still goes.
            # (python-telegram-bot drops "Bad Request: " and capitalises what is left.)
            if not any(
                phrase in error.message.lower()
                for phrase in ("not modified", "message to edit not found", "can't be edited")
            ):
                raise
        return await self._send(text, receipt.external_id)

    # --- inbound -----------------------------------------------------------------------------

    async def fetch_inbound(
        self, cursor: str | None
    ) -> tuple[Sequence[InboundMessage], str | None]:
        """Messages the bot received since `cursor` (the next update_id): comments in the
        discussion group and direct messages to the bot. Passing the cursor as the offset
        confirms everything before it, as the Bot API defines; the forwards among them are
        remembered for `find_published`."""
        offset = int(cursor) if cursor else None
        messages: list[InboundMessage] = []
        for _ in range(MAX_UPDATE_PAGES):
            updates = await self._call(
                "read updates",
                self._bot.get_updates(offset=offset, timeout=0, limit=UPDATES_PAGE),
            )
            if not updates:
                break
            for update in updates:
                message = update.message
                if message is None:
                    continue
                if self._remember_forward(message):
                    continue
                inbound = self._inbound(message)
                if inbound is not None:
                    messages.append(inbound)
            offset = updates[-1].update_id + 1
            if len(updates) < UPDATES_PAGE:
                break
        return messages, (str(offset) if offset is not None else cursor)

    def _remember_forward(self, message: Message) -> bool:
        """Remember `message` if it is Telegram's copy of one of our channel posts in the
        discussion group; say whether it was."""
        origin = message.forward_origin
        if not message.is_automatic_forward or not isinstance(origin, MessageOriginChannel):
            return False
        if not self._is_our_channel(origin.chat.id, origin.chat.username):
            return False
        self._forwards[message.message_id] = _Forward(
            origin.message_id, message.text or "", origin.date
        )
        self._forwards.move_to_end(message.message_id)
        while len(self._forwards) > REMEMBERED_FORWARDS:
            self._forwards.popitem(last=False)
        return True

    def _is_our_channel(self, chat_id: int, username: str | None) -> bool:
        if isinstance(self._chat_id, int):
            return chat_id == self._chat_id
        return (username or "").lower() == self._chat_id.removeprefix("@").lower()

    def _inbound(self, message: Message) -> InboundMessage | None:
        text = message.text or message.caption or ""
        location = message.location
        if not text and location is None:
            return None  # joins, pins, stickers: nothing a responder can act on
        author = message.from_user
        sender_chat = message.sender_chat
        if sender_chat is not None:  # an anonymous admin, or someone posting as a channel
            author_id, author_name = str(sender_chat.id), sender_chat.title or sender_chat.username
        elif author is not None:
            author_id, author_name = str(author.id), author.username or author.full_name
        else:
            author_id, author_name = None, None
        chat = message.chat
        return InboundMessage(
            source=self.name,
            external_id=f"{chat.id}:{message.message_id}",
            text=text,
            received_at=message.date.astimezone(UTC),
            author_id=author_id,
            author_name=author_name,
            in_reply_to=self._answered_post(message),
            url=_message_url(chat.id, chat.username, message.message_id),
            latitude=location.latitude if location else None,
            longitude=location.longitude if location else None,
            raw={
                "chat_id": chat.id,
                "chat_type": str(chat.type),
                "message_id": message.message_id,
                "thread_id": message.message_thread_id,
            },
        )

    def _answered_post(self, message: Message) -> str | None:
        """The channel post a comment answers: the automatic forward it replies to, or, for a
        reply to another comment, the forward that opened its thread."""
        replied = message.reply_to_message
        if replied is not None and self._remember_forward(replied):
            return str(self._forwards[replied.message_id].post_id)
        for group_id in (replied.message_id if replied else None, message.message_thread_id):
            if group_id is not None and group_id in self._forwards:
                return str(self._forwards[group_id].post_id)
        return None

    # --- talking to Telegram -----------------------------------------------------------------

    async def _call(self, doing: str, call: Awaitable[T], *, writes: bool = False) -> T:
        """Await one Bot API call; map its errors onto the ChannelError tree. `writes` marks a
        call that creates something: a lost answer then means it may exist (AmbiguousError)."""
        try:
            return await call
        except TelegramError as error:
            raise self._mapped(error, doing, writes) from None

    def _mapped(self, error: TelegramError, doing: str, writes: bool) -> ChannelError:
        where = f"telegram target {self.target.name!r} (chat {self.settings.chat_id})"
        said = self._redact(error.message)
        if isinstance(error, RetryAfter):
            wait = _seconds(error.retry_after)
            return TransientError(
                f"{where}: flood control while trying to {doing}; Telegram says retry in "
                f"{wait:.0f} s",
                retry_after=wait,
                status=429,
            )
        if isinstance(error, InvalidToken):
            return AuthError(
                f"{where}: Telegram rejected the bot token while trying to {doing}; check the "
                "bot_token credential (from @BotFather; /revoke issues a new one)",
                status=401,
            )
        if isinstance(error, Forbidden):
            return AuthError(
                f"{where}: Telegram refused to {doing} ({said}); add the bot to the channel as "
                "an administrator allowed to post",
                status=403,
            )
        if isinstance(error, ChatMigrated):
            return PermanentError(
                f"{where}: the chat moved to id {error.new_chat_id}; set chat_id to it"
            )
        if isinstance(error, Conflict):
            if "webhook" in said.lower():
                return PermanentError(
                    f"{where}: {said}; this bot has a webhook set, so it cannot be polled: "
                    "call deleteWebhook, or give the broadcaster a bot of its own",
                    status=409,
                )
            return TransientError(
                f"{where}: {said}; another process is polling this bot", status=409
            )
        if isinstance(error, BadRequest):
            lowered = said.lower()
            if any(
                phrase in lowered
                for phrase in ("chat not found", "not enough rights", "administrator rights")
            ):
                return AuthError(
                    f"{where}: Telegram refused to {doing} ({said}); check chat_id and that "
                    "the bot is an administrator of the channel allowed to post",
                    status=400,
                )
            return PermanentError(
                f"{where}: Telegram refused to {doing} ({said}); it will refuse it again as it is",
                status=400,
            )
        if isinstance(error, NetworkError):
            never_sent = isinstance(error.__cause__, httpx.ConnectError | httpx.ConnectTimeout)
            never_sent = never_sent or "Pool timeout" in said
            kind = "timed out" if isinstance(error, TimedOut) else said
            if writes and not never_sent:
                return AmbiguousError(
                    f"{where}: the request failed ({kind}) while trying to {doing}; the "
                    "message may exist: reconcile before sending again"
                )
            return TransientError(f"{where}: the request failed ({kind}) while trying to {doing}")
        if writes:
            return AmbiguousError(
                f"{where}: unexpected answer ({said}) while trying to {doing}; the message "
                "may exist: reconcile before sending again"
            )
        return TransientError(f"{where}: unexpected answer ({said}) while trying to {doing}")

    def _redact(self, text: str) -> str:
        return _TOKEN.sub("<bot-token>", text.replace(self._token, "<bot-token>"))

    def _receipt(self, message_id: int, date: datetime | None) -> Receipt:
        chat = self.settings.chat_id
        username = chat.removeprefix("@") if chat.startswith("@") else None
        numeric = int(chat) if username is None else 0
        return Receipt(
            channel=self.name,
            target=self.target.name,
            external_id=str(message_id),
            url=_message_url(numeric, username, message_id),
            posted_at=date.astimezone(UTC) if date else None,
            extra={"chat_id": chat},
        )

    async def aclose(self) -> None:
        # Shut the request objects down directly: Bot.shutdown() only does so after
        # initialize(), which this adapter never calls (it would put the token in an error).
        for request in self._requests:
            await request.shutdown()


def _texts(version: AlertVersion, *, max_parts: int) -> list[str]:
    """The message texts for `version`: every language, first language first, split into at
    most `max_parts` numbered parts."""
    content = version.content
    paragraphs: list[str] = []
    for index, info in enumerate(content.infos):
        if index:
            paragraphs.append(LANGUAGE_DIVIDER)
        paragraphs.extend(alert_paragraphs(version, info))
    return split_numbered(
        paragraphs,
        limit=TELEGRAM_LIMIT,
        measure=telegram_length,
        marking=EXERCISE_MARKING if is_exercise(content.status) else None,
        max_parts=max_parts,
    )


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _message_url(chat_id: int, username: str | None, message_id: int) -> str | None:
    if username:
        return f"https://t.me/{username}/{message_id}"
    text = str(chat_id)
    if text.startswith("-100"):
        return f"https://t.me/c/{text[4:]}/{message_id}"
    return None
