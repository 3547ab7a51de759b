"""The chain-of-command policy: which rule an alert falls under, who may approve it, and whether
its approvals meet the rule.

Semantics, in one place:
- every alert matches exactly one rule; `load_policy` refuses a file with overlaps or gaps;
- the author (everyone who wrote or submitted the version) never counts toward quorum;
- one person counts once;
- an approval counts only while its content hash equals the version's current hash, only for
  the rule's `valid_for` after it was given, and only under the rule it was given under;
- System and Draft messages are never submittable; a fast path (zero approvals) is only a Cancel.
"""

import tomllib
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeAlias

from approvals._policy_check import Problem, domain_problems, rule_problems
from approvals._policy_file import parse_policy
from approvals._policy_rules import (
    APPROVING_ROLES,
    Match,
    PolicyContext,
    Rule,
    format_duration,
)
from approvals.errors import PolicyError
from approvals.roles import Role

__all__ = [
    "APPROVING_ROLES",
    "Approval",
    "Approver",
    "Eligibility",
    "Match",
    "Policy",
    "PolicyContext",
    "PolicyError",
    "QuorumResult",
    "Rule",
    "UserId",
    "load_policy",
]

UserId: TypeAlias = int  # the service's users.id


@dataclass(frozen=True)
class Approver:
    """A person asking to approve, as the service knows them at that moment."""

    user_id: UserId
    role: Role
    rank: int = 0
    second_factor_at: datetime | None = None  # when they last verified a second factor


@dataclass(frozen=True)
class Approval:
    """One recorded approval: who, of exactly which content, when, under which rule."""

    approver_id: UserId
    content_hash: str
    at: datetime
    rule: str
    second_factor_at: datetime | None = None


@dataclass(frozen=True)
class Eligibility:
    """May this person approve under this rule? The reason is written for them to read."""

    allowed: bool
    reason: str
    rule: str


@dataclass(frozen=True)
class QuorumResult:
    met: bool
    counted: tuple[UserId, ...]  # distinct approvers who count, in order of approval
    needed: int
    missing: int  # approvals still needed; 0 when met
    reasons: tuple[str, ...]  # why each approval that does not count does not count
    rule: str


def _authors(author_id: UserId | AbstractSet[UserId]) -> AbstractSet[UserId]:
    return {author_id} if isinstance(author_id, int) else author_id


@dataclass(frozen=True)
class Policy:
    """A consistent set of rules; constructing one checks it, so every Policy is usable."""

    rules: tuple[Rule, ...]
    ranks: Mapping[str, int] = field(default_factory=dict)
    source: str = "<policy>"

    def __post_init__(self) -> None:
        _raise_problems(self.source, _problems(self.rules, self.ranks))

    def rule_named(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(f"{self.source}: no rule named {name!r}")

    def rule_for(self, context: PolicyContext) -> Rule:
        """The one rule that matches this alert."""
        matching = [rule for rule in self.rules if rule.match.matches(context)]
        if len(matching) != 1:  # cannot happen for a checked policy; never guess on safety
            names = ", ".join(rule.name for rule in matching) or "none"
            raise PolicyError(
                self.source, [f"{len(matching)} rules ({names}) match {context.describe()}"]
            )
        return matching[0]

    def eligibility(
        self,
        rule: Rule,
        approver: Approver,
        author_id: UserId | AbstractSet[UserId],
        now: datetime,
    ) -> Eligibility:
        """Whether `approver` may approve under `rule` now, with the reason in plain words."""

        def no(reason: str) -> Eligibility:
            return Eligibility(False, reason, rule.name)

        if rule.refuse is not None:
            return no(f"rule '{rule.name}' does not allow this alert to be released: {rule.refuse}")
        if approver.user_id in _authors(author_id):
            return no(
                "you wrote or submitted this alert, and the author may not approve their own "
                "alert; ask another approver"
            )
        if approver.role not in APPROVING_ROLES:
            return no(f"your role {approver.role} may not approve alerts")
        if rule.roles and approver.role not in rule.roles:
            needed = " or ".join(sorted(rule.roles))
            return no(
                f"rule '{rule.name}' needs an approver with role {needed}; yours is {approver.role}"
            )
        if rule.min_rank is not None and approver.rank < rule.min_rank:
            return no(
                f"rule '{rule.name}' needs rank {rule.min_rank} or higher; yours is {approver.rank}"
            )
        if rule.fresh_second_factor is not None:
            window = format_duration(rule.fresh_second_factor)
            verified = approver.second_factor_at
            if verified is None:
                when = "you have not verified one"
            elif verified > now:
                when = "yours carries a time in the future"
            else:
                when = f"yours was verified {format_duration(now - verified)} ago"
            if verified is None or verified > now or now - verified > rule.fresh_second_factor:
                return no(
                    f"rule '{rule.name}' needs a second factor verified within the last {window}; "
                    f"{when}: verify it again, then approve"
                )
        return Eligibility(True, f"you may approve under rule '{rule.name}'", rule.name)

    def evaluate(
        self,
        rule: Rule,
        author_id: UserId | AbstractSet[UserId],
        content_hash: str,
        approvals: Sequence[Approval],
        now: datetime,
    ) -> QuorumResult:
        """Do these approvals meet `rule` for the content with this hash, now?"""
        if rule.refuse is not None:
            return QuorumResult(False, (), rule.approvals, 0, (rule.refuse,), rule.name)
        authors = _authors(author_id)
        counted: list[UserId] = []
        reasons: list[str] = []
        for approval in approvals:
            who = f"approval by user {approval.approver_id}"
            if approval.approver_id in authors:
                reasons.append(f"{who} does not count: the author never counts toward quorum")
            elif approval.content_hash != content_hash:
                reasons.append(
                    f"{who} does not count: it approved content {approval.content_hash[:12]}, "
                    f"but the version now holds {content_hash[:12]} (edited since)"
                )
            elif approval.rule != rule.name:
                # The policy was reloaded and the alert now falls under another rule, whose
                # eligibility the approver was never checked against.
                reasons.append(
                    f"{who} does not count: it was given under rule '{approval.rule}', but the "
                    f"alert now falls under rule '{rule.name}'"
                )
            elif approval.at > now:
                reasons.append(f"{who} does not count: its time {approval.at} is in the future")
            elif rule.valid_for is not None and now - approval.at > rule.valid_for:
                reasons.append(
                    f"{who} does not count: it lapsed at {approval.at + rule.valid_for} "
                    f"(rule '{rule.name}': approvals count for {format_duration(rule.valid_for)})"
                )
            elif approval.approver_id in counted:
                reasons.append(f"{who} is already counted: one person counts once")
            else:
                counted.append(approval.approver_id)
        missing = max(0, rule.approvals - len(counted))
        return QuorumResult(
            met=missing == 0,
            counted=tuple(counted),
            needed=rule.approvals,
            missing=missing,
            reasons=tuple(reasons),
            rule=rule.name,
        )


def _problems(
    rules: Sequence[Rule], ranks: Mapping[str, int], earlier: Sequence[Problem] = ()
) -> list[Problem]:
    """Everything wrong with these rules; overlaps and gaps only once each rule makes sense."""
    problems = [*earlier, *_duplicate_names(rules)]
    for rule in rules:
        problems.extend(rule_problems(rule, ranks))
    if not problems:
        problems.extend(domain_problems(rules))
    return problems


def _raise_problems(source: Path | str, problems: Sequence[Problem]) -> None:
    if problems:
        first_rule = next((rule for rule, _ in problems if rule is not None), None)
        raise PolicyError(source, [text for _, text in problems], rule=first_rule)


def _duplicate_names(rules: Sequence[Rule]) -> list[Problem]:
    names = [rule.name for rule in rules]
    return [
        (name, f"rule name '{name}' is used {names.count(name)} times; give each rule its own name")
        for name in sorted(set(names))
        if names.count(name) > 1
    ]


def load_policy(path: Path | str) -> Policy:
    """Read and check a policy file; PolicyError lists every problem, naming file and rule."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise PolicyError(path, [f"cannot read the file: {error.strerror}"]) from error
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(path, [f"not valid TOML: {error}"]) from error
    ranks, rules, problems = parse_policy(data)
    _raise_problems(path, _problems(rules, ranks, problems))
    return Policy(rules=tuple(rules), ranks=ranks, source=str(path))
