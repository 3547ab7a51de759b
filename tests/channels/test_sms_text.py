"""SMS alphabet, segment counting (3GPP TS 23.038/23.040) and carrier keywords."""

from __future__ import annotations

import pytest

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
