"""Every platform emulator started in-process, with a live and an exercise target on each: what
`broadcaster demo`, drills, benchmarks and end-to-end tests run the service against."""

from __future__ import annotations

from dataclasses import dataclass, field

from broadcaster.targets import ConfiguredTarget, Directory
from channels.base import TargetMode
from channels.emulators.base import Emulator
from channels.emulators.registry import EMULATORS
from channels.registry import CHANNELS

# The distribution list demo SMS and email targets send to.
DEMO_LIST = "demo-residents"


@dataclass
class EmulatedPlatforms:
    emulators: dict[str, Emulator] = field(default_factory=dict)
    directory: Directory = field(default_factory=Directory)

    async def stop(self) -> None:
        await self.directory.aclose()
        for emulator in self.emulators.values():
            await emulator.stop()


async def start_emulated_platforms(
    *, host: str = "127.0.0.1", timeout_seconds: float = 10.0
) -> EmulatedPlatforms:
    """Start one emulator per platform; each gets a live target `<channel>-live` and an
    exercise target `<channel>-exercise` (separate accounts, as a real installation has)."""
    platforms = EmulatedPlatforms()
    try:
        for emulator_class in EMULATORS:
            emulator = emulator_class()
            await emulator.start(host=host)
            platforms.emulators[emulator.name] = emulator
            channel_class = CHANNELS[emulator.name]
            lists = (DEMO_LIST,) if channel_class.needs_recipient else ()
            for mode in (TargetMode.live, TargetMode.exercise):
                target = emulator.target(
                    f"{emulator.name}-{mode.value}", mode, timeout_seconds=timeout_seconds
                )
                platforms.directory.add(ConfiguredTarget(target, channel_class, lists))
    except BaseException:
        await platforms.stop()
        raise
    return platforms
