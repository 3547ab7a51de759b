"""What each role may do. Every API route names one permission; nothing is allowed by default.

Roles are kept apart on purpose: an approver cannot draft and an administrator can neither draft
nor approve. Duty officers hold `approve_alerts` only so that the policy can let a second officer
read a hand-written Cancel: the policy (approvals/policy, config/approval-policy.toml) decides
per alert who may approve, and an author never counts toward their own alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from approvals.roles import Role


class Permission(StrEnum):
    view_alerts = "view_alerts"  # read alerts, versions, previews, deliveries
    draft_alerts = "draft_alerts"  # create, edit, submit, withdraw; issue updates and cancels
    approve_alerts = (
        "approve_alerts"  # approve or reject submitted versions (policy decides who counts)
    )
    view_templates = "view_templates"  # read the template catalogue
    work_reports = "work_reports"  # the triage queue: acknowledge, assign, reply, resolve
    manage_channels = "manage_channels"  # pause and resume channels, see their health
    manage_users = "manage_users"  # users, roles, tokens
    view_audit = "view_audit"  # read and verify the audit log


_P = Permission
ROLE_PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = MappingProxyType(
    {
        Role.duty_officer: frozenset(
            {_P.view_alerts, _P.draft_alerts, _P.approve_alerts, _P.view_templates, _P.view_audit}
        ),
        Role.approver: frozenset(
            {_P.view_alerts, _P.approve_alerts, _P.view_templates, _P.view_audit}
        ),
        Role.responder: frozenset({_P.view_alerts, _P.work_reports}),
        Role.administrator: frozenset(
            {_P.view_alerts, _P.view_templates, _P.manage_channels, _P.manage_users, _P.view_audit}
        ),
    }
)


def allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


def roles_with(permission: Permission) -> list[Role]:
    return [role for role in Role if allows(role, permission)]
