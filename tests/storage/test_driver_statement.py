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

from broadcaster.storage.sql import DriverStatement, _json_rows
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
    # Text beyond ASCII, quotes and a backslash: a batch carries it inside JSON and back.
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
    one_statement = [sql for sql in seen if "json_each" in sql]
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
    assert not [sql for sql in seen if "json_each" in sql]


def test_values_without_a_json_form_keep_a_batch_row_at_a_time() -> None:
    assert _json_rows([(1, "é", None, True, 2.5)]) == '[[1, "\\u00e9", null, true, 2.5]]'
    assert _json_rows([(1, b"bytes")]) is None
    assert _json_rows([(1, float("nan"))]) is None
    assert _json_rows([(1, float("inf"))]) is None
