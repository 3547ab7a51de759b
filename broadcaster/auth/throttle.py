"""Sign-in throttling: failures slow further tries down; nothing ever locks a person out.

A hard lockout would let anyone who knows a duty officer's username keep them out of the
console in the middle of a crisis. So each failure (a wrong password, or a wrong second-factor
code) makes the next try wait, for that account and for that source address separately:

    failures in the window:  <= free   free+1  free+2  free+3 ...
    wait after the last one:    0        1 s     2 s     4 s  ... doubling, capped (30 s default)

The person at the keyboard waits at most the cap between tries; an attacker gets about two
guesses a minute per account and per address, against 12-character passwords and a second
factor. A completed sign-in clears the account's count (only a completed one: a correct
password followed by wrong codes keeps counting). Addresses get more free failures because a
whole operations centre may sit behind one address. Attempts are recorded in
`sign_in_attempts` so every process behind a load balancer applies the same waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from broadcaster.storage.schema import sign_in_attempts

WINDOW: Final = timedelta(minutes=15)
FREE_PER_ACCOUNT: Final = 3
FREE_PER_ADDRESS: Final = 10
# Rows older than this are no longer needed for throttling and are purged.
KEEP_ATTEMPTS: Final = timedelta(days=1)


def delay_after(failures: int, free: int, cap_seconds: float) -> float:
    """Seconds to wait after the last of `failures` recent failures."""
    if failures <= free:
        return 0.0
    return float(min(cap_seconds, 2.0 ** (failures - free - 1)))


@dataclass(frozen=True)
class Wait:
    seconds: float
    reason: str  # "account" or "address": which count asked for the wait

    @property
    def needed(self) -> bool:
        return self.seconds > 0


async def _failures(
    connection: AsyncConnection, where: ColumnElement[bool], since: datetime
) -> tuple[int, datetime | None]:
    row = (
        await connection.execute(
            select(func.count(), func.max(sign_in_attempts.c.at)).where(
                where,
                sign_in_attempts.c.succeeded.is_(False),
                sign_in_attempts.c.at > since,
            )
        )
    ).one()
    return int(row[0]), row[1]


async def wait_needed(
    connection: AsyncConnection,
    username: str,
    address: str | None,
    now: datetime,
    cap_seconds: float,
) -> Wait:
    """How long this account and this address must still wait before the next try."""
    username = normalise(username)
    since = now - WINDOW
    last_success = await connection.scalar(
        select(func.max(sign_in_attempts.c.at)).where(
            sign_in_attempts.c.username == username,
            sign_in_attempts.c.succeeded.is_(True),
        )
    )
    account_since = max(since, last_success) if last_success is not None else since
    waits = [Wait(0.0, "account")]
    count, last = await _failures(
        connection, sign_in_attempts.c.username == username, account_since
    )
    if last is not None:
        remaining = delay_after(count, FREE_PER_ACCOUNT, cap_seconds) - (now - last).total_seconds()
        waits.append(Wait(max(0.0, remaining), "account"))
    if address:
        count, last = await _failures(
            connection, sign_in_attempts.c.source_address == address, since
        )
        if last is not None:
            remaining = (
                delay_after(count, FREE_PER_ADDRESS, cap_seconds) - (now - last).total_seconds()
            )
            waits.append(Wait(max(0.0, remaining), "address"))
    return max(waits, key=lambda wait: wait.seconds)


async def record(
    connection: AsyncConnection,
    username: str,
    address: str | None,
    *,
    succeeded: bool,
    now: datetime,
) -> None:
    await connection.execute(
        sign_in_attempts.insert().values(
            username=normalise(username),
            source_address=(address or "")[:64] or None,
            succeeded=succeeded,
            at=now,
        )
    )


async def purge(connection: AsyncConnection, now: datetime) -> int:
    result = await connection.execute(
        delete(sign_in_attempts).where(sign_in_attempts.c.at < now - KEEP_ATTEMPTS)
    )
    return int(result.rowcount)


def normalise(username: str) -> str:
    """What is typed, as it is counted: trimmed, lowercase, at most the column's 64 characters."""
    return username.strip().lower()[:64]
