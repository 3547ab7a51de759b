"""What a delivery row carries as JSON: its frozen posts, the receipts, and its keys.

Posts are rendered once, at release, from the approved content, and stored in the delivery's
`payload`; the worker sends exactly those bytes. Receipts (one per thread part) go back into
`part_receipts`, and the first part's receipt into `receipt`, where a later Cancel finds it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from channels.base import Post, Receipt

# deliveries.idempotency_key is String(128); part keys append ":<part>".
_MAX_KEY: Final = 120


def delivery_key(identifier: str, target: str, recipient: str | None) -> str:
    """Unique per version x target x recipient, stable across retries and workers.

    Part k of a thread is published with f"{key}:{k}". The recipient is hashed: keys reach
    platforms and logs, phone numbers and addresses should not."""
    key = f"{identifier}:{target}"
    if recipient is not None:
        key += ":" + _digest(recipient)[:16]
    if len(key) > _MAX_KEY:
        key = f"{identifier[:60]}:{_digest(f'{target}|{recipient}')[:40]}"
    return key


def part_key(key: str, part: int) -> str:
    return f"{key}:{part}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def mask_recipient(recipient: str | None) -> str | None:
    """Enough of a number or address to tell people apart on a board, not to contact them."""
    if recipient is None:
        return None
    if "@" in recipient:
        local, _, domain = recipient.partition("@")
        return f"{local[:1]}***@{domain}"
    return recipient[:-4].rstrip()[:5] + "***" + recipient[-2:]


# --- posts ---------------------------------------------------------------------------------------


def post_to_json(post: Post) -> dict[str, Any]:
    return {
        "text": post.text,
        "part": post.part,
        "parts": post.parts,
        "length": post.length,
        "limit": post.limit,
        "subject": post.subject,
        "html": post.html,
        "media_url": post.media_url,
        "language": post.language,
        "extra": dict(post.extra),
    }


def post_from_json(data: Mapping[str, Any]) -> Post:
    return Post(
        text=str(data["text"]),
        part=int(data.get("part", 1)),
        parts=int(data.get("parts", 1)),
        length=int(data.get("length", 0)),
        limit=data.get("limit"),
        subject=data.get("subject"),
        html=data.get("html"),
        media_url=data.get("media_url"),
        language=data.get("language"),
        extra=dict(data.get("extra") or {}),
    )


@dataclass(frozen=True)
class Payload:
    """A delivery's frozen content: the posts to send (for a retraction, what to publish if
    nothing earlier ever reached the target) and the mode it was rendered for."""

    posts: tuple[Post, ...]
    mode: str  # "live" or "exercise": checked against the target again before sending

    def to_json(self) -> dict[str, Any]:
        return {"posts": [post_to_json(post) for post in self.posts], "mode": self.mode}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Payload:
        if not data:
            return cls((), "")
        return cls(tuple(post_from_json(p) for p in data.get("posts") or ()), str(data["mode"]))


# --- receipts ------------------------------------------------------------------------------------


def receipt_to_json(receipt: Receipt) -> dict[str, Any]:
    return _receipt_json(receipt, _jsonable(receipt.extra))


def _receipt_json(receipt: Receipt, extra: Any) -> dict[str, Any]:
    return {
        "channel": receipt.channel,
        "target": receipt.target,
        "external_id": receipt.external_id,
        "url": receipt.url,
        "posted_at": receipt.posted_at.isoformat() if receipt.posted_at else None,
        "extra": extra,
    }


def receipt_json_text(receipt: Receipt) -> str:
    """json.dumps(receipt_to_json(receipt)), the same text; flat extras of plain values (nearly
    all) go straight to the C encoder, without a Python walk that copies them first."""
    extra = receipt.extra
    if type(extra) is not dict or not all(
        type(key) is str and (value is None or type(value) in _PLAIN)
        for key, value in extra.items()
    ):
        # Anything but flat text keys and plain values (a date, a nested mapping, a key the
        # encoder would write otherwise than str() does): the walk decides, as it always did.
        return json.dumps(receipt_to_json(receipt))
    return json.dumps(_receipt_json(receipt, extra))


def receipt_from_json(data: Mapping[str, Any]) -> Receipt:
    posted = data.get("posted_at")
    return Receipt(
        channel=str(data["channel"]),
        target=str(data["target"]),
        external_id=str(data["external_id"]),
        url=data.get("url"),
        posted_at=datetime.fromisoformat(posted) if posted else None,
        extra=dict(data.get("extra") or {}),
    )


def receipts_from_json(data: Sequence[Mapping[str, Any]] | None) -> list[Receipt]:
    return [receipt_from_json(item) for item in data or ()]


_PLAIN: Final = frozenset({str, int, float, bool})


def _jsonable(value: Any) -> Any:
    """Receipt extras are meant to be JSON already; make sure (dates and tuples slip in)."""
    # The plain kinds first, by exact type: they are nearly every value, and the Mapping check
    # below is an abstract-class lookup (a receipt's extras are written for every delivery).
    if value is None or type(value) in _PLAIN:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
