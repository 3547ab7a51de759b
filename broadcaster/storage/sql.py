"""Statement pieces that each database answers fastest, shared by the service's batch writers."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Executable, all_, bindparam, func, literal, select, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["DriverStatement", "any_of", "any_of_parameter", "is_postgresql", "none_of"]


def is_postgresql(connection: AsyncConnection) -> bool:
    return connection.dialect.name == "postgresql"


def any_of(
    connection: AsyncConnection, column: ColumnElement[Any], values: Collection[Any]
) -> ColumnElement[bool]:
    """`column IN values`: one array parameter on PostgreSQL, a written-out list elsewhere.

    On PostgreSQL the statement's text is then the same whatever the number of values, so
    asyncpg prepares it once per connection; `IN ($1, $2, ...)` is new SQL for every new
    length, each costing a prepare round trip and the server's planning. It is
    `IN (SELECT unnest(array))`, not `= ANY(array)`: a statement run again and again gets a
    generic plan, which cannot see how long the array is, and for `= ANY` it chose to scan the
    whole table; joined to unnest it looks each value up in the index. SQLite has no arrays and
    no server round trips: there the list is written out.
    """
    if is_postgresql(connection):
        return column.in_(select(func.unnest(literal(list(values), postgresql.ARRAY(column.type)))))
    return column.in_(list(values))


def none_of(
    connection: AsyncConnection, column: ColumnElement[Any], values: Collection[Any]
) -> ColumnElement[bool]:
    """`column NOT IN values`, as `any_of`; true when there are none."""
    if not values:
        return true()
    if is_postgresql(connection):
        return column != all_(literal(list(values), postgresql.ARRAY(column.type)))
    return column.not_in(list(values))


def any_of_parameter(
    column: ColumnElement[Any], name: str, *, postgresql_arrays: bool
) -> ColumnElement[bool]:
    """`column IN :name`, as `any_of`, with the list given at execution as parameter `name`:
    for a statement built once and run many times."""
    if postgresql_arrays:
        array = bindparam(name, type_=postgresql.ARRAY(column.type))
        return column.in_(select(func.unnest(array)))
    return column.in_(bindparam(name, expanding=True))


class DriverStatement:
    """A statement compiled once per database, run many times with rows the driver takes as
    they are.

    SQLAlchemy works on every parameter of every row at each execution (a dict of processed
    values per row, then type processors: a JSON dump, a datetime formatted for SQLite). For a
    batch writer at thousands of rows a second that was a fifth of a worker's CPU. Here the
    statement is compiled once; each row's values run only through the type processors that
    change them, and `prepared` names skip even those, because the caller hands over the
    driver's value (JSON already encoded: one text can then fill two columns).
    The SQL itself is still SQLAlchemy's, written once, as the rest of the service writes it.

    On SQLite an UPDATE given `row_key` (the parameter naming the row each update touches) runs
    a batch as one statement (see _SqliteBatch) when no row is named twice in it: executemany
    would apply both in turn, one statement only one of them.
    """

    def __init__(
        self,
        statement: Executable,
        *,
        prepared: Collection[str] = (),
        row_key: str | None = None,
    ) -> None:
        self.statement = statement
        self.prepared = frozenset(prepared)
        self.row_key = row_key
        self._compiled: dict[str, _DriverForm] = {}

    def _form(self, dialect: Dialect) -> _DriverForm:
        form = self._compiled.get(dialect.name)
        if form is None:
            form = _DriverForm.compile(self.statement, dialect, self.prepared)
            self._compiled[dialect.name] = form
        return form

    async def executemany(
        self, connection: AsyncConnection, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Run the statement once per row (each row names every parameter it leaves open)."""
        form = self._form(connection.dialect)
        last: dict[int, tuple[Any, Any]] = {}
        values = [form.values(row, last) for row in rows]
        if (
            form.batch is not None
            and self.row_key is not None
            and len(values) > 1
            and len({row[self.row_key] for row in rows}) == len(rows)
        ):
            for sql, parameters in form.batch.statements(values):
                await connection.exec_driver_sql(sql, parameters)
            return
        await connection.exec_driver_sql(form.sql, values)


# UPDATE ... FROM came with SQLite 3.33, which also raised the most parameters a statement
# may have from 999 to this.
_SQLITE_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)
MOST_SQLITE_PARAMETERS = 32766


@dataclass(frozen=True)
class _SqliteBatch:
    """An UPDATE ... WHERE with positional `?`, run for many rows as one statement: the rows
    come as a list of VALUES joined in by UPDATE ... FROM, and each `?` of the statement becomes
    the row's value at its position:
    `WITH _rows(c0, c1, ...) AS (VALUES (?, ?, ...), ...) UPDATE t SET a = _rows.c0 ...
    FROM _rows WHERE t.id = _rows.c1 ...`.

    Why: SQLite runs executemany a row at a time, handing the GIL back and forth with the event
    loop's thread at every row (with a busy loop, a lock convoy that cost more than the
    writing); one statement runs the whole batch in C. (It replaced the rows as one JSON text
    taken apart with json_extract: measured alone, that cost SQLite twice the CPU, as every
    json_extract parses its row again, and it JSON-encoded every row in the event loop's
    thread. In the full dispatch benchmark the SQLite thread's CPU did not change.)
    The number of rows is rounded up to a power of two, the rest of the list NULL (a NULL key
    matches no row): a handful of statement texts, each prepared once and kept in the driver's
    statement cache, whatever the batch sizes."""

    head: str  # "UPDATE t SET a=_rows.c0, ..." (the part before WHERE)
    where: str
    width: int  # parameters per row
    _texts: dict[int, str] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, sql: str, parameters: int) -> _SqliteBatch | None:
        """None for statements of another shape, or on an SQLite too old for UPDATE ... FROM."""
        if (
            not _SQLITE_UPDATE_FROM
            or not sql.startswith("UPDATE ")
            or sql.count(" WHERE ") != 1
            or sql.count("?") != parameters
            or parameters == 0
        ):
            return None
        pieces = sql.split("?")
        out = [pieces[0]]
        for position, piece in enumerate(pieces[1:]):
            out.append(f"_rows.c{position}")
            out.append(piece)
        head, where = "".join(out).split(" WHERE ")
        return cls(head, where, parameters)

    def statements(
        self, values: Sequence[tuple[Any, ...]]
    ) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """The statements (and their parameters) that write `values`, one row per tuple."""
        most = 1 << ((MOST_SQLITE_PARAMETERS // self.width).bit_length() - 1)
        for start in range(0, len(values), most):
            chunk = values[start : start + most]
            size = 1 << (len(chunk) - 1).bit_length()
            parameters = [value for row in chunk for value in row]
            parameters.extend([None] * (self.width * (size - len(chunk))))
            yield self._text(size), tuple(parameters)

    def _text(self, rows: int) -> str:
        text = self._texts.get(rows)
        if text is None:
            names = ", ".join(f"c{position}" for position in range(self.width))
            row = f"({', '.join('?' * self.width)})"
            text = (
                f"WITH _rows({names}) AS (VALUES {', '.join([row] * rows)}) "
                f"{self.head} FROM _rows WHERE {self.where}"
            )
            self._texts[rows] = text
        return text


@dataclass(frozen=True)
class _DriverForm:
    sql: str
    # Per position: the parameter's name, the statement's own value when it carries one (a
    # literal written into .values()), and the type processor the driver's value needs.
    plan: tuple[tuple[str, Any, Callable[[Any], Any] | None], ...]
    batch: _SqliteBatch | None = None

    @classmethod
    def compile(
        cls, statement: Executable, dialect: Dialect, prepared: frozenset[str]
    ) -> _DriverForm:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        if compiled.positiontup is None:
            raise TypeError(f"{dialect.name}: DriverStatement needs a positional paramstyle")
        plan = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            fixed = _OPEN if bind.required else bind.effective_value
            process = None
            if name not in prepared:
                process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if fixed is not _OPEN and process is not None:
                fixed, process = process(fixed), None
            plan.append((name, fixed, process))
        batch = _SqliteBatch.of(compiled.string, len(plan)) if dialect.name == "sqlite" else None
        return cls(compiled.string, tuple(plan), batch)

    def values(self, row: Mapping[str, Any], last: dict[int, tuple[Any, Any]]) -> tuple[Any, ...]:
        """The row's driver values; `last` keeps, per position, the last value processed and
        what it became (a batch often gives every row the same object: its time of writing)."""
        out = []
        for position, (name, fixed, process) in enumerate(self.plan):
            if fixed is not _OPEN:
                out.append(fixed)
                continue
            value = row[name]
            if process is None:
                out.append(value)
                continue
            seen = last.get(position)
            if seen is None or seen[0] is not value:
                seen = (value, process(value))
                last[position] = seen
            out.append(seen[1])
        return tuple(out)


_OPEN: Any = object()  # a parameter each row gives
