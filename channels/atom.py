"""The public Atom 1.0 feed of current alerts, as alert aggregators read it (CAP over Atom).

Pure: the same entries give the same bytes. It follows the OASIS "CAP Feeds" example practices and
Google Public Alerts: one entry per current alert version, the entry id is the CAP identifier, and
the entry links to that version's CAP XML with rel="alternate" type="application/cap+xml" (the
aggregator fetches and trusts the CAP, not the entry). The entry also carries the headline,
summary and a few CAP fields in the CAP namespace (as NWS feeds do) so a plain feed reader shows
something useful. A multi-language alert is one entry (one identifier); its title and summary come
from the first info block, and the CAP XML carries every language.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

from lxml import etree  # lxml ships no type information

from channels.base import AlertVersion
from channels.cap import CAP_MEDIA_TYPE, CAP_NAMESPACE, cap_datetime, with_marking, xml_text

__all__ = ["ATOM_MEDIA_TYPE", "ATOM_NAMESPACE", "FeedEntry", "atom_feed"]

ATOM_NAMESPACE: Final = "http://www.w3.org/2005/Atom"
ATOM_MEDIA_TYPE: Final = "application/atom+xml"
_XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"


@dataclass(frozen=True)
class FeedEntry:
    """One current alert version and the public address of its CAP XML."""

    version: AlertVersion
    cap_url: str  # e.g. channels.cap.cap_url(public_base, version.identifier)


def _atom_datetime(moment: datetime) -> str:
    # RFC 3339 in UTC with "Z": every feed parser reads it; no fractional seconds.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _add(parent: Any, name: str, text: str | None = None, **attributes: str) -> Any:
    namespace, local = (
        (CAP_NAMESPACE, name[4:]) if name.startswith("cap:") else (ATOM_NAMESPACE, name)
    )
    element = etree.SubElement(parent, f"{{{namespace}}}{local}", attrib=attributes)
    if text is not None:
        element.text = xml_text(text)
    return element


def _entry(feed: Any, item: FeedEntry) -> None:
    version = item.version
    content = version.content
    info = content.infos[0]
    entry = _add(feed, "entry")
    entry.set(_XML_LANG, info.language)
    _add(entry, "id", version.identifier)
    _add(entry, "title", with_marking(info.headline, content.status), type="text")
    _add(entry, "updated", _atom_datetime(version.sent))
    _add(entry, "published", _atom_datetime(version.sent))
    author = _add(entry, "author")
    _add(author, "name", version.sender)
    summary = info.description or info.headline
    _add(entry, "summary", with_marking(summary, content.status), type="text")
    _add(entry, "link", rel="alternate", type=CAP_MEDIA_TYPE, href=item.cap_url)
    if version.public_url is not None:
        _add(entry, "link", rel="alternate", type="text/html", href=version.public_url)
    for category in info.categories:
        _add(entry, "category", term=category.value)
    # CAP fields aggregators filter on before fetching the CAP XML (the NWS feed convention).
    _add(entry, "cap:identifier", version.identifier)
    _add(entry, "cap:sent", cap_datetime(version.sent))
    _add(entry, "cap:status", content.status.value)
    _add(entry, "cap:msgType", content.msg_type.value)
    _add(entry, "cap:event", info.event)
    _add(entry, "cap:urgency", info.urgency.value)
    _add(entry, "cap:severity", info.severity.value)
    _add(entry, "cap:certainty", info.certainty.value)
    if info.expires is not None:
        _add(entry, "cap:expires", cap_datetime(info.expires))
    areas = "; ".join(area.description for area in info.areas)
    if areas:
        _add(entry, "cap:areaDesc", areas)


def atom_feed(
    entries: Sequence[FeedEntry],
    feed_url: str,
    self_url: str,
    updated: datetime,
    *,
    title: str = "Current emergency alerts",
    author: str = "Emergency alerts",
) -> bytes:
    """The Atom feed of `entries`, newest first.

    `feed_url` is the public page of current alerts: the feed's permanent id and its
    rel="alternate" link. `self_url` is where this feed document is served (rel="self").
    `updated` is when the set of current alerts last changed. `author` names the issuing agency.
    """
    counts = Counter(item.version.identifier for item in entries)
    repeated = sorted(identifier for identifier, count in counts.items() if count > 1)
    if repeated:
        raise ValueError(
            f"CAP identifier {repeated[0]!r} appears in more than one feed entry; an Atom entry "
            "id must be unique: list each current alert version once"
        )
    feed = etree.Element(
        f"{{{ATOM_NAMESPACE}}}feed", nsmap={None: ATOM_NAMESPACE, "cap": CAP_NAMESPACE}
    )
    _add(feed, "id", feed_url)
    _add(feed, "title", title, type="text")
    _add(feed, "updated", _atom_datetime(updated))
    _add(feed, "link", rel="self", type=ATOM_MEDIA_TYPE, href=self_url)
    _add(feed, "link", rel="alternate", type="text/html", href=feed_url)
    feed_author = _add(feed, "author")
    _add(feed_author, "name", author)
    _add(feed, "generator", "Crisis Broadcaster")
    newest_first = sorted(
        entries, key=lambda item: (item.version.sent, item.version.identifier), reverse=True
    )
    for item in newest_first:
        _entry(feed, item)
    document = etree.tostring(feed, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return cast(bytes, document)
