"""Telegram: an alert as a channel post (numbered replies when long); comments polled back.

The bot posts to a channel where it is an administrator allowed to post. Comments come from the
channel's linked discussion group, where Telegram copies every channel post as an "automatic
forward"; the bot, an administrator there too, receives those copies and the comments answering
them through getUpdates.

Telegram has no idempotency keys, and the Bot API cannot read a channel's history, and bots get
no update for their own channel posts. What the bot does get is the automatic forward of each
post into the discussion group, carrying the post's text and channel message id: that is how
`find_published` reconciles. getUpdates is a single queue that forgets what an offset confirms,
so every update read is first kept in an inbox (channels/telegram_inbox.py; the service keeps it
in its database, shared by all its processes), and both reconciliation and `fetch_inbound`
answer from the inbox. Without a linked discussion group nothing can be reconciled and
`find_published` answers None: a retry may then post twice, which for an emergency alert is the
lesser harm than not posting at all.

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
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Final, TypeVar

import httpx
from pydantic import field_validator
from telegram import Bot, Message, MessageOriginChannel, ReplyParameters, Update
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
from channels.telegram_inbox import KeptUpdate, MemoryUpdateInbox, PostForward, UpdateInbox

__all__ = ["TELEGRAM_LIMIT", "TelegramChannel", "TelegramSettings", "telegram_length"]

# PTB reads this at each call, not at import: set before any request can meet a 429 (see the
# module docstring). An operator's explicit setting wins.
os.environ.setdefault("PTB_TIMEDELTA", "true")

TELEGRAM_LIMIT: Final = 4096
MAX_PARTS: Final = 4  # 16k characters; past that the linked alert page carries the rest
LANGUAGE_DIVIDER: Final = "———"
DEFAULT_API: Final = "https://api.telegram.org"
UPDATES_PAGE: Final = 100  # getUpdates' maximum
# Pages read in one go: a reconciliation must see past a backlog nobody polled (a busy channel's
# forwards), and the rest waits for the next read.
MAX_UPDATE_PAGES: Final = 20

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
        # Every update read is kept here before its offset is confirmed (see the docstring).
        self._inbox: UpdateInbox = MemoryUpdateInbox()

    def keep_updates_in(self, inbox: UpdateInbox) -> None:
        """Keep updates in `inbox` (the service's database) rather than in this process."""
        self._inbox = inbox

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
        the discussion group, among every update read so far (by any process sharing the
        inbox). Newest first."""
        await self._read_updates()
        forward = await self._inbox.forward_with_text(post.text)
        return None if forward is None else self._receipt(forward.post_id, forward.posted_at)

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
        """Messages the bot received from update `cursor` on: comments in the discussion
        group and direct messages to the bot. They are read from the inbox (after reading
        getUpdates into it), so a process that reconciled and confirmed them loses none; the
        cursor is the update id to read from next time."""
        start = int(cursor) if cursor else None
        read_to = await self._read_updates()
        if start is not None and read_to is not None and read_to < start:
            # Everything kept is older than the cursor: after a week without updates Telegram
            # numbers them afresh, from a random point. Read all that is kept (taking in a
            # message twice is harmless: ingestion knows it).
            start = None
        elif start is not None:
            # The caller stored what came before its cursor: the people's messages need not
            # wait here any longer (their reports have retention rules of their own).
            await self._inbox.forget_messages_before(start)
        limit = UPDATES_PAGE * MAX_UPDATE_PAGES
        kept = await self._inbox.messages_from(start, limit)
        messages: list[InboundMessage] = []
        for update in kept:
            message = Update.de_json(dict(update.body), self._bot).message
            inbound = None if message is None else await self._inbound(message)
            if inbound is not None:
                messages.append(inbound)
        if len(kept) == limit:  # more are kept: go on from the next one
            return messages, str(kept[-1].update_id + 1)
        # Everything kept up to `read_to` has been seen (the inbox has no gaps below it).
        if read_to is None or (start is not None and start > read_to):
            return messages, cursor
        return messages, str(read_to)

    async def _read_updates(self) -> int | None:
        """Read every pending update into the inbox, confirming to Telegram only what the
        inbox holds; answer the offset one past the newest update kept (None: none kept)."""
        offset = await self._inbox.next_offset()
        for _ in range(MAX_UPDATE_PAGES):
            # The offset confirms every update before it: the inbox already keeps those.
            updates = await self._call(
                "read updates",
                self._bot.get_updates(offset=offset, timeout=0, limit=UPDATES_PAGE),
            )
            if not updates:
                break
            await self._inbox.keep([self._kept(update) for update in updates])
            offset = updates[-1].update_id + 1
            if len(updates) < UPDATES_PAGE:
                break
        return offset

    def _kept(self, update: Update) -> KeptUpdate:
        message = update.message
        forward = None if message is None else self._forward_in(message)
        return KeptUpdate(update.update_id, update.to_dict(), forward)

    def _forward_in(self, message: Message) -> PostForward | None:
        """`message` as the forward of one of our channel posts, if it is Telegram's copy of
        one in the discussion group."""
        origin = message.forward_origin
        if not message.is_automatic_forward or not isinstance(origin, MessageOriginChannel):
            return None
        if not self._is_our_channel(origin.chat.id, origin.chat.username):
            return None
        return PostForward(origin.message_id, message.message_id, message.text or "", origin.date)

    def _is_our_channel(self, chat_id: int, username: str | None) -> bool:
        if isinstance(self._chat_id, int):
            return chat_id == self._chat_id
        return (username or "").lower() == self._chat_id.removeprefix("@").lower()

    async def _inbound(self, message: Message) -> InboundMessage | None:
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
            in_reply_to=await self._answered_post(message),
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

    async def _answered_post(self, message: Message) -> str | None:
        """The channel post a comment answers: the automatic forward it replies to, or, for a
        reply to another comment, the forward that opened its thread."""
        replied = message.reply_to_message
        forward = None if replied is None else self._forward_in(replied)
        if forward is not None:
            return str(forward.post_id)
        for group_id in (replied.message_id if replied else None, message.message_thread_id):
            if group_id is not None:
                forward = await self._inbox.forward_in_group(group_id)
                if forward is not None:
                    return str(forward.post_id)
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
