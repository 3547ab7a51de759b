"""Alert versions for channel tests: short, long, exercise, several languages, update, cancel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from approvals.alert import AlertContent, MsgType, Status
from channels.base import AlertVersion

SENDER = "alerts@county.example.gov"
SENT = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
AREA = {
    "description": "Riverside district",
    "polygons": [[(38.0, -122.0), (38.1, -122.0), (38.1, -121.9), (38.0, -122.0)]],
    "circles": [{"lat": 38.05, "lon": -121.95, "radius_km": 2.5}],
    "geocodes": [{"name": "SAME", "value": "006113"}],
}
LONG_DESCRIPTION = (
    "The levee on the east bank of the river has failed near the Main Street bridge. Water is "
    "rising quickly in the Riverside district and will reach homes within the hour. "
) * 6


def _info(language: str, headline: str, description: str, **extra: object) -> dict[str, object]:
    return {
        "language": language,
        "categories": ["Met", "Safety"],
        "event": "Flood",
        "urgency": "Immediate",
        "severity": "Extreme",
        "certainty": "Observed",
        "headline": headline,
        "description": description,
        "instruction": "Leave now for high ground. Do not drive through flood water.",
        "web": "https://county.example.gov/alerts",
        "contact": "County Emergency Operations 555-0100",
        "expires": (SENT + timedelta(hours=6)).isoformat(),
        "areas": [AREA],
        **extra,
    }


def content(
    *,
    status: Status = Status.actual,
    msg_type: MsgType = MsgType.alert,
    long: bool = False,
    languages: tuple[str, ...] = ("en-US",),
    channels: tuple[str, ...] = ("x",),
) -> AlertContent:
    marking = "EXERCISE EXERCISE EXERCISE " if status in (Status.exercise, Status.test) else ""
    texts = {
        "en-US": ("Evacuate Riverside now: levee failure", "Flood water is rising in Riverside."),
        "es-US": (
            "Evacúe Riverside ahora: falla del dique",
            "El agua sube en Riverside. ¡Salga ya!",
        ),
        "fr-CA": ("Évacuez Riverside maintenant : rupture de digue", "L'eau monte à Riverside."),
        "zh-CN": ("立即撤离河滨区：堤坝决口", "河滨区洪水正在上涨。"),  # noqa: RUF001 (Chinese punctuation)
    }
    infos = []
    for language in languages:
        headline, description = texts[language]
        if msg_type is MsgType.cancel:
            headline, description = (
                "All clear: cancel the Riverside evacuation",
                "Error: disregard.",
            )
        infos.append(_info(language, marking + headline, LONG_DESCRIPTION if long else description))
    references = () if msg_type is MsgType.alert else (f"{SENDER},CB-1-1,{SENT.isoformat()}",)
    return AlertContent.model_validate(
        {
            "status": status,
            "msg_type": msg_type,
            "references": references,
            "infos": infos,
            "channels": channels,
        }
    )


def version(number: int = 1, **kwargs: object) -> AlertVersion:
    body = content(**kwargs)  # type: ignore[arg-type]
    return AlertVersion(
        alert_id=1,
        version_id=number,
        number=number,
        identifier=f"CB-1-{number}",
        sender=SENDER,
        sent=SENT + timedelta(minutes=number - 1),
        content=body,
        public_url="https://alerts.county.example.gov/alerts/1",
    )
