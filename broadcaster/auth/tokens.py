"""Bearer API tokens: shown once at creation, stored only as a SHA-256 hash.

A token is listed by its id, name, prefix (its first characters, so a person can tell which one
leaked) and times, never by its hash. Revoking one takes effect at the next request: every
request looks the token up and `user_for_token` refuses a revoked one. Revoking twice is harmless
and says so.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from broadcaster.storage.schema import api_tokens, users
from broadcaster.users import User, row_to_user

TOKEN_PREFIX = "cbt_"  # noqa: S105 (not a secret: lets secret scanners recognise a leaked token)


@dataclass(frozen=True)
class IssuedToken:
    id: int
    value: str  # the only time the plain token exists outside the caller's hands
    expires_at: datetime | None


class TokenState(StrEnum):
    live = "live"
    expired = "expired"
    revoked = "revoked"


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown about a token: never its value or its hash."""

    id: int
    user_id: int
    name: str
    prefix: str  # the token's first characters, e.g. "cbt_Ab12Cd"
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> TokenState:
        if self.revoked_at is not None:
            return TokenState.revoked
        if self.expires_at is not None and self.expires_at <= now:
            return TokenState.expired
        return TokenState.live


@dataclass(frozen=True)
class Revocation:
    token: TokenInfo  # as it is now, revoked
    already: bool  # it was revoked before this call: nothing changed


class TokenError(Exception):
    """A token that cannot be revoked as asked; the message is for the person who asked."""


class TokenNotFound(TokenError):
    pass


class NotTheirToken(TokenError):
    """The token exists but belongs to someone other than the user named."""


_SHOWN = (
    api_tokens.c.id,
    api_tokens.c.user_id,
    api_tokens.c.name,
    api_tokens.c.prefix,
    api_tokens.c.created_at,
    api_tokens.c.expires_at,
    api_tokens.c.last_used_at,
    api_tokens.c.revoked_at,
)


def _info(row: Any) -> TokenInfo:
    return TokenInfo(
        id=int(row.id),
        user_id=int(row.user_id),
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _live(now: datetime) -> ColumnElement[bool]:
    return and_(
        api_tokens.c.revoked_at.is_(None),
        or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > now),
    )


# What the audit log says of a token (one place for every caller: the command line, the
# console's account and Users pages): its id and name, never its value, prefix or hash.


def created_details(issued: IssuedToken, name: str) -> dict[str, Any]:
    expires_at = issued.expires_at.isoformat() if issued.expires_at else None
    return {"token_id": issued.id, "name": name, "expires_at": expires_at}


def revoked_details(done: Revocation) -> dict[str, Any]:
    return {"token_id": done.token.id, "name": done.token.name, "already_revoked": done.already}


def revoked_all_details(revoked: list[TokenInfo]) -> dict[str, Any]:
    return {"count": len(revoked), "token_ids": [token.id for token in revoked]}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    connection: AsyncConnection,
    user_id: int,
    name: str,
    *,
    valid_for: timedelta | None = None,
    now: datetime | None = None,
) -> IssuedToken:
    moment = now or datetime.now(UTC)
    value = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = moment + valid_for if valid_for else None
    result = await connection.execute(
        api_tokens.insert()
        .values(
            user_id=user_id,
            name=name,
            token_hash=_digest(value),
            prefix=value[:10],
            created_at=moment,
            expires_at=expires_at,
        )
        .returning(api_tokens.c.id)
    )
    return IssuedToken(int(result.scalar_one()), value, expires_at)


async def user_for_token(
    connection: AsyncConnection, token: str, *, now: datetime | None = None
) -> User | None:
    """The active user a live token belongs to, or None for an unknown, expired or revoked one."""
    moment = now or datetime.now(UTC)
    row = (
        await connection.execute(
            select(users, api_tokens.c.id.label("token_id"))
            .join(api_tokens, api_tokens.c.user_id == users.c.id)
            .where(
                api_tokens.c.token_hash == _digest(token),
                _live(moment),
                users.c.active.is_(True),
            )
        )
    ).first()
    if row is None:
        return None
    await connection.execute(
        api_tokens.update().where(api_tokens.c.id == row.token_id).values(last_used_at=moment)
    )
    return row_to_user(row)


async def list_tokens(connection: AsyncConnection, user_id: int) -> list[TokenInfo]:
    """A person's tokens, newest first, revoked and expired ones included."""
    rows = await connection.execute(
        select(*_SHOWN)
        .where(api_tokens.c.user_id == user_id)
        .order_by(api_tokens.c.created_at.desc(), api_tokens.c.id.desc())
    )
    return [_info(row) for row in rows]


async def live_token_counts(connection: AsyncConnection, *, now: datetime) -> dict[int, int]:
    """How many live (neither revoked nor expired) tokens each person has; absent means none."""
    rows = await connection.execute(
        select(api_tokens.c.user_id, func.count().label("n"))
        .where(_live(now))
        .group_by(api_tokens.c.user_id)
    )
    return {int(row.user_id): int(row.n) for row in rows}


async def revoke_token(
    connection: AsyncConnection, token_id: int, *, user_id: int | None = None, now: datetime
) -> Revocation:
    """Revoke one token (of `user_id`, when given). A token revoked already is left as it was
    and reported with `already`; an unknown one raises TokenNotFound, another person's
    NotTheirToken."""
    row = (await connection.execute(select(*_SHOWN).where(api_tokens.c.id == token_id))).first()
    if row is None:
        raise TokenNotFound(f"there is no API token {token_id}")
    if user_id is not None and int(row.user_id) != user_id:
        raise NotTheirToken(f"API token {token_id} belongs to someone else")
    # Only a token not yet revoked is changed, so of two revocations at once one reports
    # `already` and the first time stays the one recorded.
    changed = await connection.execute(
        api_tokens.update()
        .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if changed.rowcount == 0:
        current = (
            await connection.execute(select(*_SHOWN).where(api_tokens.c.id == token_id))
        ).one()
        return Revocation(_info(current), already=True)
    return Revocation(replace(_info(row), revoked_at=now), already=False)


async def revoke_all_tokens(
    connection: AsyncConnection, user_id: int, *, now: datetime
) -> list[TokenInfo]:
    """Revoke every live token of a person (after a breach); return those revoked, as they
    are now. Revoked and expired ones are left as they were; none live is an empty list."""
    rows = await connection.execute(
        api_tokens.update()
        .where(api_tokens.c.user_id == user_id, _live(now))
        .values(revoked_at=now)
        .returning(*_SHOWN)
    )
    return sorted((_info(row) for row in rows), key=lambda token: token.id)
