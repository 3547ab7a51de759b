"""Request and answer bodies of the triage API (reports, incidents, replies)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from broadcaster.triage.states import ReportState
from broadcaster.triage.views import IncidentOut, ReportOut, ViewerOut

__all__ = [
    "AssignRequest",
    "CloseRequest",
    "DuplicateRequest",
    "IncidentList",
    "IncidentQuery",
    "ReplyRequest",
    "ReportList",
    "ReportQuery",
    "RumourRequest",
    "RumourStarted",
    "ViewerList",
]

_AREA_HELP = "'alert:ID' (inside that alert's areas) or 'LAT,LON,KM' (inside that circle)."


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReportQuery(_Request):
    state: str | None = Field(
        default=None,
        description="Comma-separated states; 'open' (the default: new, acknowledged, assigned) "
        "or 'all'.",
        max_length=200,
    )
    min_priority: float | None = Field(default=None, ge=0, le=100)
    max_priority: float | None = Field(default=None, ge=0, le=100)
    source: str | None = Field(
        default=None, description="Comma-separated sources: x, sms, form, ...", max_length=200
    )
    incident: int | None = Field(default=None, ge=1, le=2**62)
    area: str | None = Field(default=None, description=_AREA_HELP, max_length=100)
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=100_000)

    @field_validator("state")
    @classmethod
    def _check_state(cls, state: str | None) -> str | None:
        if state is None:
            return None
        known = {s.value for s in ReportState} | {"open", "all"}
        for part in state.split(","):
            if part.strip() not in known:
                raise ValueError(f"unknown state {part.strip()!r}; use {', '.join(sorted(known))}")
        return state

    @field_validator("area")
    @classmethod
    def _check_area(cls, area: str | None) -> str | None:
        if area is None:
            return None
        if area.startswith("alert:"):
            if not area[len("alert:") :].isdigit():
                raise ValueError(f"area {area!r}: after 'alert:' give the alert's number")
            return area
        parts = area.split(",")
        try:
            lat, lon, km = (float(part) for part in parts)
        except ValueError:
            raise ValueError(f"area {area!r} must be {_AREA_HELP}") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180 and 0 < km <= 500):
            raise ValueError(f"area {area!r}: latitude, longitude or radius (km) out of range")
        return area

    @model_validator(mode="after")
    def _check_range(self) -> ReportQuery:
        if (
            self.min_priority is not None
            and self.max_priority is not None
            and self.min_priority > self.max_priority
        ):
            raise ValueError("min_priority is above max_priority")
        return self


class ReportList(BaseModel):
    reports: list[ReportOut]
    limit: int
    offset: int


class AssignRequest(_Request):
    to: str | None = Field(
        default=None, description="Username of the responder; yourself when left out."
    )
    note: str | None = Field(default=None, max_length=2000)


class CloseRequest(_Request):
    note: str | None = Field(default=None, max_length=2000)
    whole_incident: bool = Field(
        default=False, description="Close every open report of this report's incident too."
    )


class DuplicateRequest(CloseRequest):
    of: int | None = Field(default=None, ge=1, le=2**62, description="The report this one repeats.")


class ReplyRequest(_Request):
    canned: str | None = Field(default=None, description="A canned reply's name (triage rules).")
    text: str | None = Field(
        default=None, min_length=1, max_length=2000, description="Free text, if policy allows."
    )

    @model_validator(mode="after")
    def _one(self) -> ReplyRequest:
        if (self.canned is None) == (self.text is None):
            raise ValueError("give either canned (a canned reply's name) or text, not both")
        return self


class ViewerList(BaseModel):
    viewers: list[ViewerOut]


class IncidentQuery(_Request):
    misinformation: bool | None = None
    min_reports: int = Field(
        default=2, ge=1, le=2**62, description="Only incidents this big or bigger."
    )
    state: str | None = Field(default=None, pattern=r"^(open|closed)$")
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=100_000)


class IncidentList(BaseModel):
    incidents: list[IncidentOut]


class RumourRequest(_Request):
    claim: str | None = Field(
        default=None,
        max_length=280,
        description="The false claim, as the draft should quote it (default: the incident's "
        "title).",
    )
    channels: list[str] | None = Field(default=None, description="Default: the triage rules'.")


class RumourStarted(BaseModel):
    incident_id: int
    alert_id: int = Field(description="The alert draft: complete and submit it at /alerts/{id}.")
