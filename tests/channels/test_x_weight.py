"""X's weighted length: the shortcut for plain ASCII counts what twitter-text counts."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twitter_text import parse_tweet

from channels.x_text import weighted_length

# Pieces that make URLs, emoji look-alikes and line endings likely in a random text.
_PIECES = st.sampled_from(
    [
        "http://",
        "https://",
        "www.",
        "example",
        ".com",
        ".co",
        ".",
        "t.co/",
        "localhost",
        ":8080",
        "/path",
        "@",
        "#",
        "*",
        "1",
        "0",
        " ",
        "\n",
        "\r\n",
        "\r",
        "-",
        "…",
        "é",
        "e\u0301",
        "日本",
        "\U0001f6a8",
        "\ufe0f",
        "\u20e3",
    ]
)
_TEXTS = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=127), max_size=300),
    st.lists(_PIECES | st.text(max_size=3), max_size=60).map("".join),
)


@settings(max_examples=600, deadline=None)
@given(_TEXTS)
@example("foo.com")
@example("x.co.")
@example("http://localhost:8080/path")
@example("Boil your water. Call 311.")
@example("\r\nab\r")
@example("#1 *2 0")
def test_weighted_length_is_what_twitter_text_counts(text: str) -> None:
    weighted_length.cache_clear()
    assert weighted_length(text) == parse_tweet(text).weightedLength


@pytest.mark.parametrize(
    ("text", "weight"),
    [
        ("Boil water before use.", 22),
        ("See https://alerts.example.org/a/1 now", 8 + 23),  # a URL weighs 23
        ("bare domain example.com here", 17 + 23),
        ("line\r\nending", 11),  # CR LF counts as one
    ],
)
def test_weights_people_would_check(text: str, weight: int) -> None:
    assert weighted_length(text) == weight
