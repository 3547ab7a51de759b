"""Statement pieces that each database answers fastest, shared by the service's batch writers."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, all_, bindparam, func, literal, select, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["any_of", "any_of_parameter", "is_postgresql", "none_of"]


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
