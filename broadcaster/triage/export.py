"""Reports as CSV for after-action review, with personal data taken out.

Left out: the author's name and contact. Kept: the pseudonym (a keyed hash, so reports by one
person stay linked without saying who). In the text, e-mail addresses, phone numbers, @handles
and links become [email], [phone], [handle] and [link]. Locations are rounded to two decimals
(about 1 km): enough to map an incident, not to find a front door. Text cells that a
spreadsheet would run as a formula (=, +, -, @) are quoted with a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Final

from broadcaster.triage.views import ReportOut

__all__ = ["COLUMNS", "csv_lines", "csv_lines_async", "redact"]

COLUMNS: Final = (
    "id",
    "received_at",
    "source",
    "state",
    "priority",
    "reasons",
    "incident_id",
    "alert_id",
    "language",
    "place",
    "latitude",
    "longitude",
    "author_pseudonym",
    "text",
    "resolved_at",
)
_EMAIL: Final = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_LINK: Final = re.compile(r"(?:https?://|www\.)[^\s\"'<>()]+", re.IGNORECASE)
_HANDLE: Final = re.compile(r"(?<![\w@])@\w[\w.]*(?:@[\w-]+(?:\.[\w-]+)+)?")
# Seven or more digits, with the spaces, dots, dashes and brackets people put between them.
_PHONE: Final = re.compile(r"(?<!\w)\+?\d(?:[\s().-]*\d){6,}(?!\w)")
_FORMULA: Final = ("=", "+", "-", "@", "\t", "\r")


def redact(text: str) -> str:
    text = _EMAIL.sub("[email]", text)
    text = _LINK.sub("[link]", text)
    text = _HANDLE.sub("[handle]", text)
    return _PHONE.sub("[phone]", text)


def _cell(text: str | None) -> str:
    if not text:
        return ""
    return "'" + text if text.startswith(_FORMULA) else text


def _rounded(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _line(values: Iterable[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()


def header_line() -> str:
    return _line(COLUMNS)


def report_line(report: ReportOut) -> str:
    return _line(
        (
            report.id,
            report.received_at.isoformat(),
            report.source,
            report.state.value,
            f"{report.priority:g}",
            _cell("; ".join(reason.text for reason in report.reasons)),
            report.incident_id or "",
            report.alert_id or "",
            report.language or "",
            _cell(report.place),
            _rounded(report.latitude),
            _rounded(report.longitude),
            report.author_pseudonym or "",
            _cell(redact(report.text)),
            report.resolved_at.isoformat() if report.resolved_at else "",
        )
    )


def csv_lines(found: Iterable[ReportOut]) -> Iterator[str]:
    """The header and one line per report, as text lines ready to stream."""
    yield header_line()
    for report in found:
        yield report_line(report)


async def csv_lines_async(found: AsyncIterable[ReportOut]) -> AsyncIterator[str]:
    """`csv_lines` over reports read from the database page by page."""
    yield header_line()
    async for report in found:
        yield report_line(report)
