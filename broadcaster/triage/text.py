"""Reading what people wrote: folding, words, lexicon matches, language and places.

Text is folded before matching (NFKC, case-folded, accents removed) because people in a hurry
type "blesse" for "blessé" and "atrapados" on a phone without accents; lexicon entries are folded
the same way, so a config file may be written with or without them. English contractions are
joined ("can't" → "cant") while French elisions are split ("l'eau" → "l", "eau"), so entries can
be written as plain words in both languages.

Everything here is pure and fast: it runs once per report on the ingestion path.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "Analysis",
    "Gazetteer",
    "Lexicon",
    "Place",
    "Term",
    "content_words",
    "fold",
    "words",
]

_WORD: Final = re.compile(r"\w+")
# "can't", "it's", "we're": the contraction joins its word; any other apostrophe separates.
_CONTRACTION: Final = re.compile(r"(\w)['\u2019](t|s|re|ve|ll|d|m)\b")
_APOSTROPHE: Final = re.compile(r"['\u2019]")
# "38.0521, -121.9487" in a message: a location someone pasted from a map app.
_COORDINATES: Final = re.compile(
    r"(?<![\d.])(-?\d{1,2}\.\d{3,})\s*,\s*(-?\d{1,3}\.\d{3,})(?![\d.])"
)


class _Unmarked(dict[int, int | None]):
    """str.translate's table dropping combining marks, filled in as characters are first met:
    the lookups stay in C (a Python call per character cost more than the rest of fold)."""

    def __missing__(self, char: int) -> int | None:
        kept = None if unicodedata.combining(chr(char)) else char
        self[char] = kept
        return kept


_UNMARKED: Final = _Unmarked()


def fold(text: str) -> str:
    """Case-folded, compatibility-normalised text without accents or combining marks."""
    folded = text.casefold()
    if not folded.isascii():  # most messages are plain ASCII: skip the per-character pass
        folded = unicodedata.normalize("NFKD", folded).translate(_UNMARKED)
    if "'" in folded or "\u2019" in folded:
        folded = _APOSTROPHE.sub(" ", _CONTRACTION.sub(r"\1\2", folded))
    return folded


def words(folded: str) -> list[str]:
    return _WORD.findall(folded)


def coordinates_in(text: str) -> tuple[float, float] | None:
    """The first latitude, longitude pair written in `text`, if it is a possible place."""
    if "." not in text:  # most messages: no decimal number, so no regex search
        return None
    for match in _COORDINATES.finditer(text):
        lat, lon = float(match.group(1)), float(match.group(2))
        if -90 <= lat <= 90 and -180 <= lon <= 180:
            return lat, lon
    return None


def content_words(tokens: Iterable[str], stopwords: frozenset[str]) -> frozenset[str]:
    """The words that carry meaning, for comparing two reports: no stopwords, no one-letter
    words, plural "s" dropped from longer words ("roofs" and "roof" are the same thing)."""
    kept: set[str] = set()
    for token in tokens:
        if token in stopwords or (len(token) < 2 and not token.isdigit()):
            continue
        kept.add(token[:-1] if len(token) > 4 and token.endswith("s") else token)
    return frozenset(kept)


@dataclass(frozen=True)
class Term:
    """One lexicon entry of a category, as written in the config and as matched."""

    category: str
    shown: str  # as written in triage.toml, for the reason a responder reads
    language: str | None  # None: every language (the `any` list)
    tokens: tuple[str, ...] = ()  # folded words; empty for a symbol
    prefix: bool = False  # "atrapad*": the (single) word starts with tokens[0]
    symbol: str | None = None  # an emoji or sign, matched anywhere in the text

    @classmethod
    def parse(cls, category: str, entry: str, language: str | None) -> Term:
        prefix = entry.endswith("*")
        body = entry[:-1] if prefix else entry
        tokens = tuple(words(fold(body)))
        if not tokens:
            return cls(category, entry, language, symbol=unicodedata.normalize("NFKC", body))
        if prefix and len(tokens) != 1:
            raise ValueError(f"{entry!r}: only a single word can end with '*'")
        return cls(category, entry, language, tokens, prefix)


@dataclass(frozen=True)
class Analysis:
    """What the lexicon found in one text."""

    matches: Mapping[str, tuple[str, ...]]  # category code -> the entries found, in order
    language: str | None
    tokens: tuple[str, ...]


@dataclass
class Lexicon:
    """Every category's terms, indexed for one pass over a text's words."""

    terms: Sequence[Term]
    stopwords: Mapping[str, frozenset[str]]  # language -> folded stopwords
    negations: frozenset[str]
    _single: dict[str, list[Term]] = field(default_factory=dict, init=False)
    _phrase: dict[str, list[Term]] = field(default_factory=dict, init=False)
    _prefix: list[Term] = field(default_factory=list, init=False)
    _symbol: list[Term] = field(default_factory=list, init=False)
    _ascii_symbol: list[Term] = field(default_factory=list, init=False)  # all a plain text can hold
    # folded word -> the languages whose stopword it is: one pass counts every language's votes
    _stopword_languages: dict[str, tuple[str, ...]] = field(default_factory=dict, init=False)
    _first_words: frozenset[str] = field(default=frozenset(), init=False)  # of single and phrase
    _prefixes: tuple[str, ...] = field(default=(), init=False)  # of the prefix terms

    def __post_init__(self) -> None:
        for language, stopwords in self.stopwords.items():
            for stopword in stopwords:
                self._stopword_languages[stopword] = (
                    *self._stopword_languages.get(stopword, ()),
                    language,
                )
        for term in self.terms:
            if term.symbol is not None:
                self._symbol.append(term)
                if term.symbol.isascii():
                    self._ascii_symbol.append(term)
            elif term.prefix:
                self._prefix.append(term)
            elif len(term.tokens) == 1:
                self._single.setdefault(term.tokens[0], []).append(term)
            else:
                self._phrase.setdefault(term.tokens[0], []).append(term)
        self._first_words = frozenset(self._single) | frozenset(self._phrase)
        self._prefixes = tuple(term.tokens[0] for term in self._prefix)

    @property
    def all_stopwords(self) -> frozenset[str]:
        return frozenset().union(*self.stopwords.values(), self.negations)

    def analyse(self, text: str, language_hint: str | None = None) -> Analysis:
        folded = fold(text)
        tokens = tuple(words(folded))
        found: dict[str, list[str]] = {}
        votes: dict[str, int] = {}

        def hit(term: Term) -> None:
            shown = found.setdefault(term.category, [])
            if term.shown not in shown:
                shown.append(term.shown)
            if term.language is not None:
                votes[term.language] = votes.get(term.language, 0) + 1

        first_words = self._first_words
        prefixes = self._prefixes
        for index, token in enumerate(tokens):
            # Most words begin no entry: one set lookup passes them by.
            if token not in first_words and not (prefixes and token.startswith(prefixes)):
                continue
            # "not trapped", "sin heridos", "pas blessé": only the word right before counts, so
            # "no power, trapped upstairs" still reads as trapped. A missed rescue is worse
            # than a false alarm.
            if index and tokens[index - 1] in self.negations:
                continue
            for term in self._single.get(token, ()):
                hit(term)
            for term in self._phrase.get(token, ()):
                if tokens[index : index + len(term.tokens)] == term.tokens:
                    hit(term)
            for term in self._prefix:
                if token.startswith(term.tokens[0]):
                    hit(term)
        # Symbols are mostly emoji: a plain ASCII text (most messages) can hold only the rest.
        ascii_text = text.isascii()
        symbols = self._ascii_symbol if ascii_text else self._symbol
        if symbols:
            composed = text if ascii_text else unicodedata.normalize("NFKC", text)
            for term in symbols:
                if term.symbol and term.symbol in composed:
                    hit(term)
        stopword_languages = self._stopword_languages
        for token in tokens:
            if token in stopword_languages:
                for language in stopword_languages[token]:
                    votes[language] = votes.get(language, 0) + 1
        return Analysis(
            {category: tuple(shown) for category, shown in found.items()},
            _language(language_hint, votes, self.stopwords),
            tokens,
        )


def _language(
    hint: str | None, votes: Mapping[str, int], known: Mapping[str, frozenset[str]]
) -> str | None:
    """The clear winner of the votes; else the platform's own tag, if it gave one. The text
    wins over the tag because platforms tag with the app's setting, not what was written."""
    ranked = sorted(votes.items(), key=lambda item: item[1], reverse=True)
    clear = ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1])
    if clear and ranked[0][0] in known:
        return ranked[0][0]
    if hint:
        return hint.split("-", 1)[0].lower()[:16] or None
    return None  # too little to tell, or a tie: better unknown than wrong


@dataclass(frozen=True)
class Place:
    name: str
    latitude: float
    longitude: float


@dataclass
class Gazetteer:
    """Place names (with aliases) people write, and where they are."""

    places: Sequence[tuple[Place, Sequence[str]]]  # place, every spelling (name and aliases)
    _by_first: dict[str, list[tuple[tuple[str, ...], Place]]] = field(
        default_factory=dict, init=False
    )
    _exact: dict[str, Place] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for place, spellings in self.places:
            for spelling in spellings:
                tokens = tuple(words(fold(spelling)))
                if not tokens:
                    continue
                self._exact[" ".join(tokens)] = place
                self._by_first.setdefault(tokens[0], []).append((tokens, place))
        for candidates in self._by_first.values():
            candidates.sort(key=lambda candidate: len(candidate[0]), reverse=True)

    def find_in(self, tokens: Sequence[str]) -> Place | None:
        """The place named in a text's words; the longest name wins ("Main Street bridge"
        over "Main Street")."""
        best: tuple[int, Place] | None = None
        for index, token in enumerate(tokens):
            for spelling, place in self._by_first.get(token, ()):
                if tuple(tokens[index : index + len(spelling)]) == spelling:
                    if best is None or len(spelling) > best[0]:
                        best = (len(spelling), place)
                    break  # candidates are longest first
        return best[1] if best else None

    def lookup(self, name: str) -> Place | None:
        """A place typed into a form: the exact name or alias, else one named inside it."""
        tokens = words(fold(name))
        return self._exact.get(" ".join(tokens)) or self.find_in(tokens)
