"""The emulators in a process of their own, for `broadcaster bench dispatch`: the benchmark's
client side (dispatcher, database) and the platforms then do not share one event loop.

Prints one JSON line (the targets and their credentials' environment), then serves until its
standard input closes.
"""

from __future__ import annotations

import asyncio
import json
import sys

from broadcaster.dispatch.emulated import EmulatedPlatforms


async def serve() -> None:
    platforms = EmulatedPlatforms()
    await platforms.start()
    platforms.lift_quotas()
    tables, environment = platforms.targets(timeout_seconds=10.0)
    urls = {name: emulator.url for name, emulator in platforms.emulators.items()}
    print(json.dumps({"targets": tables, "environment": environment, "urls": urls}), flush=True)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, sys.stdin.read)  # until the benchmark closes our stdin
    finally:
        await platforms.stop()


if __name__ == "__main__":
    asyncio.run(serve())
