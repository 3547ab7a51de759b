"""SMS text rules, pure: which alphabet a text needs, how many segments it costs, and what the
carrier keywords (STOP, START, HELP) in an inbound message mean.

Encoding and segments follow 3GPP TS 23.038 / 23.040:
- GSM 7-bit default alphabet: 160 septets in one SMS; a concatenated SMS carries a 6-byte user data
  header, leaving 153 septets per segment. Characters of the extension table (e.g. `€ [ ] { }`)
  cost two septets (ESC + char) and carriers never split that pair across two segments.
- Anything outside the GSM alphabet sends the whole message as UCS-2: 70 UTF-16 code units in one
  SMS, 67 per concatenated segment; a character outside the BMP (most emoji) is a surrogate pair,
  two units, never split across segments.

The Twilio emulator counts with these same functions so `num_segments` agrees with our own count.
"""

from __future__ import annotations

import unicodedata
from enum import StrEnum
from typing import Final

__all__ = [
    "GSM7",
    "UCS2",
    "Keyword",
    "classify_keyword",
    "encoding_of",
    "gsm_friendly",
    "is_gsm7",
    "segment_count",
]

GSM7: Final = "GSM-7"
UCS2: Final = "UCS-2"

# The GSM 03.38 default alphabet (basic character set), in table order; ESC (0x1B) is left out
# because it only introduces extension characters.
_GSM_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The default extension table: each costs ESC plus itself, two septets.
_GSM_EXTENSION: Final = frozenset("\f^{}\\[~]|€")
_GSM_ALL: Final = _GSM_BASIC | _GSM_EXTENSION
# Past this, a character is outside the Basic Multilingual Plane: a UTF-16 surrogate pair.
_LAST_BMP: Final = "\uffff"

_SINGLE_GSM: Final = 160
_MULTI_GSM: Final = 153
_SINGLE_UCS2: Final = 70
_MULTI_UCS2: Final = 67

# Typographic punctuation that silently turns a whole message into UCS-2 (70 characters a segment
# instead of 160) although a GSM character says the same. Letters are never replaced: changing
# "ú" to "u" would change the language, so accented text that needs UCS-2 gets UCS-2.
_GSM_FRIENDLY: Final = str.maketrans(
    {
        "\u2018": "'",  # left single quotation mark
        "\u2019": "'",  # right single quotation mark / apostrophe
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",  # prime
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u2010": "-",  # hyphen
        "\u2011": "-",  # non-breaking hyphen
        "\u2012": "-",  # figure dash
        "\u2013": "-",  # en dash
        "\u2014": "-",  # em dash
        "\u2212": "-",  # minus sign
        "\u2026": "...",  # horizontal ellipsis
        "\u00a0": " ",  # no-break space
        "\u2009": " ",  # thin space
        "\u202f": " ",  # narrow no-break space
        "\u2022": "-",  # bullet
        "\t": " ",  # tab is not in the GSM alphabet
    }
)


def gsm_friendly(text: str) -> str:
    """`text` in Unicode NFC with typographic punctuation replaced by GSM equivalents.

    NFC first, so an "é" typed as "e" plus a combining accent is the GSM "é", not UCS-2."""
    return unicodedata.normalize("NFC", text).translate(_GSM_FRIENDLY)


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM 7-bit alphabet or its extension table."""
    return _GSM_ALL.issuperset(text)


def encoding_of(text: str) -> str:
    """GSM7 when the text fits the GSM alphabet, else UCS2 (the whole message switches)."""
    return GSM7 if is_gsm7(text) else UCS2


def segment_count(text: str) -> int:
    """How many SMS segments `text` is sent as; 0 for an empty text (nothing is sent)."""
    if not text:
        return 0
    gsm = is_gsm7(text)
    if gsm:
        single, multi = _SINGLE_GSM, _MULTI_GSM
        has_pairs = not _GSM_EXTENSION.isdisjoint(text)
    else:
        single, multi = _SINGLE_UCS2, _MULTI_UCS2
        has_pairs = max(text) > _LAST_BMP
    if not has_pairs:
        # Every character one unit: the common case, counted without a walk through the text
        # (the Twilio emulator counts every message of a 100,000-person list).
        return 1 if len(text) <= single else -(-len(text) // multi)
    units = _units(text, gsm=gsm)
    if sum(units) <= single:
        return 1
    # Fill segments greedily: a two-unit character (escape pair, surrogate pair) that does not fit
    # whole in the current segment starts the next one, as handsets and carriers do.
    segments, used = 1, 0
    for cost in units:
        if used + cost > multi:
            segments += 1
            used = 0
        used += cost
    return segments


def _units(text: str, *, gsm: bool) -> list[int]:
    """What each character costs in the message's encoding: septets or UTF-16 code units."""
    if gsm:
        return [2 if char in _GSM_EXTENSION else 1 for char in text]
    return [2 if char > _LAST_BMP else 1 for char in text]


class Keyword(StrEnum):
    """What a carrier keyword asks for; Twilio and US carriers act on these by default."""

    stop = "stop"  # opt out: no more messages from this sender until START
    start = "start"  # opt back in after a STOP
    help = "help"  # tell me who you are and how to stop


_KEYWORDS: Final = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"), Keyword.stop),
    **dict.fromkeys(("START", "YES", "UNSTOP"), Keyword.start),
    **dict.fromkeys(("HELP", "INFO"), Keyword.help),
}


def classify_keyword(body: str) -> Keyword | None:
    """The keyword an inbound message is, or None. Like Twilio's default opt-out handling, only a
    message that is exactly the keyword counts (any case, surrounding whitespace ignored):
    "Stop" opts out, "please stop the alerts" is a message for a person to read."""
    return _KEYWORDS.get(body.strip().upper())
