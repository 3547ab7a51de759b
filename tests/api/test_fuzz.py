"""Schemathesis generates requests from the OpenAPI document, valid and not, for every route:
none may get a 500, whatever it sends."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr

from approvals.roles import Role
from broadcaster import users
from broadcaster.auth.tokens import create_token
from broadcaster.settings import (
    SHIPPED_CONFIG_DIR,
    AlertSettings,
    DatabaseSettings,
    LoadedSettings,
    Settings,
)
from broadcaster.storage.database import open_database
from broadcaster.web_app import create_app


@dataclass
class LiveApi:
    url: str = ""
    tokens: dict[Role, str] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


def _serve(live: LiveApi, database: Path, stop: threading.Event) -> None:
    async def main() -> None:
        engine = await open_database(DatabaseSettings(url=f"sqlite+aiosqlite:///{database}"))
        async with engine.begin() as connection:
            for role in Role:
                user = await users.add_user(
                    connection, f"fuzz-{role.value}".replace("_", "-"), role, password=None
                )
                live.tokens[role] = (await create_token(connection, user.id, "fuzz")).value
        loaded = LoadedSettings(
            Settings(alerts=AlertSettings().relative_to(SHIPPED_CONFIG_DIR)),
            None,
            {"session_key": SecretStr("k" * 32)},
        )
        runner = web.AppRunner(create_app(loaded, engine), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        live.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        live.ready.set()
        await asyncio.to_thread(stop.wait)
        await runner.cleanup()
        await engine.dispose()

    try:
        asyncio.run(main())
    except BaseException as error:  # reported to the test thread
        live.error = error
        live.ready.set()


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    live, stop = LiveApi(), threading.Event()
    thread = threading.Thread(
        target=_serve, args=(live, tmp_path_factory.mktemp("fuzz") / "db.sqlite", stop), daemon=True
    )
    thread.start()
    assert live.ready.wait(30), "the API did not start"
    if live.error is not None:
        raise live.error
    yield live
    stop.set()
    thread.join(10)


@pytest.fixture(scope="module")
def api_schema(live_api: LiveApi) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_api.url}/api/v1/openapi.json")


def _no_500s(operation: Any, tokens: dict[Role, str]) -> Any:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=15,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def check(case: Any) -> None:
        for role in (Role.duty_officer, Role.approver):
            response = case.call(headers={"Authorization": f"Bearer {tokens[role]}"})
            assert response.status_code < 500, (
                operation.label,
                role,
                response.status_code,
                response.text[:500],
            )

    return check


def test_no_request_gets_a_500(api_schema: schemathesis.BaseSchema, live_api: LiveApi) -> None:
    # Driven through Hypothesis directly: schemathesis's pytest plugin does not support pytest 9.
    checked = []
    for result in api_schema.get_all_operations():
        operation = cast(Any, result).ok()  # an unparsable operation raises here, failing
        if operation.path.endswith("/events"):
            continue  # server-sent event streams never end; their filters are tested directly
        _no_500s(operation, live_api.tokens)()
        checked.append(operation.label)
    assert len(checked) >= 15, checked
