"""The append-only audit log, made tamper-evident by a hash chain.

Each entry stores the SHA-256 of its own fields together with the previous entry's hash. Changing
an entry breaks its own hash; deleting one leaves its successor pointing at a hash nobody has;
moving one leaves it pointing at a predecessor that is not the entry before it. `verify` walks the
chain in `seq` order and reports each of these with the entry where it was found.

Appends are serialised (SQLite's write lock; a transaction-scoped advisory lock on PostgreSQL) so
two concurrent actions can never both link to the same predecessor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from broadcaster.storage.schema import audit_log

GENESIS_HASH = "0" * 64
_APPEND_LOCK_KEY = 0x41554454  # "AUDT": any constant shared by every process
_VERIFY_BATCH = 5000


@dataclass(frozen=True)
class AuditEntry:
    # Its fields are the audit_log columns of the same names: stored, and hashed, as they are.
    actor: str
    action: str
    subject: str | None = None
    source_address: str | None = None
    details: dict[str, Any] | None = None
    content_hash: str | None = None


def entry_hash(at: datetime, entry: AuditEntry, prev_hash: str) -> str:
    """SHA-256 over the canonical JSON of an entry's fields and its predecessor's hash."""
    canonical = json.dumps(
        {
            "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
            **asdict(entry),
            "prev_hash": prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def append(
    connection: AsyncConnection, entry: AuditEntry, *, at: datetime | None = None
) -> int:
    """Add `entry` at the end of the chain inside the caller's transaction; return its seq."""
    (seq,) = await append_all(connection, [(entry, at)])
    return seq


async def append_all(
    connection: AsyncConnection, entries: Sequence[tuple[AuditEntry, datetime | None]]
) -> list[int]:
    """Add `entries` (each with its time, None for now), in order, at the end of the chain
    inside the caller's transaction; return their seqs. One lock and one read of the chain's
    end for them all, and on PostgreSQL one insert: an approval writes several entries, on the
    way to its posts. (SQLite's driver inserts them one by one, in order, to return the seqs.)"""
    if not entries:
        return []
    if connection.dialect.name == "postgresql":
        await connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK_KEY}
        )
    last = await connection.scalar(
        select(audit_log.c.entry_hash).order_by(audit_log.c.seq.desc()).limit(1)
    )
    prev_hash = last or GENESIS_HASH
    rows = []
    for entry, at in entries:
        # Stored times have microsecond precision on both backends; hash exactly what is stored.
        moment = (at or datetime.now(UTC)).astimezone(UTC)
        hashed = entry_hash(moment, entry, prev_hash)
        rows.append({"at": moment, **asdict(entry), "prev_hash": prev_hash, "entry_hash": hashed})
        prev_hash = hashed
    result = await connection.execute(
        audit_log.insert().returning(audit_log.c.seq, sort_by_parameter_order=True), rows
    )
    return [int(seq) for seq in result.scalars()]


class ProblemKind(StrEnum):
    edited = "edited"  # the entry's fields no longer match its own hash
    deleted = "deleted"  # the entry before this one is missing from the log
    reordered = "reordered"  # the entry's real predecessor is elsewhere in the log


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: ProblemKind
    message: str


@dataclass
class Verification:
    entries: int = 0
    head_hash: str = GENESIS_HASH
    problems: list[Problem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "entries": self.entries,
            "head_hash": self.head_hash,
            "problems": [
                {"seq": p.seq, "kind": p.kind.value, "message": p.message} for p in self.problems
            ],
        }


async def verify(connection: AsyncConnection) -> Verification:
    """Walk the whole chain and report every break, naming the entry where it shows."""
    report = Verification()
    # Where each hash sits, to tell a moved entry (its predecessor exists) from a deleted one.
    position_of = {
        row.entry_hash: row.seq
        for row in await connection.execute(select(audit_log.c.seq, audit_log.c.entry_hash))
    }
    previous_hash, previous_seq, last_seq = GENESIS_HASH, None, 0
    while True:
        rows = (
            await connection.execute(
                select(audit_log)
                .where(audit_log.c.seq > last_seq)
                .order_by(audit_log.c.seq)
                .limit(_VERIFY_BATCH)
            )
        ).all()
        if not rows:
            break
        for row in rows:
            report.entries += 1
            _check_row(row, previous_hash, previous_seq, position_of, report.problems)
            previous_hash, previous_seq, last_seq = row.entry_hash, row.seq, row.seq
    report.head_hash = previous_hash
    return report


def _check_row(
    row: Any,
    previous_hash: str,
    previous_seq: int | None,
    position_of: dict[str, int],
    problems: list[Problem],
) -> None:
    entry = AuditEntry(
        actor=row.actor,
        action=row.action,
        subject=row.subject,
        source_address=row.source_address,
        details=row.details,
        content_hash=row.content_hash,
    )
    if entry_hash(row.at, entry, row.prev_hash) != row.entry_hash:
        problems.append(
            Problem(
                row.seq, ProblemKind.edited, f"entry {row.seq} was changed after it was written"
            )
        )
    if row.prev_hash == previous_hash:
        return
    after = "the start of the log" if previous_seq is None else f"entry {previous_seq}"
    if row.prev_hash in position_of:
        problems.append(
            Problem(
                row.seq,
                ProblemKind.reordered,
                f"entry {row.seq} is out of order: it was written right after entry "
                f"{position_of[row.prev_hash]}, not after {after}",
            )
        )
    elif row.prev_hash == GENESIS_HASH:
        problems.append(
            Problem(
                row.seq,
                ProblemKind.reordered,
                f"entry {row.seq} is out of order: it was the first entry written",
            )
        )
    else:
        problems.append(
            Problem(
                row.seq,
                ProblemKind.deleted,
                f"the chain breaks between {after} and entry {row.seq}: "
                "an entry was deleted there, or rewritten with a new hash",
            )
        )
