"""People, roles and API tokens, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.roles import Role
from broadcaster import users
from broadcaster.auth.passwords import WeakPassword, verify_password
from broadcaster.auth.tokens import create_token, user_for_token
from broadcaster.storage.schema import api_tokens

PASSWORD = "correct horse battery"


async def test_add_list_and_change_role(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await users.add_user(connection, "zoe", Role.responder, password=PASSWORD)
        await users.add_user(
            connection, "alice", Role.approver, password=PASSWORD, display_name="Alice A", rank=3
        )
        user, before = await users.set_role(connection, "zoe", Role.administrator)
    assert (before, user.role) == (Role.responder, Role.administrator)
    async with engine.connect() as connection:
        listed = await users.list_users(connection)
    assert [(u.username, u.role, u.rank) for u in listed] == [
        ("alice", Role.approver, 3),
        ("zoe", Role.administrator, 0),
    ]
    assert listed[0].display_name == "Alice A"
    assert listed[0].password_hash is not None
    assert listed[0].password_hash.startswith("$argon2id$")
    assert verify_password(listed[0].password_hash, PASSWORD)
    assert not verify_password(listed[0].password_hash, PASSWORD + "x")


async def test_duplicate_username_is_refused_and_the_first_user_kept(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await users.add_user(connection, "sam", Role.duty_officer, password=PASSWORD)
        with pytest.raises(users.UserError, match="'sam' already exists"):
            await users.add_user(connection, "sam", Role.approver, password=PASSWORD)
    async with engine.connect() as connection:
        sam = await users.require_user(connection, "sam")
    assert sam.role == Role.duty_officer


@pytest.mark.parametrize("username", ["A", "has space", "-dash", "x" * 65, "Ünïcode"])
async def test_bad_usernames_are_refused(engine: AsyncEngine, username: str) -> None:
    async with engine.begin() as connection:
        with pytest.raises(users.UserError, match="is not allowed"):
            await users.add_user(connection, username, Role.responder, password=PASSWORD)


async def test_short_passwords_are_refused(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        with pytest.raises(WeakPassword, match="at least 12 characters"):
            await users.add_user(connection, "kim", Role.responder, password="short")


async def test_set_role_of_unknown_user(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        with pytest.raises(users.UserError, match="no user named 'ghost'"):
            await users.set_role(connection, "ghost", Role.approver)


async def test_token_identifies_its_user_until_expired_or_revoked(engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    async with engine.begin() as connection:
        alice = await users.add_user(connection, "alice", Role.approver, password=PASSWORD)
        forever = await create_token(connection, alice.id, "ci")
        brief = await create_token(connection, alice.id, "brief", valid_for=timedelta(hours=1))
    assert forever.value.startswith("cbt_") and len(forever.value) > 40
    async with engine.begin() as connection:
        found = await user_for_token(connection, forever.value)
        assert found is not None and found.username == "alice"
        assert await user_for_token(connection, brief.value, now=now + timedelta(minutes=59))
        assert await user_for_token(connection, brief.value, now=now + timedelta(hours=2)) is None
        assert await user_for_token(connection, forever.value + "x") is None
        await connection.execute(
            update(api_tokens).where(api_tokens.c.id == forever.id).values(revoked_at=now)
        )
        assert await user_for_token(connection, forever.value) is None


async def test_tokens_are_stored_only_as_hashes(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        alice = await users.add_user(connection, "alice", Role.approver, password=PASSWORD)
        issued = await create_token(connection, alice.id, "ci")
        stored = (await connection.execute(api_tokens.select())).one()
    assert issued.value not in {stored.token_hash, stored.prefix}
    assert stored.token_hash != issued.value and len(stored.token_hash) == 64
