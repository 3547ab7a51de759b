"""The ingestion writer's statements, in the form each database answers fastest.

On PostgreSQL every list travels as one array parameter (`= ANY($1)`, `unnest($1, $2, ...)`), so
a statement's text is the same whatever the batch size: asyncpg prepares it once per connection
and reuses it. A list written out as `IN ($1, $2, ...)` or a multi-row VALUES is new SQL for
every new length, and each new text costs the writer a prepare round trip (with the server's
planning) while the web requests wait for their batch.

SQLite has no arrays; there the lists are written out, which costs nothing there (no round
trips, no server-side prepare).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    JSON,
    TextClause,
    and_,
    case,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from broadcaster.storage.schema import reports, users
from broadcaster.storage.sql import any_of, is_postgresql
from broadcaster.storage.types import UtcDateTime
from broadcaster.triage.scoring import ReporterHistory
from broadcaster.triage.states import ReportState

__all__ = [
    "existing",
    "history",
    "insert_reports",
    "sqlite_time",
    "usernames",
]

_LOOKUP_CHUNK = 400  # keys per IN (...) lookup on SQLite


async def existing(
    connection: AsyncConnection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """The stored report id of each (source, external id) in `keys` that is stored."""
    if not keys:
        return {}
    if is_postgresql(connection):
        rows = await connection.execute(
            _EXISTING_PG,
            {"sources": [key[0] for key in keys], "external_ids": [key[1] for key in keys]},
        )
        return {(row.source, row.external_id): row.id for row in rows}
    # (source = ? AND external_id IN (...)) OR ... for every source in one query, not a
    # row-value IN: SQLite answers (source, external_id) IN (...) by scanning the whole index,
    # but each OR term by a search of it.
    found: dict[tuple[str, str], int] = {}
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        by_source: dict[str, list[str]] = {}
        for source, external_id in keys[start : start + _LOOKUP_CHUNK]:
            by_source.setdefault(source, []).append(external_id)
        rows = await connection.execute(
            select(reports.c.id, reports.c.source, reports.c.external_id).where(
                or_(
                    *(
                        and_(reports.c.source == source, reports.c.external_id.in_(ids))
                        for source, ids in by_source.items()
                    )
                )
            )
        )
        found.update(((row.source, row.external_id), row.id) for row in rows)
    return found


_EXISTING_PG = text(
    "SELECT reports.id, reports.source, reports.external_id FROM reports"
    " JOIN unnest(CAST(:sources AS TEXT[]), CAST(:external_ids AS TEXT[]))"
    " AS wanted(source, external_id)"
    " ON reports.source = wanted.source AND reports.external_id = wanted.external_id"
)


async def insert_reports(
    connection: AsyncConnection, rows: list[dict[str, Any]]
) -> dict[tuple[str, str], int]:
    """Insert `rows` in their order (ids follow it), skipping (source, external id) already
    stored; the ids of those inserted."""
    if is_postgresql(connection):
        result = await connection.execute(
            _insert_pg(tuple(rows[0])), {"rows": json.dumps(rows, default=_json_time)}
        )
        return {(row.source, row.external_id): row.id for row in result}
    return await _insert_sqlite(connection, rows)


async def _insert_sqlite(
    connection: AsyncConnection, rows: list[dict[str, Any]]
) -> dict[tuple[str, str], int]:
    """A multi-row INSERT ... RETURNING, given to the driver as it is.

    Through a compiled SQLAlchemy insert, each row's parameters passed through construct_params
    and a generic bind processor per value (about a tenth of the service's CPU in a flood);
    here one flat list is built with each column's conversion chosen once: the same values
    SQLAlchemy's own processors write (tests compare them)."""
    columns = tuple(rows[0])
    convert = _sqlite_converters(columns)
    inserted: dict[tuple[str, str], int] = {}
    for start in range(0, len(rows), _INSERT_CHUNK):
        chunk = rows[start : start + _INSERT_CHUNK]
        # A tuple: to exec_driver_sql a list means one execution per item.
        values = tuple(
            [
                value if change is None else change(value)
                for row in chunk
                for value, change in zip(row.values(), convert, strict=True)
            ]
        )
        result = await connection.exec_driver_sql(_insert_sqlite_sql(columns, len(chunk)), values)
        inserted.update(((row.source, row.external_id), row.id) for row in result)
    return inserted


_INSERT_CHUNK = 500  # rows per statement: 21 columns stay below SQLite's 32766 variables


@cache
def _insert_sqlite_sql(columns: tuple[str, ...], count: int) -> str:
    one = "(" + ", ".join("?" * len(columns)) + ")"
    return (
        f"INSERT INTO reports ({', '.join(columns)}) VALUES "  # noqa: S608 (schema's names)
        + ", ".join([one] * count)
        + " ON CONFLICT (source, external_id) DO NOTHING RETURNING id, source, external_id"
    )


@cache
def _sqlite_converters(columns: tuple[str, ...]) -> tuple[Callable[[Any], Any] | None, ...]:
    """Per column, what turns a Python value into SQLite's: stored times as SQLAlchemy's
    SQLite DATETIME writes them (text that sorts as time does), JSON as text; None to leave it.
    """
    changes: list[Callable[[Any], Any] | None] = []
    for name in columns:
        kind = reports.c[name].type
        if isinstance(kind, UtcDateTime):
            changes.append(sqlite_time)
        elif isinstance(kind, JSON):
            changes.append(json.dumps)  # None too: SQLAlchemy's JSON writes it as 'null'
        else:
            changes.append(None)
    return tuple(changes)


def sqlite_time(value: datetime | None) -> str | None:
    """An aware time as SQLAlchemy stores it in SQLite: UTC, 'YYYY-MM-DD HH:MM:SS.ffffff'."""
    if value is None:
        return None
    if value.tzinfo is None:  # as UtcDateTime: every stored time carries its zone
        raise ValueError("refusing a naive datetime: every stored time must carry its zone")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


@cache
def _insert_pg(columns: tuple[str, ...]) -> TextClause:
    """INSERT ... SELECT FROM json_to_recordset(the batch as one JSON document) WITH ORDINALITY.

    One statement text and one parameter for any number of rows: the batch is encoded by
    json.dumps in C, where a parameter per value (or an array per column) costs a Python call
    and a type check per value in the writer, which shares the event loop with the web
    requests. Rows go in the order given, so ids follow received_at, as the queue's tie-break
    and the cluster index expect. A JSON null becomes SQL NULL (reads as None either way).
    """
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    typed = ", ".join(f"{name} {reports.c[name].type.compile(dialect=dialect)}" for name in columns)
    names = ", ".join(columns)
    return text(
        f"INSERT INTO reports ({names})"  # noqa: S608 (column names and types from the schema)
        f" SELECT {names}"
        f" FROM ROWS FROM (json_to_recordset(CAST(:rows AS JSON)) AS ({typed}))"
        f" WITH ORDINALITY AS batch({names}, n)"
        " ORDER BY batch.n"
        " ON CONFLICT (source, external_id) DO NOTHING"
        " RETURNING id, source, external_id"
    )


def _json_time(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # as UtcDateTime: every stored time carries its zone
            raise ValueError("refusing a naive datetime: every stored time must carry its zone")
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


async def history(
    connection: AsyncConnection, pseudonyms: set[str], now: datetime
) -> dict[str, ReporterHistory]:
    if not pseudonyms:
        return {}
    hour_ago = now - timedelta(hours=1)
    rows = await connection.execute(
        select(
            reports.c.author_pseudonym,
            func.sum(case((reports.c.state == ReportState.misinformation.value, 1), else_=0)),
            func.sum(case((reports.c.state == ReportState.resolved.value, 1), else_=0)),
            func.sum(case((reports.c.received_at >= hour_ago, 1), else_=0)),
        )
        .where(any_of(connection, reports.c.author_pseudonym, sorted(pseudonyms)))
        .group_by(reports.c.author_pseudonym)
    )
    return {
        row[0]: ReporterHistory(int(row[1] or 0), int(row[2] or 0), int(row[3] or 0))
        for row in rows
    }


async def usernames(connection: AsyncConnection, ids: set[int | None]) -> dict[int, str]:
    wanted = sorted(i for i in ids if i is not None)
    if not wanted:
        return {}
    rows = await connection.execute(
        select(users.c.id, users.c.username).where(any_of(connection, users.c.id, wanted))
    )
    return {row.id: row.username for row in rows}
