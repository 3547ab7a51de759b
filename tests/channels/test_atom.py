"""The public Atom feed: parses as aggregators parse it (feedparser), one entry per current alert
version whose id is the CAP identifier and which links to its CAP XML."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import feedparser  # feedparser ships no type information
import pytest
from lxml import etree  # lxml ships no type information

from approvals.alert import EXERCISE_MARKING, AlertContent, MsgType, Status
from channels.atom import ATOM_NAMESPACE, FeedEntry, atom_feed
from channels.cap import CAP_MEDIA_TYPE, cap_url
from tests.channels import samples

CAP_BASE = "https://alerts.county.example.gov/cap"
FEED_PAGE = "https://alerts.county.example.gov/alerts"
SELF = "https://alerts.county.example.gov/feeds/alerts.atom"
UPDATED = datetime(2026, 11, 21, 4, 0, tzinfo=UTC)


def _entry(number: int = 1, **kwargs: Any) -> FeedEntry:
    version = samples.version(number, **kwargs)
    return FeedEntry(version, cap_url(CAP_BASE, version.identifier))


def _parse(entries: list[FeedEntry]) -> Any:
    parsed = feedparser.parse(atom_feed(entries, FEED_PAGE, SELF, UPDATED))
    assert not parsed.bozo, f"feedparser found the feed malformed: {parsed.get('bozo_exception')}"
    assert parsed.version == "atom10"
    return parsed


def test_feed_metadata_parses() -> None:
    parsed = _parse([_entry()])
    assert parsed.feed.id == FEED_PAGE
    assert parsed.feed.title == "Current emergency alerts"
    assert parsed.feed.updated_parsed == time.struct_time((2026, 11, 21, 4, 0, 0, 5, 325, 0))
    links = {(link.rel, link.type): link.href for link in parsed.feed.links}
    assert links[("self", "application/atom+xml")] == SELF
    assert links[("alternate", "text/html")] == FEED_PAGE


def test_one_entry_per_version_with_the_cap_identifier_and_a_cap_link() -> None:
    entries = [_entry(1), _entry(2, msg_type=MsgType.update), _entry(3, languages=("es-US",))]
    parsed = _parse(entries)
    # Newest first, as readers expect.
    assert [entry.id for entry in parsed.entries] == ["CB-1-3", "CB-1-2", "CB-1-1"]
    for entry in parsed.entries:
        cap_links = [link for link in entry.links if link.type == CAP_MEDIA_TYPE]
        assert [(link.rel, link.href) for link in cap_links] == [
            ("alternate", f"{CAP_BASE}/{entry.id}.xml")
        ]
        assert entry.author == samples.SENDER
    assert parsed.entries[0].title == "Evacúe Riverside ahora: falla del dique"
    assert parsed.entries[1].cap_msgtype == "Update"
    assert parsed.entries[2].updated_parsed == time.struct_time((2026, 11, 21, 3, 0, 0, 5, 325, 0))


def test_entries_carry_the_cap_fields_aggregators_filter_on() -> None:
    [entry] = _parse([_entry()]).entries
    assert (entry.cap_status, entry.cap_severity, entry.cap_urgency) == (
        "Actual",
        "Extreme",
        "Immediate",
    )
    assert entry.cap_event == "Flood"
    assert entry.cap_areadesc == "Riverside district"
    assert entry.cap_expires == "2026-11-21T09:00:00-00:00"
    assert entry.summary == "Flood water is rising in Riverside."


def test_exercise_entries_are_marked_and_actual_ones_never() -> None:
    parsed = _parse([_entry(1), _entry(2, status=Status.exercise)])
    exercise, actual = parsed.entries
    assert exercise.cap_status == "Exercise"
    assert EXERCISE_MARKING in exercise.title and EXERCISE_MARKING in exercise.summary
    assert EXERCISE_MARKING not in actual.title + actual.summary


def test_markup_in_alert_text_is_text_not_html() -> None:
    data = samples.content().model_dump()
    data["infos"][0]["headline"] = "Gas leak at <Main> & 5th"
    version = replace(samples.version(), content=AlertContent.model_validate(data))
    [entry] = _parse([FeedEntry(version, cap_url(CAP_BASE, version.identifier))]).entries
    assert entry.title == "Gas leak at <Main> & 5th"


def test_an_empty_feed_is_still_a_valid_feed() -> None:
    parsed = _parse([])
    assert parsed.entries == []
    root = etree.fromstring(atom_feed([], FEED_PAGE, SELF, UPDATED))
    # RFC 4287: without entries the feed itself must name an author.
    assert root.find(f"{{{ATOM_NAMESPACE}}}author/{{{ATOM_NAMESPACE}}}name").text


def test_every_entry_has_what_rfc_4287_requires() -> None:
    root = etree.fromstring(atom_feed([_entry(1), _entry(2)], FEED_PAGE, SELF, UPDATED))
    for entry in root.iterfind(f"{{{ATOM_NAMESPACE}}}entry"):
        for required in ("id", "title", "updated"):
            assert len(entry.findall(f"{{{ATOM_NAMESPACE}}}{required}")) == 1, required


def test_a_version_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="CB-1-1"):
        atom_feed([_entry(1), _entry(1)], FEED_PAGE, SELF, UPDATED)


def test_the_feed_is_deterministic() -> None:
    entries = [_entry(2), _entry(1)]
    assert atom_feed(entries, FEED_PAGE, SELF, UPDATED) == atom_feed(
        list(reversed(entries)), FEED_PAGE, SELF, UPDATED
    )
