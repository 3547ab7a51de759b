"""How an alert reads on X: twitter-text weighted length, and long alerts as numbered threads.

X counts a post with the twitter-text v3 rules, not in characters: 280 units, where Latin text
weighs 1 per character, CJK and emoji weigh 2, and every URL weighs 23 however long it is. We
count with twitter-text-parser, the same rules X applies, so a post we call "within the limit"
is one X accepts.

An alert that does not fit one post becomes a numbered thread, "(1/3)" ... "(3/3)", of at most
MAX_PARTS posts. The first post carries what a person must see even if they read nothing else:
the headline, the instruction, and the link to the full alert. The description and contact
follow. If even the thread is too short, the last post ends with "…": the link has the rest.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from approvals.alert import EXERCISE_MARKING, Info, MsgType, is_exercise
from channels.base import AlertVersion, Post

with warnings.catch_warnings():
    # twitter_text loads its emoji table with pkg_resources, which setuptools marks deprecated.
    warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
    from twitter_text import parse_tweet

__all__ = ["MAX_PARTS", "MAX_WEIGHTED_LENGTH", "render_alert", "weighted_length"]

MAX_WEIGHTED_LENGTH: Final = 280
# Six posts hold about 1,500 characters of English: more than the headline, instruction and a
# full description need. A longer thread is rarely read to the end; the link has everything.
MAX_PARTS: Final = 6
# " (k/N)" with one-digit k and N (MAX_PARTS < 10): the same weight on every numbered part.
_NUMBER_WEIGHT: Final = len(" (1/6)")
_ELLIPSIS: Final = "…"
_SECTION_BREAK: Final = "\n\n"

# A word of the source text with the whitespace that came before it, reduced to what a reader
# sees: a space, a line break, or a paragraph break.
_TOKEN = re.compile(r"(\s*)(\S+)")
# Chinese and Japanese write without spaces: a sentence or clause ends after these marks, so a
# long CJK text breaks there rather than mid-phrase.
_CJK_BREAK = re.compile(r"(?<=[。！？；，、])")  # noqa: RUF001 (CJK punctuation)

_LABELS: Final = {MsgType.update: "UPDATE: ", MsgType.cancel: "CANCELLED: "}

# Splitting a word inside these would break a character a reader sees as one (an accent, an
# emoji joined with ZWJ, a variation selector).
_JOINERS: Final = frozenset({"\u200d", "\ufe0e", "\ufe0f"})


# A dot before a letter or digit: where a URL's domain could be ("example.com", "t.co").
_MAYBE_DOMAIN = re.compile(r"\.[0-9A-Za-z]")


@lru_cache(maxsize=1024)
def weighted_length(text: str) -> int:
    """The length X counts for `text` (twitter-text v3: NFC, URLs 23, CJK and emoji 2)."""
    if text.isascii() and "\r" not in text and _MAYBE_DOMAIN.search(text) is None:
        # What most words and many posts are: every ASCII character weighs 1, no emoji is
        # ASCII alone, and no URL is without a dot before its top-level domain. The parse
        # (a fifth of a millisecond a word) would count len(text); a release's thread for X
        # parsed its words one by one, some ten milliseconds before the first post.
        return len(text)
    length: int = parse_tweet(text).weightedLength
    return length


@dataclass(frozen=True)
class _Word:
    text: str
    separator: str  # what goes before it when it is not the first word of a post


def render_alert(version: AlertVersion, *, max_parts: int = MAX_PARTS) -> list[Post]:
    """The posts for one alert version: one post when it fits, else a numbered thread.

    Several languages: the first info block (the alert's primary language) is rendered in full;
    each further language gets one post of its own with its headline, instruction and the link,
    so a Spanish or Chinese reader on X sees the essentials in their language without the
    thread becoming a wall of translations. At most half the thread goes to translations; the
    rest are on the public alert page the link points to.
    """
    if not 1 <= max_parts <= 9:
        raise ValueError(f"max_parts {max_parts} must be 1..9: thread numbers are one digit")
    content = version.content
    marking = EXERCISE_MARKING if is_exercise(content.status) else None
    label = _LABELS.get(content.msg_type, "")
    primary, *others = content.infos
    others = others[: max_parts // 2]

    translations = [
        _fill(
            _sections(info, label, full=False),
            _link(version, info),
            marking,
            max_parts=1,
            reserve=_NUMBER_WEIGHT,
        )[0]
        for info in others
    ]
    primary_sections = _sections(primary, label, full=True)
    link = _link(version, primary)
    single = _fill(primary_sections, link, marking, max_parts=1, reserve=0, cut=False)
    if single and not translations:
        texts = single
        languages = [primary.language]
    else:
        budget = max_parts - len(translations)
        main = _fill(primary_sections, link, marking, max_parts=budget, reserve=_NUMBER_WEIGHT)
        texts = main + translations
        languages = [primary.language] * len(main) + [info.language for info in others]

    parts = len(texts)
    posts = []
    for number, (text, language) in enumerate(zip(texts, languages, strict=True), start=1):
        numbered = f"{text} ({number}/{parts})" if parts > 1 else text
        posts.append(
            Post(
                text=numbered,
                part=number,
                parts=parts,
                length=weighted_length(numbered),
                limit=MAX_WEIGHTED_LENGTH,
                language=language,
            )
        )
    return posts


def _link(version: AlertVersion, info: Info) -> str | None:
    # The public alert page first: it has every language, updates and the cancellation.
    return version.public_url or info.web


def _sections(info: Info, label: str, *, full: bool) -> list[str]:
    """An info block's text in reading order: action before explanation."""
    sections = [label + info.headline, info.instruction]
    if full:
        sections += [info.description, info.contact]
    return [section.strip() for section in sections if section and section.strip()]


def _words(sections: Sequence[str]) -> list[_Word]:
    words: list[_Word] = []
    for number, section in enumerate(sections):
        for index, match in enumerate(_TOKEN.finditer(section)):
            space, word = match.groups()
            if index == 0:
                separator = _SECTION_BREAK if number else ""
            elif space.count("\n") >= 2:
                separator = _SECTION_BREAK
            else:
                separator = "\n" if "\n" in space else " "
            pieces = [piece for piece in _CJK_BREAK.split(word) if piece]
            words.append(_Word(pieces[0], separator))
            words += [_Word(piece, "") for piece in pieces[1:]]
    return words


def _fill(
    sections: Sequence[str],
    link: str | None,
    marking: str | None,
    *,
    max_parts: int,
    reserve: int,
    cut: bool = True,
) -> list[str]:
    """Pack the sections into at most `max_parts` post texts, each within the limit less
    `reserve` (room for the thread number). The first post carries the link; with a marking,
    every post carries it. Without `cut`, return [] when the text does not fit whole."""
    budget = MAX_WEIGHTED_LENGTH - reserve
    words = _words(sections)
    texts: list[str] = []
    start = 0
    while start < len(words) and len(texts) < max_parts:
        # The link goes in the first post only: the one everybody sees.
        part_link = link if not texts else None
        end = _longest_fit(words, start, len(words), part_link, marking, budget)
        if end == start:
            # One word longer than a whole post (a long URL, or CJK text without spaces).
            _split_word(words, start, marking, budget)
            continue
        if end < len(words) and len(texts) == max_parts - 1:
            if not cut:
                return []
            end = _longest_fit(words, start, end, part_link, marking, budget, truncated=True)
            texts.append(_compose(words[start:end], part_link, marking, truncated=True))
            return texts
        texts.append(_compose(words[start:end], part_link, marking))
        start = end
    if not cut and start < len(words):
        return []
    return texts


def _compose(
    words: Sequence[_Word], link: str | None, marking: str | None, truncated: bool = False
) -> str:
    body = "".join(
        word.separator + word.text if index else word.text for index, word in enumerate(words)
    )
    if truncated:
        body += _ELLIPSIS
    text = body + _SECTION_BREAK + link if link else body
    if marking and marking not in text:
        text = f"{marking}\n{text}"
    return text


def _longest_fit(
    words: Sequence[_Word],
    start: int,
    stop: int,
    link: str | None,
    marking: str | None,
    budget: int,
    *,
    truncated: bool = False,
) -> int:
    """The largest end in [start, stop] whose post fits `budget` (start when none does).

    A full twitter-text parse costs about a millisecond per post, so the search runs on an
    estimate that adds up the words' own weights (URLs and emoji never span whitespace, so
    weights add), and the answer is then checked with one exact parse."""
    low, high = start, stop
    while low < high:
        middle = (low + high + 1) // 2
        if _estimate(words[start:middle], link, marking, truncated) <= budget:
            low = middle
        else:
            high = middle - 1
    while low > start:
        text = _compose(words[start:low], link, marking, truncated)
        if weighted_length(text) <= budget:
            break
        low -= 1
    return low


def _estimate(
    words: Sequence[_Word], link: str | None, marking: str | None, truncated: bool
) -> int:
    marked = marking is not None and marking in _compose(words, None, None)
    frame = _frame_weight(link, None if marked else marking, truncated)
    separators = sum(len(word.separator) for word in words[1:])
    return frame + separators + sum(weighted_length(word.text) for word in words)


@lru_cache(maxsize=64)
def _frame_weight(link: str | None, marking: str | None, truncated: bool) -> int:
    # Everything in a post but its words: the marking line, the ellipsis, the link.
    return weighted_length(_compose([], link, marking, truncated))


def _split_word(words: list[_Word], index: int, marking: str | None, budget: int) -> None:
    """Split words[index] in place at the longest prefix that fits a post on its own."""
    word = words[index]
    if len(word.text) < 2:
        raise ValueError(f"a post cannot hold even {word.text!r}: the marking or link is too long")
    low, high = 1, len(word.text) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if weighted_length(_compose([_Word(word.text[:middle], "")], None, marking)) <= budget:
            low = middle
        else:
            high = middle - 1
    cut = low
    while cut > 1 and _inside_character(word.text, cut):
        cut -= 1
    words[index : index + 1] = [_Word(word.text[:cut], word.separator), _Word(word.text[cut:], " ")]


def _inside_character(text: str, cut: int) -> bool:
    after, before = text[cut], text[cut - 1]
    return bool(unicodedata.combining(after)) or after in _JOINERS or before == "\u200d"
