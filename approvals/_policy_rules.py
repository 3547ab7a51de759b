"""What a policy rule is: the situation it matches and what it requires. Public via policy.py."""

from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from approvals.alert import AlertContent, MsgType, Severity, Status
from approvals.roles import Role

# Roles that may ever count toward quorum. Responders work the public's replies and administrators
# run the system (and could otherwise change the policy and approve under it): neither signs off.
APPROVING_ROLES: Final = frozenset({Role.approver, Role.duty_officer})

# Statuses that never reach the public; every policy must refuse to submit them.
NEVER_PUBLIC: Final = frozenset({Status.system, Status.draft})


@dataclass(frozen=True)
class PolicyContext:
    """The facts about a version that decide which rule applies to it."""

    status: Status
    msg_type: MsgType
    severity: Severity  # the most severe across its info blocks
    channels: frozenset[str]
    # It replaces (Update/Cancel) a version that reached the public on at least one target.
    went_out: bool = False
    # It is a Cancel whose text is its template's pre-written cancel text, unedited.
    prewritten: bool = False

    def __post_init__(self) -> None:
        # A new Alert replaces nothing and only a Cancel has pre-written text; folding the
        # impossible combinations away keeps the policy's domain exactly what can happen.
        if self.msg_type is MsgType.alert:
            object.__setattr__(self, "went_out", False)
        if self.msg_type is not MsgType.cancel:
            object.__setattr__(self, "prewritten", False)

    @classmethod
    def of(
        cls, content: AlertContent, *, went_out: bool = False, prewritten: bool = False
    ) -> "PolicyContext":
        return cls(
            status=content.status,
            msg_type=content.msg_type,
            severity=content.severity,
            channels=frozenset(content.channels),
            went_out=went_out,
            prewritten=prewritten,
        )

    def describe(self) -> str:
        return describe_case(
            self.status,
            self.msg_type,
            self.severity.value,
            self.went_out,
            self.prewritten,
            ", ".join(sorted(self.channels)),
        )


def describe_case(
    status: Status,
    msg_type: MsgType,
    severity: str,
    went_out: bool,
    prewritten: bool,
    channels: str,
) -> str:
    """One alert situation (or a few, when severity lists several), in the policy file's words."""
    yes_no = {True: "true", False: "false"}
    return (
        f"status={status.value} msg_type={msg_type.value} severity={severity} "
        f"went_out={yes_no[went_out]} prewritten={yes_no[prewritten]} channels={{{channels}}}"
    )


@dataclass(frozen=True)
class Match:
    """When a rule applies. A dimension left at its default matches anything."""

    statuses: frozenset[Status] = frozenset(Status)
    msg_types: frozenset[MsgType] = frozenset(MsgType)
    severities: frozenset[Severity] = frozenset(Severity)
    channels_any: frozenset[str] | None = None  # targets at least one of these
    channels_none: frozenset[str] = frozenset()  # targets none of these
    went_out: bool | None = None
    prewritten: bool | None = None

    @property
    def mentioned_channels(self) -> frozenset[str]:
        return (self.channels_any or frozenset()) | self.channels_none

    def matches_case(
        self,
        status: Status,
        msg_type: MsgType,
        severity: Severity,
        went_out: bool,
        prewritten: bool,
    ) -> bool:
        """Everything but the channels."""
        return (
            status in self.statuses
            and msg_type in self.msg_types
            and severity in self.severities
            and self.went_out in (None, went_out)
            and self.prewritten in (None, prewritten)
        )

    def matches_channels(self, channels: AbstractSet[str]) -> bool:
        if self.channels_any is not None and not channels & self.channels_any:
            return False
        return not channels & self.channels_none

    def matches(self, context: PolicyContext) -> bool:
        return self.matches_case(
            context.status,
            context.msg_type,
            context.severity,
            context.went_out,
            context.prewritten,
        ) and self.matches_channels(context.channels)


@dataclass(frozen=True)
class Rule:
    """One line of the chain of command: which alerts, and who must sign them off."""

    name: str
    match: Match
    description: str = ""
    approvals: int = 0  # distinct approvers needed, the author never among them
    roles: frozenset[Role] = frozenset()  # an approver must hold one of these (if any are set)
    min_rank: int | None = None  # and have at least this rank (if set)
    valid_for: timedelta | None = None  # how long an approval counts
    submission_window: timedelta | None = None  # how long a submitted version may wait
    fresh_second_factor: timedelta | None = None  # approving needs a second factor this recent
    fast_path: bool = False  # a Cancel that may go out with no approvals
    refuse: str | None = None  # never submittable; this is the reason given

    @property
    def submittable(self) -> bool:
        return self.refuse is None


def format_duration(duration: timedelta) -> str:
    """A timedelta in the policy file's own notation, e.g. 1h30m."""
    seconds = int(duration.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
