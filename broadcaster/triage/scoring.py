"""A report's priority (0-100) and the reasons for it, from the lexicon and what we know around
it. Pure: the same report and context always give the same score, so tests can be a table.

Every part that counts becomes a `Reason` the responder reads ("life-safety words: trapped,
injured"); the priority is their sum, clipped to 0-100. Reasons are stored with their points so
one part (the incident's size) can be recomputed later without the others.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from broadcaster.triage.rules import CategoryRule, Scoring

__all__ = [
    "SIMILAR",
    "Reason",
    "ReporterHistory",
    "ScoreContext",
    "priority_of",
    "score",
    "similar_points",
    "similar_reason",
    "similar_text",
]

SIMILAR = "similar"  # the reason code of the incident-size part
MAX_PRIORITY = 100.0


@dataclass(frozen=True)
class Reason:
    code: str  # category code, "answers_alert", "inside_area", "similar", "reporter_..."
    text: str
    points: float

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "text": self.text, "points": self.points}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reason:
        return cls(str(data["code"]), str(data["text"]), float(data["points"]))


@dataclass(frozen=True)
class ReporterHistory:
    """What this reporter (by pseudonym) sent before."""

    misinformation: int = 0  # earlier reports marked misinformation
    resolved: int = 0  # earlier reports resolved (acted on)
    last_hour: int = 0  # reports in the hour before this one


@dataclass(frozen=True)
class ScoreContext:
    answers_alert: int | None = None  # an alert in force that the report replies to
    inside_alert: int | None = None  # an alert in force whose area holds the report's location
    incident_size: int = 1  # reports in its incident, this one included
    reporter: ReporterHistory = ReporterHistory()


def score(
    matches: Mapping[str, Sequence[str]],
    context: ScoreContext,
    scoring: Scoring,
    categories: Mapping[str, CategoryRule],
) -> tuple[float, list[Reason]]:
    reasons: list[Reason] = []
    for code, found in matches.items():
        category = categories.get(code)
        if category is None or not found:
            continue
        extra = min(category.extra_max, category.extra_per_word * (len(found) - 1))
        reasons.append(
            Reason(code, f"{category.label}: {', '.join(found)}", category.points + extra)
        )
    if context.answers_alert is not None:
        reasons.append(
            Reason(
                "answers_alert",
                f"answers alert #{context.answers_alert}, in force",
                scoring.answers_active_alert,
            )
        )
    if context.inside_alert is not None:
        reasons.append(
            Reason(
                "inside_area",
                f"inside the area of alert #{context.inside_alert}",
                scoring.inside_alert_area,
            )
        )
    similar = similar_reason(context.incident_size, scoring)
    if similar is not None:
        reasons.append(similar)
    reasons.extend(_reporter_reasons(context.reporter, scoring))
    reasons.sort(key=lambda reason: reason.points, reverse=True)
    return priority_of(reasons), reasons


def similar_points(size: int, scoring: Scoring) -> float:
    """Points for an incident of `size` reports: per whole doubling, up to the cap. They change
    only a few times in an incident's life (2, 4, 8, 16 reports with the shipped rules), so
    earlier reports are re-scored a handful of times, not at every new report."""
    doublings = int(math.log2(size)) if size > 1 else 0
    return min(scoring.similar_max, scoring.similar_per_doubling * doublings)


def similar_text(size: int) -> str:
    others = size - 1
    return f"{others} similar report{'' if others == 1 else 's'}"


def similar_reason(size: int, scoring: Scoring) -> Reason | None:
    if size < 2:
        return None
    return Reason(SIMILAR, similar_text(size), similar_points(size, scoring))


def priority_of(reasons: Iterable[Reason]) -> float:
    return round(max(0.0, min(MAX_PRIORITY, sum(reason.points for reason in reasons))), 1)


def _reporter_reasons(history: ReporterHistory, scoring: Scoring) -> list[Reason]:
    reasons: list[Reason] = []
    if history.misinformation:
        reasons.append(
            Reason(
                "reporter_misinformation",
                f"reporter sent misinformation before ({history.misinformation})",
                scoring.reporter_misinformation,
            )
        )
    elif history.resolved:
        reasons.append(
            Reason(
                "reporter_confirmed",
                f"reporter's earlier reports were acted on ({history.resolved})",
                scoring.reporter_confirmed,
            )
        )
    if history.last_hour >= scoring.reporter_burst_per_hour:
        reasons.append(
            Reason(
                "reporter_burst",
                f"reporter sent {history.last_hour} reports in the last hour",
                scoring.reporter_burst,
            )
        )
    return reasons
