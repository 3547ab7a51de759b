"""Small builders shared by the approvals tests. Defaults make a valid, unremarkable alert."""

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from approvals.alert import EXERCISE_MARKING, AlertContent, MsgType, Severity, Status, is_exercise

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = REPO_ROOT / "config"
POLICY_FILE = CONFIG / "approval-policy.toml"
SCREENING_FILE = CONFIG / "screening.toml"
TEMPLATES_DIR = CONFIG / "templates"

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
REFERENCE = "county.example,alert-1,2024-05-01T08:05:00+00:00"


def info(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "language": "en-US",
        "categories": ["Safety"],
        "event": "Flood",
        "urgency": "Immediate",
        "severity": "Moderate",
        "certainty": "Likely",
        "headline": "Flood warning for the river valley",
        "description": "The river is rising.",
        "instruction": "Move to higher ground.",
        "areas": [{"description": "River valley"}],
    }
    fields.update(overrides)
    return fields


def content(
    status: Status = Status.actual,
    msg_type: MsgType = MsgType.alert,
    severity: Severity = Severity.moderate,
    channels: Sequence[str] = ("x", "sms"),
    references: Sequence[str] = (),
    headline: str | None = None,
    **overrides: Any,
) -> AlertContent:
    """A valid alert; exercise-mode statuses get the marking in the headline automatically."""
    if headline is None:
        headline = "Flood warning for the river valley"
        if is_exercise(status):
            headline = f"{EXERCISE_MARKING}: {headline}"
    if msg_type is not MsgType.alert and not references:
        references = (REFERENCE,)
    infos = overrides.pop("infos", None) or [info(severity=severity, headline=headline)]
    return AlertContent.model_validate(
        {
            "status": status,
            "msg_type": msg_type,
            "references": list(references),
            "infos": infos,
            "channels": list(channels),
            **overrides,
        }
    )
