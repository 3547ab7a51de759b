"""How the service's processes (serve, worker, demo, the benchmarks) run: on uvloop where it
is installed (else asyncio's own loop), with the garbage collector's young generation made
larger.

uvloop (libuv under asyncio's interface) takes a large share off the cost of every HTTP
request, which is what a flood of webhooks, or a fan-out to 100,000 phones, is made of.
Everything here is written against asyncio's interface only, so both loops run the same code;
tests run on asyncio's.

The collector: every request allocates a few hundred objects, so at asyncio's default (a young
collection every 700 allocations) a flood of webhooks spent a sixth of its CPU time collecting,
mostly walking the same long-lived objects (the cluster index, the queue) again and again.
Collecting every 10,000 allocations keeps the same guarantees (cycles are still freed) at a
few hundred kilobytes more memory. And what exists when the loop starts (the modules, their
classes and functions: some 200,000 objects, there for the life of the process) is frozen out
of the collector's view: its full collections walked all of them every time, to free nothing.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_name", "run"]

T = TypeVar("T")
YOUNG_GENERATION_THRESHOLD = 10_000  # allocations between young collections (Python's: 700)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # not on every platform (Windows): asyncio's loop does the same work
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the fastest loop available, with the collector set as above."""
    _, *older = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *older)
    gc.freeze()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def loop_name() -> str:
    """Which loop `run` uses, for a benchmark to print."""
    return "uvloop" if _loop_factory() is not None else "asyncio"
