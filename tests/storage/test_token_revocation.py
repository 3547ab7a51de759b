"""Listing and revoking API tokens, on both backends: a listing never carries the value or the
hash, a revoked token stops working at once, revoking twice is harmless and says so, and nobody
revokes another person's token by naming its id."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.roles import Role
from broadcaster import users
from broadcaster.auth.tokens import (
    NotTheirToken,
    TokenNotFound,
    TokenState,
    create_token,
    list_tokens,
    live_token_counts,
    revoke_all_tokens,
    revoke_token,
    user_for_token,
)
from broadcaster.storage.schema import api_tokens


async def _people(engine: AsyncEngine) -> tuple[users.User, users.User]:
    async with engine.begin() as connection:
        alice = await users.add_user(connection, "alice", Role.approver, password=None)
        bob = await users.add_user(connection, "bob", Role.duty_officer, password=None)
    return alice, bob


async def test_a_listing_shows_what_tells_tokens_apart_and_never_the_secret(
    engine: AsyncEngine,
) -> None:
    alice, bob = await _people(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    async with engine.begin() as connection:
        first = await create_token(connection, alice.id, "ci", now=now - timedelta(days=2))
        second = await create_token(
            connection, alice.id, "deploy", valid_for=timedelta(days=1), now=now - timedelta(days=1)
        )
        await create_token(connection, bob.id, "bob's")
        assert await user_for_token(connection, first.value, now=now)
        hashes = set((await connection.execute(select(api_tokens.c.token_hash))).scalars())
    async with engine.connect() as connection:
        listed = await list_tokens(connection, alice.id)
        assert await list_tokens(connection, 999) == []
    assert [t.id for t in listed] == [second.id, first.id]  # newest first
    assert [t.name for t in listed] == ["deploy", "ci"]
    assert listed[1].prefix == first.value[:10] and listed[1].prefix.startswith("cbt_")
    assert listed[1].created_at == now - timedelta(days=2)
    assert listed[1].last_used_at == now and listed[0].last_used_at is None
    assert listed[0].expires_at == now
    assert listed[1].expires_at is None and listed[1].revoked_at is None
    assert [t.state(now) for t in listed] == [TokenState.expired, TokenState.live]
    shown = repr([asdict(t) for t in listed])
    for secret in (first.value, second.value, *hashes):
        assert secret not in shown


async def test_revoking_stops_the_token_at_once_and_twice_is_harmless(
    engine: AsyncEngine,
) -> None:
    alice, _ = await _people(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    async with engine.begin() as connection:
        issued = await create_token(connection, alice.id, "ci")
        kept = await create_token(connection, alice.id, "other")
    async with engine.begin() as connection:
        done = await revoke_token(connection, issued.id, user_id=alice.id, now=now)
    assert not done.already
    assert (done.token.id, done.token.name, done.token.revoked_at) == (issued.id, "ci", now)
    assert done.token.state(now) is TokenState.revoked
    async with engine.begin() as connection:
        assert await user_for_token(connection, issued.value) is None
        assert await user_for_token(connection, kept.value) is not None
        again = await revoke_token(connection, issued.id, now=now + timedelta(hours=1))
    assert again.already and again.token.revoked_at == now  # the first time is the one kept
    async with engine.connect() as connection:
        states = {t.id: t.state(now) for t in await list_tokens(connection, alice.id)}
    assert states == {issued.id: TokenState.revoked, kept.id: TokenState.live}


async def test_an_unknown_token_or_another_persons_is_refused_and_left_alone(
    engine: AsyncEngine,
) -> None:
    alice, bob = await _people(engine)
    now = datetime.now(UTC)
    async with engine.begin() as connection:
        bobs = await create_token(connection, bob.id, "bob's")
    async with engine.begin() as connection:
        with pytest.raises(TokenNotFound, match="no API token 4242"):
            await revoke_token(connection, 4242, user_id=alice.id, now=now)
        with pytest.raises(NotTheirToken, match=f"API token {bobs.id} belongs to someone else"):
            await revoke_token(connection, bobs.id, user_id=alice.id, now=now)
    async with engine.begin() as connection:
        assert await user_for_token(connection, bobs.value) is not None


async def test_revoking_all_takes_only_the_live_ones_of_that_person(engine: AsyncEngine) -> None:
    alice, bob = await _people(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    async with engine.begin() as connection:
        one = await create_token(connection, alice.id, "one")
        two = await create_token(connection, alice.id, "two", valid_for=timedelta(days=3))
        gone = await create_token(connection, alice.id, "gone")
        old = await create_token(
            connection, alice.id, "old", valid_for=timedelta(days=1), now=now - timedelta(days=2)
        )
        bobs = await create_token(connection, bob.id, "bob's")
        await revoke_token(connection, gone.id, now=now - timedelta(hours=1))
        assert await live_token_counts(connection, now=now) == {alice.id: 2, bob.id: 1}
    async with engine.begin() as connection:
        revoked = await revoke_all_tokens(connection, alice.id, now=now)
    assert [(t.id, t.name, t.revoked_at) for t in revoked] == [
        (one.id, "one", now),
        (two.id, "two", now),
    ]
    async with engine.begin() as connection:
        for token in (one, two, gone, old):
            assert await user_for_token(connection, token.value) is None
        assert await user_for_token(connection, bobs.value) is not None
        assert await live_token_counts(connection, now=now) == {bob.id: 1}
        assert await revoke_all_tokens(connection, alice.id, now=now) == []
        listed = {t.id: t for t in await list_tokens(connection, alice.id)}
    assert listed[gone.id].revoked_at == now - timedelta(hours=1)  # left as it was
    assert listed[old.id].revoked_at is None and listed[old.id].state(now) is TokenState.expired
