"""DriverStatement writes what SQLAlchemy's own execution writes, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import JSON, BigInteger, Column, MetaData, String, Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

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
_DRIVER = DriverStatement(_UPDATE, prepared=("b_note", "b_notes"))


async def test_rows_read_back_as_sqlalchemy_writes_them(engine: AsyncEngine) -> None:
    # A time in another zone: the column keeps UTC, whichever way it was written.
    at = datetime(2026, 11, 22, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=-10)))
    note = {"external_id": "SM1", "extra": {"to": "+12025550142", "segments": 1}}
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
            await _DRIVER.executemany(
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
                        "b_owner": "w/9",
                        "b_note": text,
                        "b_notes": f"[{text}]",
                        "b_at": at,
                    },
                ],
            )
            rows = {
                row.id: row
                for row in await connection.execute(select(_probe).order_by(_probe.c.id))
            }
        finally:
            await connection.run_sync(_metadata.drop_all)
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
