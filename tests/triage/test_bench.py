"""The inbound benchmark runs the real path end to end (its figures are printed, never asserted
here), and its webhook sender reads every kind of HTTP answer in full."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from broadcaster.settings import load_settings
from broadcaster.triage.bench import run_inbound_bench, summary
from broadcaster.triage.bench_http import KeepAliveConnection, encode_post
from tests.conftest import REPO_ROOT


async def test_every_signed_webhook_reaches_the_live_queue_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_settings(REPO_ROOT / "config" / "broadcaster.toml")
    monkeypatch.setattr(logging.getLogger(), "level", logging.INFO)
    result = await run_inbound_bench(
        loaded, reports=60, concurrency=8, replays=0.25, database_url=database_url, per_call=3
    )
    assert logging.getLogger().level == logging.INFO  # turned down only for the run
    assert result.errors == {}
    assert result.accepted == result.sent == 60
    assert result.replays > 0
    # X and Meta calls carry 3 messages, Twilio's 1: every distinct one is on the live queue.
    assert result.unique > result.sent - result.replays
    assert result.missing == 0
    assert len(result.latencies) == result.unique
    assert result.backend == database_url.split("+", 1)[0]
    assert any(line.startswith("throughput:") for line in summary(result))


@pytest.fixture
async def answers() -> AsyncIterator[TestServer]:
    async def sized(request: web.Request) -> web.Response:
        return web.json_response({"got": len(await request.read())})

    async def chunked(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"one ", b"two ", b"three"):
            await response.write(part)
        await response.write_eof()
        return response

    async def closing(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=503, text="busy", headers={"Connection": "close"})

    app = web.Application()
    app.router.add_post("/sized", sized)
    app.router.add_post("/chunked", chunked)
    app.router.add_post("/closing", closing)
    server = TestServer(app)
    await server.start_server()
    yield server
    await server.close()


async def test_the_sender_reads_each_answer_whole_and_reconnects_when_closed(
    answers: TestServer,
) -> None:
    host = f"{answers.host}:{answers.port}"
    connection = KeepAliveConnection(answers.host, answers.port or 0)
    try:
        statuses = [
            await connection.send(encode_post(host, path, {"X-Test": "1"}, b"body"))
            for path in ("/sized", "/chunked", "/sized", "/closing", "/sized", "/missing")
        ]
    finally:
        connection.close()
    assert statuses == [200, 200, 200, 503, 200, 404]
