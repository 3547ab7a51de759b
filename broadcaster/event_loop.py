"""The event loop the web service runs on: uvloop where it is installed, else asyncio's own.

uvloop (libuv under asyncio's interface) takes a large share off the cost of every HTTP
request, which is what a flood of webhooks is made of. Everything here is written against
asyncio's interface only, so both loops run the same code; tests run on asyncio's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_name", "run"]

T = TypeVar("T")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # not on every platform (Windows): asyncio's loop does the same work
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the fastest loop available."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def loop_name() -> str:
    """Which loop `run` uses, for a benchmark to print."""
    return "uvloop" if _loop_factory() is not None else "asyncio"
