"""Every action on an alert, each in one transaction with its audit entries.

The rules live in `approvals.lifecycle` (pure); this module loads the version, applies the rule,
stores the result and appends the audit events, all in one transaction. When an action leaves a
version approved, it is released in that same transaction, the quorum checked once more at
that moment, and given its CAP identity.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from approvals import lifecycle
from approvals.alert import AlertContent
from approvals.errors import InvalidTransition
from approvals.lifecycle import Event, Step, VersionRecord
from approvals.policy import Approver
from approvals.screening import NO_CHANNEL_CHECKS, ChannelCheck, Finding
from approvals.workflow import TERMINAL_STATES, Action, VersionState
from broadcaster import audit
from broadcaster.alerts import store
from broadcaster.alerts.rules import AlertRules
from broadcaster.storage.schema import users
from broadcaster.users import User

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class AlertNotFound(LookupError):
    def __init__(self, alert_id: int) -> None:
        super().__init__(f"there is no alert {alert_id}")
        self.alert_id = alert_id


class AlertExpired(Exception):
    """The version lapsed before this action; it has been marked expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"this version has expired: {reason}; draft it again")
        self.reason = reason


@dataclass(frozen=True)
class Actor:
    """Who acts, from where, and when they last proved a second factor."""

    user: User
    source_address: str | None = None
    second_factor_at: datetime | None = None


@dataclass(frozen=True)
class Released:
    """A version just released, as the outbox needs it (inside the releasing transaction)."""

    alert_id: int
    version_id: int
    number: int
    record: VersionRecord
    identifier: str
    sender: str
    sent: datetime


# Writes the released version's deliveries in the releasing transaction (the outbox).
ReleaseHook = Callable[[AsyncConnection, Released], Awaitable[None]]
# Whether any delivery of a released version reached (or may have reached) the public.
WentOutCheck = Callable[[AsyncConnection, int], Awaitable[bool]]


@dataclass(frozen=True)
class Outcome:
    alert_id: int
    version_id: int
    findings: tuple[Finding, ...] = ()


class AlertService:
    def __init__(
        self,
        engine: AsyncEngine,
        rules: AlertRules,
        clock: Clock = utc_now,
        *,
        on_release: ReleaseHook | None = None,
        went_out: WentOutCheck | None = None,
        channel_checks: Mapping[str, ChannelCheck] = NO_CHANNEL_CHECKS,
    ) -> None:
        self.engine = engine
        self.channel_checks = channel_checks
        self.rules = rules
        self.clock = clock
        self.on_release = on_release
        self.went_out_check = went_out

    # --- creating --------------------------------------------------------------------------------

    async def draft(self, actor: Actor, content: AlertContent) -> Outcome:
        now = self.clock()
        step = lifecycle.new_draft(content, actor.user.id, now)
        async with self.engine.begin() as connection:
            alert_id = await store.create_alert(connection, content.mode, actor.user.id, now)
            version_id = await store.insert_version(connection, alert_id, step.record)
            await self._audit(connection, actor, alert_id, version_id, step.events)
        return Outcome(alert_id, version_id)

    def from_template(
        self, name: str, values: Mapping[str, str], channels: Sequence[str] | None
    ) -> AlertContent:
        return self.rules.templates.render(name, values, channels)

    # --- acting on the current version -----------------------------------------------------------

    async def edit(self, actor: Actor, alert_id: int, content: AlertContent) -> Outcome:
        return await self._act(
            actor, alert_id, lambda record, now: lifecycle.edit(record, content, actor.user.id, now)
        )

    async def submit(self, actor: Actor, alert_id: int) -> Outcome:
        return await self._act(
            actor,
            alert_id,
            lambda record, now: lifecycle.submit(
                record,
                actor.user.id,
                now,
                self.rules.policy,
                self.rules.screening,
                self.channel_checks,
            ),
        )

    async def recall(self, actor: Actor, alert_id: int) -> Outcome:
        return await self._act(
            actor, alert_id, lambda record, now: lifecycle.recall(record, actor.user.id, now)
        )

    async def approve(self, actor: Actor, alert_id: int, seen_hash: str) -> Outcome:
        approver = Approver(
            user_id=actor.user.id,
            role=actor.user.role,
            rank=actor.user.rank,
            second_factor_at=actor.second_factor_at,
        )
        return await self._act(
            actor,
            alert_id,
            lambda record, now: lifecycle.approve(
                record, approver, seen_hash, now, self.rules.policy
            ),
        )

    async def reject(self, actor: Actor, alert_id: int, reason: str) -> Outcome:
        return await self._act(
            actor,
            alert_id,
            lambda record, now: lifecycle.reject(record, actor.user.id, reason, now),
            rejection=reason,
        )

    async def withdraw(self, actor: Actor, alert_id: int, reason: str | None) -> Outcome:
        return await self._act(
            actor,
            alert_id,
            lambda record, now: lifecycle.withdraw(record, actor.user.id, now, reason),
        )

    # --- replacing a released version ------------------------------------------------------------

    async def update(self, actor: Actor, alert_id: int, content: AlertContent | None) -> Outcome:
        """A draft Update of the released version; without content, its template's correction."""
        async with self.engine.begin() as connection:
            current, pending = await self._replaceable(connection, alert_id)
            if pending is not None:
                raise InvalidTransition(
                    pending.record.state,
                    Action.create,
                    f"version {pending.number} ({pending.record.content.msg_type.value}, "
                    f"{pending.record.state.value}) is already replacing the released alert: "
                    "edit, submit or withdraw it first",
                )
            # Read the clock only once the row is ours: a request that waited for the lock must
            # not judge approvals made while it waited as "in the future".
            now = self.clock()
            references = lifecycle.references_for(current.record)
            if content is None:
                content = self.rules.templates.correction_for(current.record.content, references)
            step = lifecycle.make_update(
                current.record,
                current.id,
                content,
                actor.user.id,
                now,
                went_out=await self._went_out(connection, current),
            )
            version_id = await store.insert_version(connection, alert_id, step.record)
            await self._audit(connection, actor, alert_id, version_id, step.events)
        return Outcome(alert_id, version_id)

    async def cancel(self, actor: Actor, alert_id: int, content: AlertContent | None) -> Outcome:
        """Cancel the released version at once: the Cancel is drafted and submitted together.

        Without content it carries the template's pre-written cancel text, which the default
        policy releases with no approvals (the fast path); written text needs an approver.
        """
        async with self.engine.begin() as connection:
            current, pending = await self._replaceable(connection, alert_id)
            # Read the clock only once the row is ours: a request that waited for the lock must
            # not judge approvals made while it waited as "in the future".
            now = self.clock()
            if pending is not None:
                # A correction still being written or approved must not hold up a cancel: it is
                # withdrawn (and audited), and the cancel replaces the released version.
                dropped = lifecycle.withdraw(
                    pending.record, actor.user.id, now, "superseded by a cancel of the alert"
                )
                await store.save_version(
                    connection, pending.id, pending.record, dropped.record, now
                )
                await self._audit(connection, actor, alert_id, pending.id, dropped.events)
            references = lifecycle.references_for(current.record)
            prewritten = content is None
            if content is None:
                content = self.rules.templates.cancel_for(current.record.content, references)
            made = lifecycle.make_cancel(
                current.record,
                current.id,
                content,
                actor.user.id,
                now,
                went_out=await self._went_out(connection, current),
                prewritten=prewritten,
            )
            version_id = await store.insert_version(connection, alert_id, made.record)
            await self._audit(connection, actor, alert_id, version_id, made.events)
            submitted = lifecycle.submit(
                made.record,
                actor.user.id,
                now,
                self.rules.policy,
                self.rules.screening,
                self.channel_checks,
            )
            findings = await self._store_step(
                connection, actor, alert_id, version_id, made.record, submitted, now
            )
        return Outcome(alert_id, version_id, findings)

    # --- housekeeping ----------------------------------------------------------------------------

    async def expire_lapsed(self) -> int:
        """Mark every submitted or approved version whose time ran out as expired."""
        now = self.clock()
        expired = 0
        async with self.engine.begin() as connection:
            waiting = await store.versions_in_states(
                connection, (VersionState.submitted, VersionState.approved)
            )
            for version_id, alert_id in waiting:
                stored = await store.load_version(connection, version_id, lock=True)
                assert stored is not None
                if lifecycle.expiry_due(stored.record, now, self.rules.policy) is None:
                    continue
                step = lifecycle.expire(stored.record, now, self.rules.policy)
                await store.save_version(connection, version_id, stored.record, step.record, now)
                await self._audit(connection, None, alert_id, version_id, step.events)
                expired += 1
        return expired

    # --- machinery -------------------------------------------------------------------------------

    async def _act(
        self,
        actor: Actor,
        alert_id: int,
        action: Callable[[VersionRecord, datetime], Step],
        *,
        rejection: str | None = None,
    ) -> Outcome:
        async with self.engine.begin() as connection:
            current = await self._current(connection, alert_id, lock=True)
            # Read the clock only once the row is ours: a request that waited for the lock must
            # not judge approvals made while it waited as "in the future".
            now = self.clock()
            reason = lifecycle.expiry_due(current.record, now, self.rules.policy)
            if reason is not None:
                step = lifecycle.expire(current.record, now, self.rules.policy)
                await store.save_version(connection, current.id, current.record, step.record, now)
                await self._audit(connection, None, alert_id, current.id, step.events)
                lapsed = AlertExpired(reason)
            else:
                lapsed = None
                step = action(current.record, now)
                if rejection is not None:
                    await store.record_rejection(
                        connection,
                        current.id,
                        actor.user.id,
                        current.record.content_hash,
                        current.record.rule,
                        rejection,
                        now,
                    )
                findings = await self._store_step(
                    connection, actor, alert_id, current.id, current.record, step, now
                )
        # Raised after the transaction commits, so the expiry itself is kept.
        if lapsed is not None:
            raise lapsed
        return Outcome(alert_id, current.id, findings)

    async def _store_step(
        self,
        connection: AsyncConnection,
        actor: Actor,
        alert_id: int,
        version_id: int,
        before: VersionRecord,
        step: Step,
        now: datetime,
    ) -> tuple[Finding, ...]:
        record, events, cap_identity, released = step.record, list(step.events), None, None
        if record.state is VersionState.approved:
            number = await store.version_number(connection, version_id)
            identifier = f"{self.rules.identifier_prefix}-{alert_id}-{number}"
            sent = now.astimezone(UTC).replace(microsecond=0)  # CAP sent has whole seconds
            reference = f"{self.rules.sender},{identifier},{sent.isoformat()}"
            release_step = lifecycle.release(record, now, self.rules.policy, reference)
            record, cap_identity = release_step.record, (identifier, self.rules.sender, sent)
            events.extend(release_step.events)
            released = Released(
                alert_id, version_id, number, record, identifier, self.rules.sender, sent
            )
        await store.save_version(
            connection, version_id, before, record, now, cap_identity=cap_identity
        )
        await self._audit(connection, actor, alert_id, version_id, events)
        if released is not None and self.on_release is not None:
            await self.on_release(connection, released)
        return step.findings

    async def _replaceable(
        self, connection: AsyncConnection, alert_id: int
    ) -> tuple[store.StoredVersion, store.StoredVersion | None]:
        """The newest released version (what an Update or Cancel replaces) and, if the alert's
        current version is a replacement still in the works (draft, submitted, approved or
        rejected), that version too. Both rows are locked."""
        current = await self._current(connection, alert_id, lock=True)
        if current.record.released_at is not None:
            return current, None
        released = await store.newest_released(connection, alert_id, lock=True)
        if released is None:
            # Nothing went out yet: the workflow explains what to do instead.
            return current, None
        in_works = current.record.state not in TERMINAL_STATES
        return released, current if in_works else None

    async def _current(
        self, connection: AsyncConnection, alert_id: int, *, lock: bool
    ) -> store.StoredVersion:
        alert = await store.get_alert(connection, alert_id)
        if alert is None or alert.current_version_id is None:
            raise AlertNotFound(alert_id)
        current = await store.load_version(connection, alert.current_version_id, lock=lock)
        if current is None:
            raise AlertNotFound(alert_id)
        return current

    async def _went_out(self, connection: AsyncConnection, version: store.StoredVersion) -> bool:
        if version.record.released_at is None:
            return False
        if self.went_out_check is not None:
            return await self.went_out_check(connection, version.id)
        # With nothing to ask, a released version may have reached people: counting it as
        # gone out errs toward a correction that reaches everyone.
        return True

    async def _audit(
        self,
        connection: AsyncConnection,
        actor: Actor | None,
        alert_id: int,
        version_id: int,
        events: Sequence[Event],
    ) -> None:
        names = await self._usernames(connection, {e.actor_id for e in events} - {None})
        entries = []
        for event in events:
            name = names.get(event.actor_id, "system") if event.actor_id is not None else "system"
            entry = audit.AuditEntry(
                actor=name,
                action=f"alert.{event.action.value}",
                subject=f"alert:{alert_id}/version:{version_id}",
                source_address=actor.source_address if actor and event.actor_id else None,
                details={
                    "from": event.from_state.value if event.from_state else None,
                    "to": event.to_state.value,
                    "detail": event.detail,
                },
                content_hash=event.content_hash,
            )
            entries.append((entry, event.at))
        await audit.append_all(connection, entries)

    async def _usernames(
        self, connection: AsyncConnection, ids: set[int | None]
    ) -> dict[int | None, str]:
        wanted = [i for i in ids if i is not None]
        if not wanted:
            return {}
        rows = await connection.execute(
            select(users.c.id, users.c.username).where(users.c.id.in_(wanted))
        )
        return {row.id: row.username for row in rows}
