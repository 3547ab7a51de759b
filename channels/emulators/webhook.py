"""A partner system receiving signed alert webhooks, as a careful partner builds one.

POST /alerts          verify X-Broadcaster-Signature over f"{timestamp}.{raw body}" (constant
                      time, any of several "v1=" values for secret rotation), refuse timestamps
                      more than 5 minutes off (replays), require JSON and an Idempotency-Key;
                      record the delivery and answer 202 {"id": ...}. A key already accepted
                      gets the first answer again and records nothing; the same key with a
                      different body is refused with 422.
GET /deliveries/{key} signed the same way (empty body): 200 with the delivery, or 404.

Errors are JSON {"error": code, "message": text}: 401 for a missing, stale or wrong signature,
400/415/413 for bad requests, 429 with Retry-After (seconds) when rate limited.
Webhooks are one-way: the public cannot answer, so no replies are generated.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from aiohttp import web
from pydantic import SecretStr

from channels.base import Channel, Target, TargetMode
from channels.emulators.base import Emulator
from channels.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookChannel,
    WebhookSettings,
)

__all__ = ["EMULATOR", "WebhookReceiverEmulator"]

SECRET: Final = "whsec_emulator_5b1f0c2e9d7a4c30"  # noqa: S105 (the emulator's own test secret)
WRONG_SECRET: Final = "whsec_revoked_0000000000000000"  # noqa: S105 (rejected on purpose)
MAX_SKEW_SECONDS: Final = 300
MAX_BODY_BYTES: Final = 1 << 20


@dataclass(frozen=True)
class _Delivery:
    id: str
    key: str
    digest: str  # SHA-256 of the body, to spot a key reused for a different alert
    received_at: str


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


class WebhookReceiverEmulator(Emulator):
    name: ClassVar[str] = "webhook"

    def __init__(self) -> None:
        super().__init__()
        self.secrets: list[str] = [SECRET]
        self.deliveries: dict[str, _Delivery] = {}
        self._ids = itertools.count(1)

    # --- wiring --------------------------------------------------------------------------------

    def target(
        self,
        name: str = "test",
        mode: TargetMode = TargetMode.live,
        *,
        valid_credentials: bool = True,
        timeout_seconds: float = 10.0,
    ) -> Target:
        settings = WebhookSettings(
            name=name,
            mode=mode,
            url=f"{self.url}/alerts",
            lookup_url=f"{self.url}/deliveries/{{key}}",
            cap_base_url="https://alerts.county.example.gov/cap",
            timeout_seconds=timeout_seconds,
            # The emulator listens on 127.0.0.1: without this the channel refuses it (netguard).
            allow_private_destinations=True,
        )
        secret = SECRET if valid_credentials else WRONG_SECRET
        return Target(settings, {"signing_secret": SecretStr(secret)})

    def channel(self, target: Target) -> Channel:
        return WebhookChannel(target)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/alerts", self._receive)
        router.add_get("/deliveries/{key}", self._lookup)

    # --- the partner's own answers -------------------------------------------------------------

    def rate_limited(self, request: web.Request, retry_after: float) -> web.StreamResponse:
        return _error(
            429,
            "rate_limited",
            "Too many deliveries; slow down.",
            **{"Retry-After": str(round(retry_after))},
        )

    def server_error(self, request: web.Request, status: int) -> web.StreamResponse:
        return _error(status, "server_error", "The partner system failed; try again later.")

    async def generate_replies(
        self, count: int, text: str | None, to: str | None
    ) -> list[dict[str, Any]]:
        raise web.HTTPNotImplemented(
            text="webhooks are one-way: a partner system does not send public replies"
        )

    def reset_state(self) -> None:
        self.deliveries.clear()

    # --- checks --------------------------------------------------------------------------------

    def _unsigned(self, request: web.Request, body: bytes) -> web.Response | None:
        """The 401 for a request whose signature is missing, stale or wrong; else None."""
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        signatures = request.headers.get(SIGNATURE_HEADER, "")
        if not timestamp or not signatures:
            return _error(
                401, "missing_signature", f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required."
            )
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_SKEW_SECONDS:
            return _error(401, "stale_timestamp", "The timestamp is not within 5 minutes of now.")
        message = timestamp.encode() + b"." + body
        offered = [part.strip() for part in signatures.split(",")]
        for secret in self.secrets:
            expected = "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
            if any(hmac.compare_digest(expected, value) for value in offered):
                return None
        return _error(401, "invalid_signature", "The signature does not match the body.")

    # --- routes --------------------------------------------------------------------------------

    async def _receive(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _error(413, "too_large", "Deliveries are limited to 1 MiB.")
        body = await request.read()
        refused = self._unsigned(request, body)
        if refused is not None:
            return refused
        if request.content_type != "application/json":
            return _error(415, "unsupported_media_type", "Send application/json.")
        key = request.headers.get(IDEMPOTENCY_HEADER, "")
        if not key:
            return _error(400, "missing_idempotency_key", f"{IDEMPOTENCY_HEADER} is required.")
        try:
            text = body.decode("utf-8")
            json.loads(text)
        except ValueError:
            return _error(400, "invalid_json", "The body is not UTF-8 JSON.")
        digest = hashlib.sha256(body).hexdigest()
        earlier = self.deliveries.get(key)
        if earlier is not None:
            if earlier.digest != digest:
                return _error(
                    422,
                    "idempotency_key_reused",
                    "This Idempotency-Key was already used for a different delivery.",
                )
            return self._accepted(earlier)
        delivery = _Delivery(
            id=f"dlv_{next(self._ids):06d}",
            key=key,
            digest=digest,
            received_at=datetime.now(UTC).isoformat(),
        )
        self.deliveries[key] = delivery
        self.record(
            "post",
            id=delivery.id,
            text=text,
            key=key,
            reply_to=None,
            event=request.headers.get("X-Broadcaster-Event"),
        )
        return self._accepted(delivery)

    @staticmethod
    def _accepted(delivery: _Delivery) -> web.Response:
        return web.json_response(
            {"id": delivery.id, "status": "accepted", "received_at": delivery.received_at},
            status=202,
        )

    async def _lookup(self, request: web.Request) -> web.Response:
        refused = self._unsigned(request, await request.read())
        if refused is not None:
            return refused
        delivery = self.deliveries.get(request.match_info["key"])
        if delivery is None:
            return _error(404, "not_found", "No delivery with this key.")
        return web.json_response(
            {"id": delivery.id, "key": delivery.key, "received_at": delivery.received_at}
        )


EMULATOR = WebhookReceiverEmulator
