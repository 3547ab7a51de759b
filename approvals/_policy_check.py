"""Is a set of policy rules consistent? Every alert must match exactly one rule, and each rule must
be one that real people can satisfy.

Coverage is checked exactly, by enumerating the whole finite domain: every status, (msgType,
went_out, prewritten), severity and channel set. Rules test channels only for membership in the
channels the rules name, so the channel sets that matter are the subsets of those names; the
empty subset stands for "only channels no rule names". Channel subsets are bits of one Python
int per rule, so the check is a few hundred big-int operations rather than a loop per subset.
"""

from collections.abc import Mapping, Sequence
from itertools import product
from typing import Final

from approvals._policy_rules import APPROVING_ROLES, NEVER_PUBLIC, Rule, describe_case
from approvals.alert import MsgType, Severity, Status

# A problem names the rule it is about (None for the whole file) and says what to do.
Problem = tuple[str | None, str]

# 2**MAX_CHANNELS channel subsets per rule; far more channels than any deployment has.
MAX_CHANNELS: Final = 16
_MAX_GAPS_SHOWN: Final = 5

# What an alert replaces, as (msgType, went_out, prewritten). A new Alert replaces nothing, so it
# never "went out"; only a Cancel can carry pre-written text. Other combinations cannot happen,
# so no rule needs to cover them.
_KINDS: Final = (
    (MsgType.alert, False, False),
    (MsgType.update, False, False),
    (MsgType.update, True, False),
    *(
        (MsgType.cancel, went_out, prewritten)
        for went_out in (False, True)
        for prewritten in (False, True)
    ),
)


def rule_problems(rule: Rule, ranks: Mapping[str, int]) -> list[Problem]:
    """What makes this rule, on its own, wrong or impossible to satisfy."""
    name = rule.name
    problems: list[Problem] = []

    def problem(message: str) -> None:
        problems.append((name, f"rule '{name}': {message}"))

    if rule.refuse is not None:
        if not rule.refuse.strip():
            problem("refuse must say why these alerts cannot be submitted")
        if rule.approvals or rule.roles or rule.min_rank is not None or rule.fast_path:
            problem("a rule that refuses cannot also set approvals, roles, min_rank or fast_path")
        return problems

    if rule.match.statuses & NEVER_PUBLIC:
        listed = ", ".join(sorted(status.value for status in rule.match.statuses & NEVER_PUBLIC))
        problem(
            f"it lets status {listed} be submitted, but System and Draft messages never reach "
            'the public; give them a rule with refuse = "..." and remove them from this one'
        )
    if rule.approvals < 0:
        problem(f"approvals = {rule.approvals}; it must be 0 or more")
    if rule.fast_path:
        if rule.approvals != 0:
            problem("fast_path means no approvals are needed: set approvals = 0")
        if rule.match.msg_types != frozenset({MsgType.cancel}):
            problem('fast_path is only for Cancels: set match.msg_type = ["Cancel"]')
        if rule.fresh_second_factor is not None:
            problem("fresh_second_factor has no effect on a fast path, which has no approvers")
    elif rule.approvals == 0:
        problem(
            "approvals = 0 releases with nobody's sign-off; that is only allowed for a Cancel "
            "rule marked fast_path = true"
        )
    if rule.approvals > 0:
        problems.extend(
            (name, f"rule '{name}': {text}") for text in _eligibility_problems(rule, ranks)
        )
        if rule.valid_for is None:
            problem('valid_for is required: how long an approval counts, e.g. valid_for = "2h"')
    if rule.submission_window is None:
        problem(
            "submission_window is required: how long a submitted alert may wait for approval "
            'before it expires, e.g. submission_window = "1h"'
        )
    return problems


def _eligibility_problems(rule: Rule, ranks: Mapping[str, int]) -> list[str]:
    problems = []
    for role in sorted(rule.roles - APPROVING_ROLES):
        allowed = ", ".join(sorted(APPROVING_ROLES))
        problems.append(f"role '{role}' may not approve alerts; roles that may: {allowed}")
    if not rule.roles and rule.min_rank is None:
        problems.append(
            f"approvals = {rule.approvals} but nobody is eligible: set roles "
            '(e.g. roles = ["approver"]) or min_rank'
        )
    elif rule.roles and not rule.roles & APPROVING_ROLES:
        problems.append("none of its roles may approve, so nobody can satisfy it")
    if rule.min_rank is not None:
        if not ranks:
            problems.append("min_rank needs the ranks declared in a [ranks] table")
        else:
            top_name, top = max(ranks.items(), key=lambda item: item[1])
            if rule.min_rank > top:
                problems.append(
                    f"min_rank {rule.min_rank} is above every declared rank (highest: "
                    f"{top_name} = {top}), so nobody can approve"
                )
    return problems


def domain_problems(rules: Sequence[Rule]) -> list[Problem]:
    """Overlaps (an alert two rules match), gaps (an alert no rule matches) and dead rules."""
    channels = sorted(set().union(*(rule.match.mentioned_channels for rule in rules)))
    if len(channels) > MAX_CHANNELS:
        return [
            (
                None,
                f"the rules name {len(channels)} channels; at most {MAX_CHANNELS} can be checked "
                "for overlaps and gaps: group them with channels_none instead",
            )
        ]
    subsets = 1 << len(channels)
    everything = (1 << subsets) - 1
    containing = {channel: _subsets_containing(i, subsets) for i, channel in enumerate(channels)}

    def any_of(names: frozenset[str]) -> int:
        mask = 0
        for channel in names:
            mask |= containing[channel]
        return mask

    masks = []
    for rule in rules:
        wanted = everything if rule.match.channels_any is None else any_of(rule.match.channels_any)
        masks.append(wanted & ~any_of(rule.match.channels_none))

    overlaps: dict[tuple[int, int], str] = {}
    gaps: list[str] = []
    used = [False] * len(rules)
    for status, (msg_type, went_out, prewritten) in product(Status, _KINDS):
        uncovered_severities: list[Severity] = []
        gap_channels = ""
        for severity in Severity:
            hits = [
                (index, masks[index])
                for index, rule in enumerate(rules)
                if masks[index]
                and rule.match.matches_case(status, msg_type, severity, went_out, prewritten)
            ]
            covered = 0
            for position, (first, first_mask) in enumerate(hits):
                used[first] = True
                covered |= first_mask
                for second, second_mask in hits[position + 1 :]:
                    both = first_mask & second_mask
                    if both and (first, second) not in overlaps:
                        overlaps[(first, second)] = describe_case(
                            status,
                            msg_type,
                            severity.value,
                            went_out,
                            prewritten,
                            _names(both, channels),
                        )
            uncovered = everything & ~covered
            if uncovered:
                gap_channels = gap_channels or _names(uncovered, channels)
                uncovered_severities.append(severity)
        if uncovered_severities:
            # One line per (status, msgType, replacement) so a missing rule reads as one gap.
            severity_text = (
                "any"
                if len(uncovered_severities) == len(Severity)
                else "|".join(severity.value for severity in uncovered_severities)
            )
            gaps.append(
                describe_case(status, msg_type, severity_text, went_out, prewritten, gap_channels)
            )

    problems: list[Problem] = []
    for index, rule in enumerate(rules):
        if not used[index]:
            problems.append(
                (
                    rule.name,
                    f"rule '{rule.name}' matches no alert at all: its match conditions contradict "
                    'each other (e.g. went_out = true with msg_type = ["Alert"]); fix or remove it',
                )
            )
    for (first, second), case in sorted(overlaps.items()):
        problems.append(
            (
                rules[first].name,
                f"rules '{rules[first].name}' and '{rules[second].name}' overlap: both match "
                f"{case}; each alert must match exactly one rule, so narrow one of them",
            )
        )
    for case in gaps[:_MAX_GAPS_SHOWN]:
        problems.append(
            (None, f"no rule covers {case}; add a rule or widen one so every alert has a rule")
        )
    if len(gaps) > _MAX_GAPS_SHOWN:
        problems.append((None, f"({len(gaps) - _MAX_GAPS_SHOWN} more gaps like these not listed)"))
    return problems


def _subsets_containing(bit: int, subsets: int) -> int:
    """Bit s is set iff channel subset s (a bit mask over channels) has channel `bit` in it."""
    run = 1 << bit
    pattern = ((1 << run) - 1) << run  # `run` subsets without the channel, then `run` with it
    length = 2 * run
    while length < subsets:
        pattern |= pattern << length
        length *= 2
    return pattern


def _names(mask: int, channels: Sequence[str]) -> str:
    """The first channel subset in `mask`, as names."""
    subset = (mask & -mask).bit_length() - 1
    names = [channel for i, channel in enumerate(channels) if subset >> i & 1]
    return ", ".join(names) if names else "only channels no rule names"
