"""What responders do to reports, each in one transaction with its audit entry, then shown live:
acknowledge, assign, close (resolve, dismiss, duplicate, misinformation), say they are viewing,
and reply on the report's channel (canned replies at once, free text as the policy says).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from broadcaster import audit, contacts
from broadcaster.auth.permissions import Permission, allows
from broadcaster.storage.schema import incidents, report_replies, report_views, reports, users
from broadcaster.targets import Directory
from broadcaster.triage import replies, store
from broadcaster.triage.live import LiveHub
from broadcaster.triage.metrics import TriageMetrics
from broadcaster.triage.rules import FreeText, TriageRules
from broadcaster.triage.states import (
    CLOSED,
    OPEN,
    Action,
    IncidentState,
    ReplyState,
    ReportState,
    next_state,
)
from broadcaster.triage.views import ReplyOut, ReportOut, ViewerOut
from broadcaster.users import User, row_to_user

__all__ = [
    "InvalidRequest",
    "NotFound",
    "PolicyRefused",
    "Responder",
    "StateConflict",
    "TriageService",
]

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Responder:
    user: User
    source_address: str | None = None


class NotFound(LookupError):
    pass


class StateConflict(Exception):
    """Not possible in the current state (409); `state` names it."""

    def __init__(self, message: str, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state


class InvalidRequest(ValueError):
    """A field is wrong (422); `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class PolicyRefused(Exception):
    """The reply policy does not allow this (403); `rule` names the setting."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


class ReplyFailed(Exception):
    """The platform did not take the reply (502); it is stored as failed with the error."""

    def __init__(self, message: str, reply: ReplyOut) -> None:
        super().__init__(message)
        self.reply = reply


class TriageService:
    def __init__(
        self,
        engine: AsyncEngine,
        rules: TriageRules,
        directory: Directory,
        hub: LiveHub,
        metrics: TriageMetrics,
        clock: Clock,
    ) -> None:
        self.engine = engine
        self.rules = rules
        self.directory = directory
        self.hub = hub
        self.metrics = metrics
        self.clock = clock

    # --- queue states --------------------------------------------------------------------------

    async def act(
        self,
        who: Responder,
        report_id: int,
        action: Action,
        *,
        assignee: str | None = None,
        duplicate_of: int | None = None,
        note: str | None = None,
        whole_incident: bool = False,
    ) -> ReportOut:
        async with self.engine.begin() as connection:
            now = self.clock()
            row = await self._locked(connection, report_id)
            state = ReportState(row["state"])
            try:
                after = next_state(state, action)
            except Exception as refused:
                raise StateConflict(str(refused), state.value) from None
            values: dict[str, Any] = {"state": after.value, "updated_at": now}
            details: dict[str, Any] = {"from": state.value, "to": after.value}
            if action is Action.acknowledge or row["acknowledged_at"] is None:
                values["acknowledged_at"] = now
            if action is Action.assign:
                person = await self._assignee(connection, assignee or who.user.username)
                values["assigned_to"] = person.id
                details["assigned_to"] = person.username
            if after in CLOSED:
                values["resolved_at"] = now
            if action is Action.duplicate:
                values["duplicate_of"] = await self._original(connection, report_id, duplicate_of)
                details["duplicate_of"] = values["duplicate_of"]
            if note:
                details["note"] = note
            await connection.execute(
                update(reports).where(reports.c.id == report_id).values(**values)
            )
            changed_ids = [report_id]
            incident_id = row["incident_id"]
            if action is Action.misinformation and incident_id is not None:
                await connection.execute(
                    update(incidents)
                    .where(incidents.c.id == incident_id)
                    .values(misinformation=True, updated_at=now)
                )
            if whole_incident and after in CLOSED and incident_id is not None:
                others = await self._close_incident(connection, incident_id, report_id, values)
                changed_ids += others
                details["incident"] = incident_id
                details["also_closed"] = others
            await self._audit(connection, who, f"report.{action.value}", report_id, details, now)
            changed = await self._outs(connection, changed_ids)
        self.hub.publish_reports(changed, state_changed=True)
        return changed[0]

    async def _close_incident(
        self,
        connection: AsyncConnection,
        incident_id: int,
        report_id: int,
        values: dict[str, Any],
    ) -> list[int]:
        """Close every other open report of the incident the same way (and the incident)."""
        rows = await connection.execute(
            select(reports.c.id).where(
                reports.c.incident_id == incident_id,
                reports.c.id != report_id,
                reports.c.state.in_([state.value for state in OPEN]),
            )
        )
        others = sorted(row.id for row in rows)
        shared: dict[str, Any] = {
            key: value
            for key, value in values.items()
            if key not in ("assigned_to", "acknowledged_at")
        }
        shared["acknowledged_at"] = func.coalesce(reports.c.acknowledged_at, values["updated_at"])
        if shared.get("state") == ReportState.duplicate.value:
            shared["duplicate_of"] = report_id  # each repeats the one the responder closed
        if others:
            await connection.execute(
                update(reports).where(reports.c.id.in_(others)).values(**shared)
            )
        await connection.execute(
            update(incidents)
            .where(incidents.c.id == incident_id)
            .values(state=IncidentState.closed.value, updated_at=values["updated_at"])
        )
        return others

    async def viewing(self, who: Responder, report_id: int) -> list[ViewerOut]:
        """Say that `who` has the report open; everyone's console shows it."""
        async with self.engine.begin() as connection:
            now = self.clock()
            await self._locked(connection, report_id, lock=False)
            dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
            await connection.execute(
                dialect.insert(report_views)
                .values(report_id=report_id, user_id=who.user.id, seen_at=now)
                .on_conflict_do_update(
                    index_elements=["report_id", "user_id"], set_={"seen_at": now}
                )
            )
            viewers = await store.viewers(connection, report_id, now)
        self.hub.publish_viewing(report_id, [viewer.model_dump(mode="json") for viewer in viewers])
        return viewers

    # --- replies -------------------------------------------------------------------------------

    async def reply(
        self, who: Responder, report_id: int, *, canned: str | None, text: str | None
    ) -> ReplyOut:
        """Answer the reporter. Canned: sent now. Free text: sent now, held for a second
        responder, or refused, as replies.free_text says."""
        policy = self.rules.replies
        async with self.engine.begin() as connection:
            now = self.clock()
            report = await self._locked(connection, report_id, lock=False)
            self._check_replyable(report)
            if canned is not None:
                if canned not in policy.canned:
                    known = ", ".join(sorted(policy.canned))
                    raise InvalidRequest("canned", f"no canned reply {canned!r}; there are {known}")
                language, body = self.rules.canned_text(canned, report["language"])
                hold = False
            else:
                assert text is not None
                if policy.free_text is FreeText.never:
                    raise PolicyRefused(
                        "The reply policy allows canned replies only (replies.free_text = "
                        '"never" in the triage rules).',
                        "replies.free_text",
                    )
                language, body = report["language"], text.strip()
                hold = policy.free_text is FreeText.second_person
            body = replies.reply_text(report, body)
            too_long = replies.check_length(report, body, policy.max_length)
            if too_long is not None:
                raise InvalidRequest("canned" if canned else "text", too_long)
            await self._check_not_opted_out(connection, report)
            state = ReplyState.pending_approval if hold else ReplyState.sending
            reply_id = int(
                (
                    await connection.execute(
                        report_replies.insert()
                        .values(
                            report_id=report_id,
                            author_id=who.user.id,
                            text=body,
                            canned=canned,
                            language=language,
                            state=state.value,
                            created_at=now,
                        )
                        .returning(report_replies.c.id)
                    )
                ).scalar_one()
            )
            await self._audit(
                connection,
                who,
                "report.reply",
                report_id,
                {
                    "reply": reply_id,
                    "canned": canned,
                    "state": state.value,
                    "text_sha256": _sha(body),
                },
                now,
            )
        if hold:
            self.metrics.replies.labels("held").inc()
            await self._republish(report_id)  # open queues show it waits for a second person
            return await self._reply_out(report_id, reply_id)
        return await self._send(who, report, reply_id, body, language)

    async def decide_reply(
        self, who: Responder, report_id: int, reply_id: int, *, approve: bool
    ) -> ReplyOut:
        """A second responder approves (and so sends) or rejects a held free-text reply."""
        async with self.engine.begin() as connection:
            now = self.clock()
            report = await self._locked(connection, report_id, lock=False)
            row = (
                (
                    await connection.execute(
                        select(report_replies)
                        .where(
                            report_replies.c.id == reply_id,
                            report_replies.c.report_id == report_id,
                        )
                        .with_for_update()
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"report {report_id} has no reply {reply_id}")
            if row["state"] != ReplyState.pending_approval.value:
                raise StateConflict(
                    f"reply {reply_id} is {row['state']}, not waiting for approval", row["state"]
                )
            if row["author_id"] == who.user.id:
                raise PolicyRefused(
                    "A second responder must approve a free-text reply; its writer cannot.",
                    "replies.free_text",
                )
            if approve:
                self._check_replyable(report)
                await self._check_not_opted_out(connection, report)
            state = ReplyState.sending if approve else ReplyState.rejected
            await connection.execute(
                update(report_replies)
                .where(report_replies.c.id == reply_id)
                .values(state=state.value, approved_by=who.user.id if approve else None)
            )
            await self._audit(
                connection,
                who,
                "report.reply_approve" if approve else "report.reply_reject",
                report_id,
                {"reply": reply_id},
                now,
            )
        await self._republish(report_id)  # no longer waiting: open queues drop it
        if not approve:
            self.metrics.replies.labels("rejected").inc()
            return await self._reply_out(report_id, reply_id)
        return await self._send(who, report, reply_id, row["text"], row["language"])

    async def _republish(self, report_id: int) -> None:
        async with self.engine.connect() as connection:
            changed = await self._outs(connection, [report_id])
        self.hub.publish_reports(changed)

    async def _send(
        self,
        who: Responder,
        report: dict[str, Any],
        reply_id: int,
        body: str,
        language: str | None,
    ) -> ReplyOut:
        outcome = await replies.send(self.directory, report, body, language, f"reply:{reply_id}")
        async with self.engine.begin() as connection:
            now = self.clock()
            sent = outcome.error is None
            await connection.execute(
                update(report_replies)
                .where(report_replies.c.id == reply_id)
                .values(
                    state=(ReplyState.sent if sent else ReplyState.failed).value,
                    external_id=outcome.external_id,
                    error=outcome.error,
                    sent_at=now if sent else None,
                )
            )
            if not sent:
                await self._audit(
                    connection,
                    who,
                    "report.reply_failed",
                    report["id"],
                    {"reply": reply_id, "error": outcome.error},
                    now,
                )
        self.metrics.replies.labels("sent" if sent else "failed").inc()
        out = await self._reply_out(report["id"], reply_id)
        if not sent:
            raise ReplyFailed(
                f"{report['source']} did not take the reply: {outcome.error}. It is kept as "
                "failed; check the channel's health, then send it again or answer on the "
                "platform directly.",
                out,
            )
        return out

    def _check_replyable(self, report: dict[str, Any]) -> None:
        try:
            replies.check_possible(report, self.directory)
        except replies.ReplyImpossible as error:
            raise StateConflict(str(error)) from None

    async def _check_not_opted_out(
        self, connection: AsyncConnection, report: dict[str, Any]
    ) -> None:
        if report["source"] == "sms" and report.get("contact"):
            try:
                opted_out = await contacts.is_opted_out(connection, report["contact"])
            except contacts.ContactsError:
                return  # not a number we keep opt-outs for; the platform will say if it fails
            if opted_out:
                raise StateConflict(
                    "This person texted STOP: no SMS may go to them until they text START."
                )

    async def _reply_out(self, report_id: int, reply_id: int) -> ReplyOut:
        async with self.engine.connect() as connection:
            found = await store.get_report(connection, report_id, self.clock())
        assert found is not None
        return next(reply for reply in found.replies if reply.id == reply_id)

    # --- helpers -------------------------------------------------------------------------------

    async def get(self, report_id: int) -> ReportOut:
        async with self.engine.connect() as connection:
            found = await store.get_report(connection, report_id, self.clock())
        if found is None:
            raise NotFound(f"there is no report {report_id}")
        return found

    async def _locked(
        self, connection: AsyncConnection, report_id: int, *, lock: bool = True
    ) -> dict[str, Any]:
        row = await store.report_row(connection, report_id, lock=lock)
        if row is None:
            raise NotFound(f"there is no report {report_id}")
        return row

    async def _assignee(self, connection: AsyncConnection, username: str) -> User:
        row = (await connection.execute(select(users).where(users.c.username == username))).first()
        if row is None:
            raise InvalidRequest("to", f"there is no user {username!r}")
        person = row_to_user(row)
        if not person.active:
            raise InvalidRequest("to", f"{username} is disabled")
        if not allows(person.role, Permission.work_reports):
            raise InvalidRequest(
                "to", f"{username} is a {person.role.value}, who cannot work reports"
            )
        return person

    async def _original(
        self, connection: AsyncConnection, report_id: int, duplicate_of: int | None
    ) -> int:
        if duplicate_of is None:
            raise InvalidRequest("of", 'say which report this one repeats: {"of": REPORT_ID}')
        if duplicate_of == report_id:
            raise InvalidRequest("of", "a report cannot repeat itself")
        if await store.report_row(connection, duplicate_of) is None:
            raise InvalidRequest("of", f"there is no report {duplicate_of}")
        return duplicate_of

    async def _outs(self, connection: AsyncConnection, ids: Sequence[int]) -> list[ReportOut]:
        rows = (
            (await connection.execute(store.report_query().where(reports.c.id.in_(list(ids)))))
            .mappings()
            .all()
        )
        by_id = {row["id"]: row for row in rows}
        return await store.outs(connection, [by_id[i] for i in ids if i in by_id])

    async def _audit(
        self,
        connection: AsyncConnection,
        who: Responder | None,
        action: str,
        report_id: int,
        details: dict[str, Any],
        now: datetime,
    ) -> None:
        await audit.append(
            connection,
            audit.AuditEntry(
                actor=who.user.username if who else "system",
                action=action,
                subject=f"report:{report_id}",
                source_address=who.source_address if who else None,
                details=details,
            ),
            at=now,
        )


def _sha(text: str) -> str:
    # The audit log keeps a reply's fingerprint, not its words: it is never purged, and a reply
    # may quote the reporter.
    return hashlib.sha256(text.encode()).hexdigest()
