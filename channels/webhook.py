"""Signed JSON webhooks to partner systems (utilities, schools, transit, broadcasters' newsrooms).

One alert version is one POST of its JSON (identifier, sender, sent, status, msgType, references,
every info with its areas, the rendered text, links to the public page and the CAP XML), whatever
its length or number of languages: partners are machines and pick the language they serve from
`infos`; `text` is the first language's text for partners that just display something.

Every request is signed: X-Broadcaster-Timestamp is unix seconds, X-Broadcaster-Signature is
"v1=" + hex(HMAC-SHA256(signing secret, f"{timestamp}.{raw body}")). A partner recomputes it over
the raw bytes, compares in constant time and refuses stale timestamps (replays). For a GET the
raw body is empty. Idempotency-Key carries the delivery key: partners must drop a key they have
already accepted and answer as the first time, so a retry after a lost answer cannot show an
alert twice. X-Broadcaster-Event says alert, update or cancel.

Reconciliation after an ambiguous failure: if the target's settings give `lookup_url`
("https://partner.example/deliveries/{key}"), `find_published` asks the partner (signed GET);
200 means delivered, 404 means not. Without it `find_published` answers None, and the
dispatcher's retry reuses the same Idempotency-Key, which the partner drops if it was delivered.

Cancel and correct: a partner system has no post to delete, so `retract` POSTs the Cancel or
Update version (event "cancel"/"update", references naming the original), like any correction.

The HTTP answer mapping (`http_failure`, `retry_after_seconds`) is shared with the CAP channel.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Final
from urllib.parse import quote

import aiohttp
from pydantic import ValidationInfo, field_validator, model_validator
from yarl import URL

from approvals.alert import Area, Info, MsgType, is_exercise
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
from channels.cap import cap_datetime, cap_reference, cap_url, with_marking
from channels.netguard import Answer, check_destination, guarded_session, request, safe_url

__all__ = [
    "EVENT_HEADER",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookChannel",
    "WebhookSettings",
    "alert_payload",
    "http_failure",
    "retry_after_seconds",
    "sign",
]

TIMESTAMP_HEADER: Final = "X-Broadcaster-Timestamp"
SIGNATURE_HEADER: Final = "X-Broadcaster-Signature"
EVENT_HEADER: Final = "X-Broadcaster-Event"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
SIGNING_SECRET: Final = "signing_secret"  # noqa: S105 (the credential's name, not a secret)

_EVENTS: Final = {MsgType.alert: "alert", MsgType.update: "update", MsgType.cancel: "cancel"}


def _http_url(value: str | None, field: str) -> str | None:
    if value is not None:
        url = URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"{field} {value!r} must be a full http:// or https:// URL")
    return value


class WebhookSettings(TargetSettings):
    """A partner endpoint. Credential: `signing_secret`, shared with the partner."""

    url: str  # where alerts are POSTed, e.g. "https://partner.example/hooks/alerts"
    # The partner's delivery lookup, with "{key}" where the Idempotency-Key goes; optional.
    lookup_url: str | None = None
    # Where this installation publishes CAP XML (channels.cap.cap_url); adds "capUrl" to bodies.
    cap_base_url: str | None = None
    # Only for partners on our own network (and the local emulator): see channels/netguard.py.
    allow_private_destinations: bool = False

    @field_validator("url", "cap_base_url")
    @classmethod
    def _check_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _http_url(value, info.field_name or "url")

    @field_validator("lookup_url")
    @classmethod
    def _check_lookup_url(cls, value: str | None) -> str | None:
        if value is not None and "{key}" not in value:
            raise ValueError(
                f"lookup_url {value!r} must contain {{key}} where the delivery key goes, e.g. "
                "https://partner.example/deliveries/{key}"
            )
        return _http_url(value, "lookup_url")

    @model_validator(mode="after")
    def _no_base_url(self) -> WebhookSettings:
        if self.base_url is not None:
            raise ValueError("a webhook target takes `url` (the partner's endpoint), not base_url")
        return self


# --- signing and answers (partners and the emulator rely on exactly this) ----------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Broadcaster-Signature value for `body` sent at `timestamp`."""
    message = f"{timestamp}.".encode() + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date; else None."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP-dates are GMT
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def _partner_code(answer: Answer) -> str | None:
    try:
        data = json.loads(answer.body)
    except ValueError:
        return None
    code = data.get("error", data.get("code")) if isinstance(data, dict) else None
    return str(code) if isinstance(code, str | int) else None


def http_failure(
    answer: Answer,
    *,
    where: str,
    write: bool,
    secrets: Iterable[str] = (),
    now: datetime | None = None,
) -> ChannelError:
    """The ChannelError for a non-2xx answer. `write`: the request may have had an effect, so a
    5xx is ambiguous. `secrets` are scrubbed from the partner's words before we repeat them."""
    status = answer.status
    detail = _redact(answer.excerpt(), secrets)
    said = f": {detail}" if detail else ""
    code = _partner_code(answer)
    if 300 <= status < 400:
        location = answer.headers.get("Location")
        shown = safe_url(URL(location)) if location else "(no Location header)"
        return PermanentError(
            f"{where} answered {status}, redirecting to {shown}; redirects are not followed, so an "
            "alert never lands somewhere nobody configured: set the target's URL to the final "
            "address if the partner confirms it",
            status=status,
            code="redirect",
        )
    if status in (401, 403):
        return AuthError(
            f"{where} refused our credentials ({status}){said}; check the target's credentials "
            "with the partner",
            status=status,
            code=code,
        )
    wait = retry_after_seconds(answer.headers.get("Retry-After"), now)
    if status == 429:
        return TransientError(
            f"{where} is rate limiting us (429){said}", retry_after=wait, status=status, code=code
        )
    if status >= 500 or status == 408:
        if write:
            return AmbiguousError(
                f"{where} failed with {status} after receiving the request; it may have been "
                f"delivered{said}",
                status=status,
                code=code,
            )
        return TransientError(
            f"{where} failed with {status}{said}", retry_after=wait, status=status
        )
    return PermanentError(
        f"{where} refused the request with {status}{said}", status=status, code=code
    )


# --- rendering ---------------------------------------------------------------------------------


def _area(area: Area) -> dict[str, Any]:
    return {
        "areaDesc": area.description,
        "polygons": [[[lat, lon] for lat, lon in polygon] for polygon in area.polygons],
        "circles": [{"lat": c.lat, "lon": c.lon, "radiusKm": c.radius_km} for c in area.circles],
        "geocodes": [{"valueName": g.name, "value": g.value} for g in area.geocodes],
    }


def _text(version: AlertVersion, info: Info) -> str:
    parts = [info.headline, info.description, info.instruction]
    link = version.public_url or info.web
    if link:
        parts.append(f"More: {link}")
    return with_marking("\n\n".join(part for part in parts if part), version.content.status)


def _info(version: AlertVersion, info: Info) -> dict[str, Any]:
    return {
        "language": info.language,
        "categories": [category.value for category in info.categories],
        "event": info.event,
        "urgency": info.urgency.value,
        "severity": info.severity.value,
        "certainty": info.certainty.value,
        "expires": cap_datetime(info.expires) if info.expires else None,
        "headline": info.headline,
        "description": info.description,
        "instruction": info.instruction,
        "web": info.web,
        "contact": info.contact,
        "text": _text(version, info),
        "areas": [_area(area) for area in info.areas],
    }


def alert_payload(version: AlertVersion, cap_base_url: str | None = None) -> dict[str, Any]:
    """The JSON object a partner receives for `version` (CAP field names, camelCase)."""
    content = version.content
    return {
        "identifier": version.identifier,
        "sender": version.sender,
        "sent": cap_datetime(version.sent),
        "status": content.status.value,
        "exercise": is_exercise(content.status),
        "msgType": content.msg_type.value,
        "event": _EVENTS[content.msg_type],
        "scope": content.scope.value,
        "references": [cap_reference(reference) for reference in content.references],
        "note": content.note,
        "text": _text(version, content.infos[0]),
        "url": version.public_url,
        "capUrl": cap_url(cap_base_url, version.identifier) if cap_base_url else None,
        "infos": [_info(version, info) for info in content.infos],
    }


# --- the channel -------------------------------------------------------------------------------


class WebhookChannel(Channel):
    name: ClassVar[str] = "webhook"
    limits: ClassVar[Limits] = Limits(
        max_length=None,
        counted_by=CountMethod.unlimited,
        idempotency_keys=True,  # partners must drop a repeated Idempotency-Key (see above)
        retract=RetractMethod.correction_post,
    )
    settings_model: ClassVar[type[TargetSettings]] = WebhookSettings
    credential_names: ClassVar[tuple[str, ...]] = (SIGNING_SECRET,)

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        if not isinstance(target.settings, WebhookSettings):
            raise TypeError(
                f"target '{target.name}' has {type(target.settings).__name__}; the webhook "
                "channel needs WebhookSettings"
            )
        self.settings: WebhookSettings = target.settings
        self.clock: Callable[[], float] = time.time  # unix seconds for the signature timestamp
        self._http: aiohttp.ClientSession | None = None

    def render(self, version: AlertVersion) -> list[Post]:
        payload = alert_payload(version, self.settings.cap_base_url)
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return [
            Post(
                text=text,
                length=len(text),
                language=version.content.infos[0].language,
                extra={"event": payload["event"], "identifier": version.identifier},
            )
        ]

    # --- HTTP ------------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"webhook target '{self.target.name}' ({safe_url(URL(self.settings.url))})"

    def _secret(self) -> str:
        secret = self.target.credentials.get(SIGNING_SECRET)
        if secret is None or not secret.get_secret_value():
            raise AuthError(
                f"{self._where}: no {SIGNING_SECRET} is configured; give the target the secret "
                "agreed with the partner"
            )
        return secret.get_secret_value()

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = guarded_session(
                allow_private=self.settings.allow_private_destinations,
                target=self.target.name,
                timeout_seconds=self.settings.timeout_seconds,
            )
        return self._http

    async def _signed(
        self,
        method: str,
        url: str,
        body: bytes,
        headers: dict[str, str],
        *,
        write: bool,
        missing_ok: bool = False,
    ) -> Answer:
        """A signed request; a non-2xx answer raises (404 is returned when `missing_ok`)."""
        destination = check_destination(
            url, allow_private=self.settings.allow_private_destinations, target=self.target.name
        )
        secret = self._secret()
        timestamp = int(self.clock())
        headers = {
            **headers,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
        }
        answer = await request(
            self._session(),
            method,
            destination,
            where=self._where,
            write=write,
            body=body or None,
            headers=headers,
        )
        if not (200 <= answer.status < 300 or (missing_ok and answer.status == 404)):
            raise http_failure(answer, where=self._where, write=write, secrets=[secret])
        return answer

    def _receipt(self, answer: Answer, key: str, identifier: str | None) -> Receipt:
        try:
            data = json.loads(answer.body) if answer.body else {}
        except ValueError:
            data = {}
        delivery = data.get("id") if isinstance(data, dict) else None
        return Receipt(
            channel=self.name,
            target=self.target.name,
            # A partner that gives no id of its own is identified by our key, which it dedupes.
            external_id=str(delivery) if delivery is not None else key,
            posted_at=datetime.now(UTC),
            extra={"key": key, "identifier": identifier},
        )

    # --- the contract ----------------------------------------------------------------------

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
                f"{self._where}: the webhook channel posts to its configured URL; it takes no "
                "recipient"
            )
        if not key or not key.isascii() or not key.isprintable() or " " in key:
            raise PermanentError(f"{self._where}: delivery key {key!r} cannot be sent in a header")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            IDEMPOTENCY_HEADER: key,
            EVENT_HEADER: str(post.extra.get("event", "alert")),
        }
        answer = await self._signed(
            "POST", self.settings.url, post.text.encode(), headers, write=True
        )
        identifier = post.extra.get("identifier")
        return self._receipt(answer, key, str(identifier) if identifier else None)

    async def find_published(
        self, post: Post, key: str, *, recipient: str | None = None
    ) -> Receipt | None:
        if self.settings.lookup_url is None:
            # No lookup at this partner: the retry reuses the key, which the partner drops.
            return None
        url = self.settings.lookup_url.replace("{key}", quote(key, safe=""))
        answer = await self._signed(
            "GET", url, b"", {"Accept": "application/json"}, write=False, missing_ok=True
        )
        if answer.status == 404:
            return None
        identifier = post.extra.get("identifier")
        return self._receipt(answer, key, str(identifier) if identifier else None)

    async def retract(self, receipt: Receipt, cancel: AlertVersion) -> Receipt:
        content = cancel.content
        if content.msg_type is MsgType.alert:
            raise PermanentError(
                f"{self._where}: {cancel.identifier} is a new Alert; a retraction is an Update or "
                "a Cancel that references the original"
            )
        original = receipt.extra.get("identifier")
        referenced = {reference.split(",")[1] for reference in content.references}
        if original and original not in referenced:
            raise PermanentError(
                f"{self._where}: {content.msg_type.value} {cancel.identifier} does not reference "
                f"{original}, the alert this delivery carried; add it to references"
            )
        [post] = self.render(cancel)
        # A stable key: retrying the retraction cannot deliver it twice.
        return await self.publish(post, f"retract:{receipt.external_id}:{cancel.identifier}")

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
