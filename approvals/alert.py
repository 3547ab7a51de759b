"""What an alert says: the content model, aligned with CAP 1.2 (OASIS Common Alerting Protocol).

Identifier, sender and sent are assigned by the service when a version is released, so they are
not part of the content an approver signs off (`canonical.content_hash` binds approvals to this).
Collections are tuples so content cannot change under a hash once it has been computed; lists are
accepted as input. Whether an expiry time has already passed needs `now`, so the workflow checks
it at submit, not this model.
"""

import re
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

__all__ = [
    "CHANNEL_NAME",
    "EXERCISE_MARKING",
    "HEADLINE_MAX",
    "AlertContent",
    "Area",
    "Category",
    "Certainty",
    "Circle",
    "Geocode",
    "Info",
    "Mode",
    "MsgType",
    "Scope",
    "Severity",
    "Status",
    "Urgency",
    "check_reference",
    "is_exercise",
    "mode_of",
    "most_severe",
]

# The one spelling of the exercise marking. Exercise and Test alerts carry it in every headline and
# on every channel; an Actual alert must never carry it.
EXERCISE_MARKING: Final = "EXERCISE EXERCISE EXERCISE"

# CAP recommends headlines under 160 characters: the length of one SMS and of a phone banner.
HEADLINE_MAX: Final = 160

_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
# Channel names are registry keys ("x", "sms", "county-email"); lowercase so they compare exactly.
CHANNEL_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
# CAP forbids spaces and commas in sender and identifier because references are comma-joined.
_REFERENCE_PART = re.compile(r"[^\s,<&]+")


class Status(StrEnum):
    """CAP <status>: who the message is for."""

    actual = "Actual"  # a real event: live targets, people act on it
    exercise = "Exercise"  # a drill for designated participants: exercise targets, marked
    system = "System"  # technical message between systems: never released to the public
    test = "Test"  # technical test, to be discarded: exercise targets, marked
    draft = "Draft"  # CAP "not actionable" preliminary message: never released to the public


class Mode(StrEnum):
    """Which audience an alert can ever reach; fixed when the alert is created."""

    live = "live"  # Actual: reaches live targets and real people act on it
    exercise = "exercise"  # Exercise or Test: reaches exercise targets only, always marked
    internal = "internal"  # System or Draft: never released to anyone


class MsgType(StrEnum):
    """CAP <msgType>: what the message does."""

    alert = "Alert"  # a new alert
    update = "Update"  # replaces the alerts named in references
    cancel = "Cancel"  # cancels the alerts named in references


class Scope(StrEnum):
    """CAP <scope>: who may receive it."""

    public = "Public"  # anyone
    restricted = "Restricted"  # users with a known operational need
    private = "Private"  # named addresses only


class Category(StrEnum):
    """CAP <category>: the kind of event."""

    geo = "Geo"  # geophysical, including landslide
    met = "Met"  # meteorological, including flood
    safety = "Safety"  # general emergency and public safety
    security = "Security"  # law enforcement, military, homeland and local/private security
    rescue = "Rescue"  # rescue and recovery
    fire = "Fire"  # fire suppression and rescue
    health = "Health"  # medical and public health
    env = "Env"  # pollution and other environmental
    transport = "Transport"  # public and private transportation
    infra = "Infra"  # utility, telecommunication, other non-transport infrastructure
    cbrne = "CBRNE"  # chemical, biological, radiological, nuclear or high-yield explosive
    other = "Other"  # other events


class Urgency(StrEnum):
    """CAP <urgency>: when to act."""

    immediate = "Immediate"  # act now
    expected = "Expected"  # act soon, within the next hour
    future = "Future"  # act in the near future
    past = "Past"  # no action needed any more
    unknown = "Unknown"  # not known


class Severity(StrEnum):
    """CAP <severity>: how bad, in CAP's order from most to least severe."""

    extreme = "Extreme"  # extraordinary threat to life or property
    severe = "Severe"  # significant threat to life or property
    moderate = "Moderate"  # possible threat to life or property
    minor = "Minor"  # minimal to no known threat to life or property
    unknown = "Unknown"  # not known


class Certainty(StrEnum):
    """CAP <certainty>: how sure we are."""

    observed = "Observed"  # determined to have occurred or to be ongoing
    likely = "Likely"  # more likely than not (p > ~50%)
    possible = "Possible"  # possible but not likely (p <= ~50%)
    unlikely = "Unlikely"  # not expected to occur (p ~ 0)
    unknown = "Unknown"  # not known


def mode_of(status: Status) -> Mode:
    """The audience a status can reach."""
    if status is Status.actual:
        return Mode.live
    if status in (Status.exercise, Status.test):
        return Mode.exercise
    return Mode.internal


def is_exercise(status: Status) -> bool:
    """Exercise and Test are exercise mode: marked, and only ever sent to exercise targets."""
    return mode_of(status) is Mode.exercise


def most_severe(severities: Iterable[Severity]) -> Severity:
    """The most severe of these, in CAP's order (Unknown ranks lowest)."""
    order = list(Severity)
    return min(severities, key=order.index, default=Severity.unknown)


def check_reference(reference: str) -> str:
    """Check a CAP reference, "sender,identifier,sent"; return it unchanged or raise ValueError."""
    parts = reference.split(",")
    if len(parts) != 3:
        raise ValueError(
            f"reference {reference!r} is not a CAP 'sender,identifier,sent' triple: it has "
            f"{len(parts)} comma-separated parts; give exactly three"
        )
    sender, identifier, sent = parts
    for label, part in (("sender", sender), ("identifier", identifier)):
        if not _REFERENCE_PART.fullmatch(part):
            raise ValueError(
                f"reference {reference!r}: {label} {part!r} must be non-empty and contain no "
                "spaces, commas, '<' or '&'"
            )
    try:
        sent_at = datetime.fromisoformat(sent)
    except ValueError:
        sent_at = None
    if sent_at is None or sent_at.tzinfo is None:
        raise ValueError(
            f"reference {reference!r}: sent {sent!r} is not a date-time with a time zone, "
            "e.g. 2024-05-01T14:30:00-07:00"
        )
    return reference


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


NonBlank = Annotated[str, AfterValidator(_non_blank)]


def _check_lat_lon(where: str, lat: float, lon: float) -> None:
    # Points are (latitude, longitude); a swapped pair is the usual cause of these errors.
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"{where}: latitude {lat} is outside -90..90 (points are (lat, lon))")
    if not -180.0 <= lon <= 180.0:
        raise ValueError(f"{where}: longitude {lon} is outside -180..180 (points are (lat, lon))")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Circle(_Model):
    """CAP <circle>: a centre point and a radius."""

    lat: float
    lon: float
    radius_km: float

    @model_validator(mode="after")
    def _check(self) -> "Circle":
        _check_lat_lon("circle centre", self.lat, self.lon)
        if not self.radius_km > 0:
            raise ValueError(f"circle radius_km {self.radius_km} must be greater than 0")
        return self


class Geocode(_Model):
    """CAP <geocode>: a coded area, e.g. name "SAME", value "006113"."""

    name: NonBlank
    value: NonBlank


Point = tuple[float, float]


class Area(_Model):
    """CAP <area>: a described area with optional shapes and codes."""

    description: NonBlank
    polygons: tuple[tuple[Point, ...], ...] = ()
    circles: tuple[Circle, ...] = ()
    geocodes: tuple[Geocode, ...] = ()

    @field_validator("polygons")
    @classmethod
    def _check_polygons(
        cls, polygons: tuple[tuple[Point, ...], ...]
    ) -> tuple[tuple[Point, ...], ...]:
        for index, points in enumerate(polygons):
            for number, (lat, lon) in enumerate(points):
                _check_lat_lon(f"polygon {index} point {number}", lat, lon)
            if len(points) < 4:
                raise ValueError(
                    f"polygon {index} has {len(points)} points; a closed polygon needs at least 4 "
                    "(three corners and the first point repeated at the end)"
                )
            if points[0] != points[-1]:
                raise ValueError(
                    f"polygon {index} is not closed: first point {points[0]} differs from last "
                    f"point {points[-1]}; repeat the first point at the end"
                )
        return polygons


class Info(_Model):
    """CAP <info>: the alert in one language."""

    language: str = "en-US"
    categories: tuple[Category, ...] = Field(min_length=1)
    event: NonBlank
    urgency: Urgency
    severity: Severity
    certainty: Certainty
    headline: str
    description: str | None = None
    instruction: str | None = None
    web: str | None = None
    contact: str | None = None
    expires: AwareDatetime | None = None
    areas: tuple[Area, ...] = ()

    @field_validator("language")
    @classmethod
    def _check_language(cls, language: str) -> str:
        if not _LANGUAGE.fullmatch(language):
            raise ValueError(f"language {language!r} is not a language tag like 'en-US' or 'es'")
        return language

    @field_validator("headline")
    @classmethod
    def _check_headline(cls, headline: str) -> str:
        if not headline.strip():
            raise ValueError("headline must not be blank: it is what people see first")
        if len(headline) > HEADLINE_MAX:
            raise ValueError(
                f"headline is {len(headline)} characters; the limit is {HEADLINE_MAX} "
                "(one SMS, one phone banner): shorten it and move detail to the description"
            )
        return headline

    @field_validator("web")
    @classmethod
    def _check_web(cls, web: str | None) -> str | None:
        if web is not None and not re.fullmatch(r"https?://\S+", web):
            raise ValueError(f"web {web!r} must be a full http:// or https:// address")
        return web


class AlertContent(_Model):
    """Everything an approver signs off: the CAP message body and the channels it goes to."""

    status: Status
    msg_type: MsgType
    scope: Scope = Scope.public
    # CAP "sender,identifier,sent" of the alerts this one updates or cancels.
    references: tuple[str, ...] = ()
    note: str | None = None
    infos: tuple[Info, ...]
    # Channel names; kept sorted because the set of channels is what is approved, not its order.
    channels: tuple[str, ...]
    template: str | None = None  # the template it was made from, if any

    @field_validator("references")
    @classmethod
    def _check_references(cls, references: tuple[str, ...]) -> tuple[str, ...]:
        for reference in references:
            check_reference(reference)
        if len(set(references)) != len(references):
            raise ValueError("references lists the same alert twice; list each once")
        return references

    @field_validator("infos")
    @classmethod
    def _check_infos(cls, infos: tuple[Info, ...]) -> tuple[Info, ...]:
        if not infos:
            raise ValueError("an alert needs at least one info block (its text in one language)")
        languages = [info.language for info in infos]
        repeated = sorted({language for language in languages if languages.count(language) > 1})
        if repeated:
            raise ValueError(
                f"language {', '.join(repeated)} appears in more than one info block; "
                "give each language once"
            )
        return infos

    @field_validator("channels")
    @classmethod
    def _check_channels(cls, channels: tuple[str, ...]) -> tuple[str, ...]:
        if not channels:
            raise ValueError("choose at least one channel to send the alert on")
        for channel in channels:
            if not CHANNEL_NAME.fullmatch(channel):
                raise ValueError(
                    f"channel {channel!r} is not a channel name: use lowercase letters, digits, "
                    "'.', '_' or '-'"
                )
        if len(set(channels)) != len(channels):
            raise ValueError("channels lists a channel twice; list each once")
        return tuple(sorted(channels))

    @model_validator(mode="after")
    def _check_references_match_msg_type(self) -> "AlertContent":
        if self.msg_type is MsgType.alert and self.references:
            raise ValueError(
                "references: a new Alert replaces nothing; to replace an alert send an Update "
                "or a Cancel"
            )
        if self.msg_type is not MsgType.alert and not self.references:
            raise ValueError(
                f"references: an {self.msg_type.value} must name the alert it replaces "
                "(CAP 'sender,identifier,sent')"
            )
        return self

    @property
    def mode(self) -> Mode:
        return mode_of(self.status)

    @property
    def severity(self) -> Severity:
        """The most severe severity across the info blocks: what the policy decides on."""
        return most_severe(info.severity for info in self.infos)
