"""Migration 0008 moves each delivery's own payload copy into one shared row per rendering, on
a database that already holds deliveries, on both backends; and back again on downgrade."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.roles import Role
from broadcaster import users
from broadcaster.dispatch.claims import claim
from broadcaster.dispatch.payload_cache import PayloadCache
from broadcaster.settings import DatabaseSettings
from broadcaster.storage import migrate
from broadcaster.storage.engine import create_engine
from broadcaster.storage.schema import alert_versions, alerts, delivery_payloads

# deliveries as revision 0007 has it: a payload of its own on every row.
_OLD_DELIVERIES = sa.table(
    "deliveries",
    sa.column("id", sa.Integer),
    sa.column("version_id", sa.Integer),
    sa.column("channel", sa.String),
    sa.column("target", sa.String),
    sa.column("target_mode", sa.String),
    sa.column("kind", sa.String),
    sa.column("state", sa.String),
    sa.column("idempotency_key", sa.String),
    sa.column("payload", sa.JSON),
    sa.column("attempts", sa.Integer),
    sa.column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.column("recipient", sa.String),
    sa.column("parts_done", sa.Integer),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def _payload(text: str, mode: str = "live") -> dict[str, Any]:
    post = {"text": text, "part": 1, "parts": 1, "length": 1, "limit": 4, "extra": {}}
    return {"posts": [post], "mode": mode}


@pytest.fixture(params=["sqlite", "postgresql"])
def old_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database on each backend (the test brings it to revision 0007)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    # Requested lazily so SQLite-only runs never need a PostgreSQL server.
    url: str = request.getfixturevalue("postgres_empty_url")
    return url


@pytest.fixture
async def old_engine(old_url: str) -> AsyncIterator[AsyncEngine]:
    """The database at revision 0007: before the move."""
    engine = create_engine(DatabaseSettings(url=old_url))
    await migrate.upgrade(engine, "0007")
    yield engine
    await engine.dispose()


async def _version(connection: Any, number: int, alert_id: int | None, author: int) -> int:
    now = datetime.now(UTC)
    if alert_id is None:
        alert_id = (
            await connection.execute(
                alerts.insert()
                .values(mode="live", created_by=author, created_at=now)
                .returning(alerts.c.id)
            )
        ).scalar_one()
    return int(
        (
            await connection.execute(
                alert_versions.insert()
                .values(
                    alert_id=alert_id,
                    number=number,
                    state="released",
                    status="Actual",
                    msg_type="Alert",
                    content={},
                    content_hash=str(number) * 64,
                    author_id=author,
                    authors=[author],
                    created_at=now,
                    released_at=now,
                )
                .returning(alert_versions.c.id)
            )
        ).scalar_one()
    )


async def test_existing_deliveries_share_one_payload_per_rendering(
    old_engine: AsyncEngine,
) -> None:
    now = datetime.now(UTC)
    english, spanish, other = _payload("Boil water"), _payload("Hierva el agua"), _payload("Later")
    async with old_engine.begin() as connection:
        author = (await users.add_user(connection, "author", Role.duty_officer, password=None)).id
        first = await _version(connection, 1, None, author)
        second = await _version(connection, 2, None, author)
        rows = [
            (first, english, "+12025550001"),
            (first, spanish, "+12025550002"),
            (first, english, "+12025550003"),
            (second, other, "+12025550001"),
            (second, None, None),  # a row without one (none had been written: kept None)
        ]
        await connection.execute(
            _OLD_DELIVERIES.insert(),
            [
                {
                    "version_id": version,
                    "channel": "sms",
                    "target": "sms-live",
                    "target_mode": "live",
                    "kind": "publish",
                    "state": "queued",
                    "idempotency_key": f"k{n}",
                    "payload": payload,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "recipient": recipient,
                    "parts_done": 0,
                    "created_at": now,
                }
                for n, (version, payload, recipient) in enumerate(rows)
            ],
        )

    await migrate.upgrade(old_engine)

    async with old_engine.begin() as connection:
        stored = {
            payload_id: (version_id, payload)
            for payload_id, version_id, payload in await connection.execute(
                sa.select(
                    delivery_payloads.c.id,
                    delivery_payloads.c.version_id,
                    delivery_payloads.c.payload,
                )
            )
        }
        assert sorted(stored.values(), key=str) == sorted(
            [(first, english), (first, spanish), (second, other)], key=str
        )
        # The worker's claim sees each delivery's own words, as before the move.
        cache = PayloadCache()
        claimed = await claim(connection, "sms-live", 10, "w/1", now, now, cache)
        texts = [
            (job.version_id, job.recipient, [post.text for post in job.payload.posts])
            for job in claimed
        ]
        assert texts == [
            (first, "+12025550001", ["Boil water"]),
            (first, "+12025550002", ["Hierva el agua"]),
            (first, "+12025550003", ["Boil water"]),
            (second, "+12025550001", ["Later"]),
            (second, None, []),
        ]
        assert claimed[0].payload is claimed[2].payload  # parsed once, shared

    # And back: each row gets its own copy again.
    async with old_engine.begin() as connection:
        await connection.run_sync(lambda sync: command.downgrade(migrate._config(sync), "0007"))
    async with old_engine.connect() as connection:
        back = (
            await connection.execute(
                sa.select(_OLD_DELIVERIES.c.payload).order_by(_OLD_DELIVERIES.c.id)
            )
        ).scalars()
        assert list(back) == [english, spanish, english, other, None]
