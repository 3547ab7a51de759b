"""SMS alphabet, segment counting (3GPP TS 23.038/23.040) and carrier keywords."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.sms_text import (
    GSM7,
    UCS2,
    Keyword,
    classify_keyword,
    encoding_of,
    gsm_friendly,
    is_gsm7,
    segment_count,
)

SIREN = "\U0001f6a8"  # outside the BMP: a UTF-16 surrogate pair


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("", GSM7, 0),
        ("a", GSM7, 1),
        ("a" * 160, GSM7, 1),
        ("a" * 161, GSM7, 2),
        ("a" * 306, GSM7, 2),  # 2 x 153
        ("a" * 307, GSM7, 3),
        # Extension characters cost two septets: 80 x 2 = 160 fits one SMS, 81 does not.
        ("€" * 80, GSM7, 1),
        ("€" * 81, GSM7, 2),
        # An escape pair never straddles two segments: 152 + 2 + 152 = 306 septets, yet 3 segments.
        ("a" * 152 + "€" + "a" * 152, GSM7, 3),
        ("a" * 151 + "€" + "a" * 153, GSM7, 2),
        # Accented letters in the GSM table keep GSM-7; others switch the whole message to UCS-2.
        ("Évacuez à Riverside, ça monte: Ñandú", UCS2, 1),
        ("é" * 160, GSM7, 1),
        ("ú" * 70, UCS2, 1),
        ("ú" * 71, UCS2, 2),
        ("ú" * 134, UCS2, 2),  # 2 x 67
        ("ú" * 135, UCS2, 3),
        ("立即撤离" * 17 + "河滨", UCS2, 1),  # 70 characters
        (SIREN * 35, UCS2, 1),  # 70 code units
        (SIREN * 36, UCS2, 2),
        # A surrogate pair never straddles two segments: 66 + 2 + 66 = 134 units, yet 3 segments.
        ("x" * 66 + SIREN + "x" * 66, UCS2, 3),
    ],
)
def test_encoding_and_segments(text: str, encoding: str, segments: int) -> None:
    assert encoding_of(text) == encoding
    assert segment_count(text) == segments


def test_bracket_pairs_count_double() -> None:
    # "[" and "]" are extension characters: "[x]" is 5 septets, so 32 of them are exactly 160.
    assert segment_count("[x]" * 32) == 1
    assert segment_count("[x]" * 32 + "x") == 2


def test_the_whole_basic_table_is_gsm7_and_near_misses_are_not() -> None:
    basic = (
        "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    )
    assert is_gsm7(basic + "\f^{}\\[~]|€")
    for outsider in ("ç", "`", "á", "\t", "\u2019", "\u201c", "\u2026", "\u00a0", "₹", "ß\u0301"):
        assert not is_gsm7(outsider), repr(outsider)


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("It\u2019s \u201crising\u201d \u2013 leave now\u2026", 'It\'s "rising" - leave now...'),
        ("Shelter\u00a0open", "Shelter open"),
        ("Cafe\u0301 closed", "Café closed"),  # NFC: a combining accent becomes the GSM "é"
        ("Evacúe ya", "Evacúe ya"),  # letters are never changed: ú needs UCS-2 and gets it
    ],
)
def test_typographic_punctuation_does_not_force_ucs2(typed: str, sent: str) -> None:
    assert gsm_friendly(typed) == sent
    if "ú" not in sent:
        assert encoding_of(typed) == UCS2
        assert encoding_of(gsm_friendly(typed)) == GSM7


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        ("STOP", Keyword.stop),
        ("stop", Keyword.stop),
        ("  Stop \n", Keyword.stop),
        ("STOPALL", Keyword.stop),
        ("unsubscribe", Keyword.stop),
        ("Cancel", Keyword.stop),
        ("END", Keyword.stop),
        ("quit", Keyword.stop),
        ("START", Keyword.start),
        ("yes", Keyword.start),
        ("Unstop", Keyword.start),
        ("HELP", Keyword.help),
        ("info", Keyword.help),
        ("please stop", None),
        ("STOP.", None),
        ("ST OP", None),
        ("Is the shelter open? HELP", None),
        ("", None),
    ],
)
def test_only_a_bare_keyword_is_a_keyword(body: str, keyword: Keyword | None) -> None:
    assert classify_keyword(body) is keyword


def _greedy_segments(text: str) -> int:
    """The rule spelled out, character by character: what segment_count's shortcut must match."""
    gsm = all(char in _GSM_ALPHABET for char in text)
    if gsm:
        units = [2 if char in "\f^{}\\[~]|€" else 1 for char in text]
        single, multi = 160, 153
    else:
        units = [2 if ord(char) > 0xFFFF else 1 for char in text]
        single, multi = 70, 67
    if not units:
        return 0
    if sum(units) <= single:
        return 1
    segments, used = 1, 0
    for cost in units:
        if used + cost > multi:
            segments, used = segments + 1, 0
        used += cost
    return segments


_GSM_ALPHABET = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà\f^{}\\[~]|€"
)


# Lengths at and around where a segment fills up: one SMS (70, 160) and k concatenated ones.
_EDGES = sorted(
    {edge + step for edge in (70, 160) for step in (-1, 0, 1)}
    | {k * size + step for size in (67, 153) for k in (2, 3, 4) for step in (-1, 0, 1)}
)


def _texts(alphabet: st.SearchStrategy[str], longest: int) -> st.SearchStrategy[str]:
    """Texts of any length up to `longest`, often at a segment's edge."""
    lengths = st.one_of(st.integers(0, longest), st.sampled_from(_EDGES))
    return lengths.flatmap(lambda size: st.text(alphabet=alphabet, min_size=size, max_size=size))


_GSM_BASIC_ONLY = _GSM_ALPHABET.rstrip("\f^{}\\[~]|€")


@settings(max_examples=500)
@given(
    st.one_of(
        _texts(st.sampled_from(_GSM_BASIC_ONLY), 700),  # one septet a character
        _texts(st.sampled_from("abc€"), 700),  # with escape pairs
        _texts(st.sampled_from("aúü立"), 700),  # UCS-2, one unit a character
        _texts(st.sampled_from("aú" + SIREN), 700),  # with surrogate pairs
        _texts(st.characters(), 300),
    )
)
def test_segment_count_matches_the_greedy_rule(text: str) -> None:
    assert segment_count(text) == _greedy_segments(text)
