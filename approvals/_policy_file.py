"""Reading config/approval-policy.toml into rules. Every problem is collected, not just the first,
so an administrator fixes the file in one pass. Public via policy.load_policy.
"""

import difflib
import re
from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from typing import Final, TypeVar

from approvals._policy_check import Problem
from approvals._policy_rules import Match, Rule
from approvals.alert import CHANNEL_NAME, MsgType, Severity, Status
from approvals.roles import Role

_TOP_KEYS: Final = frozenset({"ranks", "rules"})
_RULE_KEYS: Final = frozenset(
    {
        "name",
        "description",
        "match",
        "approvals",
        "roles",
        "min_rank",
        "valid_for",
        "submission_window",
        "fresh_second_factor",
        "fast_path",
        "refuse",
    }
)
_REFUSE_KEYS: Final = frozenset({"name", "description", "match", "refuse"})
_MATCH_KEYS: Final = frozenset(
    {"status", "msg_type", "severity", "channels_any", "channels_none", "went_out", "prewritten"}
)
_NAME: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_DURATION: Final = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")

E = TypeVar("E", bound=StrEnum)


class _Reader:
    """Collects problems while reading one table, each prefixed with where it is."""

    def __init__(self, where: str, rule: str | None, problems: list[Problem]) -> None:
        self.where = where
        self.rule = rule
        self.problems = problems

    def problem(self, message: str) -> None:
        self.problems.append((self.rule, f"{self.where}: {message}"))

    def keys(self, table: Mapping[str, object], allowed: frozenset[str]) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                self.problem(
                    f"unknown key '{key}'; {hint}allowed keys: {', '.join(sorted(allowed))}"
                )

    def text(self, table: Mapping[str, object], key: str) -> str | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problem(f"{key} must be a string, not {value!r}")
            return None
        return value

    def flag(self, table: Mapping[str, object], key: str) -> bool | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.problem(f"{key} must be true or false, not {value!r}")
            return None
        return value

    def integer(self, table: Mapping[str, object], key: str) -> int | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(f"{key} must be a whole number, not {value!r}")
            return None
        return value

    def strings(self, table: Mapping[str, object], key: str) -> list[str] | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problem(f'{key} must be a list of strings, like ["a", "b"], not {value!r}')
            return None
        if not value:
            self.problem(f"{key} = [] matches nothing; leave {key} out to match anything")
            return None
        return value

    def enums(self, table: Mapping[str, object], key: str, kind: type[E]) -> frozenset[E] | None:
        names = self.strings(table, key)
        if names is None:
            return None
        found = set()
        for name in names:
            try:
                found.add(kind(name))
            except ValueError:
                allowed = ", ".join(member.value for member in kind)
                self.problem(f"{key}: {name!r} is not one of {allowed}")
        return frozenset(found)

    def duration(self, table: Mapping[str, object], key: str) -> timedelta | None:
        text = self.text(table, key)
        if text is None:
            return None
        parsed = _DURATION.fullmatch(text.strip())
        if not text.strip() or parsed is None:
            self.problem(f'{key} = {text!r} is not a duration like "90s", "15m", "2h" or "1h30m"')
            return None
        days, hours, minutes, seconds = (int(group or 0) for group in parsed.groups())
        duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if duration <= timedelta(0):
            self.problem(f"{key} = {text!r} must be longer than zero")
            return None
        return duration


def parse_policy(data: Mapping[str, object]) -> tuple[dict[str, int], list[Rule], list[Problem]]:
    """The ranks and rules in a parsed TOML document, and every problem found reading them."""
    problems: list[Problem] = []
    top = _Reader("file", None, problems)
    top.keys(data, _TOP_KEYS)
    ranks = _parse_ranks(data.get("ranks", {}), problems)
    raw_rules = data.get("rules")
    if raw_rules is not None and not isinstance(raw_rules, list):
        top.problem("rules must be written as [[rules]] tables (double brackets), one per rule")
        return ranks, [], problems
    if not raw_rules:
        top.problem("there are no rules: add [[rules]] tables, one per situation")
        return ranks, [], problems
    rules = []
    for index, raw in enumerate(raw_rules):
        rule = _parse_rule(index, raw, ranks, problems)
        if rule is not None:
            rules.append(rule)
    return ranks, rules, problems


def _parse_ranks(raw: object, problems: list[Problem]) -> dict[str, int]:
    reader = _Reader("[ranks]", None, problems)
    if not isinstance(raw, dict):
        reader.problem("ranks must be a table of name = number, e.g. shift_supervisor = 2")
        return {}
    ranks = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int):
            reader.problem(f"rank {name} = {value!r} must be a whole number")
        else:
            ranks[name] = value
    return ranks


def _parse_rule(
    index: int, raw: object, ranks: Mapping[str, int], problems: list[Problem]
) -> Rule | None:
    if not isinstance(raw, dict):
        problems.append((None, f"rules[{index}]: each rule must be a [[rules]] table"))
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(
            (
                None,
                f"rules[{index}]: name = {name!r}: every rule needs a name of lowercase letters, "
                "digits and '-', e.g. name = \"actual-extreme\"",
            )
        )
        return None
    reader = _Reader(f"rule '{name}' (rules[{index}])", name, problems)
    refuse = reader.text(raw, "refuse")
    reader.keys(raw, _REFUSE_KEYS if refuse is not None else _RULE_KEYS)
    if refuse is not None and set(raw) - _REFUSE_KEYS:
        extra = ", ".join(sorted(set(raw) - _REFUSE_KEYS))
        reader.problem(f"a rule that refuses cannot also set {extra}")
    match = _parse_match(raw.get("match", {}), reader)
    roles = reader.enums(raw, "roles", Role) or frozenset()
    approvals = reader.integer(raw, "approvals")
    if approvals is None and refuse is None:
        reader.problem(
            "approvals is required: how many people must approve (0 only on a fast path)"
        )
    return Rule(
        name=name,
        match=match,
        description=reader.text(raw, "description") or "",
        approvals=approvals or 0,
        roles=roles,
        min_rank=_parse_min_rank(raw, ranks, reader),
        valid_for=reader.duration(raw, "valid_for"),
        submission_window=reader.duration(raw, "submission_window"),
        fresh_second_factor=reader.duration(raw, "fresh_second_factor"),
        fast_path=reader.flag(raw, "fast_path") or False,
        refuse=refuse,
    )


def _parse_min_rank(
    raw: Mapping[str, object], ranks: Mapping[str, int], reader: _Reader
) -> int | None:
    value = raw.get("min_rank")
    if value is None:
        return None
    if isinstance(value, str):
        if value not in ranks:
            known = ", ".join(sorted(ranks)) or "none declared"
            reader.problem(f"min_rank = {value!r} is not a rank in [ranks] ({known})")
            return None
        return ranks[value]
    return reader.integer(raw, "min_rank")


def _parse_match(raw: object, rule: _Reader) -> Match:
    reader = _Reader(f"{rule.where} match", rule.rule, rule.problems)
    if not isinstance(raw, dict):
        reader.problem('match must be a table, e.g. match.status = ["Actual"]')
        return Match()
    reader.keys(raw, _MATCH_KEYS)
    channels_any = _channels(raw, "channels_any", reader)
    channels_none = _channels(raw, "channels_none", reader)
    return Match(
        statuses=reader.enums(raw, "status", Status) or frozenset(Status),
        msg_types=reader.enums(raw, "msg_type", MsgType) or frozenset(MsgType),
        severities=reader.enums(raw, "severity", Severity) or frozenset(Severity),
        channels_any=channels_any,
        channels_none=channels_none or frozenset(),
        went_out=reader.flag(raw, "went_out"),
        prewritten=reader.flag(raw, "prewritten"),
    )


def _channels(raw: Mapping[str, object], key: str, reader: _Reader) -> frozenset[str] | None:
    names = reader.strings(raw, key)
    if names is None:
        return None
    for name in names:
        if not CHANNEL_NAME.fullmatch(name):
            reader.problem(f'{key}: {name!r} is not a channel name (lowercase, e.g. "sms")')
    return frozenset(names)
