"""Settings: shipped defaults run as they are; bad config stops start-up with one clear message."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

from broadcaster.settings import ConfigError, Settings, _write_generated_secret, load_settings
from broadcaster.triage.rules import load_triage_rules
from tests.conftest import REPO_ROOT

SHIPPED = REPO_ROOT / "config" / "broadcaster.toml"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run from an empty directory with no BROADCASTER_ variables, like a fresh machine."""
    for name in list(os.environ):
        if name.startswith("BROADCASTER_") and name != "BROADCASTER_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "broadcaster.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_shipped_file_restates_the_defaults() -> None:
    with SHIPPED.open("rb") as handle:
        assert Settings(**tomllib.load(handle)) == Settings()


def test_rules_files_are_found_beside_the_settings_file(tmp_path: Path) -> None:
    shipped = load_settings(SHIPPED).settings.alerts
    assert shipped.policy_file == SHIPPED.parent / "approval-policy.toml"
    assert shipped.templates_dir.is_dir()
    defaults = load_settings(None).settings.alerts  # no file at all: the shipped config/
    assert defaults == shipped
    own = _config(tmp_path, "[alerts]\npolicy_file = 'rules/policy.toml'\n")
    assert load_settings(own).settings.alerts.policy_file == tmp_path / "rules" / "policy.toml"


def test_a_relative_settings_path_finds_its_rules_beside_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # `broadcaster serve` from the repository root reads ./config/broadcaster.toml.
    monkeypatch.chdir(REPO_ROOT)
    settings = load_settings(Path("config/broadcaster.toml")).settings
    assert settings.triage.rules_file == SHIPPED.parent / "triage.toml"
    assert settings.alerts.policy_file == SHIPPED.parent / "approval-policy.toml"
    assert load_triage_rules(settings.triage).categories


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = _config(tmp_path, "[server]\nport = 9000\nhost = '0.0.0.0'\n")
    monkeypatch.setenv("BROADCASTER_SERVER__PORT", "9100")
    settings = load_settings(path).settings
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 9100)


def test_config_named_by_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = _config(tmp_path, "[logging]\nformat = 'text'\n")
    monkeypatch.setenv("BROADCASTER_CONFIG", str(path))
    loaded = load_settings()
    assert loaded.source == path and loaded.settings.logging.format == "text"


def test_wrong_type_names_file_field_value_and_what_is_allowed(tmp_path: Path) -> None:
    path = _config(tmp_path, "[server]\nport = 'eighty'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert str(path) in message
    assert "server.port = 'eighty'" in message
    assert "valid integer" in message


def test_value_out_of_range(tmp_path: Path) -> None:
    path = _config(tmp_path, "[server]\nport = 70000\n")
    with pytest.raises(
        ConfigError, match=r"server\.port = 70000: Input should be less than or equal to 65535"
    ):
        load_settings(path)


def test_choice_lists_the_choices(tmp_path: Path) -> None:
    path = _config(tmp_path, "[logging]\nformat = 'xml'\n")
    with pytest.raises(ConfigError, match="'json' or 'text'"):
        load_settings(path)


def test_unknown_key_names_it_and_the_allowed_keys(tmp_path: Path) -> None:
    path = _config(tmp_path, "[server]\nprot = 8080\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "unknown key 'server.prot'" in message
    assert "host, max_body_bytes, port, public_url, shutdown_timeout_seconds" in message


def test_unknown_section(tmp_path: Path) -> None:
    path = _config(tmp_path, "[sever]\nport = 8080\n")
    with pytest.raises(
        ConfigError,
        match=r"unknown key .sever.\. Allowed keys here: .*database, .*server",
    ):
        load_settings(path)


def test_bad_value_from_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCASTER_WORKER__LEASE_SECONDS", "soon")
    with pytest.raises(ConfigError, match="environment variable BROADCASTER_WORKER__LEASE_SECONDS"):
        load_settings(None)


def test_unsupported_database(tmp_path: Path) -> None:
    path = _config(tmp_path, "[database]\nurl = 'mysql://x/y'\n")
    with pytest.raises(
        ConfigError,
        match=r"'mysql' is not supported; use sqlite\+aiosqlite:// or postgresql\+asyncpg://",
    ):
        load_settings(path)


def test_invalid_toml(tmp_path: Path) -> None:
    path = _config(tmp_path, "[server\nport = 1\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_missing_secret_in_environment(tmp_path: Path) -> None:
    path = _config(tmp_path, "[secrets]\nsession_key = { env = 'CB_TEST_SESSION_KEY' }\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "secrets.session_key" in message and "CB_TEST_SESSION_KEY is not set" in message


def test_secret_from_environment_is_read_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CB_TEST_SESSION_KEY", "s3cr3t-value")
    path = _config(tmp_path, "[secrets]\nsession_key = { env = 'CB_TEST_SESSION_KEY' }\n")
    loaded = load_settings(path)
    assert loaded.secret("session_key").get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(loaded.settings) + str(loaded.secret("session_key"))


def test_missing_secret_file(tmp_path: Path) -> None:
    path = _config(tmp_path, "[secrets]\nsession_key = { file = 'absent.key' }\n")
    with pytest.raises(ConfigError, match=r"secret file absent\.key does not exist"):
        load_settings(path)


def test_secret_ref_needs_exactly_one_source(tmp_path: Path) -> None:
    path = _config(tmp_path, "[secrets]\nsession_key = { env = 'A', file = 'b' }\n")
    with pytest.raises(ConfigError, match="name exactly one source"):
        load_settings(path)


def test_generated_secret_is_created_private_and_kept(tmp_path: Path) -> None:
    first = load_settings(None).secret("session_key").get_secret_value()
    key_file = tmp_path / "var" / "secrets" / "session_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first) >= 40
    assert load_settings(None).secret("session_key").get_secret_value() == first


def test_a_secret_another_process_generated_meanwhile_stands(tmp_path: Path) -> None:
    # Workers started together each see no secret yet and each invent one: the first to land
    # stands, whole, and the others start with it instead of failing.
    key_file = tmp_path / "var" / "secrets" / "session_key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("the other process's secret", encoding="utf-8")
    _write_generated_secret(key_file)
    assert key_file.read_text(encoding="utf-8") == "the other process's secret"
    assert os.listdir(key_file.parent) == ["session_key"]  # nothing left behind


def test_a_secret_is_generated_where_hard_links_are_not_supported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(source: object, destination: object) -> None:
        raise PermissionError(1, "Operation not permitted")  # as vfat answers link(2)

    monkeypatch.setattr(os, "link", no_links)
    key_file = tmp_path / "var" / "secrets" / "session_key"
    _write_generated_secret(key_file)
    assert len(key_file.read_text(encoding="utf-8")) >= 40
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert os.listdir(key_file.parent) == ["session_key"]


def test_processes_inventing_a_secret_at_once_all_get_the_same_one(tmp_path: Path) -> None:
    key_file = tmp_path / "var" / "secrets" / "session_key"
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def invent() -> None:
        start.wait()
        try:
            _write_generated_secret(key_file)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=invent) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert os.listdir(key_file.parent) == ["session_key"]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text(encoding="utf-8")) >= 40


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[server]\nport = 'eighty'\n", "server.port = 'eighty'"),
        ("[server]\nprot = 1\n", "unknown key 'server.prot'"),
        (
            "[secrets]\nsession_key = { env = 'CB_TEST_UNSET_SECRET' }\n",
            "CB_TEST_UNSET_SECRET is not set",
        ),
    ],
)
def test_command_line_reports_one_message_and_exits_non_zero(
    tmp_path: Path, body: str, expected: str
) -> None:
    path = _config(tmp_path, body)
    completed = subprocess.run(
        [sys.executable, "-m", "broadcaster", "--config", str(path), "user", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert completed.stderr.startswith("broadcaster: configuration error:")
    assert expected in completed.stderr and str(path) in completed.stderr
