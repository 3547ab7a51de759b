"""The ingestion writer in a process of its own (`serve`'s default): a signed webhook is stored
and shown on the live queue as in one process; a writer process killed with a batch in flight
loses nothing and is started again; replays still make no second report; the process ends
with the service, and when the service dies."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from broadcaster.triage.writer_process import WriterProcess, can_run_apart
from tests.triage.conftest import (
    TriageApp,
    make_app_fixture,
    recorded,
    released_alert,
    x_signature,
)
from tests.triage.test_live_queue import live_queue, next_event

writer_app = pytest.fixture(make_app_fixture(writer_process=True))
WAIT = 30.0  # seconds; bounds a broken test only (a new writer process takes a second to start)
ANSWERED_POST = "2124227431773503488"  # the post the recorded X reply answers


def _writer(app: TriageApp) -> WriterProcess:
    writer = app.triage.pipeline
    assert isinstance(writer, WriterProcess)
    return writer


def _tweet(app: TriageApp, serial: int) -> tuple[bytes, dict[str, str]]:
    """The recorded X reply as message number `serial`, signed as X signs it."""
    payload = json.loads(recorded("x_account_activity.json"))
    tweet = payload["tweet_create_events"][0]
    tweet["id_str"] = str(3_000_000_000 + serial)
    tweet["id"] = int(tweet["id_str"])
    tweet["user"]["id_str"] = str(1_800_000_000 + serial)
    body = json.dumps(payload).encode()
    return body, x_signature(app.platforms.emulators["x"].consumer_secret, body)  # type: ignore[attr-defined]


async def _post(app: TriageApp, serial: int) -> tuple[int, dict[str, Any]]:
    status, text = await app.post_hook("x-live", *_tweet(app, serial))
    return status, json.loads(text)


async def _metric(app: TriageApp, name: str) -> float:
    text = await (await app.client.get("/metrics")).text()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found[1]) if found else 0.0


async def test_a_signed_webhook_is_stored_scored_and_shown_by_the_writer_process(
    writer_app: TriageApp,
) -> None:
    writer = _writer(writer_app)
    # Alerts in force are read by the writer process itself, from the database.
    alert_id = await released_alert(
        writer_app.engine, post_id=ANSWERED_POST, now=writer_app.clock()
    )
    async with live_queue(writer_app) as stream:
        status, answer = await _post(writer_app, 1)
        assert (status, answer) == (200, {"received": 1, "new": 1})
        name, report = await next_event(stream)
    assert name == "report"
    assert report["external_id"] == str(3_000_000_001)
    assert report["alert_id"] == alert_id
    codes = {reason["code"] for reason in report["reasons"]}
    assert "answers_alert" in codes
    assert report["place"] == "Elm Street"
    assert writer.pid is not None and writer.pid != os.getpid()
    assert await writer_app.report_count() == 1
    status, listed = await writer_app.call("GET", "/reports")
    assert status == 200
    assert [r["id"] for r in listed["reports"]] == [report["id"]]
    assert await _metric(writer_app, 'broadcaster_triage_reports_ingested_total{source="x"}') == 1


async def test_a_killed_writer_process_loses_nothing_and_is_started_again(
    writer_app: TriageApp,
) -> None:
    writer = _writer(writer_app)
    for serial in range(3):
        assert (await _post(writer_app, serial))[0] == 200
    first = writer.pid
    assert first is not None
    async with live_queue(writer_app) as stream:
        # Frozen, the writer cannot store the next batch before it is killed with it in hand.
        os.kill(first, signal.SIGSTOP)
        posts = [asyncio.create_task(_post(writer_app, serial)) for serial in range(3, 6)]
        async with asyncio.timeout(WAIT):
            while not writer.in_flight:  # noqa: ASYNC110 (the writer's state, read by a test)
                await asyncio.sleep(0.01)
        os.kill(first, signal.SIGKILL)
        answers = await asyncio.wait_for(asyncio.gather(*posts), WAIT)
        assert [status for status, _ in answers] == [200, 200, 200]
        # The dead writer's last reports may never have been shown: subscribers reload.
        assert (await next_event(stream))[0] == "resync"
        expected = {str(3_000_000_000 + serial) for serial in range(3, 6)}
        shown: set[str] = set()
        while not expected <= shown:  # (earlier reports of their incident are re-scored too)
            name, data = await next_event(stream)
            assert name == "report"
            shown.add(data["external_id"])
    assert writer.pid not in (None, first)
    assert await writer_app.report_count() == 6
    assert await _metric(writer_app, "broadcaster_triage_writer_restarts_total") == 1
    assert await _metric(writer_app, "broadcaster_triage_ingest_write_failures_total") >= 1

    # Platforms retry what they think failed: every replay is answered, none stored twice.
    for serial in range(6):
        assert await _post(writer_app, serial) == (200, {"received": 1, "new": 0})
    assert await writer_app.report_count() == 6


async def test_the_writer_process_ends_with_the_service(writer_app: TriageApp) -> None:
    assert (await _post(writer_app, 1))[0] == 200
    pid = _writer(writer_app).pid
    assert pid is not None
    await writer_app.client.close()  # the service stops: its writer is joined, not left behind
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_only_an_in_memory_database_keeps_the_writer_in_the_web_process() -> None:
    assert can_run_apart(make_url("sqlite+aiosqlite:////var/lib/broadcaster.db"))
    assert can_run_apart(make_url("postgresql+asyncpg://broadcaster@db/broadcaster"))
    assert not can_run_apart(make_url("sqlite+aiosqlite://"))
    assert not can_run_apart(make_url("sqlite+aiosqlite:///:memory:"))


_NEVER_RELEASED = """
import asyncio, sys
from datetime import UTC, datetime
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url
from broadcaster.settings import TriageSettings
from broadcaster.triage.metrics import TriageMetrics
from broadcaster.triage.rules import load_triage_rules
from broadcaster.triage.writer_process import WriterProcess

async def main():
    rules = load_triage_rules(TriageSettings())
    writer = WriterProcess(make_url(sys.argv[1]), rules, TriageMetrics(CollectorRegistry()))
    await writer.write([], datetime.now(UTC))
    print(writer.pid, flush=True)
    return writer

kept = asyncio.run(main())  # and the interpreter exits without stopping it
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
def test_a_process_that_exits_without_stopping_its_writer_neither_hangs_nor_leaves_it(
    tmp_path: Path, sqlite_template: Path
) -> None:
    database = tmp_path / "broadcaster.db"
    shutil.copyfile(sqlite_template, database)
    ended = subprocess.run(
        [sys.executable, "-c", _NEVER_RELEASED, f"sqlite+aiosqlite:///{database}"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert ended.returncode == 0, ended.stderr
    _wait_until_gone(int(ended.stdout))


# --- `broadcaster serve` as a real process --------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _writer_of(serve_pid: int) -> int:
    """The pid of serve's writer process (not multiprocessing's resource tracker)."""
    for child in _children(serve_pid):
        command = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"spawn_main" in command:
            return child
    raise AssertionError(f"no writer process among {_children(serve_pid)}")


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # ended; waiting to be reaped by whoever adopted it


def _wait_until_gone(pid: int) -> None:
    deadline = time.monotonic() + WAIT
    while not _gone(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_serve_runs_its_writer_process_and_never_leaves_it_behind(tmp_path: Path, how: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    serve = subprocess.Popen(
        [sys.executable, "-m", "broadcaster", "serve", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stderr is not None
        for line in serve.stderr:
            if "serving on" in line:
                break
        writer = _writer_of(serve.pid)
        assert not _gone(writer)
        if how == "sigterm":
            serve.send_signal(signal.SIGTERM)
            _, err = serve.communicate(timeout=WAIT)
            assert serve.returncode == 0, err
            assert "Traceback" not in err
        else:  # the service dies without a chance to stop its writer: the writer sees its
            serve.kill()  # socket close and exits by itself
            serve.communicate(timeout=WAIT)
        _wait_until_gone(writer)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.communicate()
