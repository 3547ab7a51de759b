"""Reports, incidents and replies as the API, the live queue and the export show them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from broadcaster.triage.scoring import SIMILAR, similar_text
from broadcaster.triage.states import IncidentState, ReplyState, ReportState

__all__ = [
    "HeldReplyOut",
    "IncidentOut",
    "ReasonOut",
    "ReplyOut",
    "ReportOut",
    "ViewerOut",
    "incident_out",
    "report_out",
]


class ReasonOut(BaseModel):
    code: str
    text: str = Field(description="What a responder reads, e.g. 'life-safety words: trapped'.")
    points: float


class ViewerOut(BaseModel):
    username: str
    seen_at: datetime


class ReplyOut(BaseModel):
    id: int
    author: str | None
    text: str
    canned: str | None
    language: str | None
    state: ReplyState
    approved_by: str | None
    external_id: str | None
    error: str | None
    created_at: datetime
    sent_at: datetime | None


class HeldReplyOut(BaseModel):
    """A free-text reply waiting for a second responder, as the queue lists it."""

    id: int
    report_id: int
    author: str | None
    created_at: datetime


class ReportOut(BaseModel):
    id: int
    source: str = Field(
        description="Channel: x, facebook, instagram, mastodon, telegram, sms, form."
    )
    target: str | None = Field(description="The configured target it came in on.")
    external_id: str
    url: str | None
    author_name: str | None
    author_pseudonym: str | None
    contact: str | None = Field(description="How to reach the reporter (SMS number, form).")
    text: str
    language: str | None
    latitude: float | None
    longitude: float | None
    place: str | None
    media: list[str]
    in_reply_to: str | None
    alert_id: int | None = Field(description="The alert this report answers.")
    incident_id: int | None
    incident_size: int | None = Field(
        default=None, description="How many reports its incident holds (this one included)."
    )
    state: ReportState
    priority: float
    reasons: list[ReasonOut]
    assigned_to: str | None
    duplicate_of: int | None
    received_at: datetime
    acknowledged_at: datetime | None
    escalated_at: datetime | None
    escalation_error: str | None
    resolved_at: datetime | None
    updated_at: datetime | None
    viewers: list[ViewerOut] = Field(default_factory=list)
    replies: list[ReplyOut] = Field(default_factory=list)


class IncidentOut(BaseModel):
    id: int
    title: str
    state: IncidentState
    report_count: int = Field(description="How many people report the same thing.")
    priority: float
    latitude: float | None
    longitude: float | None
    place: str | None
    misinformation: bool
    rumour_alert_id: int | None = Field(description="The rumour-control alert draft, if started.")
    created_at: datetime
    last_report_at: datetime | None
    updated_at: datetime | None


def report_out(row: Mapping[Any, Any], usernames: Mapping[int, str]) -> ReportOut:
    """A `reports` row (a mapping, with its incident's `incident_size` when joined) as shown;
    `usernames` resolves assigned_to. (Validating a plain dict is pydantic's fastest way in:
    this runs for every report the live queue shows.)"""
    assigned = row.get("assigned_to")
    size = row.get("incident_size")
    reasons = [
        # "N similar reports" grows with the incident after the report was scored.
        {**reason, "text": similar_text(size)} if reason["code"] == SIMILAR and size else reason
        for reason in row.get("priority_reasons") or ()
    ]
    return ReportOut.model_validate(
        {
            "id": row["id"],
            "source": row["source"],
            "target": row.get("target"),
            "external_id": row["external_id"],
            "url": row.get("url"),
            "author_name": row.get("author_name"),
            "author_pseudonym": row.get("author_pseudonym"),
            "contact": row.get("contact"),
            "text": row["text"],
            "language": row.get("language"),
            "latitude": row.get("latitude"),
            "longitude": row.get("longitude"),
            "place": row.get("place"),
            "media": row.get("media") or [],
            "in_reply_to": row.get("in_reply_to"),
            "alert_id": row.get("alert_id"),
            "incident_id": row.get("incident_id"),
            "incident_size": size,
            "state": row["state"],
            "priority": row["priority"],
            "reasons": reasons,
            "assigned_to": usernames.get(assigned) if assigned is not None else None,
            "duplicate_of": row.get("duplicate_of"),
            "received_at": row["received_at"],
            "acknowledged_at": row.get("acknowledged_at"),
            "escalated_at": row.get("escalated_at"),
            "escalation_error": row.get("escalation_error"),
            "resolved_at": row.get("resolved_at"),
            "updated_at": row.get("updated_at"),
        }
    )


def incident_out(row: Mapping[Any, Any]) -> IncidentOut:
    return IncidentOut(
        id=row["id"],
        title=row["title"],
        state=IncidentState(row["state"]),
        report_count=row["report_count"],
        priority=row["priority"],
        latitude=row.get("latitude"),
        longitude=row.get("longitude"),
        place=row.get("place"),
        misinformation=row["misinformation"],
        rumour_alert_id=row.get("rumour_alert_id"),
        created_at=row["created_at"],
        last_report_at=row.get("last_report_at"),
        updated_at=row.get("updated_at"),
    )
