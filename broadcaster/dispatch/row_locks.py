"""One order for locking many deliveries rows: by id.

On PostgreSQL, a statement that changes or locks many rows takes each row's lock as it reaches
it: in the order of its plan (the table's physical order, an index's). Two such transactions
over overlapping rows can each hold a row the other waits for, a deadlock that PostgreSQL breaks
only after `deadlock_timeout` (a second) by failing one of them. A dispatcher's lease renewal
and its recorder's write of results meet over the same in-flight rows every few seconds under
load: before this order, a big list stalled for a second now and then, its claims failing with
"deadlock detected". Every transaction that locks several deliveries rows while others may wait
on them locks them here first, in ascending id order, so no two ever wait on each other in a
circle. (Claims pick with SKIP LOCKED, which never waits, and SQLite has one writer at a time:
no row locks to order there.)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncConnection

from broadcaster.storage.schema import deliveries
from broadcaster.storage.sql import is_postgresql


def in_lock_order(
    connection: AsyncConnection, *conditions: ColumnElement[bool], skip_locked: bool = False
) -> tuple[ColumnElement[bool], ...]:
    """The WHERE of a statement over the deliveries rows matching `conditions`, which on
    PostgreSQL first locks them in id order (a subquery, FOR UPDATE). `skip_locked`: leave out
    the rows another transaction holds, never waiting: for a transaction that already holds
    rows out of this order."""
    if not is_postgresql(connection):
        return conditions
    ordered = select(deliveries.c.id).where(*conditions).order_by(deliveries.c.id)
    return (*conditions, deliveries.c.id.in_(ordered.with_for_update(skip_locked=skip_locked)))


def locked_in_order(connection: AsyncConnection, query: Any) -> Any:
    """A SELECT of deliveries rows, FOR UPDATE in id order on PostgreSQL (as it is)."""
    if not is_postgresql(connection):
        return query
    return query.order_by(deliveries.c.id).with_for_update()
