"""The roles people hold. One place for the names; every permission check refers to these."""

from enum import StrEnum


class Role(StrEnum):
    duty_officer = "duty_officer"  # drafts, submits, updates and cancels alerts
    approver = "approver"  # signs off alerts in the chain of command
    responder = "responder"  # works the triage queue of public reports
    administrator = "administrator"  # users, channels, policy, pause/resume, audit
