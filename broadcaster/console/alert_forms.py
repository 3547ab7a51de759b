"""Turning the console's alert forms into alert content, and refusals into field messages.

Forms post flat fields (`headline-0`, `channels`, ...). The content is always built as plain
data and validated by `AlertContent` itself, so the console can never make an alert the API
would refuse; each validation error is mapped back to the form field it came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from multidict import MultiDictProxy
from pydantic import ValidationError

from approvals.alert import (
    EXERCISE_MARKING,
    AlertContent,
    Category,
    Certainty,
    Mode,
    Severity,
    Status,
    Urgency,
)
from broadcaster.targets import Directory
from channels.registry import CHANNELS

FormData = MultiDictProxy[Any]
# The texts a duty officer edits, per language, in the order the form shows them.
TEXT_FIELDS: Final = ("headline", "description", "instruction")
CHOICES: Final = {
    "category": [c.value for c in Category],
    "urgency": [u.value for u in Urgency],
    "severity": [s.value for s in Severity],
    "certainty": [c.value for c in Certainty],
}


class FormErrors(Exception):
    """Some fields are wrong; `errors` maps each form field to what to do about it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def chosen_channels(form: FormData) -> list[str]:
    return [value for value in form.getall("channels", []) if isinstance(value, str)]


def channel_choices(
    directory: Directory, mode: Mode, chosen: Sequence[str]
) -> list[dict[str, Any]]:
    """Every channel this installation knows, whether it has a target for the mode, ticked?"""
    return [
        {
            "name": name,
            "checked": name in chosen,
            "has_target": bool(directory.for_alert(name, mode)),
        }
        for name in sorted(CHANNELS)
    ]


def field_for(location: Sequence[int | str], prefix: str) -> str:
    """The form field a content validation error belongs to."""
    parts = [str(part) for part in location]
    if parts and parts[0] == "infos" and len(parts) >= 3:
        index, name = parts[1], parts[2]
        if name == "areas":
            return f"{prefix}area-{index}"
        if name == "categories":
            return f"{prefix}category-{index}"
        return f"{prefix}{name}-{index}"
    if parts and parts[0] == "infos":
        return f"{prefix}headline-0"
    return f"{prefix}{parts[0] if parts else 'content'}"


def validate(data: Mapping[str, Any], *, prefix: str = "") -> AlertContent:
    try:
        return AlertContent.model_validate(data)
    except ValidationError as error:
        errors: dict[str, str] = {}
        for detail in error.errors(include_url=False):
            name = field_for(detail["loc"], prefix)
            errors.setdefault(name, detail["msg"].removeprefix("Value error, "))
        raise FormErrors(errors) from None


def blank_defaults(mode: Mode) -> dict[str, str]:
    """What a blank form starts with: the exercise marking is already in an exercise headline."""
    return {
        "language-0": "en-US",
        "category-0": Category.safety.value,
        "urgency-0": Urgency.immediate.value,
        "severity-0": Severity.severe.value,
        "certainty-0": Certainty.observed.value,
        "headline-0": f"{EXERCISE_MARKING} " if mode is Mode.exercise else "",
    }


def blank_content(form: FormData, mode: Mode) -> AlertContent:
    """A new Alert written out on the blank form (one language)."""
    area = text(form, "area-0")
    info: dict[str, Any] = {
        "language": text(form, "language-0") or "en-US",
        "categories": [text(form, "category-0")],
        "event": text(form, "event-0"),
        "urgency": text(form, "urgency-0"),
        "severity": text(form, "severity-0"),
        "certainty": text(form, "certainty-0"),
        "headline": text(form, "headline-0"),
        "description": text(form, "description-0") or None,
        "instruction": text(form, "instruction-0") or None,
        "web": text(form, "web-0") or None,
        "contact": text(form, "contact-0") or None,
        "areas": [{"description": area}] if area else [],
    }
    status = Status.actual if mode is Mode.live else Status.exercise
    return validate(
        {
            "status": status.value,
            "msg_type": "Alert",
            "infos": [info],
            "channels": chosen_channels(form),
        }
    )


def edited_content(current: AlertContent, form: FormData) -> AlertContent:
    """The current content with the texts and channels from the edit form."""
    data = current.model_dump(mode="json")
    for index, info in enumerate(data["infos"]):
        for name in TEXT_FIELDS:
            value = text(form, f"{name}-{index}")
            info[name] = value if value or name == "headline" else None
    data["channels"] = chosen_channels(form)
    return validate(data)


def edit_values(content: AlertContent) -> dict[str, str]:
    values: dict[str, str] = {}
    for index, info in enumerate(content.infos):
        for name in TEXT_FIELDS:
            values[f"{name}-{index}"] = getattr(info, name) or ""
    return values


def posted_values(form: FormData) -> dict[str, str]:
    return {
        key: value.strip()
        for key, value in form.items()
        if isinstance(value, str) and key != "csrf_token"
    }
