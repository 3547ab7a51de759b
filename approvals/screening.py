"""Content screening: pure checks that return findings, never raise.

Built-in wording rules (always on, because they are about exercise safety, not taste):
- an Exercise or Test alert carries the exercise marking in every headline and never claims to
  be real ("not a drill", "this is not an exercise", in English, Spanish or French);
- an Actual alert never carries the exercise marking, and saying it is a drill is flagged.
Sensitive-content rules (classification markings, phone numbers, internal host names) come from
config/screening.toml. Channels add their own length checks through `channel_length_checks`.

Phrases are matched case-, accent-, punctuation- and spacing-insensitively, but only on whole
words, so "NOT-A-DRILL" and "not  a\\ndrill" match while "cannot a drill..." does not.
"""

import re
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Final

from approvals.alert import EXERCISE_MARKING, AlertContent, Mode
from approvals.errors import ScreeningConfigError

__all__ = [
    "CLAIMS_DRILL",
    "CLAIMS_REAL",
    "NO_CHANNEL_CHECKS",
    "ChannelCheck",
    "Finding",
    "Level",
    "PatternRule",
    "PhoneRule",
    "ScreeningConfig",
    "blocking",
    "contains_phrase",
    "load_screening",
    "screen",
    "text_fields",
]


class Level(StrEnum):
    """How much a finding stops an alert."""

    block = "block"  # cannot be submitted until fixed
    warn = "warn"  # shown to the author and every approver; does not stop submission


@dataclass(frozen=True)
class Finding:
    level: Level
    rule: str  # a stable id, e.g. "exercise-marking-missing"
    field: str  # where, e.g. "infos[0].description"
    message: str  # what is wrong and what to do


@dataclass(frozen=True)
class PatternRule:
    """A sensitive-content pattern from screening.toml."""

    id: str
    level: Level
    pattern: re.Pattern[str]
    message: str


@dataclass(frozen=True)
class PhoneRule:
    """Phone numbers that are not on the allowed list (numbers kept as digits only)."""

    level: Level
    message: str
    allowed: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ScreeningConfig:
    """Sensitive-content rules. The empty default still runs the built-in wording rules."""

    patterns: tuple[PatternRule, ...] = ()
    phones: PhoneRule | None = None
    source: str = "<built-in>"


ChannelCheck = Callable[[AlertContent], list[Finding]]
NO_CHANNEL_CHECKS: Final[Mapping[str, ChannelCheck]] = MappingProxyType({})

# An exercise that says it is real is how a drill turns into a panic.
CLAIMS_REAL: Final = (
    "not a drill",
    "this is not an exercise",
    "not an exercise",
    "not a test",
    "no es un simulacro",
    "no es un ejercicio",
    "no es una prueba",
    "pas un exercice",
    "pas une simulation",
    "pas un test",
)
# A real alert that says it is a drill gets ignored. Flagged, not blocked: these words can be
# legitimate ("this is a test site"), and a blocked real alert costs lives too.
CLAIMS_DRILL: Final = (
    "this is a drill",
    "this is only a drill",
    "this is a test",
    "this is only a test",
    "this is an exercise",
    "esto es un simulacro",
    "esto es una prueba",
    "ceci est un exercice",
)

_PHONE: Final = re.compile(r"(?<![\w.+-])\+?\(?\d[\d().\- ]{5,}\d(?!\w)")
_ISO_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_IPV4: Final = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_PHONE_DIGITS: Final = range(7, 16)  # E.164 has at most 15 digits; fewer than 7 is a short code


def text_fields(content: AlertContent) -> list[tuple[str, str]]:
    """Every free-text field with its path, e.g. ("infos[0].headline", "...")."""
    fields: list[tuple[str, str]] = []
    if content.note:
        fields.append(("note", content.note))
    for i, info in enumerate(content.infos):
        for name in ("event", "headline", "description", "instruction", "web", "contact"):
            value = getattr(info, name)
            if value:
                fields.append((f"infos[{i}].{name}", value))
        for j, area in enumerate(info.areas):
            fields.append((f"infos[{i}].areas[{j}].description", area.description))
    return fields


def _fold(text: str) -> tuple[str, frozenset[int]]:
    """The text as one run of lowercase letters and digits, and where its words start and end."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    words = re.findall(r"[^\W_]+", plain)
    edges = [0]
    for word in words:
        edges.append(edges[-1] + len(word))
    return "".join(words), frozenset(edges)


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether `phrase` occurs in `text` as whole words, ignoring case, accents and spacing."""
    folded, edges = _fold(text)
    target, _ = _fold(phrase)
    if not target:
        return False
    start = folded.find(target)
    while start != -1:
        if start in edges and start + len(target) in edges:
            return True
        start = folded.find(target, start + 1)
    return False


def _first_phrase(text: str, phrases: Iterable[str]) -> str | None:
    return next((phrase for phrase in phrases if contains_phrase(text, phrase)), None)


def _wording_findings(content: AlertContent) -> list[Finding]:
    findings: list[Finding] = []
    fields = text_fields(content)
    if content.mode is Mode.exercise:
        for i, info in enumerate(content.infos):
            if EXERCISE_MARKING not in info.headline:
                findings.append(
                    Finding(
                        Level.block,
                        "exercise-marking-missing",
                        f"infos[{i}].headline",
                        f"a {content.status.value} alert must carry {EXERCISE_MARKING!r} in "
                        "every headline, exactly so; add it at the start of the headline",
                    )
                )
        for field, text in fields:
            phrase = _first_phrase(text, CLAIMS_REAL)
            if phrase:
                findings.append(
                    Finding(
                        Level.block,
                        "exercise-claims-real",
                        field,
                        f"a {content.status.value} alert says {phrase!r}; an exercise must never "
                        "claim to be real: remove it",
                    )
                )
    if content.mode is Mode.live:
        for field, text in fields:
            if contains_phrase(text, EXERCISE_MARKING):
                findings.append(
                    Finding(
                        Level.block,
                        "actual-has-exercise-marking",
                        field,
                        f"an Actual alert carries the exercise marking {EXERCISE_MARKING!r}; "
                        "remove it, or if this is a drill start again from an exercise template",
                    )
                )
            phrase = _first_phrase(text, CLAIMS_DRILL)
            if phrase:
                findings.append(
                    Finding(
                        Level.warn,
                        "actual-claims-drill",
                        field,
                        f"an Actual alert says {phrase!r}, so people may ignore it; make sure "
                        "this is meant to be a real alert",
                    )
                )
    return findings


def _phone_numbers(text: str) -> list[str]:
    numbers = []
    for match in _PHONE.finditer(text):
        candidate = match.group().strip()
        digits = re.sub(r"\D", "", candidate)
        if len(digits) not in _PHONE_DIGITS:
            continue
        if _ISO_DATE.fullmatch(candidate) or _IPV4.fullmatch(candidate):
            continue
        if candidate.count(".") == 1 and not re.search(r"[ ()-]", candidate):
            continue  # a decimal number such as a longitude, 157.8583
        numbers.append(candidate)
    return numbers


def _is_allowed(number: str, allowed: frozenset[str]) -> bool:
    digits = re.sub(r"\D", "", number)
    for listed in allowed:
        # A listed number matches with or without its country code, but a short code such as
        # 911 never matches the tail of a longer number.
        shorter = min(len(digits), len(listed))
        if digits == listed or (
            shorter >= 7 and (digits.endswith(listed) or listed.endswith(digits))
        ):
            return True
    return False


def _sensitive_findings(content: AlertContent, config: ScreeningConfig) -> list[Finding]:
    findings: list[Finding] = []
    for field, text in text_fields(content):
        for rule in config.patterns:
            found = rule.pattern.search(text)
            if found:
                findings.append(
                    Finding(rule.level, rule.id, field, f"{rule.message} (found {found.group()!r})")
                )
        if config.phones is not None and not field.endswith(".web"):
            for number in _phone_numbers(text):
                if not _is_allowed(number, config.phones.allowed):
                    findings.append(
                        Finding(
                            config.phones.level,
                            "phone-number",
                            field,
                            f"{config.phones.message} (found {number!r})",
                        )
                    )
    return findings


def screen(
    content: AlertContent,
    config: ScreeningConfig,
    channel_length_checks: Mapping[str, ChannelCheck] = NO_CHANNEL_CHECKS,
) -> list[Finding]:
    """Every finding for this content: wording, sensitive content, then each targeted channel's."""
    findings = _wording_findings(content) + _sensitive_findings(content, config)
    for channel in content.channels:
        check = channel_length_checks.get(channel)
        if check is not None:
            findings.extend(check(content))
    return findings


def blocking(findings: Iterable[Finding]) -> list[Finding]:
    return [finding for finding in findings if finding.level is Level.block]


_CONFIG_KEYS: Final = frozenset({"phone_numbers", "patterns"})
_PHONE_KEYS: Final = frozenset({"level", "message", "allowed"})
_PATTERN_KEYS: Final = frozenset({"id", "level", "pattern", "message"})
_RULE_ID: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def load_screening(path: Path | str) -> ScreeningConfig:
    """Read config/screening.toml; ScreeningConfigError names the file, rule, key and value."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ScreeningConfigError(path, f"cannot read the file: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ScreeningConfigError(path, f"not valid TOML: {error}") from error
    _only_keys(path, "file", data, _CONFIG_KEYS)
    phones = _read_phones(path, data["phone_numbers"]) if "phone_numbers" in data else None
    raw_patterns = data.get("patterns", [])
    if not isinstance(raw_patterns, list):
        raise ScreeningConfigError(path, "patterns must be a list of [[patterns]] tables")
    patterns = tuple(_read_pattern(path, index, raw) for index, raw in enumerate(raw_patterns))
    ids = [pattern.id for pattern in patterns]
    for rule_id in ids:
        if ids.count(rule_id) > 1:
            raise ScreeningConfigError(
                path, f"pattern id '{rule_id}' is used {ids.count(rule_id)} times; ids must differ"
            )
    return ScreeningConfig(patterns=patterns, phones=phones, source=str(path))


def _only_keys(
    path: Path, where: str, table: Mapping[str, object], allowed: frozenset[str]
) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ScreeningConfigError(
            path,
            f"{where}: unknown key '{unknown[0]}'; allowed keys: {', '.join(sorted(allowed))}",
        )


def _string(path: Path, where: str, table: Mapping[str, object], key: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ScreeningConfigError(
            path, f"{where}: {key} must be a non-empty string, not {value!r}"
        )
    return value


def _level(path: Path, where: str, table: Mapping[str, object]) -> Level:
    value = _string(path, where, table, "level")
    try:
        return Level(value)
    except ValueError:
        raise ScreeningConfigError(
            path, f'{where}: level {value!r} must be "block" or "warn"'
        ) from None


def _read_phones(path: Path, raw: object) -> PhoneRule:
    where = "[phone_numbers]"
    if not isinstance(raw, dict):
        raise ScreeningConfigError(path, f"{where} must be a table")
    _only_keys(path, where, raw, _PHONE_KEYS)
    allowed = raw.get("allowed", [])
    if not isinstance(allowed, list) or not all(isinstance(item, str) for item in allowed):
        raise ScreeningConfigError(path, f'{where}: allowed must be a list of strings like ["911"]')
    digits = set()
    for number in allowed:
        only_digits = re.sub(r"\D", "", number)
        if not only_digits:
            raise ScreeningConfigError(path, f"{where}: allowed number {number!r} has no digits")
        digits.add(only_digits)
    return PhoneRule(
        level=_level(path, where, raw),
        message=_string(path, where, raw, "message"),
        allowed=frozenset(digits),
    )


def _read_pattern(path: Path, index: int, raw: object) -> PatternRule:
    where = f"patterns[{index}]"
    if not isinstance(raw, dict):
        raise ScreeningConfigError(path, f"{where} must be a [[patterns]] table")
    rule_id = _string(path, where, raw, "id")
    if not _RULE_ID.fullmatch(rule_id):
        raise ScreeningConfigError(
            path, f"{where}: id {rule_id!r} must be lowercase letters, digits and '-'"
        )
    where = f"pattern '{rule_id}' ({where})"
    _only_keys(path, where, raw, _PATTERN_KEYS)
    source = _string(path, where, raw, "pattern")
    try:
        pattern = re.compile(source)
    except re.error as error:
        raise ScreeningConfigError(
            path, f"{where}: pattern {source!r} is not a valid regular expression: {error}"
        ) from None
    if pattern.search(""):
        raise ScreeningConfigError(
            path, f"{where}: pattern {source!r} matches empty text, so it would flag every alert"
        )
    return PatternRule(
        id=rule_id,
        level=_level(path, where, raw),
        pattern=pattern,
        message=_string(path, where, raw, "message"),
    )
