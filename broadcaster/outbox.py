"""The transactional outbox: a released version's deliveries, written in the releasing transaction.

`Outbox.on_release` is AlertService's release hook. It runs inside the transaction of the
approval that completed the quorum (or of a fast-path Cancel), so the version is released and
its deliveries exist together or not at all; a double-click or fifty concurrent approvals cannot
make two sets, because the version row is locked for the release and every delivery has a
unique idempotency key.

What it writes, for a version V of an alert:
- publish: one delivery per target of every channel V names, and per recipient on list channels
  (SMS, email: the target's contact lists, optionally only inside the alert's areas, never an
  opted-out number). Targets come from the Directory, which gives exercise and test alerts only
  exercise targets and actual alerts only live ones: this is where an exercise is kept off live
  accounts (the sender checks the target's mode once more before each send).
- when V is an Update or a Cancel, first, for the earlier versions of the same alert:
  * deliveries that have not gone out (queued, waiting to retry, held; nothing posted, nothing
    unresolved) are superseded: they are never sent;
  * deliveries that are in flight or unresolved are marked superseded_by V: they finish finding
    out whether they posted, but send nothing new;
  * every target (and recipient) that something earlier reached, or may have reached, gets a
    retract delivery: the worker cancels or corrects there what the latest earlier delivery put
    out (waiting for an unresolved one to settle first). An Update also publishes to targets of
    its channels that nothing earlier reached; a Cancel goes only where something went.

Posts are rendered here, once per target (and per language on a list), from the approved
content, and frozen in delivery_payloads: one row per distinct rendering, which each delivery
references (a 100,000-person list shares a handful).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol, runtime_checkable

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.alert import Area, Mode, MsgType
from broadcaster import contacts
from broadcaster.alerts.publication import alert_page_url
from broadcaster.alerts.service import Released
from broadcaster.dispatch.payload import Payload, delivery_key
from broadcaster.dispatch.row_locks import in_lock_order
from broadcaster.dispatch.states import DeliveryKind, DeliveryState
from broadcaster.dispatch.wake import Wakeup, notify_workers
from broadcaster.storage.schema import (
    alert_versions,
    channel_state,
    deliveries,
    delivery_payloads,
)
from broadcaster.targets import ConfiguredTarget, Directory
from channels.base import AlertVersion, Channel, Post

log = logging.getLogger(__name__)

# Rows per INSERT statement: a 100,000-person SMS list is written in batches of this size.
INSERT_BATCH: Final = 2000
_S = DeliveryState

# A slot is where one delivery lands: (channel, target, recipient or None).
Slot = tuple[str, str, str | None]


@runtime_checkable
class LanguageRenderer(Protocol):
    """List channels that send each person the info block in their own language (SMS)."""

    def render_for_language(self, version: AlertVersion, language: str | None) -> Post: ...


@dataclass(frozen=True)
class _Reached:
    """A slot an earlier version reached (or may have): its target's mode, the language."""

    target_mode: str
    language: str | None


@dataclass(frozen=True)
class _Recipient:
    address: str | None
    language: str | None = None


class Outbox:
    def __init__(
        self,
        directory: Directory,
        *,
        public_base: str,
        wake: Wakeup | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.directory = directory
        self.public_base = public_base
        self.wake = wake
        self.clock = clock or (lambda: datetime.now(UTC))

    # --- the AlertService hooks ------------------------------------------------------------------

    async def on_release(self, connection: AsyncConnection, released: Released) -> None:
        record = released.record
        content = record.content
        now = record.released_at or self.clock()
        version = AlertVersion(
            alert_id=released.alert_id,
            version_id=released.version_id,
            number=released.number,
            identifier=released.identifier,
            sender=released.sender,
            sent=released.sent,
            content=content,
            public_url=alert_page_url(self.public_base, released.alert_id),
        )
        if content.mode is Mode.internal:
            log.warning(
                "version %s is %s: internal alerts reach no target",
                released.version_id,
                content.status.value,
            )
            return
        paused = await _paused_targets(connection)
        rows = _Rows(version, now, paused)
        reached: dict[Slot, _Reached] = {}
        if record.replaces is not None:
            reached = await self._stop_earlier(connection, version, now)
            for slot, earlier in reached.items():
                self._add_retract(rows, slot, earlier)
        if content.msg_type is not MsgType.cancel:
            await self._add_publishes(connection, rows, set(reached))
        await rows.write(connection)
        if not rows.values:
            log.warning(
                "version %s of alert %s released with no delivery: no target is configured "
                "for its channels (%s) in %s mode",
                released.version_id,
                released.alert_id,
                ", ".join(content.channels),
                content.mode.value,
            )
        await notify_workers(connection, self.wake)

    async def went_out(self, connection: AsyncConnection, version_id: int) -> bool:
        """Did any delivery of this version reach the public, or may it have (in flight,
        unresolved, part of a thread posted)?"""
        found = await connection.execute(
            select(deliveries.c.id)
            .where(deliveries.c.version_id == version_id, _may_have_gone_out())
            .limit(1)
        )
        return found.first() is not None

    # --- publishing ------------------------------------------------------------------------------

    async def _add_publishes(
        self, connection: AsyncConnection, rows: _Rows, reached: set[Slot]
    ) -> None:
        content = rows.version.content
        for channel in content.channels:
            targets = self.directory.for_alert(channel, content.mode)
            if not targets:
                log.warning(
                    "no %s target for %s alerts: version %s does not go to %s",
                    content.mode.value,
                    content.mode.value,
                    rows.version.version_id,
                    channel,
                )
            for configured in targets:
                try:
                    recipients = await self._recipients(connection, configured, rows.version)
                except contacts.ContactsError as error:
                    rows.add_dead(configured, str(error))
                    continue
                name = configured.name  # a property: read once per target, not per person
                for recipient in recipients:
                    if (channel, name, recipient.address) not in reached:
                        rows.add(
                            configured,
                            recipient,
                            self._posts(configured, rows, recipient),
                            DeliveryKind.publish,
                        )

    async def _recipients(
        self, connection: AsyncConnection, configured: ConfiguredTarget, version: AlertVersion
    ) -> list[_Recipient]:
        if not configured.channel_class.needs_recipient:
            return [_Recipient(None)]
        channel = configured.channel_class.name
        if channel not in ("sms", "email"):
            raise contacts.ContactsError(f"no contact lists for the {channel} channel")
        areas: list[Area] | None = None
        if configured.inside_area_only:
            areas = [area for info in version.content.infos for area in info.areas]
        found: dict[str, _Recipient] = {}
        for list_name in configured.lists:
            chosen = await contacts.select_recipients(
                connection,
                list_name,
                "sms" if channel == "sms" else "email",
                areas=areas,
            )
            for person in chosen:
                found.setdefault(person.address, _Recipient(person.address, person.language))
        return list(found.values())

    def _posts(
        self, configured: ConfiguredTarget, rows: _Rows, recipient: _Recipient
    ) -> tuple[Post, ...] | str:
        """The posts for one slot, rendered once per target and language; or why not."""
        language = recipient.language if recipient.address is not None else None
        cache_key = (configured.name, language)
        cached = rows.rendered.get(cache_key)
        if cached is not None:
            return cached
        adapter: Channel = self.directory.adapter(configured.name)
        try:
            if recipient.address is not None and isinstance(adapter, LanguageRenderer):
                posts: tuple[Post, ...] | str = (
                    adapter.render_for_language(rows.version, language),
                )
            else:
                posts = tuple(adapter.render(rows.version))
            if not posts:
                posts = f"the {configured.channel_class.name} channel rendered nothing"
        except Exception as error:  # a rendering bug must show up as a dead delivery, not a 500
            log.exception(
                "rendering version %s for %s failed", rows.version.version_id, configured.name
            )
            posts = f"rendering for {configured.name} failed: {type(error).__name__}: {error}"
        rows.rendered[cache_key] = posts
        return posts

    # --- replacing earlier versions --------------------------------------------------------------

    async def _stop_earlier(
        self, connection: AsyncConnection, version: AlertVersion, now: datetime
    ) -> dict[Slot, _Reached]:
        """Stop what has not gone out; return every slot something earlier may have reached."""
        earlier = (
            select(alert_versions.c.id)
            .where(
                alert_versions.c.alert_id == version.alert_id,
                alert_versions.c.number < version.number,
            )
            .scalar_subquery()
        )
        kind = version.content.msg_type.value
        await connection.execute(
            deliveries.update()
            .where(
                *in_lock_order(
                    connection,
                    deliveries.c.version_id.in_(earlier),
                    deliveries.c.state.in_([_S.queued, _S.retry_wait, _S.held]),
                    deliveries.c.parts_done == 0,
                    deliveries.c.reconcile_part.is_(None),
                )
            )
            .values(
                state=_S.superseded,
                superseded_by=version.version_id,
                lease_owner=None,
                lease_expires_at=None,
                last_error=f"superseded by the {kind} {version.identifier} before it was sent",
                updated_at=now,
            )
        )
        await connection.execute(
            deliveries.update()
            .where(
                *in_lock_order(
                    connection,
                    deliveries.c.version_id.in_(earlier),
                    deliveries.c.state.in_([_S.queued, _S.retry_wait, _S.held, _S.in_flight]),
                )
            )
            .values(superseded_by=version.version_id, updated_at=now)
        )
        found = await connection.execute(
            select(
                deliveries.c.channel,
                deliveries.c.target,
                deliveries.c.recipient,
                deliveries.c.target_mode,
                delivery_payloads.c.payload,
            )
            .select_from(
                deliveries.outerjoin(
                    delivery_payloads, delivery_payloads.c.id == deliveries.c.payload_id
                )
            )
            .where(deliveries.c.version_id.in_(earlier), _may_have_gone_out())
            .order_by(deliveries.c.id.desc())
        )
        reached: dict[Slot, _Reached] = {}
        for row in found:
            slot = (row.channel, row.target, row.recipient)
            if slot not in reached:
                # The language the person got it in: their correction comes in the same one.
                posts = Payload.from_json(row.payload).posts
                language = posts[0].language if posts and row.recipient is not None else None
                reached[slot] = _Reached(row.target_mode, language)
        return reached

    def _add_retract(self, rows: _Rows, slot: Slot, earlier: _Reached) -> None:
        channel, target, recipient = slot
        if earlier.target_mode != rows.mode:
            # Cannot happen (a version's status never changes); refuse loudly if it ever does.
            log.error(
                "refusing to retract on %s target %s for a %s alert",
                earlier.target_mode,
                target,
                rows.mode,
            )
            return
        configured = self.directory.targets.get(target)
        if configured is None:
            rows.add_orphan(channel, target, earlier.target_mode, recipient, DeliveryKind.retract)
            return
        person = _Recipient(recipient, earlier.language)
        rows.add(configured, person, self._posts(configured, rows, person), DeliveryKind.retract)


class _Rows:
    """The delivery rows for one release, built up before one batched insert."""

    def __init__(self, version: AlertVersion, now: datetime, paused: set[str]) -> None:
        self.version = version
        self.now = now
        self.paused = paused
        self.values: list[dict[str, Any]] = []
        self.rendered: dict[tuple[str, str | None], tuple[Post, ...] | str] = {}
        self.mode = "exercise" if version.content.mode is Mode.exercise else "live"
        # Each distinct rendering becomes one delivery_payloads row, which its deliveries
        # reference: until written, a row's "payload_id" is the rendering's place in
        # `payloads`. Keyed by identity (a Post is not hashable); the posts are kept with it, so
        # an id is never reused for another rendering meanwhile.
        self._numbers: dict[int, int] = {}
        self._facts: dict[int, tuple[str, str, str, DeliveryState, ConfiguredTarget]] = {}
        self.payloads: list[tuple[tuple[Post, ...], dict[str, Any]]] = []

    async def write(self, connection: AsyncConnection) -> None:
        """The payloads, then the deliveries that reference them, in batched inserts."""
        ids: list[int] = []
        if self.payloads:
            # One statement for them all on PostgreSQL (a release to eight channels has eight;
            # SQLite's driver inserts them one by one), the ids in the order of the rows.
            inserted = await connection.execute(
                delivery_payloads.insert().returning(
                    delivery_payloads.c.id, sort_by_parameter_order=True
                ),
                [
                    {
                        "version_id": self.version.version_id,
                        "payload": payload,
                        "created_at": self.now,
                    }
                    for _posts, payload in self.payloads
                ],
            )
            ids = list(inserted.scalars())
        for row in self.values:
            row["payload_id"] = ids[row["payload_id"]]
        for start in range(0, len(self.values), INSERT_BATCH):
            await connection.execute(deliveries.insert(), self.values[start : start + INSERT_BATCH])

    def add(
        self,
        configured: ConfiguredTarget,
        recipient: _Recipient,
        posts: tuple[Post, ...] | str,
        kind: DeliveryKind,
    ) -> None:
        facts = self._facts.get(id(configured))
        if facts is None:
            # What every row of the target shares, read once: these are properties, and a
            # 100,000-person list read each of them 100,000 times.
            facts = (
                configured.channel_class.name,
                configured.name,
                configured.target.mode.value,
                _S.held if configured.name in self.paused else _S.queued,
                configured,  # kept, so its id is not reused meanwhile
            )
            self._facts[id(configured)] = facts
        channel, name, mode, state = facts[:4]
        error = None
        if isinstance(posts, str):
            state, error, posts = _S.dead, posts, ()
        self._append(
            channel,
            name,
            mode,
            recipient.address,
            kind,
            state,
            self._payload(posts),
            error,
        )

    def _payload(self, posts: tuple[Post, ...]) -> int:
        """The number of this rendering's payload (no posts: a dead row's, which says the mode)."""
        number = self._numbers.get(id(posts))
        if number is None:
            number = self._numbers[id(posts)] = len(self.payloads)
            self.payloads.append((posts, Payload(posts, self.mode).to_json()))
        return number

    def add_dead(self, configured: ConfiguredTarget, reason: str) -> None:
        self._append(
            configured.channel_class.name,
            configured.name,
            configured.target.mode.value,
            None,
            DeliveryKind.publish,
            _S.dead,
            self._payload(()),
            reason,
        )

    def add_orphan(
        self, channel: str, target: str, mode: str, recipient: str | None, kind: DeliveryKind
    ) -> None:
        # The target left the configuration since: keep the row visible, dead, with the reason.
        self._append(
            channel,
            target,
            mode,
            recipient,
            kind,
            _S.dead,
            self._payload(()),
            f"target {target!r} is no longer configured, so this {kind.value} cannot be sent; "
            "configure it again and requeue",
        )

    def _append(
        self,
        channel: str,
        target: str,
        target_mode: str,
        recipient: str | None,
        kind: DeliveryKind,
        state: DeliveryState,
        payload: int,
        error: str | None,
    ) -> None:
        self.values.append(
            {
                "version_id": self.version.version_id,
                "channel": channel,
                "target": target,
                "target_mode": target_mode,
                "kind": kind.value,
                "state": state.value,
                "idempotency_key": delivery_key(self.version.identifier, target, recipient),
                "payload_id": payload,
                "attempts": 0,
                "next_attempt_at": self.now,
                "recipient": recipient,
                "parts_done": 0,
                "last_error": error,
                "created_at": self.now,
                "updated_at": self.now,
            }
        )


def _may_have_gone_out() -> Any:
    return or_(
        deliveries.c.state.in_([_S.delivered, _S.in_flight]),
        deliveries.c.parts_done > 0,
        deliveries.c.reconcile_part.is_not(None),
    )


async def _paused_targets(connection: AsyncConnection) -> set[str]:
    rows = await connection.execute(
        select(channel_state.c.target).where(channel_state.c.paused.is_(True))
    )
    return {row.target for row in rows}
