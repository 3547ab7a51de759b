"""A local Twilio Messages API: what SmsChannel (through the twilio library) talks to in tests.

Faithful where it matters to the adapter:
- HTTP basic auth (account SID + auth token); wrong → 401 with Twilio's error 20003 body.
- POST /2010-04-01/Accounts/{Sid}/Messages.json (form) → 201 with the Message resource
  (status "queued", num_segments counted by the 3GPP rules in channels.sms_text); Twilio's
  error bodies {"code", "message", "more_info", "status"}: 21604/21211 bad To, 21603/21606
  bad From, 21602 empty body, 21617 body over 1600 characters, 21610 recipient opted out.
- GET .../Messages.json with To, From, DateSent, DateSent<, DateSent> filters, newest first,
  paged; GET .../Messages/{Sid}.json.
- Default opt-out handling on inbound texts: STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT opt
  the sender out (sends to them then fail with 21610) until START, YES or UNSTOP; HELP and INFO
  get the help answer. Twilio still forwards keyword messages to the webhook, with OptOutType.
- Inbound texts are POSTed to `webhook_url` as Twilio does: a form signed with
  X-Twilio-Signature (HMAC-SHA1 of URL + sorted fields, keyed with the auth token).
- 429 with error 20429 and Retry-After; 5xx with Twilio's 20500/20503 bodies.

Effects: "post" {id, text, to, reply_to, from, num_segments} for each message sent through the
API; "opt_out"/"opt_in" {phone}; "auto_reply" {id, to, text} for Twilio's own answers;
"reply_generated" {id, text, from, in_reply_to}; "webhook" {status} for each delivery.
"""

from __future__ import annotations

import base64
import functools
import hmac
import itertools
import re
import secrets
from datetime import UTC, date, datetime
from email.utils import format_datetime
from hashlib import sha1
from typing import Any, ClassVar, Final
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from channels.base import Channel, Target, TargetMode
from channels.emulators.base import Emulator
from channels.sms import E164, SmsChannel, SmsSettings
from channels.sms_text import Keyword, classify_keyword, segment_count

__all__ = ["ACCOUNT_SID", "AUTH_TOKEN", "EMULATOR", "FROM_NUMBER", "TwilioEmulator"]

ACCOUNT_SID: Final = "AC" + "5e1f0b7a9c3d4e6f" * 2
AUTH_TOKEN: Final = "9f3c2a7b1e4d6c8f0a5b3e7d9c1f2a4b"  # noqa: S105 (the emulator's own)
# Twilio's documented magic "From" number for test credentials: valid and SMS-capable.
FROM_NUMBER: Final = "+15005550006"
API_VERSION: Final = "2010-04-01"
BODY_MAX: Final = 1600
_E164 = re.compile(E164)
# North American numbers: +1, a 3-digit area code and 7-digit number, neither starting 0 or 1.
_NANP = re.compile(r"^\+1[2-9][0-9]{2}[2-9][0-9]{6}$")
_BASIC: Final = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()

# Twilio's default answers to carrier keywords (Messaging > Opt-out management, defaults).
STOP_REPLY: Final = (
    "You have successfully been unsubscribed. You will not receive any more messages from this "
    "number. Reply START to resubscribe."
)
START_REPLY: Final = (
    "You have successfully been re-subscribed to messages from this number. Reply HELP for help. "
    "Reply STOP to unsubscribe. Msg&Data Rates May Apply."
)
HELP_REPLY: Final = "Reply STOP to unsubscribe. Msg&Data Rates May Apply."
_AUTO_REPLIES: Final = {
    Keyword.stop: STOP_REPLY,
    Keyword.start: START_REPLY,
    Keyword.help: HELP_REPLY,
}
DEFAULT_REPLY: Final = "Is the shelter on Main Street open?"


@functools.lru_cache(maxsize=8)
def _rfc2822(when: datetime) -> str:
    """Twilio's date format. Times are whole seconds, so a burst of messages shares a handful:
    formatting each again was a twentieth of what the emulator spent on a message."""
    return format_datetime(when)


def _error(code: int, message: str, status: int, **headers: str) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
        headers=headers,
    )


def sign(auth_token: str, url: str, fields: dict[str, str]) -> str:
    """Twilio's request signature, written out independently of the adapter's."""
    data = url
    for name in sorted(fields):
        data += name + fields[name]
    mac = hmac.new(auth_token.encode(), data.encode(), sha1)
    return base64.b64encode(mac.digest()).decode()


def _parse_when(value: str) -> date | datetime:
    """DateSent filter values: a date (YYYY-MM-DD) or a full ISO-8601 time."""
    if len(value) == 10:
        return date.fromisoformat(value)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _compare(sent: datetime, bound: date | datetime) -> int:
    if isinstance(bound, datetime):
        return (sent > bound) - (sent < bound)
    day = sent.date()
    return (day > bound) - (day < bound)


class TwilioEmulator(Emulator):
    name: ClassVar[str] = "sms"
    sample_recipient: ClassVar[str | None] = "+12025550142"

    def __init__(self) -> None:
        self.messages: dict[str, dict[str, Any]] = {}  # SID -> resource, in creation order
        self._sent_at: dict[str, datetime] = {}
        # Numbers that replied STOP. One sender per emulator, so one set: Twilio keeps opt-outs
        # per sender (number or Messaging Service).
        self.opted_out: set[str] = set()
        self.owned_numbers: set[str] = {FROM_NUMBER}
        self.messaging_service_sid = "MG" + "7c0d" * 8
        self._sids = itertools.count(1)
        super().__init__()

    # --- wiring --------------------------------------------------------------------------------

    def target(
        self,
        name: str = "test",
        mode: TargetMode = TargetMode.live,
        *,
        valid_credentials: bool = True,
        timeout_seconds: float = 10.0,
    ) -> Target:
        settings = SmsSettings(
            name=name,
            mode=mode,
            base_url=self.url,
            timeout_seconds=timeout_seconds,
            account_sid=ACCOUNT_SID,
            from_number=FROM_NUMBER,
        )
        token = AUTH_TOKEN if valid_credentials else "0badc0de" * 4
        return Target(settings=settings, credentials={"auth_token": SecretStr(token)})

    def channel(self, target: Target) -> Channel:
        return SmsChannel(target)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        root = f"/{API_VERSION}/Accounts/{{sid}}"
        router.add_post(f"{root}/Messages.json", self._create)
        router.add_get(f"{root}/Messages.json", self._list)
        router.add_get(f"{root}/Messages/{{message_sid}}.json", self._fetch)

    def rate_limited(self, request: web.Request, retry_after: float) -> web.StreamResponse:
        return _error(20429, "Too Many Requests", 429, **{"Retry-After": str(round(retry_after))})

    def server_error(self, request: web.Request, status: int) -> web.StreamResponse:
        if status == 503:
            return _error(20503, "Service Unavailable", 503)
        return _error(20500, "Internal Server Error", status)

    def reset_state(self) -> None:
        self.messages.clear()
        self._sent_at.clear()
        self.opted_out.clear()

    # --- helpers -------------------------------------------------------------------------------

    def _new_sid(self) -> str:
        return f"SM{next(self._sids):08x}{secrets.token_hex(12)}"

    def _authorised(self, request: web.Request) -> web.Response | None:
        expected = _BASIC.encode()
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), expected):
            response = _error(20003, "Authenticate", 401)
            response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            return response
        if request.match_info["sid"] != ACCOUNT_SID:
            return _error(20404, f"The requested resource {request.path} was not found", 404)
        return None

    def _resource(
        self,
        sid: str,
        *,
        to: str,
        from_: str,
        body: str,
        direction: str,
        status: str,
        created: datetime,
        service: str | None = None,
    ) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{ACCOUNT_SID}/Messages/{sid}.json"
        stamp = _rfc2822(created)
        return {
            "account_sid": ACCOUNT_SID,
            "api_version": API_VERSION,
            "body": body,
            "date_created": stamp,
            "date_sent": None,
            "date_updated": stamp,
            "direction": direction,
            "error_code": None,
            "error_message": None,
            "from": from_,
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": str(segment_count(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": status,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": to,
            "uri": uri,
        }

    def _store(self, resource: dict[str, Any], created: datetime, *, sent: bool) -> None:
        stored = dict(resource)
        if sent:  # the emulated carrier hands it over at once
            stored["status"] = "delivered" if stored["direction"] != "inbound" else "received"
            stored["date_sent"] = resource["date_created"]
            self._sent_at[resource["sid"]] = created
        self.messages[resource["sid"]] = stored

    # --- the Messages API ----------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.StreamResponse:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        form = await request.post()
        to = str(form.get("To", "")).strip()
        from_ = str(form.get("From", "")).strip()
        service = str(form.get("MessagingServiceSid", "")).strip() or None
        body = str(form.get("Body", ""))
        if not to:
            return _error(21604, "A 'To' phone number is required.", 400)
        if not _E164.match(to) or (to.startswith("+1") and not _NANP.match(to)):
            return _error(21211, f"The 'To' number {to} is not a valid phone number.", 400)
        if not from_ and service is None:
            return _error(21603, "A 'From' phone number is required.", 400)
        if service is not None and service != self.messaging_service_sid:
            return _error(21705, f"The Messaging Service Sid {service} is invalid.", 400)
        if from_ and from_ not in self.owned_numbers:
            return _error(
                21606,
                f"The From phone number {from_} is not a valid, SMS-capable inbound phone "
                "number or short code for your account.",
                400,
            )
        if not body:
            return _error(21602, "Message body is required.", 400)
        if len(body) > BODY_MAX:
            return _error(
                21617, "The concatenated message body exceeds the 1600 character limit.", 400
            )
        if to in self.opted_out:
            return _error(21610, "Attempt to send to unsubscribed recipient", 400)
        created = datetime.now(UTC).replace(microsecond=0)
        sid = self._new_sid()
        resource = self._resource(
            sid,
            to=to,
            from_=from_ or FROM_NUMBER,
            body=body,
            direction="outbound-api",
            status="queued",
            created=created,
            service=service,
        )
        self._store(resource, created, sent=True)
        self.record(
            "post",
            id=sid,
            text=body,
            to=to,
            reply_to=None,
            **{"from": resource["from"]},
            num_segments=int(resource["num_segments"]),
        )
        return web.json_response(resource, status=201)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        query = request.query
        try:
            exact = _parse_when(query["DateSent"]) if "DateSent" in query else None
            before = _parse_when(query["DateSent<"]) if "DateSent<" in query else None
            after = _parse_when(query["DateSent>"]) if "DateSent>" in query else None
            page_size = min(1000, max(1, int(query.get("PageSize", "50"))))
            page = max(0, int(query.get("Page", "0")))
        except ValueError as error:
            return _error(20001, f"Invalid parameter: {error}", 400)
        chosen = []
        for sid, message in reversed(self.messages.items()):  # newest first
            if "To" in query and message["to"] != query["To"]:
                continue
            if "From" in query and message["from"] != query["From"]:
                continue
            sent = self._sent_at.get(sid)
            if exact or before or after:
                if sent is None:
                    continue  # not sent yet: no date_sent to filter on
                if exact is not None and _compare(sent, exact) != 0:
                    continue
                if before is not None and _compare(sent, before) > 0:
                    continue
                if after is not None and _compare(sent, after) < 0:
                    continue
            chosen.append(message)
        start = page * page_size
        window = chosen[start : start + page_size]
        base = f"/{API_VERSION}/Accounts/{ACCOUNT_SID}/Messages.json"
        filters = {k: v for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")}

        def page_uri(number: int) -> str:
            return f"{base}?{urlencode({**filters, 'PageSize': page_size, 'Page': number})}"

        more = start + page_size < len(chosen)
        return web.json_response(
            {
                "messages": window,
                "end": start + max(0, len(window) - 1),
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1) if more else None,
                "page": page,
                "page_size": page_size,
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
                "start": start,
                "uri": page_uri(page),
            }
        )

    async def _fetch(self, request: web.Request) -> web.StreamResponse:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        message = self.messages.get(request.match_info["message_sid"])
        if message is None:
            return _error(20404, f"The requested resource {request.path} was not found", 404)
        return web.json_response(message)

    # --- the public texting back ---------------------------------------------------------------

    async def receive(self, sender: str, text: str, *, in_reply_to: str | None = None) -> str:
        """An SMS from `sender` to our number, handled as Twilio does; returns its SID."""
        created = datetime.now(UTC).replace(microsecond=0)
        sid = self._new_sid()
        resource = self._resource(
            sid,
            to=FROM_NUMBER,
            from_=sender,
            body=text,
            direction="inbound",
            status="received",
            created=created,
        )
        self._store(resource, created, sent=True)
        keyword = classify_keyword(text)
        self.record(
            "reply_generated", id=sid, text=text, in_reply_to=in_reply_to, **{"from": sender}
        )
        if keyword is Keyword.stop:
            self.opted_out.add(sender)
            self.record("opt_out", phone=sender)
        elif keyword is Keyword.start:
            self.opted_out.discard(sender)
            self.record("opt_in", phone=sender)
        if keyword is not None:
            await self._auto_reply(sender, _AUTO_REPLIES[keyword])
        await self._deliver(resource, keyword)
        return sid

    async def _auto_reply(self, phone: str, text: str) -> None:
        created = datetime.now(UTC).replace(microsecond=0)
        sid = self._new_sid()
        resource = self._resource(
            sid,
            to=phone,
            from_=FROM_NUMBER,
            body=text,
            direction="outbound-reply",
            status="queued",
            created=created,
        )
        self._store(resource, created, sent=True)
        self.record("auto_reply", id=sid, to=phone, text=text)

    async def _deliver(self, resource: dict[str, Any], keyword: Keyword | None) -> None:
        if self.webhook_url is None:
            return
        fields = {
            "ToCountry": "US",
            "ToState": "CA",
            "SmsMessageSid": resource["sid"],
            "NumMedia": "0",
            "ToCity": "",
            "FromZip": "",
            "SmsSid": resource["sid"],
            "FromState": "",
            "SmsStatus": "received",
            "FromCity": "",
            "Body": resource["body"],
            "FromCountry": "US",
            "To": resource["to"],
            "ToZip": "",
            "NumSegments": resource["num_segments"],
            "MessageSid": resource["sid"],
            "AccountSid": ACCOUNT_SID,
            "From": resource["from"],
            "ApiVersion": API_VERSION,
        }
        if keyword is not None:  # Advanced Opt-Out names the keyword's kind
            fields["OptOutType"] = keyword.value.upper()
        headers = {
            "X-Twilio-Signature": sign(AUTH_TOKEN, self.webhook_url, fields),
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }
        # Twilio waits up to 15 seconds for the webhook's answer.
        timeout = aiohttp.ClientTimeout(total=15)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.webhook_url, data=fields, headers=headers) as answer,
            ):
                await answer.read()
                self.record("webhook", id=resource["sid"], status=answer.status)
        except (aiohttp.ClientError, TimeoutError) as error:
            # Twilio logs error 11200 (HTTP retrieval failure) and does not retry an SMS webhook.
            self.record("webhook", id=resource["sid"], status=None, error=type(error).__name__)

    async def generate_replies(
        self, count: int, text: str | None, to: str | None
    ) -> list[dict[str, Any]]:
        if to is not None:
            original = self.messages.get(to)
            if original is None:
                raise web.HTTPNotFound(text=f"no message {to} to reply to")
        else:
            outbound = [m for m in self.messages.values() if m["direction"] == "outbound-api"]
            original = outbound[-1] if outbound else None
        sender = original["to"] if original else self.sample_recipient
        assert sender is not None
        made = []
        for _ in range(count):
            body = text or DEFAULT_REPLY
            sid = await self.receive(
                sender, body, in_reply_to=original["sid"] if original else None
            )
            made.append({"id": sid, "text": body, "from": sender, "to": FROM_NUMBER})
        return made


EMULATOR = TwilioEmulator
