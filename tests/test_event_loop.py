"""The service's process runs on uvloop when it is installed, with a larger young generation and
what existed at start frozen out of the collector's view."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from broadcaster import event_loop


@pytest.fixture
def _collector_restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


@pytest.mark.usefixtures("_collector_restored")
def test_runs_the_coroutine_on_uvloop_with_the_collector_set() -> None:
    pytest.importorskip("uvloop")  # a declared dependency everywhere but Windows

    async def which_loop() -> str:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()).__module__

    assert event_loop.run(which_loop()).startswith("uvloop")
    assert event_loop.loop_name() == "uvloop"
    assert gc.get_threshold()[0] == event_loop.YOUNG_GENERATION_THRESHOLD
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("_collector_restored")
def test_an_error_in_the_coroutine_reaches_the_caller() -> None:
    async def fails() -> None:
        raise LookupError("nothing here")

    with pytest.raises(LookupError, match="nothing here"):
        event_loop.run(fails())
