"""X's created_at read without strptime: the same time strptime reads, or None to fall back."""

from __future__ import annotations

from datetime import datetime

import pytest

from channels.x_dates import created_at_time

_FORMAT = "%a %b %d %H:%M:%S %z %Y"


@pytest.mark.parametrize(
    "text",
    [
        "Wed Oct 10 20:19:24 +0000 2018",
        "Sat Nov 21 23:59:59 +0000 2026",
        "Mon Jan 01 00:00:00 +0530 2024",
        "Thu Feb 29 12:00:00 -0130 2024",
    ],
)
def test_a_created_at_reads_as_strptime_reads_it(text: str) -> None:
    found = created_at_time(text)
    expected = datetime.strptime(text, _FORMAT)
    assert found == expected
    assert found is not None and found.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2018-10-10T20:19:24Z",
        "Wed Oct 10 20:19:24 +0000 2018 ",
        "Wed Foo 10 20:19:24 +0000 2018",
        "Wed Feb 30 20:19:24 +0000 2018",
        "Wed Oct 10 25:19:24 +0000 2018",
        "Wed Oct 10 20:19 +0000 2018",
        "Wed Oct 10 20:19:24 0000 2018",
        "Wed Oct +1 20:19:24 +0000 2018",
        "Wed Oct \u0661\u0660 20:19:24 +0000 2018",  # Arabic-Indic digits: isdigit, yet not these
    ],
)
def test_anything_else_is_none_so_the_caller_falls_back(text: str) -> None:
    assert created_at_time(text) is None
