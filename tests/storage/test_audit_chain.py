"""The audit log's hash chain shows any entry edited, deleted or reordered, and where."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster import audit
from broadcaster.audit import AuditEntry, ProblemKind
from broadcaster.storage.schema import audit_log


async def _write(engine: AsyncEngine, count: int) -> None:
    async with engine.begin() as connection:
        for number in range(1, count + 1):
            await audit.append(
                connection,
                AuditEntry(
                    actor="alice",
                    action="alert.approve",
                    subject=f"alert:{number}",
                    source_address="192.0.2.7",
                    details={"number": number, "text": "Évacuez — 避難"},
                    content_hash="ab" * 32,
                ),
            )


async def _verify(engine: AsyncEngine) -> audit.Verification:
    async with engine.connect() as connection:
        return await audit.verify(connection)


async def test_an_untouched_log_verifies(engine: AsyncEngine) -> None:
    await _write(engine, 5)
    result = await _verify(engine)
    assert result.intact and result.entries == 5
    assert result.head_hash != audit.GENESIS_HASH


async def test_an_empty_log_verifies(engine: AsyncEngine) -> None:
    result = await _verify(engine)
    assert result.intact and result.entries == 0


async def test_an_edited_entry_is_found(engine: AsyncEngine) -> None:
    await _write(engine, 5)
    async with engine.begin() as connection:
        await connection.execute(
            update(audit_log).where(audit_log.c.seq == 3).values(actor="mallory")
        )
    result = await _verify(engine)
    assert [(p.seq, p.kind) for p in result.problems] == [(3, ProblemKind.edited)]


async def test_an_edited_detail_is_found(engine: AsyncEngine) -> None:
    await _write(engine, 3)
    async with engine.begin() as connection:
        await connection.execute(
            update(audit_log).where(audit_log.c.seq == 2).values(details={"number": 99})
        )
    result = await _verify(engine)
    assert [(p.seq, p.kind) for p in result.problems] == [(2, ProblemKind.edited)]


async def test_a_deleted_entry_is_found(engine: AsyncEngine) -> None:
    await _write(engine, 5)
    async with engine.begin() as connection:
        await connection.execute(delete(audit_log).where(audit_log.c.seq == 2))
    result = await _verify(engine)
    assert [(p.seq, p.kind) for p in result.problems] == [(3, ProblemKind.deleted)]
    assert "entry 1 and entry 3" in result.problems[0].message


async def test_deleting_the_first_entry_is_found(engine: AsyncEngine) -> None:
    await _write(engine, 3)
    async with engine.begin() as connection:
        await connection.execute(delete(audit_log).where(audit_log.c.seq == 1))
    result = await _verify(engine)
    assert [(p.seq, p.kind) for p in result.problems] == [(2, ProblemKind.deleted)]


async def test_reordered_entries_are_found(engine: AsyncEngine) -> None:
    await _write(engine, 5)
    # Swap entries 2 and 4 by renumbering them (through a free seq to dodge the key).
    async with engine.begin() as connection:
        await connection.execute(update(audit_log).where(audit_log.c.seq == 2).values(seq=100))
        await connection.execute(update(audit_log).where(audit_log.c.seq == 4).values(seq=2))
        await connection.execute(update(audit_log).where(audit_log.c.seq == 100).values(seq=4))
    result = await _verify(engine)
    kinds = {(p.seq, p.kind) for p in result.problems}
    assert (2, ProblemKind.reordered) in kinds
    assert all(p.kind == ProblemKind.reordered for p in result.problems)
    assert "written right after entry 3" in result.problems[0].message


async def test_appends_after_verification_keep_the_chain(engine: AsyncEngine) -> None:
    await _write(engine, 2)
    first = await _verify(engine)
    await _write(engine, 2)
    second = await _verify(engine)
    assert second.intact and second.entries == 4 and second.head_hash != first.head_hash


async def test_entries_appended_together_chain_in_their_order(engine: AsyncEngine) -> None:
    """Several entries in one append (an approval's) link up as if appended one by one: after
    what was there, each after the one before it."""
    await _write(engine, 2)
    entries = [
        (
            AuditEntry(actor="bob", action=f"alert.step{n}", subject="alert:9", details={"n": n}),
            None,
        )
        for n in range(5)
    ]
    async with engine.begin() as connection:
        seqs = await audit.append_all(connection, entries)
        assert await audit.append_all(connection, []) == []
    await _write(engine, 1)
    result = await _verify(engine)
    assert result.intact and result.entries == 8
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                audit_log.select()
                .with_only_columns(audit_log.c.seq, audit_log.c.action)
                .order_by(audit_log.c.seq)
            )
        ).all()
    assert [action for _seq, action in rows[2:7]] == [f"alert.step{n}" for n in range(5)]
    # Each seq returned is its own entry's.
    by_seq = dict(rows)
    assert [by_seq[seq] for seq in seqs] == [f"alert.step{n}" for n in range(5)]


def test_an_entrys_hash_is_the_one_logs_written_earlier_hold() -> None:
    """The hash of a known entry, pinned: a change to what is hashed, or how, would make every
    log written before it fail verification."""
    entry = AuditEntry(
        actor="alice",
        action="alert.approve",
        subject="alert:1/version:1",
        source_address="192.0.2.7",
        details={"to": "released", "text": "Évacuez"},
        content_hash="ab" * 32,
    )
    at = datetime(2026, 11, 22, 3, 0, 0, 123456, tzinfo=UTC)
    assert audit.entry_hash(at, entry, audit.GENESIS_HASH) == (
        "deae133240aad4d84cadb06d7876e9f4412587e0b6163e8597336549c5064cda"
    )
