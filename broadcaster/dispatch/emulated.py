"""The platform emulators (channels/emulators) as configured targets, for the dispatch benchmark
and crash drills. Their credentials are passed to worker processes as environment variables,
like real secrets: never written into a configuration file."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from channels.base import TargetMode
from channels.emulators.base import Emulator
from channels.registry import CHANNELS

# The channels the alert templates name. Instagram is left out: it fetches its card image from
# the service's public address, which a benchmark does not serve.
EIGHT_CHANNELS: Final = ("x", "facebook", "mastodon", "telegram", "sms", "email", "webhook", "cap")
LIST_NAME: Final = "residents"


def emulator_class(platform: str) -> type[Emulator]:
    module = importlib.import_module(f"channels.emulators.{platform}")
    found: type[Emulator] = module.EMULATOR
    return found


@dataclass
class EmulatedPlatforms:
    """One running emulator per platform, each with one target in `mode`."""

    mode: TargetMode = TargetMode.live
    emulators: dict[str, Emulator] = field(default_factory=dict)

    async def start(self, names: Iterable[str] = EIGHT_CHANNELS) -> None:
        for name in names:
            emulator = emulator_class(name)()
            await emulator.start()
            self.emulators[name] = emulator

    def lift_quotas(self) -> None:
        """Raise the emulators' platform quotas (X's 100 posts per 15 minutes, Telegram's 20
        messages a minute, Mastodon's and Graph's call budgets) for volume runs: a benchmark
        or crash drill sends thousands of posts and measures us, not a quota window. How we
        honour the platforms' 429s is tested with the quotas in place (tests/dispatch)."""
        lots = 10**9
        for emulator in self.emulators.values():
            limits = getattr(emulator, "window_limits", None)
            if isinstance(limits, dict):
                for window in limits:
                    limits[window] = lots
            for budget in ("create_limit_24h", "rate_limit", "hourly_call_budget"):
                if isinstance(getattr(emulator, budget, None), int):
                    setattr(emulator, budget, lots)
            if hasattr(emulator, "_flood_check"):
                setattr(emulator, "_flood_check", lambda _chat_id: None)  # noqa: B010

    async def stop(self) -> None:
        for emulator in self.emulators.values():
            await emulator.stop()

    def target_name(self, platform: str) -> str:
        return f"{platform}-{self.mode.value}"

    def targets(
        self,
        *,
        timeout_seconds: float = 10.0,
        extra: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """[[targets]] tables for settings (with `extra` keys per platform), and the
        environment their credentials come from."""
        tables: list[dict[str, Any]] = []
        environment: dict[str, str] = {}
        for name, emulator in self.emulators.items():
            target = emulator.target(
                self.target_name(name), self.mode, timeout_seconds=timeout_seconds
            )
            table: dict[str, Any] = {
                "channel": name,
                **target.settings.model_dump(mode="json", exclude_none=True),
                "credentials": {},
            }
            for credential, secret in target.credentials.items():
                variable = f"BROADCASTER_EMULATED_{name}_{credential}".upper()
                table["credentials"][credential] = {"env": variable}
                environment[variable] = secret.get_secret_value()
            if CHANNELS[name].needs_recipient:
                table["lists"] = [LIST_NAME]
            table.update((extra or {}).get(name, {}))
            tables.append(table)
        return tables, environment

    def environment(
        self,
        *,
        timeout_seconds: float = 10.0,
        extra: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, str]:
        """BROADCASTER_TARGETS and the credential variables, for a worker process."""
        tables, environment = self.targets(timeout_seconds=timeout_seconds, extra=extra)
        return {"BROADCASTER_TARGETS": json.dumps(tables), **environment}
