"""config/triage.toml: the lexicon, scoring weights, clustering, gazetteer, replies and rumour
control, loaded and checked once at start-up (a mistake stops start-up naming the key)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from approvals.alert import Category, Certainty, Severity, Urgency
from broadcaster.settings import SHIPPED_CONFIG_DIR, ConfigError, TriageSettings
from broadcaster.triage.text import Gazetteer, Lexicon, Place, Term, fold, words

__all__ = ["FreeText", "TriageRules", "load_triage_rules"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scoring(_Model):
    high_priority: float = Field(ge=0, le=100)
    answers_active_alert: float
    inside_alert_area: float
    similar_per_doubling: float = Field(ge=0)
    similar_max: float = Field(ge=0)
    reporter_misinformation: float = Field(le=0)
    reporter_confirmed: float = Field(ge=0)
    reporter_burst_per_hour: int = Field(ge=1)
    reporter_burst: float = Field(le=0)


class Clustering(_Model):
    similarity: float = Field(gt=0, le=1)
    window_minutes: float = Field(gt=0, le=7 * 24 * 60)
    max_distance_km: float = Field(gt=0)


class Language(_Model):
    name: str
    stopwords: tuple[str, ...] = ()
    negations: tuple[str, ...] = ()


class CategoryRule(_Model):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    label: str = Field(min_length=1, max_length=80)
    points: float
    extra_per_word: float = 0
    extra_max: float = Field(default=0, ge=0)
    # Language code ("en", "es", ...) or "any" -> entries.
    words: dict[str, tuple[str, ...]]


class PlaceRule(_Model):
    name: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class FreeText(StrEnum):
    never = "never"  # canned replies only
    second_person = "second_person"  # another responder approves free text before it is sent
    allowed = "allowed"  # any responder sends free text at once


class Replies(_Model):
    free_text: FreeText
    max_length: int = Field(ge=20, le=5000)
    # name -> {"title": ..., language code -> text}
    canned: dict[str, dict[str, str]]

    @field_validator("canned")
    @classmethod
    def _check_canned(cls, canned: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for name, texts in canned.items():
            if "title" not in texts:
                raise ValueError(f"canned reply {name!r} needs a title")
            if not any(key != "title" for key in texts):
                raise ValueError(f"canned reply {name!r} needs a text in at least one language")
        return canned


class RumourInfo(_Model):
    language: str
    event: str
    headline: str
    description: str
    instruction: str | None = None


class RumourControl(_Model):
    channels: tuple[str, ...] = Field(min_length=1)
    category: Category
    urgency: Urgency
    severity: Severity
    certainty: Certainty
    infos: tuple[RumourInfo, ...] = Field(min_length=1)


class TriageFile(_Model):
    scoring: Scoring
    clustering: Clustering
    languages: dict[str, Language]
    categories: tuple[CategoryRule, ...]
    places: tuple[PlaceRule, ...] = ()
    replies: Replies
    rumour_control: RumourControl


@dataclass(frozen=True)
class TriageRules:
    """The triage file, checked, with its lexicon and gazetteer ready to match."""

    source: Path
    scoring: Scoring
    clustering: Clustering
    categories: dict[str, CategoryRule]
    languages: dict[str, Language]
    lexicon: Lexicon
    gazetteer: Gazetteer
    replies: Replies
    rumour_control: RumourControl

    def canned_text(self, name: str, language: str | None) -> tuple[str, str]:
        """The canned reply in the reporter's language when there is one, else English (or the
        first written); (language, text)."""
        texts = {key: value for key, value in self.replies.canned[name].items() if key != "title"}
        for wanted in (language, "en"):
            if wanted and wanted in texts:
                return wanted, texts[wanted]
        first = next(iter(texts))
        return first, texts[first]


def rules_path(settings: TriageSettings) -> Path:
    # Settings made in code (tests, embedding) keep a relative path: the shipped config/.
    path = settings.rules_file
    return path if path.is_absolute() else SHIPPED_CONFIG_DIR / path


def load_triage_rules(settings: TriageSettings) -> TriageRules:
    path = rules_path(settings)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"triage.rules_file: {path} does not exist; point it at the triage rules "
            "(the shipped one is config/triage.toml)"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    return parse_triage_rules(data, path)


def parse_triage_rules(data: dict[str, Any], path: Path) -> TriageRules:
    try:
        parsed = TriageFile.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in detail['loc'])}: {detail['msg']}"
            for detail in error.errors(include_url=False)
        )
        raise ConfigError(f"{path}: {problems}") from None
    for code in parsed.languages:
        _check(_is_language(code), path, f"languages.{code}", "not a language code like 'en'")
    terms: list[Term] = []
    codes: set[str] = set()
    for index, category in enumerate(parsed.categories):
        where = f"categories[{index}] ({category.code})"
        _check(category.code not in codes, path, where, "the code is used twice")
        codes.add(category.code)
        for language, entries in category.words.items():
            known = language == "any" or language in parsed.languages
            _check(known, path, f"{where}.words.{language}", "not a language in [languages]")
            for entry in entries:
                try:
                    terms.append(
                        Term.parse(category.code, entry, None if language == "any" else language)
                    )
                except ValueError as error:
                    raise ConfigError(f"{path}: {where}.words.{language}: {error}") from None
    # A language's negations are as telling of it as its stopwords ("sin", "pas").
    stopwords = {
        code: frozenset(
            token
            for word in (*language.stopwords, *language.negations)
            for token in words(fold(word))
        )
        for code, language in parsed.languages.items()
    }
    negations = frozenset(
        token
        for language in parsed.languages.values()
        for word in language.negations
        for token in words(fold(word))
    )
    for name, texts in parsed.replies.canned.items():
        for language, text in texts.items():
            if language == "title":
                continue
            where = f"replies.canned.{name}.{language}"
            _check(_is_language(language), path, where, "not a language code like 'en'")
            _check(
                len(text) <= parsed.replies.max_length,
                path,
                where,
                f"longer than replies.max_length ({parsed.replies.max_length})",
            )
    gazetteer = Gazetteer(
        [
            (Place(place.name, place.latitude, place.longitude), (place.name, *place.aliases))
            for place in parsed.places
        ]
    )
    return TriageRules(
        source=path,
        scoring=parsed.scoring,
        clustering=parsed.clustering,
        categories={category.code: category for category in parsed.categories},
        languages=dict(parsed.languages),
        lexicon=Lexicon(terms, stopwords, negations),
        gazetteer=gazetteer,
        replies=parsed.replies,
        rumour_control=parsed.rumour_control,
    )


def _is_language(code: str) -> bool:
    return len(code) in (2, 3) and code.isascii() and code.isalpha() and code.islower()


def _check(ok: bool, path: Path, where: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"{path}: {where}: {problem}")
