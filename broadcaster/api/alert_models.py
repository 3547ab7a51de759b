"""Request and answer bodies of the alert API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from approvals.alert import AlertContent

_HASH = r"^[0-9a-f]{64}$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DraftRequest(_Request):
    """A new alert: from a template (with its placeholder values) or written out in full."""

    template: str | None = Field(default=None, description="Template name, e.g. 'evacuation'.")
    values: dict[str, str] = Field(default_factory=dict, description="Placeholder values.")
    channels: list[str] | None = Field(default=None, description="Override the template's.")
    content: AlertContent | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DraftRequest:
        if (self.template is None) == (self.content is None):
            raise ValueError("give either template (with values) or content, not both")
        if self.content is not None and (self.values or self.channels is not None):
            raise ValueError("values and channels go with a template; put them in content")
        return self


class EditRequest(_Request):
    content: AlertContent


class ApproveRequest(_Request):
    content_hash: str = Field(
        pattern=_HASH,
        description="The content_hash of the version as you read it: you approve exactly that.",
    )
    totp_code: str | None = Field(
        default=None,
        pattern=r"^\d{6}$",
        description="A fresh second-factor code, where the policy rule asks for one.",
    )


class RejectRequest(_Request):
    reason: str = Field(min_length=1, max_length=2000)


class WithdrawRequest(_Request):
    reason: str | None = Field(default=None, max_length=2000)


class ReplaceRequest(_Request):
    """Update or Cancel: leave content out to use the template's correction or cancel text."""

    content: AlertContent | None = None


class AlertListQuery(_Request):
    state: str | None = Field(default=None, max_length=32)
    limit: int = Field(default=50, ge=1, le=200)
    before: int | None = Field(
        default=None, ge=1, le=2**62, description="Only alerts with a smaller id."
    )


class FindingOut(BaseModel):
    level: str
    rule: str
    field: str
    message: str


class ApprovalOut(BaseModel):
    approver: str
    at: datetime
    content_hash: str
    second_factor_at: datetime | None


class QuorumOut(BaseModel):
    rule: str
    needed: int
    counted: list[str]
    missing: int
    met: bool
    reasons: list[str]


class VersionOut(BaseModel):
    id: int
    number: int
    state: str
    status: str
    msg_type: str
    author: str
    content: dict[str, Any]
    content_hash: str
    rule: str | None
    quorum: QuorumOut | None
    approvals: list[ApprovalOut]
    reject_reason: str | None
    replaces_version_id: int | None
    identifier: str | None
    sender: str | None
    sent: datetime | None
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    released_at: datetime | None


class VersionSummary(BaseModel):
    id: int
    number: int
    state: str
    msg_type: str
    identifier: str | None


class AlertOut(BaseModel):
    id: int
    mode: str
    created_at: datetime
    created_by: str
    current: VersionOut
    versions: list[VersionSummary]
    findings: list[FindingOut] = Field(
        default_factory=list, description="Screening warnings from the action just taken."
    )


class AlertSummary(BaseModel):
    id: int
    mode: str
    status: str
    msg_type: str
    state: str
    headline: str
    updated_at: datetime


class AlertList(BaseModel):
    alerts: list[AlertSummary]
    next_before: int | None


class PlaceholderOut(BaseModel):
    name: str
    label: str


class TemplateOut(BaseModel):
    name: str
    mode: str
    title: str
    summary: str
    placeholders: list[PlaceholderOut]
    content: dict[str, Any]


class TemplateList(BaseModel):
    templates: list[TemplateOut]
