"""The `broadcaster` command line, run in-process against each storage backend."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from broadcaster.auth.tokens import user_for_token
from broadcaster.cli import build_parser, main
from broadcaster.settings import DatabaseSettings
from broadcaster.storage import migrate
from broadcaster.storage.engine import create_engine
from broadcaster.storage.schema import audit_log


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
        "token list",
        "token revoke",
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

    assert asyncio.run(_owner(database_url, token)) == "alice"

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


async def _owner(database_url: str, token: str) -> str | None:
    engine = create_engine(DatabaseSettings(url=database_url))
    try:
        async with engine.begin() as connection:
            user = await user_for_token(connection, token)
            return user.username if user else None
    finally:
        await engine.dispose()


async def _audit_rows(database_url: str) -> list[tuple[str, str, dict[str, object] | None]]:
    engine = create_engine(DatabaseSettings(url=database_url))
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(audit_log.c.action, audit_log.c.subject, audit_log.c.details).order_by(
                    audit_log.c.seq
                )
            )
            return [(row.action, row.subject, row.details) for row in rows]
    finally:
        await engine.dispose()


def test_tokens_are_listed_and_revoked_one_or_all(
    config: Path,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("alice", "bob"):
        monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
        _run(config, "user", "add", name, "--role", "duty_officer", "--password-stdin")
    _run(config, "token", "list", "alice")
    assert "alice has no API tokens" in capsys.readouterr().out
    capsys.readouterr()
    values = {}
    for owner, name in (("alice", "ci"), ("alice", "laptop"), ("alice", "deploy"), ("bob", "b")):
        _run(config, "token", "create", owner, "--name", name)
        values[name] = capsys.readouterr().out.strip()

    _run(config, "token", "list", "alice")
    listing = capsys.readouterr().out
    lines = listing.splitlines()
    header = ["ID", "NAME", "PREFIX", "CREATED", "EXPIRES", "LAST", "USED", "STATE"]
    assert lines[0].split() == header
    assert [line.split()[1] for line in lines[1:]] == ["deploy", "laptop", "ci"]
    assert values["ci"][:10] + "..." in listing and "live" in listing
    for value in values.values():
        assert value not in listing
    ids = {line.split()[1]: line.split()[0] for line in lines[1:]}

    _run(config, "token", "revoke", "alice", ids["ci"])
    assert f"revoked API token {ids['ci']} (ci, {values['ci'][:10]}...) of alice" in (
        capsys.readouterr().out
    )
    assert asyncio.run(_owner(database_url, values["ci"])) is None
    assert asyncio.run(_owner(database_url, values["laptop"])) == "alice"
    _run(config, "token", "revoke", "alice", ids["ci"])
    assert "was already revoked" in capsys.readouterr().out
    _run(config, "token", "list", "alice")
    assert "revoked 20" in capsys.readouterr().out  # the state, with when

    _run(config, "token", "revoke", "alice", "--all")
    out = capsys.readouterr().out
    assert out.count("revoked API token") == 2 and "(laptop," in out and "(deploy," in out
    assert asyncio.run(_owner(database_url, values["deploy"])) is None
    assert asyncio.run(_owner(database_url, values["b"])) == "bob"  # bob's untouched
    _run(config, "token", "revoke", "alice", "--all")
    assert "alice has no live API tokens; nothing to revoke" in capsys.readouterr().out

    audited = [row for row in asyncio.run(_audit_rows(database_url)) if "revoke" in row[0]]
    assert [(action, subject) for action, subject, _ in audited] == [
        ("token.revoke", "user:alice"),
        ("token.revoke", "user:alice"),
        ("token.revoke_all", "user:alice"),
        ("token.revoke_all", "user:alice"),
    ]
    assert audited[0][2] == {"token_id": int(ids["ci"]), "name": "ci", "already_revoked": False}
    assert audited[1][2] is not None and audited[1][2]["already_revoked"] is True
    assert audited[2][2] is not None and audited[2][2]["count"] == 2
    for value in values.values():
        assert value not in repr(audited) and value[:10] not in repr(audited)


def test_token_errors_are_one_line(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("alice", "bob"):
        monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
        _run(config, "user", "add", name, "--role", "duty_officer", "--password-stdin")
    _run(config, "token", "create", "bob")
    bobs = capsys.readouterr().out.strip()
    _run(config, "token", "list", "bob")
    bob_id = capsys.readouterr().out.splitlines()[1].split()[0]
    for argv, code, expected in [
        (("token", "list", "nobody"), 1, "no user named 'nobody'"),
        (("token", "revoke", "nobody", "--all"), 1, "no user named 'nobody'"),
        (("token", "revoke", "alice", "4242"), 1, "there is no API token 4242"),
        (("token", "revoke", "alice", bob_id), 1, f"API token {bob_id} is not one of alice's"),
        (("token", "revoke", "alice"), 2, "give a TOKEN_ID"),
        (("token", "revoke", "alice", bob_id, "--all"), 2, "give a TOKEN_ID"),
        (("token", "revoke", "alice", "x1"), 2, "invalid positive_int value"),
    ]:
        with pytest.raises(SystemExit) as exited:
            _run(config, *argv)
        assert exited.value.code == code, argv
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, argv
    _run(config, "token", "list", "bob")
    assert "live" in capsys.readouterr().out  # bob's token was never touched
    assert bobs


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
