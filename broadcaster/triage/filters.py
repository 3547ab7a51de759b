"""One filter for the queue, the live queue and the export: state, priority, source, incident
and area. The same object answers in SQL (`where`) and in memory (`matches`), so the live
queue shows exactly what a reload of the list would."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import ColumnElement, and_

from approvals.alert import Area
from broadcaster.storage.schema import reports
from broadcaster.triage.states import ReportState
from broadcaster.triage.views import ReportOut
from channels.geo import bounding_box, in_areas

__all__ = ["AreaFilter", "FilterFields", "ReportFilter"]


class FilterFields(Protocol):
    """What `ReportFilter.matches` reads of a report: a ReportOut has it, and so does the few
    plain fields the ingestion writer process sends with each report it encoded (live.py's
    EncodedReport), so the live queue filters without rebuilding the report."""

    @property
    def id(self) -> int: ...
    @property
    def source(self) -> str: ...
    @property
    def state(self) -> ReportState: ...
    @property
    def priority(self) -> float: ...
    @property
    def incident_id(self) -> int | None: ...
    @property
    def latitude(self) -> float | None: ...
    @property
    def longitude(self) -> float | None: ...


@dataclass(frozen=True)
class AreaFilter:
    """Reports located inside these areas (an alert's, or a circle someone drew)."""

    areas: tuple[Area, ...]
    label: str

    def contains(self, latitude: float | None, longitude: float | None) -> bool:
        if latitude is None or longitude is None:
            return False
        return in_areas(latitude, longitude, self.areas)

    def where(self) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = [
            reports.c.latitude.is_not(None),
            reports.c.longitude.is_not(None),
        ]
        box = bounding_box(self.areas)
        if box is not None:  # a cheap first cut in SQL; the exact test runs in Python
            clauses += [
                reports.c.latitude.between(box.min_lat, box.max_lat),
                reports.c.longitude.between(box.min_lon, box.max_lon),
            ]
        return clauses


@dataclass(frozen=True)
class ReportFilter:
    states: frozenset[ReportState] | None = None  # None: every state
    min_priority: float | None = None
    max_priority: float | None = None
    sources: frozenset[str] | None = None
    incident_id: int | None = None
    area: AreaFilter | None = None

    def where(self) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if self.states is not None:
            clauses.append(reports.c.state.in_(sorted(state.value for state in self.states)))
        if self.min_priority is not None:
            clauses.append(reports.c.priority >= self.min_priority)
        if self.max_priority is not None:
            clauses.append(reports.c.priority <= self.max_priority)
        if self.sources is not None:
            clauses.append(reports.c.source.in_(sorted(self.sources)))
        if self.incident_id is not None:
            clauses.append(reports.c.incident_id == self.incident_id)
        if self.area is not None:
            clauses.append(and_(*self.area.where()))
        return clauses

    def matches(self, report: FilterFields, *, ignore_state: bool = False) -> bool:
        if not ignore_state and self.states is not None and report.state not in self.states:
            return False
        if self.min_priority is not None and report.priority < self.min_priority:
            return False
        if self.max_priority is not None and report.priority > self.max_priority:
            return False
        if self.sources is not None and report.source not in self.sources:
            return False
        if self.incident_id is not None and report.incident_id != self.incident_id:
            return False
        return self.area is None or self.area.contains(report.latitude, report.longitude)

    def keep(self, found: Sequence[ReportOut]) -> list[ReportOut]:
        """The exact area test on rows the SQL box let through."""
        if self.area is None:
            return list(found)
        return [report for report in found if self.area.contains(report.latitude, report.longitude)]
