"""What changed between two versions of an alert, field by field, word by word, for the
approver who must sign off exactly the words that go out."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Final, Literal

from approvals.alert import AlertContent, Info

Piece = tuple[Literal["same", "ins", "del"], str]
_INFO_FIELDS: Final = (
    ("headline", "Headline"),
    ("description", "What is happening"),
    ("instruction", "What people must do"),
    ("event", "Event"),
    ("severity", "Severity"),
    ("urgency", "Urgency"),
    ("certainty", "Certainty"),
    ("areas", "Area"),
    ("web", "Web address"),
    ("contact", "Contact"),
)


@dataclass(frozen=True)
class Change:
    label: str
    language: str | None
    before: str
    after: str
    pieces: tuple[Piece, ...]


def words(before: str, after: str) -> tuple[Piece, ...]:
    """`after` against `before`, as runs of unchanged, inserted and deleted words."""
    old, new = before.split(), after.split()
    pieces: list[Piece] = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            pieces.append(("same", " ".join(old[i1:i2])))
            continue
        if i2 > i1:
            pieces.append(("del", " ".join(old[i1:i2])))
        if j2 > j1:
            pieces.append(("ins", " ".join(new[j1:j2])))
    return tuple(pieces)


def _info_value(info: Info | None, name: str) -> str:
    if info is None:
        return ""
    if name == "areas":
        return "; ".join(area.description for area in info.areas)
    value = getattr(info, name)
    return "" if value is None else str(value)


def _change(label: str, language: str | None, before: str, after: str) -> Change | None:
    if before == after:
        return None
    return Change(label, language, before, after, words(before, after))


def changes(before: AlertContent | None, after: AlertContent) -> list[Change]:
    """Every field that differs; with no earlier version, nothing (the page says so)."""
    if before is None:
        return []
    found: list[Change | None] = [
        _change(
            "Type",
            None,
            f"{before.msg_type} ({before.status})",
            f"{after.msg_type} ({after.status})",
        ),
        _change("Channels", None, ", ".join(before.channels), ", ".join(after.channels)),
    ]
    old_infos = {info.language: info for info in before.infos}
    new_infos = {info.language: info for info in after.infos}
    for language in [*new_infos, *(lang for lang in old_infos if lang not in new_infos)]:
        for name, label in _INFO_FIELDS:
            found.append(
                _change(
                    label,
                    language,
                    _info_value(old_infos.get(language), name),
                    _info_value(new_infos.get(language), name),
                )
            )
    return [change for change in found if change is not None]
