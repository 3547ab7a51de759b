"""Every error approvals/ raises, drawn once. The HTTP status is what the API should answer.

WorkflowError              an action on an alert version was refused (.message)
├── InvalidTransition      409  not legal in the version's state (.state, .action)
├── StaleContent           409  the approver saw other content than the version holds (.state)
├── QuorumNotMet           409  release refused: the approvals do not meet the rule now (.quorum)
├── NotDue                 409  expire refused: nothing has lapsed (.state)
├── NotAllowed             403  the policy does not let this person do it (.rule)
└── InvalidContent         422  a field or value is wrong (.field, .value)
    └── ScreeningBlocked   422  screening found blocking problems (.findings)

ConfigError                a configuration file was refused when loaded (.path)
├── PolicyError            config/approval-policy.toml (.problems, .rule)
├── ScreeningConfigError   config/screening.toml
└── TemplateFileError      a file under config/templates/

TemplateError              a template was used wrongly (.template, .field)
├── UnknownTemplate        no template has that name
└── MissingValue           a placeholder was given no value
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from approvals.policy import QuorumResult
    from approvals.screening import Finding
    from approvals.workflow import Action, VersionState

__all__ = [
    "ConfigError",
    "InvalidContent",
    "InvalidTransition",
    "MissingValue",
    "NotAllowed",
    "NotDue",
    "PolicyError",
    "QuorumNotMet",
    "ScreeningBlocked",
    "ScreeningConfigError",
    "StaleContent",
    "TemplateError",
    "TemplateFileError",
    "UnknownTemplate",
    "WorkflowError",
]


class WorkflowError(Exception):
    """An action on an alert version was refused; the message says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidTransition(WorkflowError):
    def __init__(self, state: VersionState, action: Action, message: str) -> None:
        super().__init__(message)
        self.state = state
        self.action = action


class StaleContent(WorkflowError):
    def __init__(self, state: VersionState, message: str) -> None:
        super().__init__(message)
        self.state = state


class QuorumNotMet(WorkflowError):
    def __init__(self, state: VersionState, quorum: QuorumResult, message: str) -> None:
        super().__init__(message)
        self.state = state
        self.quorum = quorum


class NotDue(WorkflowError):
    def __init__(self, state: VersionState, message: str) -> None:
        super().__init__(message)
        self.state = state


class NotAllowed(WorkflowError):
    def __init__(self, rule: str | None, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class InvalidContent(WorkflowError):
    def __init__(self, field: str, message: str, value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class ScreeningBlocked(InvalidContent):
    def __init__(self, findings: Sequence[Finding]) -> None:
        blocking = [finding for finding in findings if finding.level == "block"]
        first = blocking[0]
        lines = "; ".join(f"{f.field}: {f.message} [{f.rule}]" for f in blocking)
        super().__init__(first.field, f"screening blocked the alert: {lines}")
        self.findings = tuple(findings)


class ConfigError(Exception):
    """A configuration file was refused; the message names the file and what to fix."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = Path(path)
        self.message = message


class PolicyError(ConfigError):
    def __init__(self, path: Path | str, problems: Sequence[str], rule: str | None = None) -> None:
        count = len(problems)
        listed = "\n".join(f"  - {problem}" for problem in problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(
            path,
            f"the approval policy was refused ({count} {noun}); fix the file and load it again:"
            f"\n{listed}",
        )
        self.problems = tuple(problems)
        self.rule = rule


class ScreeningConfigError(ConfigError):
    pass


class TemplateFileError(ConfigError):
    pass


class TemplateError(Exception):
    def __init__(self, template: str, field: str | None, message: str) -> None:
        super().__init__(message)
        self.template = template
        self.field = field
        self.message = message


class UnknownTemplate(TemplateError):
    def __init__(self, template: str, message: str) -> None:
        super().__init__(template, None, message)


class MissingValue(TemplateError):
    pass
