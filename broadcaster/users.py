"""People who use the service, and their roles."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.roles import Role
from broadcaster.auth.passwords import hash_password
from broadcaster.storage.schema import users

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


class UserError(ValueError):
    """A user operation that cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    role: Role
    rank: int
    active: bool
    password_hash: str | None


def row_to_user(row: Any) -> User:
    return User(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        role=Role(row.role),
        rank=row.rank,
        active=row.active,
        password_hash=row.password_hash,
    )


def check_username(username: str) -> str:
    if not USERNAME_PATTERN.fullmatch(username):
        raise UserError(
            f"username {username!r} is not allowed: use 2-64 lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return username


async def add_user(
    connection: AsyncConnection,
    username: str,
    role: Role,
    *,
    password: str | None,
    display_name: str | None = None,
    rank: int = 0,
    now: datetime | None = None,
) -> User:
    check_username(username)
    values = {
        "username": username,
        "display_name": display_name or username,
        "role": role.value,
        "rank": rank,
        "password_hash": hash_password(password) if password is not None else None,
        "active": True,
        "created_at": now or datetime.now(UTC),
    }
    try:
        async with connection.begin_nested():
            result = await connection.execute(users.insert().values(**values).returning(users))
    except IntegrityError:
        raise UserError(f"user {username!r} already exists") from None
    return row_to_user(result.one())


async def get_user(connection: AsyncConnection, username: str) -> User | None:
    row = (await connection.execute(select(users).where(users.c.username == username))).first()
    return row_to_user(row) if row else None


async def require_user(connection: AsyncConnection, username: str) -> User:
    user = await get_user(connection, username)
    if user is None:
        raise UserError(f"no user named {username!r}")
    return user


async def list_users(connection: AsyncConnection) -> list[User]:
    rows = await connection.execute(select(users).order_by(users.c.username))
    return [row_to_user(row) for row in rows]


async def set_role(
    connection: AsyncConnection, username: str, role: Role, *, now: datetime | None = None
) -> tuple[User, Role]:
    """Change a user's role; returns the updated user and the role they had before."""
    before = await require_user(connection, username)
    await connection.execute(
        users.update()
        .where(users.c.id == before.id)
        .values(role=role.value, updated_at=now or datetime.now(UTC))
    )
    return await require_user(connection, username), before.role


async def set_password(
    connection: AsyncConnection, username: str, password: str, *, now: datetime | None = None
) -> User:
    user = await require_user(connection, username)
    await connection.execute(
        users.update()
        .where(users.c.id == user.id)
        .values(password_hash=hash_password(password), updated_at=now or datetime.now(UTC))
    )
    return await require_user(connection, username)
