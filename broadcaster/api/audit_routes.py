"""The audit log over the API: read it page by page, and verify its hash chain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from broadcaster import audit
from broadcaster.api.framework import Api, Caller
from broadcaster.auth.permissions import Permission
from broadcaster.storage.schema import audit_log
from broadcaster.web_keys import ENGINE

api = Api()


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Bounded so every value fits a 64-bit column on both databases.
    after: int = Field(default=0, ge=0, le=2**62, description="Only entries with a larger seq.")
    limit: int = Field(default=100, ge=1, le=1000)
    action: str | None = Field(default=None, max_length=64)


class AuditEntryOut(BaseModel):
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str | None
    source_address: str | None
    details: dict[str, Any] | None
    content_hash: str | None
    prev_hash: str
    entry_hash: str


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_after: int | None = Field(
        description="Pass as `after` for the next page; null at the end."
    )


class ProblemOut(BaseModel):
    seq: int
    kind: audit.ProblemKind
    message: str


class VerificationOut(BaseModel):
    intact: bool
    entries: int
    head_hash: str
    problems: list[ProblemOut]


@api.route(
    "GET",
    "/audit",
    summary="Audit log entries, oldest first.",
    permission=Permission.view_audit,
    query=AuditQuery,
    response=AuditPage,
    tag="audit",
)
async def list_audit(request: web.Request, _caller: Caller, query: AuditQuery) -> AuditPage:
    statement = select(audit_log).where(audit_log.c.seq > query.after)
    if query.action:
        statement = statement.where(audit_log.c.action == query.action)
    statement = statement.order_by(audit_log.c.seq).limit(query.limit + 1)
    async with request.app[ENGINE].connect() as connection:
        rows = (await connection.execute(statement)).all()
    page = [AuditEntryOut.model_validate(row._asdict()) for row in rows[: query.limit]]
    more = len(rows) > query.limit
    return AuditPage(entries=page, next_after=page[-1].seq if more and page else None)


@api.route(
    "GET",
    "/audit/verify",
    summary="Check the hash chain; reports every entry edited, deleted or reordered, and where.",
    permission=Permission.view_audit,
    response=VerificationOut,
    tag="audit",
)
async def verify_audit(request: web.Request, _caller: Caller) -> VerificationOut:
    async with request.app[ENGINE].connect() as connection:
        result = await audit.verify(connection)
    return VerificationOut.model_validate(result.as_dict())
