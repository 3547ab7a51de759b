"""DriverStatement writes what SQLAlchemy's own execution writes, on SQLite and PostgreSQL, a
row at a time or (SQLite, with a row key) as one statement for the batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import JSON, BigInteger, Column, MetaData, String, Table, bindparam, event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.storage import sql
from broadcaster.storage.sql import DriverStatement
from broadcaster.storage.types import UtcDateTime

_metadata = MetaData()
_probe = Table(
    "driver_statement_probe",
    _metadata,
    Column("id", BigInteger, primary_key=True),
    Column("state", String(16)),
    Column("note", JSON),
    Column("notes", JSON),
    Column("at", UtcDateTime()),
    Column("owner", String(100)),
)
_UPDATE = (
    _probe.update()
    .where(_probe.c.id == bindparam("b_id"), _probe.c.owner == bindparam("b_owner"))
    .values(
        state="done",  # a value the statement carries itself
        note=bindparam("b_note", type_=_probe.c.note.type),
        notes=bindparam("b_notes", type_=_probe.c.notes.type),
        at=bindparam("b_at", type_=_probe.c.at.type),
    )
)
_ROW_AT_A_TIME = DriverStatement(_UPDATE, prepared=("b_note", "b_notes"))
_BATCHED = DriverStatement(_UPDATE, prepared=("b_note", "b_notes"), row_key="b_id")


@contextmanager
def _statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL the driver is handed while inside."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


@pytest.mark.parametrize("driver", [_ROW_AT_A_TIME, _BATCHED], ids=["row-at-a-time", "batched"])
async def test_rows_read_back_as_sqlalchemy_writes_them(
    engine: AsyncEngine, driver: DriverStatement
) -> None:
    # A time in another zone: the column keeps UTC, whichever way it was written.
    at = datetime(2026, 11, 22, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=-10)))
    # Text beyond ASCII, quotes and a backslash: written as given, whichever way.
    note = {
        "external_id": "SM1",
        "extra": {"to": "+12025550142", "segments": 1, "text": 'Évacuez "now" \\ 🚨'},
    }
    with _statements(engine) as seen:
        rows = await _write(engine, driver, at, note)
    by_sqlalchemy, by_driver, fenced = rows[1], rows[2], rows[3]
    assert (by_driver.state, by_driver.note, by_driver.notes, by_driver.at) == (
        by_sqlalchemy.state,
        by_sqlalchemy.note,
        by_sqlalchemy.notes,
        by_sqlalchemy.at,
    )
    assert by_driver.state == "done"
    assert by_driver.notes == [note]
    assert by_driver.at == at.astimezone(UTC)
    assert (fenced.state, fenced.note, fenced.at) == ("queued", None, None)
    one_statement = [text for text in seen if text.startswith("WITH _rows")]
    if driver is _BATCHED and engine.dialect.name == "sqlite":
        assert len(one_statement) == 1
    else:
        assert not one_statement


async def _write(
    engine: AsyncEngine, driver: DriverStatement, at: datetime, note: dict[str, Any]
) -> dict[int, Any]:
    """Rows 1 (by SQLAlchemy), 2 (by `driver`) and 3 (fenced off by its owner) as read back."""
    async with engine.begin() as connection:
        await connection.run_sync(_metadata.create_all)
        try:
            await connection.execute(
                _probe.insert(), [{"id": n, "state": "queued", "owner": "w/1"} for n in (1, 2, 3)]
            )
            await connection.execute(
                _UPDATE,
                {"b_id": 1, "b_owner": "w/1", "b_note": note, "b_notes": [note], "b_at": at},
            )
            text = json.dumps(note)
            await driver.executemany(
                connection,
                [
                    {
                        "b_id": 2,
                        "b_owner": "w/1",
                        "b_note": text,
                        "b_notes": f"[{text}]",
                        "b_at": at,
                    },
                    # Another worker's token: the WHERE fences it out, as SQLAlchemy's would.
                    {
                        "b_id": 3,
                        "b_owner": "w/9 é",
                        "b_note": text,
                        "b_notes": f"[{text}]",
                        "b_at": at,
                    },
                ],
            )
            return {
                row.id: row
                for row in await connection.execute(select(_probe).order_by(_probe.c.id))
            }
        finally:
            await connection.run_sync(_metadata.drop_all)


async def test_a_row_named_twice_is_written_in_turn(engine: AsyncEngine) -> None:
    """Two updates of one row in a batch go a row at a time, so the later one stands (one
    statement would apply only one of them, which one SQLite does not promise)."""
    at = datetime(2026, 11, 22, 3, 4, 5, tzinfo=UTC)

    def row(note: str) -> dict[str, Any]:
        text = json.dumps(note)
        return {"b_id": 1, "b_owner": "w/1", "b_note": text, "b_notes": f"[{text}]", "b_at": at}

    async with engine.begin() as connection:
        await connection.run_sync(_metadata.create_all)
        try:
            await connection.execute(
                _probe.insert(), [{"id": 1, "state": "queued", "owner": "w/1"}]
            )
            with _statements(engine) as seen:
                await _BATCHED.executemany(connection, [row("first"), row("second")])
            note = await connection.scalar(select(_probe.c.note))
        finally:
            await connection.run_sync(_metadata.drop_all)
    assert note == "second"
    assert not [text for text in seen if text.startswith("WITH _rows")]


async def test_a_batch_longer_than_one_statement_takes_several(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite caps a statement's parameters: a batch past that is split, each part's rows
    rounded up to a power of two with NULL rows that write nothing, and every row is written."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL writes a batch a row at a time (executemany)")
    # The probe's statement has six parameters a row (its fixed state too): 8 rows at most.
    monkeypatch.setattr(sql, "MOST_SQLITE_PARAMETERS", 65)  # 10 rows, down to 8
    at = datetime(2026, 11, 22, 3, 4, 5, tzinfo=UTC)
    rows = [
        {"b_id": n, "b_owner": "w/1", "b_note": f'"{n}"', "b_notes": f'["{n}"]', "b_at": at}
        for n in range(1, 12)
    ]
    async with engine.begin() as connection:
        await connection.run_sync(_metadata.create_all)
        try:
            await connection.execute(
                _probe.insert(), [{"id": n, "state": "queued", "owner": "w/1"} for n in range(13)]
            )
            with _statements(engine) as seen:
                await _BATCHED.executemany(connection, rows)
            written = (await connection.execute(select(_probe).order_by(_probe.c.id))).all()
        finally:
            await connection.run_sync(_metadata.drop_all)
    batches = [text for text in seen if text.startswith("WITH _rows")]
    assert [text.count("), (") + 1 for text in batches] == [8, 4]  # 8 rows, then 3 and a NULL
    assert [(row.id, row.state, row.note) for row in written] == [
        (0, "queued", None),
        *[(n, "done", str(n)) for n in range(1, 12)],
        (12, "queued", None),
    ]
