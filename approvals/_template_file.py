"""Reading one template file and checking everything that can be checked from the file alone.
Public via templates.py; the checks that need a rendered alert live there.
"""

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from approvals.alert import Mode, MsgType, Status
from approvals.errors import TemplateFileError
from approvals.screening import contains_phrase

# Placeholders a paired correction or cancel text may use, filled from the original alert's info.
PAIRED_PLACEHOLDERS: Final = frozenset({"event", "area", "headline"})

_STATUS_FOR: Final = {Mode.live: Status.actual, Mode.exercise: Status.exercise}
_EXERCISE_PREFIX: Final = "exercise-"
_MODE_WORDS: Final = ("exercise", "drill", "test")  # never in a live template's name or title
_NAME: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
PLACEHOLDER: Final = re.compile(r"\{([^{}]*)\}")
_PLACEHOLDER_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
_TEXT_KEYS: Final = frozenset(
    {"headline", "description", "instruction", "event", "contact", "note"}
)
_FILE_KEYS: Final = frozenset(
    {"name", "mode", "title", "summary", "placeholders", "content", "correction", "cancel"}
)
_PAIRED_KEYS: Final = frozenset({"language", "headline", "description", "instruction"})


@dataclass(frozen=True)
class PairedText:
    """A pre-written correction or cancel text for one language."""

    language: str
    headline: str  # fixed text, no placeholders
    description: str
    instruction: str | None = None


@dataclass(frozen=True)
class Template:
    """One template as loaded; TemplateSet.render turns it into alert content."""

    name: str
    mode: Mode
    title: str  # what the picker shows
    summary: str
    placeholders: Mapping[str, str]  # name -> label shown next to the input
    content: Mapping[str, object]  # AlertContent fields, with {placeholders} in text fields
    correction: tuple[PairedText, ...]
    cancel: tuple[PairedText, ...]
    path: Path


def placeholders_in(text: str) -> list[str]:
    """The {names} used in a text."""
    return PLACEHOLDER.findall(text)


def read_template(path: Path, mode: Mode) -> Template:
    """One template file, checked on its own: format, names, mode, status and placeholders."""

    def refuse(message: str) -> TemplateFileError:
        return TemplateFileError(path, message)

    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise refuse(f"not valid TOML: {error}") from None
    unknown = sorted(set(data) - _FILE_KEYS)
    if unknown:
        raise refuse(f"unknown key '{unknown[0]}'; allowed keys: {', '.join(sorted(_FILE_KEYS))}")
    missing = sorted(_FILE_KEYS - set(data))
    if missing:
        raise refuse(f"missing key '{missing[0]}'")
    if data["mode"] != mode.value:
        raise refuse(
            f"mode = {data['mode']!r} but the file is in {mode.value}/; a template's mode must "
            "match its directory: move the file or fix the mode"
        )
    name = _check_name(path, data["name"], mode)
    title = _check_title(path, data["title"], mode)
    placeholders = _check_placeholder_table(path, data["placeholders"])
    content = data["content"]
    if not isinstance(content, dict):
        raise refuse("content must be a table: [content]")
    _check_content_fields(path, content, mode, placeholders)
    template = Template(
        name=name,
        mode=mode,
        title=title,
        summary=_check_text(path, "summary", data["summary"]),
        placeholders=placeholders,
        content=content,
        correction=_paired_texts(path, "correction", data["correction"]),
        cancel=_paired_texts(path, "cancel", data["cancel"]),
        path=path,
    )
    return template


def _check_name(path: Path, name: object, mode: Mode) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TemplateFileError(path, f"name = {name!r} must be lowercase letters, digits and '-'")
    if name != path.stem:
        raise TemplateFileError(
            path, f"name = {name!r} must equal the file name {path.stem!r}, so it is found once"
        )
    if mode is Mode.exercise and not name.startswith(_EXERCISE_PREFIX):
        raise TemplateFileError(
            path, f"exercise template name {name!r} must start with {_EXERCISE_PREFIX!r}"
        )
    if mode is Mode.live and set(name.split("-")) & set(_MODE_WORDS):
        raise TemplateFileError(
            path,
            f"live template name {name!r} contains {'/'.join(_MODE_WORDS)}; live names never "
            "do, so a live template cannot be mistaken for a drill",
        )
    return name


def _check_text(path: Path, key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TemplateFileError(path, f"{key} must be non-empty text")
    return value


def _check_title(path: Path, title: object, mode: Mode) -> str:
    if not isinstance(title, str) or not title.strip():
        raise TemplateFileError(path, "title must be a non-empty string")
    if mode is Mode.exercise and not title.startswith("EXERCISE"):
        raise TemplateFileError(
            path, f"exercise template title {title!r} must start with 'EXERCISE'"
        )
    if mode is Mode.live:
        for word in _MODE_WORDS:
            if contains_phrase(title, word):
                raise TemplateFileError(
                    path, f"live template title {title!r} says {word!r}; live titles never do"
                )
    return title


def _check_placeholder_table(path: Path, table: object) -> dict[str, str]:
    if not isinstance(table, dict):
        raise TemplateFileError(path, 'placeholders must be a table of name = "label"')
    for key, label in table.items():
        if not _PLACEHOLDER_NAME.fullmatch(key):
            raise TemplateFileError(
                path, f"placeholders.{key}: names are lowercase letters, digits and '_'"
            )
        if not isinstance(label, str) or not label.strip():
            raise TemplateFileError(path, f"placeholders.{key}: give a label saying what to enter")
    return dict(table)


def _walk_text(value: object, where: str) -> list[tuple[str, str]]:
    """(path, text) for every string under `value`."""
    if isinstance(value, str):
        return [(where, value)]
    if isinstance(value, dict):
        return [item for key, sub in value.items() for item in _walk_text(sub, f"{where}.{key}")]
    if isinstance(value, list):
        return [item for i, sub in enumerate(value) for item in _walk_text(sub, f"{where}[{i}]")]
    return []


def _check_content_fields(
    path: Path, content: Mapping[str, object], mode: Mode, declared: Mapping[str, str]
) -> None:
    for key in ("template", "references"):
        if key in content:
            raise TemplateFileError(path, f"content.{key} is set by the service, not a template")
    expected = _STATUS_FOR[mode]
    if content.get("status") != expected.value:
        raise TemplateFileError(
            path,
            f"content.status = {content.get('status')!r}: a {mode.value} template must have "
            f"status {expected.value!r}",
        )
    if content.get("msg_type") != MsgType.alert.value:
        raise TemplateFileError(
            path, "content.msg_type must be 'Alert'; corrections and cancels are the paired texts"
        )
    used = set()
    for where, text in _walk_text(content, "content"):
        names = placeholders_in(text)
        leftover = PLACEHOLDER.sub("", text)
        if "{" in leftover or "}" in leftover:
            raise TemplateFileError(path, f"{where}: unmatched brace in {text!r}")
        if names and where.rsplit(".", 1)[-1].split("[")[0] not in _TEXT_KEYS:
            raise TemplateFileError(
                path,
                f"{where}: placeholders are only filled into text fields "
                f"({', '.join(sorted(_TEXT_KEYS))} and area descriptions)",
            )
        for name in names:
            if name not in declared:
                raise TemplateFileError(
                    path, f"{where}: placeholder {{{name}}} is not declared in [placeholders]"
                )
            used.add(name)
    unused = sorted(set(declared) - used)
    if unused:
        raise TemplateFileError(
            path, f"placeholders.{unused[0]} is declared but never used; use it or remove it"
        )


def _paired_texts(path: Path, kind: str, raw: object) -> tuple[PairedText, ...]:
    if not isinstance(raw, list) or not raw:
        raise TemplateFileError(path, f"{kind}: add at least one [[{kind}]] text")
    texts = []
    for index, entry in enumerate(raw):
        where = f"{kind}[{index}]"
        if not isinstance(entry, dict):
            raise TemplateFileError(path, f"{where} must be a [[{kind}]] table")
        unknown = sorted(set(entry) - _PAIRED_KEYS)
        if unknown:
            raise TemplateFileError(
                path,
                f"{where}: unknown key '{unknown[0]}'; allowed: {', '.join(sorted(_PAIRED_KEYS))}",
            )
        for key in ("headline", "description"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise TemplateFileError(path, f"{where}.{key} must be non-empty text")
        if placeholders_in(entry["headline"]):
            raise TemplateFileError(
                path,
                f"{where}.headline must be fixed text without placeholders, so a {kind} can never "
                "be too long to send",
            )
        for key in ("description", "instruction"):
            for name in placeholders_in(str(entry.get(key) or "")):
                if name not in PAIRED_PLACEHOLDERS:
                    raise TemplateFileError(
                        path,
                        f"{where}.{key}: placeholder {{{name}}} cannot be used here; paired texts "
                        f"may use only {', '.join(sorted(PAIRED_PLACEHOLDERS))}, taken from the "
                        "original alert",
                    )
        texts.append(
            PairedText(
                language=str(entry.get("language", "en-US")),
                headline=entry["headline"],
                description=entry["description"],
                instruction=entry.get("instruction"),
            )
        )
    return tuple(texts)
