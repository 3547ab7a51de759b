"""`broadcaster demo`, `serve` and `worker` as real processes: ready fast, stop on signals."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from broadcaster.settings import DatabaseSettings
from broadcaster.storage.engine import create_engine
from broadcaster.storage.schema import workers

READY_WITHIN_SECONDS = 10.0
STOP_WITHIN_SECONDS = 15.0


def _start(cwd: Path, *argv: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "broadcaster", *argv],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _read_until(stream: object, pattern: str, deadline: float) -> re.Match[str]:
    assert hasattr(stream, "readline")
    seen = []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"never saw {pattern!r}; output was:\n{''.join(seen)}")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own loopback URL)
            return int(response.status)
    except OSError:
        return 0


def _wait_ready(url: str, started: float) -> float:
    while time.monotonic() - started < READY_WITHIN_SECONDS:
        if _status(f"{url}/readyz") == 200:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{url}/readyz was not 200 within {READY_WITHIN_SECONDS} s")


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_demo_is_ready_within_10_s_and_stops_cleanly(
    tmp_path: Path, processes: list[subprocess.Popen[str]], stop_signal: signal.Signals
) -> None:
    started = time.monotonic()
    demo = _start(tmp_path, "demo", "--port", "0")
    processes.append(demo)
    url = _read_until(demo.stdout, r"Console:\s+(http://\S+)/", started + READY_WITHIN_SECONDS)[1]
    _wait_ready(url, started)
    assert (tmp_path / "var" / "demo" / "broadcaster.db").exists()

    demo.send_signal(stop_signal)
    _out, err = demo.communicate(timeout=STOP_WITHIN_SECONDS)
    assert demo.returncode == 0, err
    assert '"message": "stopped"' in err
    assert "Traceback" not in err
    assert _status(f"{url}/healthz") == 0  # nothing listens any more


def test_demo_prints_a_user_for_every_role(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    demo = _start(tmp_path, "demo", "--port", "0")
    processes.append(demo)
    assert demo.stdout is not None
    banner = []
    for line in demo.stdout:
        banner.append(line)
        if line.startswith("Console:"):
            break
    demo.send_signal(signal.SIGTERM)
    demo.communicate(timeout=STOP_WITHIN_SECONDS)
    text = "".join(banner)
    for role, username in [
        ("duty_officer", "officer"),
        ("approver", "approver1"),
        ("approver", "approver2"),
        ("responder", "responder"),
        ("administrator", "admin"),
    ]:
        assert re.search(rf"^\s+{role}\s+{username}\s+\S{{12,}}$", text, re.MULTILINE), text


def test_serve_logs_its_address_and_stops_on_sigterm(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    started = time.monotonic()
    serve = _start(tmp_path, "serve", "--port", "0")
    processes.append(serve)
    url = _read_until(serve.stderr, r'"serving on (http://[^"]+)"', started + READY_WITHIN_SECONDS)[
        1
    ]
    _wait_ready(url, started)
    assert (tmp_path / "var" / "broadcaster.db").exists()
    serve.send_signal(signal.SIGTERM)
    serve.communicate(timeout=STOP_WITHIN_SECONDS)
    assert serve.returncode == 0


def test_worker_registers_beats_and_signs_off(
    tmp_path: Path, database_url: str, processes: list[subprocess.Popen[str]]
) -> None:
    config = tmp_path / "worker.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n[worker]\nheartbeat_seconds = 0.2\n')
    worker = _start(tmp_path, "--config", str(config), "worker")
    processes.append(worker)
    _read_until(worker.stderr, r"worker \S+ started", time.monotonic() + READY_WITHIN_SECONDS)

    async def rows() -> list[tuple[object, ...]]:
        engine = create_engine(DatabaseSettings(url=database_url))
        try:
            async with engine.connect() as connection:
                result = await connection.execute(
                    select(workers.c.started_at, workers.c.heartbeat_at, workers.c.stopped_at)
                )
                return [tuple(row) for row in result]
        finally:
            await engine.dispose()

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        [(started_at, heartbeat_at, stopped_at)] = asyncio.run(rows())
        if heartbeat_at > started_at:  # type: ignore[operator]
            break
        time.sleep(0.1)
    assert heartbeat_at > started_at, "the worker never sent a heartbeat"  # type: ignore[operator]
    assert stopped_at is None

    worker.send_signal(signal.SIGTERM)
    worker.communicate(timeout=STOP_WITHIN_SECONDS)
    assert worker.returncode == 0
    [(_, _, stopped_at)] = asyncio.run(rows())
    assert stopped_at is not None
