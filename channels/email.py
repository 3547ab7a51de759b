"""Email over SMTP (aiosmtplib), one message per recipient: plain text and HTML alternatives.

Rendering: one email carries every language of the alert (the primary first): email has no
length limit, and a reader finds their own language without us knowing it. The subject is the
primary headline, led by the exercise marking for Exercise/Test alerts and by UPDATE or
CANCELLED for updates and cancellations. The HTML is rendered by Jinja2 with autoescaping.

Reconciliation: each email's Message-ID is derived from the delivery's idempotency key, so the
same key always yields the same Message-ID. SMTP itself has no way to ask "did you take this
message?": the receipt is the server's 250 reply to DATA (with its queue id). When the connection
is lost after the message was sent but before that reply (RFC 1047's duplicate-message window),
`find_published` can only ask a provider's message log over HTTP (`message_log_url`, our
emulator's /v1/messages stands in for one). Without a message log it answers None and the
dispatcher sends again: a duplicate at worst, and with the same Message-ID, which many mail
systems fold into one message. That is a limitation of plain SMTP, not something to hide.

Cancel/correct: sent email cannot be recalled, so `retract` sends a new email to the same
recipient, subject "CANCELLED: ..." or "UPDATE: ...", threaded under the original with
In-Reply-To and References.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, formataddr
from typing import Any, ClassVar, Final, Literal

import aiohttp
import aiosmtplib
import jinja2
from pydantic import Field, field_validator, model_validator

from approvals.alert import EXERCISE_MARKING, Info, MsgType, is_exercise
from channels.base import (
    AlertVersion,
    AmbiguousError,
    AuthError,
    Channel,
    ChannelError,
    CountMethod,
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
    "EmailChannel",
    "EmailSettings",
    "check_address",
    "message_id_for",
    "render_email",
]

log = logging.getLogger(__name__)

# Deliberately plain: an address an SMTP server accepts without SMTPUTF8 (ASCII), one "@", a dot
# in the domain. Deliverability is the mail system's business, not a regex's.
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
# Servers that say how long to wait say it in the reply text ("try again in 42 seconds").
_WAIT = re.compile(r"(?:retry|try again)\D{0,24}?(\d+(?:\.\d+)?)\s*(?:s\b|sec)", re.IGNORECASE)
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})
_AUTH_CODES: Final = frozenset({530, 534, 535, 538})
_PREFIX: Final = {MsgType.alert: "", MsgType.update: "UPDATE:", MsgType.cancel: "CANCELLED:"}


def check_address(address: str) -> str:
    """`address` stripped if it is a plain ASCII email address, else ValueError saying why."""
    address = address.strip()
    if not _ADDRESS.match(address):
        raise ValueError(
            f"{address!r} is not an email address like name@example.org (ASCII only: this "
            "service does not send internationalised addresses)"
        )
    return address


def message_id_for(key: str, domain: str) -> str:
    """The Message-ID for a delivery key: the same key always gives the same Message-ID."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
    return f"<{digest}@{domain}>"


class EmailSettings(TargetSettings):
    """One SMTP submission account. Credential "password" goes with `username`."""

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    # starttls: plain connection upgraded with STARTTLS (port 587), refused if the server does
    # not offer it; tls: TLS from the first byte (port 465); none: no encryption (a local relay
    # or the emulator only: the password would cross the network in clear).
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None  # None: no SMTP AUTH (a relay that trusts our address)
    from_address: str
    from_name: str | None = None
    reply_to: str | None = None
    # The name we greet the server with (EHLO); None: this machine's FQDN.
    local_hostname: str | None = None
    # A provider's message log over HTTP: GET {message_log_url}/messages?message_id=<id> answering
    # {"messages": [{"message_id", "to": [...], "queue_id", "accepted_at"}]}. Only for
    # reconciliation after a lost connection; None: find_published cannot know and says None.
    message_log_url: str | None = None

    @field_validator("from_address", "reply_to")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        return None if value is None else check_address(value)

    @model_validator(mode="after")
    def _no_password_in_clear(self) -> EmailSettings:
        if self.security == "none" and self.username and self.host not in _LOOPBACK:
            raise ValueError(
                f"security = 'none' would send the password for {self.username!r} to "
                f"{self.host} in clear: use 'starttls' (port 587) or 'tls' (port 465); 'none' "
                "with a username is only for a relay on this machine"
            )
        return self


# --- rendering ---------------------------------------------------------------------------------

_HTML = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    """\
<!DOCTYPE html>
<html lang="{{ primary }}">
<head><meta charset="utf-8"><title>{{ subject }}</title></head>
<body style="font-family: sans-serif; max-width: 40em">
{% if marking %}<p style="background: #ffd400; font-weight: bold; padding: .5em">{{ marking }}</p>
{% endif %}
{% for section in sections %}
<section lang="{{ section.language }}">
<h1 style="font-size: 1.3em">{{ section.headline }}</h1>
{% for paragraph in section.paragraphs %}<p>{{ paragraph }}</p>
{% endfor %}
{% if section.areas %}<p><strong>{{ section.areas }}</strong></p>{% endif %}
{% if section.contact %}<p>{{ section.contact }}</p>{% endif %}
</section>
{% if not loop.last %}<hr>{% endif %}
{% endfor %}
{% if link %}<p><a href="{{ link }}">{{ link }}</a></p>{% endif %}
<p style="color: #555; font-size: .85em">{{ footer }}</p>
</body>
</html>
"""
)


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def _section(info: Info, marked: bool) -> dict[str, Any]:
    headline = _clean(info.headline)
    if marked:  # the marking leads the email once; repeating it in each headline is noise
        headline = _clean(headline.replace(EXERCISE_MARKING, ""))
    paragraphs = [
        _clean(text) for text in (info.description, info.instruction) if text and text.strip()
    ]
    return {
        "language": info.language,
        "headline": headline,
        "paragraphs": paragraphs,
        "areas": ", ".join(area.description for area in info.areas),
        "contact": _clean(info.contact),
    }


def render_email(version: AlertVersion) -> Post:
    """The email for `version`: every language, plain text and HTML, within no length limit."""
    content = version.content
    marked = is_exercise(content.status)
    marking = EXERCISE_MARKING if marked else ""
    sections = [_section(info, marked) for info in content.infos]
    primary = content.infos[0]
    link = version.public_url or primary.web or ""
    subject = " ".join(
        part for part in (marking, _PREFIX[content.msg_type], sections[0]["headline"]) if part
    )
    expires = (
        f" Expires {primary.expires.astimezone(UTC):%Y-%m-%d %H:%M} UTC." if primary.expires else ""
    )
    footer = (
        f"Sent {version.sent.astimezone(UTC):%Y-%m-%d %H:%M} UTC by {version.sender}.{expires} "
        f"Reference {version.identifier}."
    )
    blocks: list[str] = [marking] if marking else []
    for section in sections:
        lines = [f"{_PREFIX[content.msg_type]} {section['headline']}".strip()]
        lines += section["paragraphs"]
        lines += [text for text in (section["areas"], section["contact"]) if text]
        blocks.append("\n\n".join(lines))
    if link:
        blocks.append(link)
    blocks.append(footer)
    text = "\n\n".join(blocks)
    html = _HTML.render(
        primary=primary.language,
        subject=subject,
        marking=marking,
        sections=sections,
        link=link,
        footer=footer,
    )
    return Post(
        text=text,
        length=len(text),
        limit=None,
        subject=subject,
        html=html,
        language=primary.language,
        extra={"languages": [info.language for info in content.infos]},
    )


# --- errors ------------------------------------------------------------------------------------


def _wait_in(message: str) -> float | None:
    match = _WAIT.search(message)
    return float(match.group(1)) if match else None


Phase = Literal["connect", "login", "envelope", "data"]


def _certificate_problem(error: BaseException | None) -> bool:
    """A failed certificate check anywhere in the chain: retrying will not fix it."""
    seen = 0
    while error is not None and seen < 5:
        if isinstance(error, ssl.SSLCertVerificationError):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def _map_smtp_error(error: Exception, phase: Phase, where: str) -> ChannelError:
    """A ChannelError for an SMTP failure in `phase`. Only losing the connection during DATA is
    ambiguous: until the final "." the server cannot have taken the message, and any reply it
    gave (2xx, 4xx, 5xx) is definite."""
    if isinstance(error, aiosmtplib.SMTPResponseException):
        code, reply = error.code, _clean(error.message)
        detail = f"{where}: the SMTP server answered {code} {reply}"
        if isinstance(error, aiosmtplib.SMTPAuthenticationError) or code in _AUTH_CODES:
            return AuthError(
                f"{detail}. Check the target's username and password credential.",
                status=code,
                code=str(code),
            )
        if 400 <= code < 500:
            return TransientError(detail, retry_after=_wait_in(reply), status=code, code=str(code))
        return PermanentError(detail, status=code, code=str(code))
    if _certificate_problem(error):
        return AuthError(
            f"{where}: the SMTP server's TLS certificate did not verify ({error}); check the "
            "target's host name, or the server's certificate"
        )
    if isinstance(error, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPConnectTimeoutError):
        return TransientError(f"{where}: cannot reach the SMTP server ({type(error).__name__})")
    lost = isinstance(
        error,
        aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError | OSError | TimeoutError,
    )
    if lost and phase == "data":
        return AmbiguousError(
            f"{where}: the connection was lost while the message was being sent "
            f"({type(error).__name__}); it may have been accepted: reconcile before sending again"
        )
    if lost:
        return TransientError(
            f"{where}: the connection was lost before the message was sent ({type(error).__name__})"
        )
    if phase in ("connect", "login"):
        # STARTTLS or AUTH not offered, no usable mechanism: every send will fail the same way.
        return AuthError(
            f"{where}: cannot secure or authenticate the SMTP session: {error}. Check the "
            "target's security, port and username settings."
        )
    return PermanentError(f"{where}: {error}")


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


# --- the channel -------------------------------------------------------------------------------


class EmailChannel(Channel):
    name: ClassVar[str] = "email"
    limits: ClassVar[Limits] = Limits(
        max_length=None,
        counted_by=CountMethod.unlimited,
        max_parts=1,
        retract=RetractMethod.reply,  # a new email threaded under the original (In-Reply-To)
    )
    settings_model: ClassVar[type[TargetSettings]] = EmailSettings
    credential_names: ClassVar[tuple[str, ...]] = ("password",)
    needs_recipient: ClassVar[bool] = True

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        if not isinstance(target.settings, EmailSettings):
            raise TypeError(
                f"email target {target.name!r}: settings must be EmailSettings, "
                f"not {type(target.settings).__name__}"
            )
        self.settings: EmailSettings = target.settings
        self._session: aiohttp.ClientSession | None = None
        self._warned_no_log = False

    @property
    def _domain(self) -> str:
        return self.settings.from_address.rsplit("@", 1)[1]

    def _password(self) -> str:
        secret = self.target.credentials.get("password")
        if secret is None or not secret.get_secret_value():
            raise AuthError(
                f"email target {self.target.name!r}: username is set but the password credential "
                "is not; map it to a secret (environment variable or file) in the target's "
                "configuration"
            )
        return secret.get_secret_value()

    def render(self, version: AlertVersion) -> list[Post]:
        return [render_email(version)]

    def _recipient(self, recipient: str | None) -> str:
        if recipient is None:
            raise PermanentError(
                f"email target {self.target.name!r}: no recipient; email goes to one address per "
                "delivery"
            )
        try:
            return check_address(recipient)
        except ValueError as error:
            raise PermanentError(
                f"email target {self.target.name!r}: recipient {error}; fix the contact"
            ) from None

    def _message(
        self, post: Post, key: str, recipient: str, reply_to: Receipt | None
    ) -> EmailMessage:
        if post.subject is None:
            raise PermanentError(f"email target {self.target.name!r}: post {key!r} has no subject")
        message = EmailMessage()
        message["From"] = formataddr((self.settings.from_name or "", self.settings.from_address))
        message["To"] = recipient
        message["Subject"] = post.subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = message_id_for(key, self._domain)
        if reply_to is not None:
            message["In-Reply-To"] = reply_to.external_id
            message["References"] = reply_to.external_id
        if self.settings.reply_to:
            message["Reply-To"] = self.settings.reply_to
        if post.language:
            message["Content-Language"] = post.language
        # RFC 3834: an automatic message; vacation responders and auto-replies stay quiet.
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(post.text, cte="quoted-printable")
        if post.html:
            message.add_alternative(post.html, subtype="html", cte="quoted-printable")
        return message

    async def publish(
        self,
        post: Post,
        key: str,
        *,
        reply_to: Receipt | None = None,
        recipient: str | None = None,
    ) -> Receipt:
        to = self._recipient(recipient)
        message = self._message(post, key, to, reply_to)
        where = f"email target {self.target.name!r}, send {key!r}"
        settings = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            timeout=settings.timeout_seconds,
            use_tls=settings.security == "tls",
            start_tls=settings.security == "starttls",
            local_hostname=settings.local_hostname,
        )
        phase: Phase = "connect"
        try:
            await smtp.connect()
            if settings.username:
                phase = "login"
                await smtp.login(settings.username, self._password())
            phase = "envelope"
            await smtp.mail(settings.from_address)
            await smtp.rcpt(to)
            phase = "data"
            reply = await smtp.data(message.as_bytes(policy=SMTP_POLICY))
        except ChannelError:
            smtp.close()
            raise
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            smtp.close()
            raise _map_smtp_error(error, phase, where) from None
        await self._quit(smtp)
        queued = re.search(r"queued as (\S+)", reply.message)
        return Receipt(
            channel=self.name,
            target=self.target.name,
            external_id=str(message["Message-ID"]),
            posted_at=datetime.now(UTC),
            extra={
                "to": to,
                "queue_id": queued.group(1) if queued else None,
                "smtp_reply": f"{reply.code} {_clean(reply.message)}",
                "language": post.language,
            },
        )

    @staticmethod
    async def _quit(smtp: aiosmtplib.SMTP) -> None:
        # The message is accepted; a failed goodbye changes nothing.
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            smtp.close()

    async def find_published(
        self, post: Post, key: str, *, recipient: str | None = None
    ) -> Receipt | None:
        to = self._recipient(recipient)
        if self.settings.message_log_url is None:
            if not self._warned_no_log:
                log.warning(
                    "email target %r has no message_log_url: after a lost connection it cannot "
                    "tell whether a message was accepted, so it may be sent twice (with the same "
                    "Message-ID)",
                    self.target.name,
                )
                self._warned_no_log = True
            return None
        message_id = message_id_for(key, self._domain)
        where = f"email target {self.target.name!r}, reconcile {key!r}"
        entries = await self._message_log(message_id, where)
        for entry in entries:
            if entry.get("message_id") == message_id and to in entry.get("to", ()):
                accepted = entry.get("accepted_at")
                return Receipt(
                    channel=self.name,
                    target=self.target.name,
                    external_id=message_id,
                    posted_at=datetime.fromisoformat(accepted) if accepted else None,
                    extra={"to": to, "queue_id": entry.get("queue_id"), "language": post.language},
                )
        return None

    async def _message_log(self, message_id: str, where: str) -> list[Mapping[str, Any]]:
        assert self.settings.message_log_url is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
            )
        headers = {"Accept": "application/json"}
        if self.settings.username:
            headers["Authorization"] = _basic(self.settings.username, self._password())
        url = self.settings.message_log_url.rstrip("/") + "/messages"
        try:
            async with self._session.get(
                url, params={"message_id": message_id}, headers=headers
            ) as response:
                status = response.status
                body: Any = await response.json(content_type=None) if status == 200 else None
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise TransientError(
                f"{where}: the message log did not answer ({type(error).__name__})"
            ) from None
        if status in (401, 403):
            raise AuthError(
                f"{where}: the message log refused our credentials (HTTP {status})", status=status
            )
        if status == 429 or status >= 500:
            wait = float(retry_after) if retry_after and retry_after.isdigit() else None
            raise TransientError(
                f"{where}: the message log answered HTTP {status}", retry_after=wait, status=status
            )
        if status != 200 or not isinstance(body, dict):
            raise PermanentError(f"{where}: the message log answered HTTP {status}", status=status)
        messages = body.get("messages", [])
        return [entry for entry in messages if isinstance(entry, dict)]

    async def retract(self, receipt: Receipt, cancel: AlertVersion) -> Receipt:
        """Sent email cannot be recalled: send the cancel/update to the same recipient, threaded
        under the original (In-Reply-To / References its Message-ID)."""
        recipient = receipt.extra.get("to")
        if not isinstance(recipient, str):
            raise PermanentError(
                f"email target {self.target.name!r}: receipt {receipt.external_id} does not say "
                "which address it went to, so the correction cannot follow it"
            )
        [post] = self.render(cancel)
        key = f"retract:{cancel.identifier}:{receipt.external_id}"
        return await self.publish(post, key, reply_to=receipt, recipient=recipient)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
