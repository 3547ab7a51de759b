"""CAP 1.2 XML for one alert version: what alert hubs, aggregators and partner systems read.

Pure: the same version always gives the same bytes. The document follows OASIS CAP 1.2 and its
XSD (channels/schemas/CAP-v1.2.xsd): elements in the schema's order, date-times with a time zone
offset and no fractional seconds, UTC written "-00:00" (CAP forbids "Z"), polygons as
"lat,lon lat,lon ...", circles as "lat,lon radius_km", references as space-separated
"sender,identifier,sent" triples whose sent is written exactly as the referenced <sent> was.

Also here, because CAP output, the Atom feed and the webhook body must agree on them: the one
date-time spelling (`cap_datetime`), where a version's CAP XML is published (`cap_url`), and the
exercise marking rule (`with_marking`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, cast
from urllib.parse import quote

from lxml import etree  # lxml ships no type information

from approvals.alert import EXERCISE_MARKING, AlertContent, Area, Info, Status, is_exercise
from channels.base import AlertVersion

__all__ = [
    "CAP_MEDIA_TYPE",
    "CAP_NAMESPACE",
    "cap_datetime",
    "cap_document",
    "cap_reference",
    "cap_url",
    "with_marking",
    "xml_text",
]

CAP_NAMESPACE: Final = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_MEDIA_TYPE: Final = "application/cap+xml"

# Characters XML 1.0 cannot carry at all (C0 controls except tab, newline, carriage return, and
# the non-characters U+FFFE/U+FFFF). lxml refuses them with ValueError; a stray control character
# pasted into a description must not stop an evacuation order from going out.
_NOT_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(text: str) -> str:
    """`text` without the characters XML 1.0 cannot represent."""
    return _NOT_XML.sub("", text)


def cap_datetime(moment: datetime) -> str:
    """A CAP date-time: "2026-11-21T03:00:00-07:00"; no fractional seconds; UTC as "-00:00"."""
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError(f"CAP date-times need a time zone; got naive {moment.isoformat()}")
    if offset.microseconds or offset.seconds % 60:
        # A historical offset with seconds cannot be written as +hh:mm: use UTC instead.
        moment, offset = moment.astimezone(UTC), offset * 0
    minutes = int(offset.total_seconds()) // 60
    if minutes == 0:
        zone = "-00:00"  # CAP 1.2 section 3.3.2: UTC is "-00:00", never "Z" or "+00:00"
    else:
        sign = "+" if minutes > 0 else "-"
        zone = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + zone


def cap_reference(reference: str) -> str:
    """A "sender,identifier,sent" reference with sent written as `cap_datetime` writes <sent>,
    so receivers that match references textually find the message it names."""
    sender, identifier, sent = reference.split(",")
    return f"{sender},{identifier},{cap_datetime(datetime.fromisoformat(sent))}"


def cap_url(base_url: str, identifier: str) -> str:
    """Where the CAP XML of the version with this identifier is published under `base_url`."""
    return f"{base_url.rstrip('/')}/{quote(identifier, safe='')}.xml"


def with_marking(text: str, status: Status) -> str:
    """`text` carrying the exercise marking if the alert is an Exercise or Test; unchanged if it
    already carries it or the alert is Actual (an Actual alert never gets the marking)."""
    if is_exercise(status) and EXERCISE_MARKING not in text:
        return f"{EXERCISE_MARKING} {text}"
    return text


def _number(value: float) -> str:
    # Shortest round-trip digits, never exponent notation ("1e-05" is not a CAP coordinate).
    return format(Decimal(repr(value)), "f")


def _point(lat: float, lon: float) -> str:
    return f"{_number(lat)},{_number(lon)}"


class _Builder:
    """Appends CAP elements in the schema's order; skips optional values that are absent."""

    def __init__(self, parent: Any) -> None:
        self.parent = parent

    def add(self, name: str, value: str | None) -> Any:
        if value is None:
            return None
        element = etree.SubElement(self.parent, f"{{{CAP_NAMESPACE}}}{name}")
        element.text = xml_text(value)
        return element

    def group(self, name: str) -> _Builder:
        return _Builder(etree.SubElement(self.parent, f"{{{CAP_NAMESPACE}}}{name}"))


def _note(content: AlertContent) -> str | None:
    # The marking also goes in <note>, CAP's place for "what this message is for", so a receiver
    # that shows only the note or the status still sees that this is a drill.
    if is_exercise(content.status):
        return with_marking(content.note or "", content.status).rstrip()
    return content.note


def _area(builder: _Builder, area: Area) -> None:
    block = builder.group("area")
    block.add("areaDesc", area.description)
    for polygon in area.polygons:
        block.add("polygon", " ".join(_point(lat, lon) for lat, lon in polygon))
    for circle in area.circles:
        block.add("circle", f"{_point(circle.lat, circle.lon)} {_number(circle.radius_km)}")
    for geocode in area.geocodes:
        code = block.group("geocode")
        code.add("valueName", geocode.name)
        code.add("value", geocode.value)


def _info(builder: _Builder, info: Info) -> None:
    block = builder.group("info")
    block.add("language", info.language)
    for category in info.categories:
        block.add("category", category.value)
    block.add("event", info.event)
    block.add("urgency", info.urgency.value)
    block.add("severity", info.severity.value)
    block.add("certainty", info.certainty.value)
    block.add("expires", cap_datetime(info.expires) if info.expires else None)
    block.add("headline", info.headline)
    block.add("description", info.description)
    block.add("instruction", info.instruction)
    block.add("web", info.web)
    block.add("contact", info.contact)
    for area in info.areas:
        _area(block, area)


def cap_document(version: AlertVersion) -> bytes:
    """The CAP 1.2 XML of `version`, UTF-8 with an XML declaration."""
    content = version.content
    root = etree.Element(f"{{{CAP_NAMESPACE}}}alert", nsmap={None: CAP_NAMESPACE})
    alert = _Builder(root)
    alert.add("identifier", version.identifier)
    alert.add("sender", version.sender)
    alert.add("sent", cap_datetime(version.sent))
    alert.add("status", content.status.value)  # Exercise and Test stay what they are
    alert.add("msgType", content.msg_type.value)
    alert.add("scope", content.scope.value)
    alert.add("note", _note(content))
    if content.references:
        alert.add("references", " ".join(cap_reference(r) for r in content.references))
    for info in content.infos:
        _info(alert, info)
    document = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return cast(bytes, document)
