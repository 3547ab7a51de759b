"""Channel targets from config: which accounts, lists and partners each channel reaches.

Each `[[targets]]` table in the settings names its `channel`, is `live` or `exercise`, names its
secrets in `credentials` (never the secrets themselves), and otherwise carries the adapter's own
settings (checked by that adapter's settings model). List channels (SMS, email) also name the
distribution `lists` they send to, and may send only to contacts inside the alert's area.

    [[targets]]
    channel = "mastodon"
    name = "mastodon-county"
    mode = "live"
    base_url = "https://social.example.org"
    credentials = { access_token = { env = "MASTODON_TOKEN" } }
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.alert import Mode
from broadcaster.settings import ConfigError, SecretRef, resolve_secret
from broadcaster.telegram_inbox import SqlUpdateInbox
from channels.base import Channel, Target, TargetMode
from channels.registry import CHANNELS
from channels.telegram import TelegramChannel


class TargetConfig(BaseModel):
    """One `[[targets]]` table: the service's keys; the rest belongs to the adapter."""

    model_config = ConfigDict(extra="allow", frozen=True)

    channel: str
    credentials: dict[str, SecretRef] = Field(default_factory=dict)
    # List channels: the distribution lists to send to (see `broadcaster contacts import`).
    lists: list[str] = Field(default_factory=list)
    # List channels: only contacts whose location lies inside the alert's areas (contacts with
    # no location are left out too). Off by default: an area drawn too tight must not silence
    # people who registered without a location.
    inside_area_only: bool = False


@dataclass(frozen=True)
class ConfiguredTarget:
    target: Target
    channel_class: type[Channel]
    lists: tuple[str, ...] = ()
    inside_area_only: bool = False

    @property
    def name(self) -> str:
        return self.target.name


@dataclass
class Directory:
    """Every configured target, and one adapter instance per target (made when first needed)."""

    targets: dict[str, ConfiguredTarget] = field(default_factory=dict)
    _adapters: dict[str, Channel] = field(default_factory=dict)
    _state: AsyncEngine | None = None

    def add(self, configured: ConfiguredTarget) -> None:
        if configured.name in self.targets:
            raise ConfigError(
                f"targets: two targets are named {configured.name!r}; names must differ"
            )
        self.targets[configured.name] = configured

    def __iter__(self) -> Iterator[ConfiguredTarget]:
        return iter(self.targets.values())

    def for_alert(self, channel: str, mode: Mode) -> list[ConfiguredTarget]:
        """The targets an alert of this mode may reach on `channel`: exercise alerts reach
        exercise targets only, live alerts live targets only, internal ones nothing."""
        wanted = {Mode.live: TargetMode.live, Mode.exercise: TargetMode.exercise}.get(mode)
        return [
            configured
            for configured in self.targets.values()
            if configured.channel_class.name == channel and configured.target.mode is wanted
        ]

    def adapter(self, target_name: str) -> Channel:
        adapter = self._adapters.get(target_name)
        if adapter is None:
            configured = self.targets[target_name]
            adapter = configured.channel_class(configured.target)
            self._keep_state(adapter)
            self._adapters[target_name] = adapter
        return adapter

    def keep_adapter_state_in(self, engine: AsyncEngine) -> None:
        """Adapters that must remember what they read from a platform keep it in this
        database, which every process of the service shares (today: a Telegram bot's
        updates, which one process's read makes the platform forget for all)."""
        self._state = engine
        for adapter in self._adapters.values():
            self._keep_state(adapter)

    def _keep_state(self, adapter: Channel) -> None:
        if self._state is not None and isinstance(adapter, TelegramChannel):
            adapter.keep_updates_in(SqlUpdateInbox(self._state, adapter.target.name))

    async def aclose(self) -> None:
        adapters, self._adapters = list(self._adapters.values()), {}
        for adapter in adapters:
            await adapter.aclose()


def build_directory(raw_targets: Sequence[Mapping[str, Any]], where: str) -> Directory:
    """Check every target against its adapter and resolve its secrets; ConfigError if wrong."""
    directory = Directory()
    for index, raw in enumerate(raw_targets):
        label = f"{where}: targets[{index}]"
        try:
            config = TargetConfig.model_validate(raw)
        except ValidationError as error:
            raise ConfigError(f"{label}: {_first(error)}") from None
        channel_class = CHANNELS.get(config.channel)
        if channel_class is None:
            raise ConfigError(
                f"{label}: unknown channel {config.channel!r}; "
                f"channels: {', '.join(sorted(CHANNELS))}"
            )
        label = f"{label} ({raw.get('name', '?')})"
        try:
            settings = channel_class.settings_model.model_validate(config.model_extra or {})
        except ValidationError as error:
            raise ConfigError(f"{label}: {_first(error)}") from None
        missing = sorted(set(channel_class.credential_names) - set(config.credentials))
        unknown = sorted(set(config.credentials) - set(channel_class.credential_names))
        if unknown:
            raise ConfigError(
                f"{label}: unknown credential(s) {', '.join(unknown)}; the {config.channel} "
                f"channel takes {', '.join(channel_class.credential_names) or 'none'}"
            )
        if missing and not _optional_credentials_ok(channel_class, settings, missing):
            raise ConfigError(
                f"{label}: name where credential(s) {', '.join(missing)} come from, e.g. "
                f'credentials = {{ {missing[0]} = {{ env = "VARIABLE" }} }}'
            )
        if config.lists and not channel_class.needs_recipient:
            raise ConfigError(f"{label}: lists only apply to list channels (sms, email)")
        if channel_class.needs_recipient and not config.lists:
            raise ConfigError(f'{label}: a {config.channel} target needs lists = ["list name"]')
        credentials: dict[str, SecretStr] = {
            name: resolve_secret(ref, f"{label}: credentials.{name}")
            for name, ref in config.credentials.items()
        }
        directory.add(
            ConfiguredTarget(
                Target(settings, credentials),
                channel_class,
                tuple(config.lists),
                config.inside_area_only,
            )
        )
    return directory


def _optional_credentials_ok(
    channel_class: type[Channel], settings: Any, missing: list[str]
) -> bool:
    # An SMTP relay that trusts our address needs no password.
    return channel_class.name == "email" and getattr(settings, "username", None) is None


def _first(error: ValidationError) -> str:
    lines = []
    for detail in error.errors(include_url=False):
        where = ".".join(str(part) for part in detail["loc"]) or "value"
        lines.append(f"{where}: {detail['msg']}")
    return "; ".join(lines)
