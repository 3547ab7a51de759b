"""Meta's webhooks, for the Facebook Page and Instagram channels alike: the subscription
handshake, the signature on every call, and the changes in a payload.

Kept apart from the Graph client because none of it calls Graph: it is pure checks on what Meta
sends us, and nothing unsigned gets past `webhook_json` to be parsed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any, Final

from channels.base import WebhookAnswer, WebhookRejected

__all__ = ["answer_challenge", "verify_signature", "webhook_changes", "webhook_json"]

SIGNATURE_HEADER: Final = "X-Hub-Signature-256"


def answer_challenge(query: Mapping[str, str], verify_token: str) -> WebhookAnswer | None:
    """Meta's subscription check: echo hub.challenge when hub.verify_token is ours."""
    if "hub.mode" not in query:
        return None
    offered = query.get("hub.verify_token", "")
    if query["hub.mode"] != "subscribe" or not hmac.compare_digest(
        offered.encode(), verify_token.encode()
    ):
        return WebhookAnswer(403, "verify token does not match", "text/plain")
    return WebhookAnswer(200, query.get("hub.challenge", ""), "text/plain")


def verify_signature(app_secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Check X-Hub-Signature-256 = "sha256=" + hex(HMAC-SHA256(app secret, raw body))."""
    lowered = {key.lower(): value for key, value in headers.items()}
    given = lowered.get(SIGNATURE_HEADER.lower())
    if not given:
        raise WebhookRejected(401, f"no {SIGNATURE_HEADER} header: not from Meta")
    expected = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise WebhookRejected(403, f"{SIGNATURE_HEADER} does not match the body")


def webhook_json(app_secret: str, headers: Mapping[str, str], body: bytes) -> Mapping[str, Any]:
    """The verified webhook payload (signature first: nothing unsigned is parsed)."""
    verify_signature(app_secret, headers, body)
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookRejected(400, "signed webhook body is not JSON") from None
    if not isinstance(payload, Mapping):
        raise WebhookRejected(400, "signed webhook body is not a JSON object")
    return payload


def webhook_changes(payload: Mapping[str, Any], obj: str, field: str) -> list[tuple[Any, Any]]:
    """(entry, change value) for each change of `field` in a payload about `obj`."""
    if payload.get("object") != obj:
        return []
    found: list[tuple[Any, Any]] = []
    for entry in payload.get("entry") or []:
        if not isinstance(entry, Mapping):
            continue
        for change in entry.get("changes") or []:
            if isinstance(change, Mapping) and change.get("field") == field:
                value = change.get("value")
                if isinstance(value, Mapping):
                    found.append((entry, value))
    return found
