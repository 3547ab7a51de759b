"""The `broadcaster` command line, run in-process against each storage backend."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from pathlib import Path

import pytest

from broadcaster.auth.tokens import user_for_token
from broadcaster.cli import build_parser, main
from broadcaster.settings import DatabaseSettings
from broadcaster.storage import migrate
from broadcaster.storage.engine import create_engine


def _all_command_paths(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += _all_command_paths(sub, (*prefix, name))
    return paths


COMMAND_PATHS = _all_command_paths(build_parser())


def test_every_command_is_there() -> None:
    names = {" ".join(path) for path in COMMAND_PATHS}
    assert {
        "serve",
        "worker",
        "demo",
        "db upgrade",
        "user add",
        "user list",
        "user set-role",
        "token create",
        "user totp",
        "audit verify",
        "contacts import",
        "contacts list",
    } <= names


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "broadcaster")
def test_every_command_has_help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*path, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: broadcaster")
    assert len(out.splitlines()) > 3


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == "broadcaster 0.1.0"


@pytest.fixture
def config(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "broadcaster.toml"
    path.write_text(f'[database]\nurl = "{database_url}"\n[logging]\nformat = "text"\n')
    return path


def _run(config: Path, *argv: str) -> None:
    main(["--config", str(config), *argv])


def test_user_lifecycle_and_token(
    config: Path,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    _run(
        config, "user", "add", "alice", "--role", "duty_officer", "--password-stdin", "--rank", "2"
    )
    assert "added alice (duty_officer, rank 2)" in capsys.readouterr().out

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: a password is generated
    _run(config, "user", "add", "bob", "--role", "approver", "--display-name", "Bob B")
    out = capsys.readouterr().out
    assert "password (shown once): " in out

    _run(config, "user", "set-role", "alice", "approver")
    assert "alice: duty_officer -> approver" in capsys.readouterr().out

    _run(config, "user", "list", "--json")
    listed = json.loads(capsys.readouterr().out)
    assert [(u["username"], u["role"], u["display_name"]) for u in listed] == [
        ("alice", "approver", "alice"),
        ("bob", "approver", "Bob B"),
    ]

    _run(config, "token", "create", "alice", "--name", "ci", "--days", "30")
    token = capsys.readouterr().out.strip()

    async def owner() -> str | None:
        engine = create_engine(DatabaseSettings(url=database_url))
        try:
            async with engine.begin() as connection:
                user = await user_for_token(connection, token)
                return user.username if user else None
        finally:
            await engine.dispose()

    assert asyncio.run(owner()) == "alice"

    _run(config, "user", "totp", "bob")
    uri = capsys.readouterr().out.strip()
    assert uri.startswith("otpauth://totp/Crisis%20Broadcaster:bob?secret=")

    _run(config, "audit", "verify")
    assert "audit log intact: 5 entries" in capsys.readouterr().out


def test_user_errors_are_one_line_and_exit_1(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    _run(config, "user", "add", "carol", "--role", "responder", "--password-stdin")
    capsys.readouterr()
    for argv, expected in [
        (("user", "add", "carol", "--role", "responder"), "user 'carol' already exists"),
        (("user", "set-role", "nobody", "approver"), "no user named 'nobody'"),
        (("token", "create", "nobody"), "no user named 'nobody'"),
        (("user", "add", "Bad Name", "--role", "responder"), "is not allowed"),
    ]:
        monkeypatch.setattr("sys.stdin", io.StringIO(""))
        with pytest.raises(SystemExit) as exited:
            _run(config, *argv)
        assert exited.value.code == 1
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err


def test_short_password_is_refused(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    with pytest.raises(SystemExit) as exited:
        _run(config, "user", "add", "dave", "--role", "responder", "--password-stdin")
    assert exited.value.code == 1
    assert "at least 12 characters" in capsys.readouterr().err


def test_unknown_role_is_a_usage_error(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _run(config, "user", "add", "erin", "--role", "king")
    assert exited.value.code == 2
    assert "invalid choice: 'king'" in capsys.readouterr().err


def test_db_upgrade_brings_an_empty_postgres_database_to_head(
    postgres_empty_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "pg.toml"
    config.write_text(f'[database]\nurl = "{postgres_empty_url}"\n')
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(config), "user", "list"])
    assert exited.value.code == 1
    assert "run `broadcaster db upgrade`" in capsys.readouterr().err
    main(["--config", str(config), "db", "upgrade"])
    assert f"database is at revision {migrate.head_revision()} (head)" in capsys.readouterr().out
    main(["--config", str(config), "user", "list"])
    assert "no users yet" in capsys.readouterr().out
