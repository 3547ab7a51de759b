"""The web application's service endpoints, errors and request ids."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.settings import (
    SHIPPED_CONFIG_DIR,
    AlertSettings,
    DatabaseSettings,
    LoadedSettings,
    Settings,
)
from broadcaster.storage.engine import create_engine
from broadcaster.web_app import create_app
from broadcaster.web_middleware import _database_unavailable

LOADED = LoadedSettings(
    Settings(alerts=AlertSettings().relative_to(SHIPPED_CONFIG_DIR)),
    None,
    {"session_key": SecretStr("test-key")},
)


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(create_app(LOADED, engine))) as test_client:
        yield test_client


async def test_healthz(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_checks_the_database(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["checks"] == {"database": "ok"}


async def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    # A directory where the database file should be: SQLite cannot open it.
    (tmp_path / "db.sqlite").mkdir()
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/db.sqlite"))
    try:
        async with TestClient(TestServer(create_app(LOADED, engine))) as client:
            response = await client.get("/readyz")
            assert response.status == 503
            assert (await response.json()) == {
                "status": "not ready",
                "checks": {"database": "unreachable"},
            }
            metrics = await (await client.get("/metrics")).text()
            assert "broadcaster_database_up 0.0" in metrics
    finally:
        await engine.dispose()
        await _failed_sqlite_connections_closed()


async def test_a_request_that_cannot_reach_the_database_is_503_to_retry(tmp_path: Path) -> None:
    (tmp_path / "db.sqlite").mkdir()  # SQLite cannot open a directory
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/db.sqlite"))
    try:
        async with TestClient(TestServer(create_app(LOADED, engine))) as client:
            response = await client.get("/api/v1/alerts", headers={"Authorization": "Bearer x" * 8})
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            problem = await response.json()
            assert "send it again" in problem["detail"]
            assert problem["request_id"] == response.headers["X-Request-Id"]
    finally:
        await engine.dispose()
        await _failed_sqlite_connections_closed()


async def _failed_sqlite_connections_closed() -> None:
    # aiosqlite 0.22 closes a connection that failed to open without waiting; its thread then
    # answers the loop, which pytest may have closed by then ("Event loop is closed" in a
    # thread, blamed on the next test). Wait for those threads while the loop still runs.
    for thread in threading.enumerate():
        if thread.name.endswith("(_connection_worker_thread)"):
            await asyncio.to_thread(thread.join, 5.0)


async def test_a_database_server_that_refuses_connections_is_503_to_retry() -> None:
    # Nothing listens on port 1: asyncpg's ConnectionRefusedError reaches the handler bare.
    engine = create_engine(DatabaseSettings(url="postgresql+asyncpg://postgres@127.0.0.1:1/db"))
    try:
        async with TestClient(TestServer(create_app(LOADED, engine))) as client:
            response = await client.get("/api/v1/alerts", headers={"Authorization": "Bearer x" * 8})
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
    finally:
        await engine.dispose()


async def test_a_socket_error_of_a_handlers_own_is_no_database_outage() -> None:
    refused = _refused_elsewhere()
    assert isinstance(refused, ConnectionRefusedError)
    assert not _database_unavailable(refused)


def _refused_elsewhere() -> OSError:
    try:
        raise ConnectionRefusedError(111, "Connect call failed ('10.0.0.9', 443)")
    except OSError as error:
        return error


async def test_a_database_bug_stays_a_500_not_a_retry(tmp_path: Path) -> None:
    # A database file with no tables: "no such table" is SQLite's OperationalError too, but
    # sending the request again would not help, so it must not be dressed up as a 503.
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/empty.db"))
    try:
        async with TestClient(TestServer(create_app(LOADED, engine))) as client:
            response = await client.get("/api/v1/alerts", headers={"Authorization": "Bearer x" * 8})
            assert response.status == 500
            assert "Retry-After" not in response.headers
    finally:
        await engine.dispose()


async def test_metrics_count_requests_by_route(
    client: TestClient[web.Request, web.Application],
) -> None:
    await client.get("/healthz")
    await client.get("/healthz")
    await client.get("/no/such/page")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    text = await response.text()
    assert 'broadcaster_http_requests_total{method="GET",route="/healthz",status="200"} 2.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "/no/such/page" not in text
    assert 'broadcaster_info{version="0.1.0"} 1.0' in text


async def test_every_response_carries_a_request_id(
    client: TestClient[web.Request, web.Application],
) -> None:
    generated = await client.get("/healthz")
    assert len(generated.headers["X-Request-Id"]) == 32
    echoed = await client.get("/healthz", headers={"X-Request-Id": "lb-1234567890"})
    assert echoed.headers["X-Request-Id"] == "lb-1234567890"
    hostile = await client.get("/healthz", headers={"X-Request-Id": "x\u2028<script>"})
    assert hostile.headers["X-Request-Id"] != "x\u2028<script>"


async def test_unknown_address_is_a_problem_document(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    body = await response.json()
    assert body["status"] == 404 and body["request_id"] == response.headers["X-Request-Id"]


async def test_wrong_method_names_the_allowed_ones(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.post("/healthz", data=b"{}")
    assert response.status == 405
    assert "GET" in (await response.json())["detail"]


async def test_home_page_is_served(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert "Crisis Broadcaster" in await response.text()


async def test_logs_are_json_with_the_request_id(
    client: TestClient[web.Request, web.Application], capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import logging

    from broadcaster.logs import configure_logging
    from broadcaster.settings import LoggingSettings

    configure_logging(LoggingSettings(format="json"))
    try:
        response = await client.get("/healthz", headers={"X-Request-Id": "trace-abcdef12"})
        assert response.status == 200
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
        access = [line for line in lines if line.get("path") == "/healthz"]
        assert access and access[-1]["request_id"] == "trace-abcdef12"
        assert access[-1]["status"] == 200 and access[-1]["level"] == "INFO"
    finally:
        logging.getLogger().handlers.clear()
