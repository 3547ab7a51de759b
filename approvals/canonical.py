"""Canonical JSON of alert content and its SHA-256: the exact thing an approval is bound to.

Two contents that mean the same hash the same: keys sorted, no insignificant whitespace, date-times
in UTC, strings in Unicode NFC (so an "é" typed two ways is one text), -0.0 written as 0.0. Every
field is written, defaults included, so a new default can never silently change what was approved.
"""

import hashlib
import json
import unicodedata
from datetime import UTC, datetime
from enum import Enum

from approvals.alert import AlertContent

__all__ = ["canonical_json", "content_hash"]


def canonical_json(content: AlertContent) -> str:
    """The content as canonical JSON text."""
    return json.dumps(
        _normalise(content.model_dump(mode="python")),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def content_hash(content: AlertContent) -> str:
    """SHA-256 (hex) of the canonical JSON, encoded as UTF-8."""
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


def _normalise(value: object) -> object:
    if isinstance(value, Enum):
        return _normalise(value.value)
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {_normalise_key(key): _normalise(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(item) for item in value]
    if isinstance(value, float):
        return value + 0.0  # turns -0.0 into 0.0; equal numbers must hash equal
    if value is None or isinstance(value, bool | int):
        return value
    raise TypeError(f"canonical JSON has no form for {type(value).__name__}: {value!r}")


def _normalise_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"canonical JSON keys must be strings, not {type(key).__name__}")
    return unicodedata.normalize("NFC", key)
