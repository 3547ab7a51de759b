"""Channel targets from config: checked against each adapter, secrets from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from approvals.alert import Mode
from broadcaster.settings import ConfigError, load_settings
from broadcaster.targets import build_directory

MASTODON = {
    "channel": "mastodon",
    "name": "mastodon-county",
    "mode": "live",
    "base_url": "https://social.example.org",
    "credentials": {"access_token": {"env": "CB_TEST_MASTODON_TOKEN"}},
}


def test_a_target_is_checked_and_its_secret_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_TEST_MASTODON_TOKEN", "token-value")
    drill = {**MASTODON, "name": "mastodon-drill", "mode": "exercise"}
    directory = build_directory([MASTODON, drill], "test.toml")
    [live] = directory.for_alert("mastodon", Mode.live)
    [exercise] = directory.for_alert("mastodon", Mode.exercise)
    assert (live.name, exercise.name) == ("mastodon-county", "mastodon-drill")
    assert directory.for_alert("mastodon", Mode.internal) == []
    assert live.target.credentials["access_token"].get_secret_value() == "token-value"
    assert directory.adapter("mastodon-county").name == "mastodon"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"channel": "myspace"}, "unknown channel 'myspace'"),
        ({"base_url": "not a url"}, "base_url"),
        ({"mode": "maybe"}, "mode"),
        ({"colour": "red"}, "colour"),
        ({"credentials": {}}, "name where credential(s) access_token come from"),
        ({"credentials": {"password": {"env": "X"}}}, "unknown credential(s) password"),
        ({"lists": ["residents"]}, "lists only apply to list channels"),
    ],
)
def test_bad_targets_are_refused_with_a_message(
    monkeypatch: pytest.MonkeyPatch, change: dict[str, object], expected: str
) -> None:
    monkeypatch.setenv("CB_TEST_MASTODON_TOKEN", "token-value")
    with pytest.raises(ConfigError) as caught:
        build_directory([{**MASTODON, **change}], "test.toml")
    assert expected in str(caught.value)
    assert "test.toml: targets[0]" in str(caught.value)


def test_a_missing_channel_secret_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "broadcaster.toml"
    path.write_text(
        "[[targets]]\nchannel = 'mastodon'\nname = 'm'\nmode = 'live'\n"
        "base_url = 'https://social.example.org'\n"
        "credentials = { access_token = { env = 'CB_TEST_UNSET_TOKEN' } }\n"
    )
    with pytest.raises(ConfigError, match="CB_TEST_UNSET_TOKEN is not set"):
        load_settings(path)


def test_two_targets_with_one_name_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_TEST_MASTODON_TOKEN", "token-value")
    with pytest.raises(ConfigError, match="two targets are named 'mastodon-county'"):
        build_directory([MASTODON, MASTODON], "test.toml")


def test_list_channels_need_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_TEST_TWILIO_TOKEN", "token-value")
    sms = {
        "channel": "sms",
        "name": "sms-residents",
        "mode": "live",
        "account_sid": "AC" + "0" * 32,
        "from_number": "+15555550100",
        "credentials": {"auth_token": {"env": "CB_TEST_TWILIO_TOKEN"}},
    }
    with pytest.raises(ConfigError, match="needs lists"):
        build_directory([sms], "test.toml")
    [target] = build_directory([{**sms, "lists": ["residents"]}], "test.toml")
    assert target.lists == ("residents",)
