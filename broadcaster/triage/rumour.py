"""Rumour control: from an incident marked misinformation, an alert DRAFT that says the claim is
false, for a duty officer to complete, submit and have approved like any other alert.

This only drafts (AlertService.draft): the responder who starts it cannot submit it (that needs
the draft_alerts permission) and it goes out only through the approval policy. The draft's text
comes from [rumour_control] in the triage rules, with {claim} filled in, in every language
there; its area is a circle around where the reports came from, when they had a location.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.alert import HEADLINE_MAX, AlertContent
from broadcaster import audit
from broadcaster.alerts.service import Actor, AlertService
from broadcaster.storage.schema import incidents
from broadcaster.triage.rules import TriageRules
from broadcaster.triage.service import NotFound, Responder, StateConflict

__all__ = ["CLAIM_MAX", "build_content", "start_rumour_control"]

CLAIM_MAX = 280


def build_content(
    rules: TriageRules,
    claim: str,
    channels: Sequence[str] | None,
    incident: dict[str, Any],
    radius_km: float,
) -> AlertContent:
    config = rules.rumour_control
    claim = " ".join(claim.split())[:CLAIM_MAX]
    areas: list[dict[str, Any]] = []
    if incident.get("latitude") is not None and incident.get("longitude") is not None:
        areas.append(
            {
                "description": incident.get("place") or "Where the reports came from",
                "circles": [
                    {
                        "lat": incident["latitude"],
                        "lon": incident["longitude"],
                        "radius_km": radius_km,
                    }
                ],
            }
        )
    infos = [
        {
            "language": info.language,
            "categories": [config.category.value],
            "event": info.event,
            "urgency": config.urgency.value,
            "severity": config.severity.value,
            "certainty": config.certainty.value,
            "headline": info.headline.replace("{claim}", claim)[:HEADLINE_MAX],
            "description": info.description.replace("{claim}", claim),
            "instruction": (
                info.instruction.replace("{claim}", claim) if info.instruction else None
            ),
            "areas": areas,
        }
        for info in config.infos
    ]
    return AlertContent.model_validate(
        {
            "status": "Actual",
            "msg_type": "Alert",
            "infos": infos,
            "channels": list(channels or config.channels),
            "note": f"Rumour control for incident {incident['id']}",
        }
    )


async def start_rumour_control(
    engine: AsyncEngine,
    alerts: AlertService,
    rules: TriageRules,
    who: Responder,
    incident_id: int,
    *,
    claim: str | None,
    channels: Sequence[str] | None,
) -> int:
    """Draft the rumour-control alert for a misinformation incident; the new alert's id."""
    async with engine.connect() as connection:
        row = (
            (await connection.execute(select(incidents).where(incidents.c.id == incident_id)))
            .mappings()
            .first()
        )
    if row is None:
        raise NotFound(f"there is no incident {incident_id}")
    incident = dict(row)
    if not incident["misinformation"]:
        raise StateConflict(
            f"incident {incident_id} is not marked as misinformation: mark one of its reports "
            "misinformation first (POST /reports/{id}/misinformation)",
            "not_misinformation",
        )
    if incident["rumour_alert_id"] is not None:
        raise StateConflict(
            f"rumour control for incident {incident_id} was already started: alert "
            f"{incident['rumour_alert_id']}",
            "started",
        )
    content = build_content(
        rules, claim or incident["title"], channels, incident, rules.clustering.max_distance_km
    )
    outcome = await alerts.draft(Actor(who.user, who.source_address), content)
    async with engine.begin() as connection:
        await connection.execute(
            update(incidents)
            .where(incidents.c.id == incident_id)
            .values(rumour_alert_id=outcome.alert_id)
        )
        await audit.append(
            connection,
            audit.AuditEntry(
                actor=who.user.username,
                action="incident.rumour_control",
                subject=f"incident:{incident_id}",
                source_address=who.source_address,
                details={"alert": outcome.alert_id},
            ),
        )
    return outcome.alert_id
