"""The Telegram Bot API for one bot, one channel and the channel's linked discussion group.

Faithful where it matters: the token in the path (401 "Unauthorized" for a wrong one, 404 "Not
Found" for a malformed one or an unknown method); parameters from the query string, a form or
JSON, nested objects as JSON strings, as the Bot API takes them; 4096-character texts counted in
UTF-16 code units; Telegram's own 400 descriptions; flood control at 20 messages a minute per
chat, answered with 429 and parameters.retry_after; every channel post copied into the
discussion group as an automatic forward (that is where comments hang); getUpdates with
offset confirmation (updates before the offset are forgotten), no updates for the bot's own
posts, and 409 Conflict while a webhook is set.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import string
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from aiohttp import web
from pydantic import SecretStr

from channels.base import Channel, Target, TargetMode
from channels.emulators.base import Emulator
from channels.telegram import TelegramChannel, TelegramSettings

__all__ = ["EMULATOR", "TelegramEmulator"]

MAX_TEXT: Final = 4096
FLOOD_LIMIT: Final = 20  # messages per chat per FLOOD_WINDOW
FLOOD_WINDOW: Final = 60.0
TELEGRAM_SERVICE_USER: Final = {"id": 777000, "is_bot": False, "first_name": "Telegram"}
_TOKEN_SHAPE = re.compile(r"\d+:[A-Za-z0-9_-]{35}")


def _token(bot_id: int) -> str:
    alphabet = string.ascii_letters + string.digits + "_-"
    return f"{bot_id}:" + "".join(secrets.choice(alphabet) for _ in range(35))


class _Refusal(Exception):
    """A Bot API error answer: {"ok": false, "error_code": ..., "description": ...}."""

    def __init__(
        self, code: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


class TelegramEmulator(Emulator):
    name: ClassVar[str] = "telegram"

    def __init__(self) -> None:
        super().__init__()
        self.bot_id = 7_100_000_001
        self.token = _token(self.bot_id)
        self.channel_chat: dict[str, Any] = {
            "id": -1_001_000_000_001,
            "title": "County Alerts (emulator)",
            "username": "county_alerts_emu",
            "type": "channel",
        }
        self.group_chat: dict[str, Any] = {
            "id": -1_001_000_000_002,
            "title": "County Alerts discussion (emulator)",
            "username": "county_alerts_chat_emu",
            "type": "supergroup",
        }
        self.public = [
            {"id": 5_000_000_000 + n, "is_bot": False, "first_name": f"Resident {n}"}
            | ({"username": f"resident{n}"} if n % 2 else {})
            for n in range(1, 6)
        ]
        self.reset_state()

    def reset_state(self) -> None:
        self.messages: dict[int, dict[int, dict[str, Any]]] = {
            self.channel_chat["id"]: {},
            self.group_chat["id"]: {},
        }
        self._message_ids = {chat: itertools.count(1) for chat in self.messages}
        self.forward_of: dict[int, int] = {}  # channel post id -> its automatic forward's id
        self.updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(600_000_001)
        self.webhook: str | None = None
        self.bot_in_channel = True  # False: an owner removed the bot from the channel
        self._sent: dict[int, deque[float]] = {}
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
        token = self.token if valid_credentials else _token(self.bot_id)
        settings = TelegramSettings(
            name=name,
            mode=mode,
            base_url=self.url,
            timeout_seconds=timeout_seconds,
            chat_id="@" + self.channel_chat["username"],
        )
        return Target(settings, {"bot_token": SecretStr(token)})

    def channel(self, target: Target) -> Channel:
        return TelegramChannel(target)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", "/bot{token}/{method}", self._api)

    # --- the platform's own failures ---------------------------------------------------------

    def rate_limited(self, request: web.Request, retry_after: float) -> web.StreamResponse:
        return _refusal(
            429,
            f"Too Many Requests: retry after {int(retry_after)}",
            parameters={"retry_after": int(retry_after)},
        )

    def server_error(self, request: web.Request, status: int) -> web.StreamResponse:
        if status == 500:
            return _refusal(500, "Internal Server Error")
        # Gateway errors come from the nginx in front of the Bot API: HTML, not JSON.
        reason = {
            502: "Bad Gateway",
            503: "Service Temporarily Unavailable",
            504: "Gateway Time-out",
        }
        title = f"{status} {reason.get(status, 'Error')}"
        page = (
            f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>"
        )
        return web.Response(status=status, text=page, content_type="text/html")

    # --- the Bot API ---------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        if not _TOKEN_SHAPE.fullmatch(token):
            return _refusal(404, "Not Found")
        if not secrets.compare_digest(token, self.token):
            return _refusal(401, "Unauthorized")
        method = request.match_info["method"].lower()
        handler = {
            "getme": self._get_me,
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_message_text,
            "deletemessage": self._delete_message,
            "getupdates": self._get_updates,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
        }.get(method)
        if handler is None:
            return _refusal(404, "Not Found")
        try:
            result = handler(await _params(request))
        except _Refusal as refusal:
            return _refusal(refusal.code, refusal.description, parameters=refusal.parameters)
        return web.json_response({"ok": True, "result": result})

    def _get_me(self, _params: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "County Alerts Bot",
            "username": "county_alerts_emu_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _send_message(self, params: Mapping[str, Any]) -> dict[str, Any]:
        chat = self._chat(params.get("chat_id"))
        text = _text(params)
        if params.get("parse_mode") not in (None, "", "HTML", "Markdown", "MarkdownV2"):
            raise _Refusal(400, "Bad Request: unsupported parse_mode")
        reply = _reply_parameters(params)
        replied = None
        if reply is not None:
            replied = self.messages[chat["id"]].get(int(reply["message_id"]))
            if replied is None and not reply.get("allow_sending_without_reply"):
                raise _Refusal(400, "Bad Request: message to be replied not found")
        self._flood_check(chat["id"])
        message = self._new_message(chat, text, sender_chat=chat, replied=replied)
        self.record(
            "post",
            id=str(message["message_id"]),
            text=text,
            reply_to=str(replied["message_id"]) if replied else None,
            chat_id=chat["id"],
        )
        if chat is self.channel_chat:
            self._forward_to_discussion(message)
        return message

    def _edit_message_text(self, params: Mapping[str, Any]) -> dict[str, Any]:
        chat = self._chat(params.get("chat_id"))
        message = self.messages[chat["id"]].get(_int(params.get("message_id")))
        if message is None:
            raise _Refusal(400, "Bad Request: message to edit not found")
        if message.get("sender_chat") is not self.channel_chat or chat is not self.channel_chat:
            raise _Refusal(400, "Bad Request: message can't be edited")
        text = _text(params)
        if text == message["text"]:
            raise _Refusal(
                400,
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message",
            )
        message["text"] = text
        message["edit_date"] = int(time.time())
        self.record("edit", id=str(message["message_id"]), text=text)
        # Telegram keeps the discussion group's copy in step with the channel post.
        forward = self.forward_of.get(message["message_id"])
        if forward is not None:
            self.messages[self.group_chat["id"]][forward]["text"] = text
        return message

    def _delete_message(self, params: Mapping[str, Any]) -> bool:
        chat = self._chat(params.get("chat_id"))
        message_id = _int(params.get("message_id"))
        message = self.messages[chat["id"]].get(message_id)
        if message is None:
            raise _Refusal(400, "Bad Request: message to delete not found")
        if time.time() - message["date"] > 48 * 3600:
            raise _Refusal(400, "Bad Request: message can't be deleted")
        del self.messages[chat["id"]][message_id]
        self.record("delete", id=str(message_id))
        return True

    def _get_updates(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise _Refusal(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        offset = params.get("offset")
        limit = max(1, min(_int(params.get("limit", 100)), 100))
        if offset is not None:
            offset = _int(offset)
            if offset < 0:
                self.updates = self.updates[offset:]
            else:
                # Confirmed: Telegram forgets every update before the offset.
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
        return self.updates[:limit]

    def _set_webhook(self, params: Mapping[str, Any]) -> bool:
        self.webhook = str(params.get("url") or "") or None
        return True

    def _delete_webhook(self, _params: Mapping[str, Any]) -> bool:
        self.webhook = None
        return True

    # --- public replies ------------------------------------------------------------------------

    async def generate_replies(
        self, count: int, text: str | None, to: str | None
    ) -> list[dict[str, Any]]:
        """Residents comment on channel post `to` (or the newest): a message in the discussion
        group replying to the post's automatic forward, delivered to the bot as an update."""
        posts = self.messages[self.channel_chat["id"]]
        post_id = int(to) if to else (max(posts) if posts else None)
        if post_id is None or post_id not in self.forward_of:
            raise web.HTTPNotFound(text=f"no channel post {to!r} with comments")
        forward = self.messages[self.group_chat["id"]][self.forward_of[post_id]]
        made: list[dict[str, Any]] = []
        for _ in range(count):
            number = next(self._replies)
            author = self.public[(number - 1) % len(self.public)]
            body = text or f"Comment {number}: what should we do?"
            comment = self._new_message(self.group_chat, body, from_user=author, replied=forward)
            comment["message_thread_id"] = forward["message_id"]
            self._push_update(comment)
            self.record(
                "reply_generated", id=str(comment["message_id"]), text=body, to=str(post_id)
            )
            made.append(comment)
        return made

    def public_message(
        self,
        text: str,
        *,
        private: bool = False,
        reply_to: int | None = None,
        location: tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        """Someone writes to the bot directly (`private`), or in the discussion group, as a
        reply to group message `reply_to` (a comment, or a post's automatic forward)."""
        author = self.public[next(self._replies) % len(self.public)]
        chat: dict[str, Any]
        if private:
            chat = {"id": author["id"], "first_name": author["first_name"], "type": "private"}
            self.messages.setdefault(chat["id"], {})
            self._message_ids.setdefault(chat["id"], itertools.count(1))
        else:
            chat = self.group_chat
        group = self.messages[self.group_chat["id"]]
        replied = group.get(reply_to) if reply_to is not None else None
        message = self._new_message(chat, text, from_user=author, replied=replied)
        if replied is not None:
            thread = replied.get("message_thread_id", replied["message_id"])
            message["message_thread_id"] = thread
        if location is not None:
            message["location"] = {"latitude": location[0], "longitude": location[1]}
            if not text:
                del message["text"]
        self._push_update(message)
        return message

    # --- helpers -------------------------------------------------------------------------------

    def _chat(self, chat_id: object) -> dict[str, Any]:
        for chat in (self.channel_chat, self.group_chat):
            if str(chat_id) in (str(chat["id"]), "@" + chat["username"]):
                if chat is self.channel_chat and not self.bot_in_channel:
                    raise _Refusal(403, "Forbidden: bot is not a member of the channel chat")
                return chat
        raise _Refusal(400, "Bad Request: chat not found")

    def _flood_check(self, chat_id: int) -> None:
        now = time.monotonic()
        sent = self._sent.setdefault(chat_id, deque())
        while sent and now - sent[0] >= FLOOD_WINDOW:
            sent.popleft()
        if len(sent) >= FLOOD_LIMIT:
            wait = max(1, int(FLOOD_WINDOW - (now - sent[0])) + 1)
            raise _Refusal(
                429, f"Too Many Requests: retry after {wait}", parameters={"retry_after": wait}
            )
        sent.append(now)

    def _new_message(
        self,
        chat: dict[str, Any],
        text: str,
        *,
        sender_chat: dict[str, Any] | None = None,
        from_user: dict[str, Any] | None = None,
        replied: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": next(self._message_ids[chat["id"]]),
            "date": int(time.time()),
            "chat": chat,
            "text": text,
        }
        if sender_chat is not None:
            message["sender_chat"] = sender_chat
        if from_user is not None:
            message["from"] = from_user
        if replied is not None:
            # Telegram nests the replied-to message one level deep, without its own reply.
            message["reply_to_message"] = {
                k: v for k, v in replied.items() if k != "reply_to_message"
            }
        self.messages[chat["id"]][message["message_id"]] = message
        return message

    def _forward_to_discussion(self, post: dict[str, Any]) -> None:
        """Telegram copies each channel post into the linked group. The bot gets no update for
        its own post, but does for this copy (from the Telegram service account)."""
        forward = self._new_message(self.group_chat, post["text"], sender_chat=self.channel_chat)
        forward |= {
            "from": TELEGRAM_SERVICE_USER,
            "is_automatic_forward": True,
            "forward_origin": {
                "type": "channel",
                "chat": self.channel_chat,
                "message_id": post["message_id"],
                "date": post["date"],
            },
        }
        self.forward_of[post["message_id"]] = forward["message_id"]
        self._push_update(forward)

    def _push_update(self, message: dict[str, Any]) -> None:
        self.updates.append({"update_id": next(self._update_ids), "message": message})


def _refusal(
    code: int, description: str, *, parameters: dict[str, Any] | None = None
) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=code)


async def _params(request: web.Request) -> dict[str, Any]:
    """The Bot API takes parameters in the query string, a form, or a JSON body."""
    params: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        else:
            params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    return params


def _text(params: Mapping[str, Any]) -> str:
    text = str(params.get("text") or "").strip()
    if not text:
        raise _Refusal(400, "Bad Request: message text is empty")
    if len(text.encode("utf-16-le")) // 2 > MAX_TEXT:
        raise _Refusal(400, "Bad Request: message is too long")
    return text


def _reply_parameters(params: Mapping[str, Any]) -> dict[str, Any] | None:
    raw = params.get("reply_parameters")
    if raw:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(parsed, dict) or "message_id" not in parsed:
            raise _Refusal(400, "Bad Request: invalid reply parameters specified")
        return parsed
    if params.get("reply_to_message_id"):
        allow = str(params.get("allow_sending_without_reply", "")).lower() == "true"
        return {"message_id": params["reply_to_message_id"], "allow_sending_without_reply": allow}
    return None


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise _Refusal(400, f"Bad Request: invalid integer value {value!r}") from None


EMULATOR = TelegramEmulator
