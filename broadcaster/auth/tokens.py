"""Bearer API tokens: shown once at creation, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from broadcaster.storage.schema import api_tokens, users
from broadcaster.users import User, row_to_user

TOKEN_PREFIX = "cbt_"  # noqa: S105 (not a secret: lets secret scanners recognise a leaked token)


@dataclass(frozen=True)
class IssuedToken:
    id: int
    value: str  # the only time the plain token exists outside the caller's hands
    expires_at: datetime | None


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
                api_tokens.c.revoked_at.is_(None),
                or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > moment),
                and_(users.c.active.is_(True)),
            )
        )
    ).first()
    if row is None:
        return None
    await connection.execute(
        api_tokens.update().where(api_tokens.c.id == row.token_id).values(last_used_at=moment)
    )
    return row_to_user(row)
