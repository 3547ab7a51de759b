"""SMS through Twilio's Messages API (twilio 9.13, its aiohttp client), one message per recipient.

Rendering: one message per recipient in one language, at most `max_segments` segments (GSM-7
when the words allow, else UCS-2: see channels/sms_text.py): the exercise marking first, then the
headline, the instruction and the link to the full alert. `render` uses the alert's first
(primary) info block, so a dispatcher that knows nothing about languages still sends each person
exactly one message; `render_for_language` picks the info block in a contact's own language
(contacts carry one, see broadcaster/contacts.py). Sending every language to everyone would
multiply the cost and bury the message on a small screen; the link leads to all languages.

Twilio has no idempotency keys, so after an ambiguous failure `find_published` lists the recent
messages to that recipient from our sender and looks for exactly this body.

Inbound: Twilio POSTs each incoming SMS to our webhook signed with X-Twilio-Signature (HMAC-SHA1
of the URL plus the sorted form fields, keyed with the auth token). Carrier keywords (STOP, START,
HELP) are still returned, marked raw["keyword"], so the service records the opt-out
(broadcaster.contacts.record_keyword); Twilio itself then refuses sends to that number (21610).
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Final
from urllib.parse import parse_qsl, quote_plus, urlsplit, urlunsplit

import aiohttp
from pydantic import Field, model_validator
from twilio.base.deserialize import rfc2822_datetime  # type: ignore[import-untyped]
from twilio.base.exceptions import (  # type: ignore[import-untyped]
    TwilioException,
    TwilioRestException,
)
from twilio.http.async_http_client import AsyncTwilioHttpClient  # type: ignore[import-untyped]
from twilio.http.response import Response  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]

from approvals.alert import EXERCISE_MARKING, Info, is_exercise
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
    WebhookRejected,
)
from channels.sms_text import classify_keyword, encoding_of, gsm_friendly, segment_count

__all__ = [
    "MAX_SEGMENTS",
    "SmsChannel",
    "SmsSettings",
    "basic_authorization",
    "compose_sms",
    "info_for_language",
    "twilio_signature",
]

# The most segments one alert SMS may cost: 4 x 153 = 612 GSM-7 characters, 4 x 67 = 268 UCS-2.
# A target may set a lower budget; Limits is class data, so the ceiling is a constant here.
MAX_SEGMENTS: Final = 4
E164: Final = r"^\+[1-9][0-9]{1,14}$"
_E164 = re.compile(E164)
_SIGNATURE_HEADER: Final = "x-twilio-signature"
_ELLIPSIS: Final = "..."  # three GSM full stops: "…" is not in the GSM alphabet
_REMEMBERED_RECIPIENTS: Final = 10_000

# Twilio logs every request at INFO (URL with the account SID, every header): 9 lines per
# message is noise in a 100,000-message send, so its logger speaks only for warnings.
_twilio_log = logging.getLogger(f"{__name__}.twilio")
_twilio_log.setLevel(logging.WARNING)

# A send goes through the library's Version.create_async with the form and headers the Messages
# resource's create_async would build (twilio/rest/api/v2010/account/message), not through that
# resource: per message it lays out a 27-field form of which we fill three, then parses all 25
# fields of the answer into a MessageInstance (three RFC 2822 dates among them) when a receipt
# needs four. At 100,000 recipients that was a tenth of what a message cost us. Lookups
# (find_published) still go through the resource: they are rare, and read the messages whole.
_MESSAGE_HEADERS: Final = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Accept": "application/json",
}

# The last HTTP answer seen in this task: TwilioRestException drops the response headers, and
# Retry-After lives there. A ContextVar, because concurrent publishes run in separate tasks.
_last_response: ContextVar[Response | None] = ContextVar("twilio_last_response", default=None)


class SmsSettings(TargetSettings):
    """One Twilio sender. `base_url` (inherited) replaces https://api.twilio.com (emulators)."""

    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    # E.164 long code / toll-free number or a short code; or leave it out and send through a
    # Messaging Service, whose sender pool picks the number.
    from_number: str | None = Field(default=None, pattern=r"^(\+[1-9][0-9]{1,14}|[0-9]{5,6})$")
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")
    max_segments: int = Field(default=MAX_SEGMENTS, ge=1, le=MAX_SEGMENTS)
    # How far back find_published looks for the message after an ambiguous failure.
    reconcile_window_minutes: int = Field(default=180, ge=1, le=7 * 24 * 60)

    @model_validator(mode="after")
    def _has_sender(self) -> SmsSettings:
        if self.from_number is None and self.messaging_service_sid is None:
            raise ValueError(
                "set from_number (an E.164 number or short code on the Twilio account) or "
                "messaging_service_sid (MG...), so Twilio knows who the SMS is from"
            )
        return self


def basic_authorization(username: str, password: str) -> str:
    """An HTTP Basic Authorization header value (RFC 7617, UTF-8)."""
    pair = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


class _TwilioHttp(AsyncTwilioHttpClient):  # type: ignore[misc]
    """Twilio's aiohttp client (its `http_client` extension point), sending through the same
    aiohttp session with these repairs: it keeps each response for error mapping; it applies
    its timeout (the stock client stores `timeout` but sends every request with none); it sends
    basic auth as a header, because aiohttp 3.14 deprecates the BasicAuth object the stock
    client builds (a DeprecationWarning on every request, an error in aiohttp 4); and it does
    per request only what a request needs: at 100,000 recipients, the stock client's
    bookkeeping (a request record kept for its own tests, a timeout object, form encoding of
    the same message text again and again) was a good share of what a message costs."""

    def __init__(self, *, timeout: float, logger: logging.Logger) -> None:
        super().__init__(timeout=timeout, logger=logger, max_retries=None)
        self._client_timeout = aiohttp.ClientTimeout(total=timeout)
        # The last credentials and their header: the same pair on every request of a target.
        self._authorization: tuple[tuple[str, str], str] | None = None

    def log_request(self, kwargs: dict[str, Any]) -> None:
        # The stock client formats every request's URL, parameters and headers line by line
        # even when nobody listens; and what it writes (numbers, message text) is for a debug
        # session, never for the service's logs.
        if self.logger.isEnabledFor(logging.DEBUG):
            super().log_request(kwargs)

    def log_response(self, status_code: int, response: Response) -> None:
        if self.logger.isEnabledFor(logging.DEBUG):
            super().log_response(status_code, response)

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the library's signature)
        allow_redirects: bool = False,
    ) -> Response:
        _last_response.set(None)
        headers = dict(headers or {})
        if auth is not None:
            user, password = auth
            known = self._authorization
            if known is None or known[0] != (user, password):
                known = ((user, password), basic_authorization(user, password))
                self._authorization = known
            headers["Authorization"] = known[1]
        body: bytes | None = None
        if data:
            # Encoded here, as aiohttp would (application/x-www-form-urlencoded): handed a dict,
            # it builds a FormData and a multipart writer for every request.
            body = _form_encoded(data)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if timeout is not None and timeout <= 0:
            raise ValueError(timeout)
        kwargs: dict[str, Any] = {
            "method": method.upper(),
            "url": url,
            "params": params,
            "data": body,
            "headers": headers,
            "timeout": self._client_timeout
            if timeout is None
            else aiohttp.ClientTimeout(total=timeout),
            "allow_redirects": allow_redirects,
        }
        self.log_request(kwargs)
        async with self.session.request(**kwargs) as answer:
            # Twilio's API answers in JSON, which is UTF-8.
            text = (await answer.read()).decode("utf-8", errors="replace")
            response = Response(answer.status, text, answer.headers)
        self.log_response(response.status_code, response)
        _last_response.set(response)
        return response


def _form_encoded(data: Mapping[str, object]) -> bytes:
    """application/x-www-form-urlencoded, as urlencode(data, doseq=True) would write it."""
    pairs: list[str] = []
    for name, value in data.items():
        quoted_name = _quoted(str(name))
        if isinstance(value, list | tuple):
            pairs.extend(f"{quoted_name}={_quoted(str(item))}" for item in value)
        else:
            pairs.append(f"{quoted_name}={_quoted(str(value))}")
    return "&".join(pairs).encode("ascii")


@functools.lru_cache(maxsize=4096)
def _quoted(text: str) -> str:
    # The sender and the message text are the same for every recipient of an alert: quoted
    # once, not 100,000 times.
    return quote_plus(text)


@functools.lru_cache(maxsize=64)
def _created_at(rfc2822: str | None) -> datetime | None:
    # Twilio's dates have whole seconds: the messages of one second share one, parsed once
    # rather than per message (the parse was about a fortieth of what a message cost us).
    parsed: datetime | None = rfc2822_datetime(rfc2822)
    return parsed


# --- rendering ---------------------------------------------------------------------------------


def _one_line(text: str | None) -> str:
    return " ".join(gsm_friendly(text or "").split())


def _cut(text: str, keep: int) -> str:
    """The first `keep` characters of `text`, backed off to a word boundary, with an ellipsis."""
    if keep >= len(text):
        return text
    prefix = text[:keep]
    space = prefix.rfind(" ")
    if space >= keep * 0.6:
        prefix = prefix[:space]
    prefix = prefix.rstrip(" ,;:.-")
    return prefix + _ELLIPSIS if prefix else ""


def _longest_fitting(text: str, fits: Any) -> str:
    """The longest cut of `text` for which fits(cut) holds ("" when none does): binary search,
    valid because a longer cut never costs fewer segments."""
    low, high = 0, len(text)
    best = ""
    while low <= high:
        middle = (low + high) // 2
        candidate = _cut(text, middle)
        if fits(candidate):
            best, low = candidate, middle + 1
        else:
            high = middle - 1
    return best


def compose_sms(version: AlertVersion, info: Info, max_segments: int) -> Post:
    """The SMS for one info block within `max_segments`: marking, headline, instruction, link.

    When it does not fit, the instruction is shortened first, then the headline; the exercise
    marking is never cut, and the link goes only when nothing else is left to cut."""
    marking = EXERCISE_MARKING if is_exercise(version.content.status) else ""
    headline = _one_line(info.headline)
    if marking:  # the marking leads on its own line; a second copy in the headline costs space
        headline = _one_line(headline.replace(EXERCISE_MARKING, ""))
    instruction = _one_line(info.instruction)
    link = version.public_url or info.web or ""

    def text(headline: str, instruction: str, link: str) -> str:
        return "\n".join(part for part in (marking, headline, instruction, link) if part)

    def fits(body: str) -> bool:
        return segment_count(body) <= max_segments

    if not fits(text(headline, instruction, link)):
        instruction = _longest_fitting(instruction, lambda cut: fits(text(headline, cut, link)))
    if not fits(text(headline, instruction, link)):
        headline = _longest_fitting(headline, lambda cut: fits(text(cut, instruction, link)))
    if not fits(text(headline, instruction, link)):
        link = ""
    body = text(headline, instruction, link)
    return Post(
        text=body,
        length=segment_count(body),
        limit=max_segments,
        language=info.language,
        extra={"encoding": encoding_of(body), "characters": len(body)},
    )


def info_for_language(version: AlertVersion, language: str | None) -> Info:
    """The info block in `language` ("es-US"; "es" matches "es-US"), else the first one."""
    infos = version.content.infos
    if language:
        wanted = language.lower()
        for info in infos:
            if info.language.lower() == wanted:
                return info
        primary = wanted.split("-")[0]
        for info in infos:
            if info.language.lower().split("-")[0] == primary:
                return info
    return infos[0]


# --- errors ------------------------------------------------------------------------------------


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from Retry-After, given as seconds or as an HTTP date."""
    value = (headers or {}).get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _platform_message(error: TwilioRestException) -> str:
    # The library prefixes Twilio's message with its own "Unable to create record: ".
    message = str(getattr(error, "msg", "") or "")
    return message.split(": ", 1)[1] if ": " in message else message


def _error_body(response: Response | None) -> tuple[str | None, str]:
    """Twilio's error code and message from a kept response: {"code", "message", ...}."""
    try:
        body = json.loads(response.text) if response is not None else None
    except ValueError:
        return None, ""
    if not isinstance(body, dict) or "code" not in body:
        return None, ""
    return str(body["code"]), str(body.get("message", ""))


def _map_twilio_error(error: TwilioException, where: str, *, writing: bool) -> ChannelError:
    """A ChannelError for a Twilio failure; `writing` is True for a send (a 5xx may have sent)."""
    response = _last_response.get()
    headers = response.headers if response is not None else None
    if isinstance(error, TwilioRestException):
        status = int(error.status)
        code = str(error.code) if error.code is not None else None
        detail = f"{where}: Twilio answered HTTP {status}, error {code}: {_platform_message(error)}"
    else:  # a failed page fetch carries no status or code of its own; the response we kept does
        status = response.status_code if response is not None else 0
        code, message = _error_body(response)
        detail = f"{where}: Twilio answered HTTP {status}"
        if code is not None:
            detail += f", error {code}: {message}"
    if status in (401, 403) or code == "20003":
        return AuthError(
            f"{detail}. Check the target's account_sid and auth_token credential.",
            status=status,
            code=code,
        )
    if status == 429 or code == "20429":
        return TransientError(detail, retry_after=_retry_after(headers), status=status, code=code)
    if status >= 500:
        if writing:
            return AmbiguousError(
                f"{detail}; the message may have been queued: reconcile before sending again",
                status=status,
                code=code,
            )
        return TransientError(detail, retry_after=_retry_after(headers), status=status, code=code)
    if code == "21610":
        return PermanentError(
            f"{detail}. The recipient replied STOP; they get no SMS from this sender until they "
            "reply START. Record the opt-out for this number.",
            status=status,
            code=code,
        )
    return PermanentError(detail, status=status, code=code)


def _lost(where: str, error: BaseException, *, writing: bool) -> ChannelError:
    reason = "timed out" if isinstance(error, TimeoutError) else type(error).__name__
    if writing:
        return AmbiguousError(
            f"{where}: the connection to Twilio was lost ({reason}); the message may have been "
            "queued: reconcile before sending again"
        )
    return TransientError(f"{where}: the connection to Twilio was lost ({reason})")


# --- webhook signatures ------------------------------------------------------------------------


def twilio_signature(auth_token: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL + each field name and value, sorted
    by name)), as https://www.twilio.com/docs/usage/security#validating-requests describes."""
    return _twilio_signatures(auth_token, (url,), _signed_fields(params))[0]


def _signed_fields(params: Sequence[tuple[str, str]]) -> bytes:
    return "".join(name + value for name, value in sorted(params)).encode("utf-8")


def _twilio_signatures(auth_token: str, urls: Sequence[str], fields: bytes) -> list[str]:
    """The signature for each URL: the fields are joined once, not once per URL variant."""
    key = auth_token.encode("utf-8")
    return [
        base64.b64encode(hmac.digest(key, url.encode("utf-8") + fields, "sha1")).decode("ascii")
        for url in urls
    ]


@functools.lru_cache(maxsize=256)
def _url_variants(url: str) -> tuple[str, ...]:
    # Cached: every text to a number comes to the same webhook URL, and splitting and joining
    # it three ways cost more than the signature itself.
    """The URL with and without its default port: Twilio signs whichever it was configured with."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    with_port = urlunsplit(parts._replace(netloc=f"{host}:{port}"))
    bare = urlunsplit(parts._replace(netloc=host)) if port == default else url
    return tuple(dict.fromkeys((url, with_port, bare)))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


# --- the channel -------------------------------------------------------------------------------


class SmsChannel(Channel):
    name: ClassVar[str] = "sms"
    limits: ClassVar[Limits] = Limits(
        max_length=MAX_SEGMENTS,
        counted_by=CountMethod.sms_segments,
        max_parts=1,
        # A sent SMS cannot be recalled or edited: the correction is a new SMS to the same number.
        retract=RetractMethod.correction_post,
        inbound=InboundMode.webhook,
        # Twilio queues faster than a sender can send (long code 1/s, toll-free 3/s, short code
        # 100/s, all per sender): the sustained rate belongs to the target's number, not here.
        max_rate_per_second=None,
    )
    settings_model: ClassVar[type[TargetSettings]] = SmsSettings
    credential_names: ClassVar[tuple[str, ...]] = ("auth_token",)
    needs_recipient: ClassVar[bool] = True

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        if not isinstance(target.settings, SmsSettings):
            raise TypeError(
                f"sms target {target.name!r}: settings must be SmsSettings, "
                f"not {type(target.settings).__name__}"
            )
        self.settings: SmsSettings = target.settings
        self._client: Any = None
        self._http: _TwilioHttp | None = None
        self._messages_uri = f"/Accounts/{self.settings.account_sid}/Messages.json"
        self._sender_form = {
            name: value
            for name, value in (
                ("From", self.settings.from_number),
                ("MessagingServiceSid", self.settings.messaging_service_sid),
            )
            if value
        }
        # Phone number -> SID of the last message we sent it. SMS has no threads: an incoming
        # text answers the last message its sender got. Kept in this process only (bounded).
        self._last_sent: OrderedDict[str, str] = OrderedDict()

    # --- rendering -----------------------------------------------------------------------------

    def render(self, version: AlertVersion) -> list[Post]:
        return [compose_sms(version, version.content.infos[0], self.settings.max_segments)]

    def render_for_language(self, version: AlertVersion, language: str | None) -> Post:
        """The SMS for a recipient who reads `language`; the primary language when absent."""
        info = info_for_language(version, language)
        return compose_sms(version, info, self.settings.max_segments)

    # --- the Twilio client ---------------------------------------------------------------------

    def _auth_token(self) -> str:
        secret = self.target.credentials.get("auth_token")
        if secret is None or not secret.get_secret_value():
            raise AuthError(
                f"sms target {self.target.name!r}: the auth_token credential is not set; map it "
                "to a secret (environment variable or file) in the target's configuration"
            )
        return secret.get_secret_value()

    def _twilio(self) -> Any:
        """The Twilio client, made on first use (its aiohttp session needs a running loop)."""
        if self._client is None:
            token = self._auth_token()  # first: a missing token must not leak a session
            # No retries of its own (max_retries None): the dispatcher owns retries.
            self._http = _TwilioHttp(timeout=self.settings.timeout_seconds, logger=_twilio_log)
            client = Client(self.settings.account_sid, token, http_client=self._http)
            # The client reads TWILIO_EDGE / TWILIO_REGION from the environment and rewrites
            # hostnames with them; our target names its endpoint itself.
            client.edge = None
            client.region = None
            if self.settings.base_url:
                client.api.base_url = self.settings.base_url.rstrip("/")
            self._client = client
        return self._client

    def _recipient(self, recipient: str | None) -> str:
        if recipient is None:
            raise PermanentError(
                f"sms target {self.target.name!r}: no recipient; SMS goes to one phone number "
                "per delivery"
            )
        if not _E164.match(recipient):
            raise PermanentError(
                f"sms target {self.target.name!r}: recipient {recipient!r} is not an E.164 "
                "phone number (+, country code, number, e.g. +12025550142); fix the contact",
                code="21211",
            )
        return recipient

    def _receipt(
        self,
        sid: str,
        posted_at: datetime | None,
        status: object,
        segments: object,
        recipient: str,
        language: str | None,
    ) -> Receipt:
        """What we keep of a message, sent (an answer's JSON) or found (a MessageInstance)."""
        return Receipt(
            channel=self.name,
            target=self.target.name,
            external_id=sid,
            posted_at=posted_at,
            extra={
                "to": recipient,
                "status": str(status),
                "num_segments": int(str(segments)) if segments is not None else None,
                "language": language,
            },
        )

    def _remember(self, recipient: str, sid: str) -> None:
        self._last_sent[recipient] = sid
        self._last_sent.move_to_end(recipient)
        while len(self._last_sent) > _REMEMBERED_RECIPIENTS:
            self._last_sent.popitem(last=False)

    # --- publishing ----------------------------------------------------------------------------

    async def publish(
        self,
        post: Post,
        key: str,
        *,
        reply_to: Receipt | None = None,
        recipient: str | None = None,
    ) -> Receipt:
        to = self._recipient(recipient)
        client = self._twilio()
        try:
            # The Messages resource's own create, one level down (see _MESSAGE_HEADERS): the same
            # request, authentication, and errors (TwilioRestException from Version.exception).
            created = await client.api.v2010.create_async(
                method="POST",
                uri=self._messages_uri,
                data={"To": to, "Body": post.text, **self._sender_form},
                headers=_MESSAGE_HEADERS,
            )
        except TwilioException as error:
            where = f"sms target {self.target.name!r}, send {key!r}"
            raise _map_twilio_error(error, where, writing=True) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            where = f"sms target {self.target.name!r}, send {key!r}"
            raise _lost(where, error, writing=True) from None
        sid = str(created["sid"])
        self._remember(to, sid)
        return self._receipt(
            sid,
            _created_at(created.get("date_created")),
            created.get("status"),
            created.get("num_segments"),
            to,
            post.language,
        )

    async def find_published(
        self, post: Post, key: str, *, recipient: str | None = None
    ) -> Receipt | None:
        # Not the DateSent filter: a message still queued at Twilio has no date_sent yet and
        # would be missed. Newest first, to this person from our sender, then by body and age.
        to = self._recipient(recipient)
        where = f"sms target {self.target.name!r}, reconcile {key!r}"
        since = datetime.now(UTC) - timedelta(minutes=self.settings.reconcile_window_minutes)
        client = self._twilio()
        sender = {"from_": self.settings.from_number} if self.settings.from_number else {}
        try:
            messages = await client.api.account.messages.list_async(
                to=to, limit=50, page_size=50, **sender
            )
        except TwilioException as error:
            raise _map_twilio_error(error, where, writing=False) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise _lost(where, error, writing=False) from None
        for message in messages:
            created = message.date_created
            if created is not None and created < since:
                continue
            if str(message.direction).startswith("outbound") and message.body == post.text:
                self._remember(to, str(message.sid))
                return self._receipt(
                    str(message.sid),
                    message.date_created,
                    message.status,
                    getattr(message, "num_segments", None),
                    to,
                    post.language,
                )
        return None

    async def retract(self, receipt: Receipt, cancel: AlertVersion) -> Receipt:
        """A sent SMS cannot be recalled: send the cancel/update, in the language the original
        went out in, to the same number."""
        recipient = receipt.extra.get("to")
        if not isinstance(recipient, str):
            raise PermanentError(
                f"sms target {self.target.name!r}: receipt {receipt.external_id} does not say "
                "which number it went to, so the correction cannot follow it"
            )
        language = receipt.extra.get("language")
        post = self.render_for_language(cancel, language if isinstance(language, str) else None)
        key = f"retract:{cancel.identifier}:{receipt.external_id}"
        return await self.publish(post, key, recipient=recipient)

    # --- inbound -------------------------------------------------------------------------------

    def parse_webhook(
        self, url: str, headers: Mapping[str, str], body: bytes
    ) -> Sequence[InboundMessage]:
        signature = _header(headers, _SIGNATURE_HEADER)
        if not signature:
            raise WebhookRejected(401, "X-Twilio-Signature header is missing")
        try:
            fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise WebhookRejected(403, "the body is not UTF-8 form data Twilio signed") from None
        try:
            token = self._auth_token()
        except AuthError as error:
            raise WebhookRejected(403, f"cannot check X-Twilio-Signature: {error}") from None
        expected = _twilio_signatures(token, _url_variants(url), _signed_fields(fields))
        # Compare every variant, so the time taken does not depend on which one matched.
        given = signature.encode("utf-8", "surrogateescape")  # bytes: any header is comparable
        matches = [hmac.compare_digest(candidate.encode("ascii"), given) for candidate in expected]
        if not any(matches):
            raise WebhookRejected(403, "X-Twilio-Signature does not match this request")
        params = dict(fields)
        text, sender, sid = params.get("Body"), params.get("From"), params.get("MessageSid")
        if text is None or sender is None or sid is None:
            # A delivery-status callback (MessageStatus, no Body) or something else: not a text.
            return []
        raw: dict[str, Any] = dict(params)
        keyword = classify_keyword(text)
        if keyword is not None:
            raw["keyword"] = keyword.value
        count = params.get("NumMedia", "0")
        media = tuple(
            params[f"MediaUrl{index}"]
            for index in range(int(count) if count.isdigit() else 0)
            if f"MediaUrl{index}" in params
        )
        return [
            InboundMessage(
                source=self.name,
                external_id=sid,
                text=text,
                received_at=datetime.now(UTC),
                author_id=sender,
                in_reply_to=self._last_sent.get(sender),
                media_urls=media,
                raw=raw,
            )
        ]

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
            self._client = None
