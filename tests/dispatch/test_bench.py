"""The dispatch benchmark runs the real path end to end (its figures are printed, never asserted
here): every person on the list is delivered, the latency rounds are measured, and the bare
client is measured both before and after the big list."""

from __future__ import annotations

import json

from broadcaster.dispatch.bench import run_dispatch_bench, summary
from broadcaster.settings import load_settings
from tests.conftest import REPO_ROOT


async def test_a_small_list_is_delivered_and_every_figure_is_measured(database_url: str) -> None:
    loaded = load_settings(REPO_ROOT / "config" / "broadcaster.toml")
    result = await run_dispatch_bench(
        loaded, contacts_count=40, baseline_requests=300, rounds=2, database_url=database_url
    )
    assert result.backend == database_url.split("+", 1)[0]
    assert (result.contacts, result.dead) == (40, 0)
    assert result.durable_per_second > 0
    assert result.baseline_before > 0 and result.baseline_after > 0
    assert min(result.baseline_before, result.baseline_after) <= result.baseline_per_second
    assert result.baseline_per_second <= max(result.baseline_before, result.baseline_after)
    assert len(result.release_to_confirmed) == len(result.cancel_to_corrected) == 2
    assert result.dispatcher_cpu_seconds > 0
    # Both bare runs counted, and what they cost: the client's CPU and the emulator's.
    assert result.bare.requests == 600  # enough to take some of the clock's 10 ms ticks
    assert result.bare.client > 0 and result.bare.platform > 0
    assert result.cpu_ratio > 0
    # PostgreSQL's server runs on this machine in the tests: its CPU is counted too.
    assert (result.database_cpu_seconds is not None) == (result.backend == "postgresql")
    figures = result.as_dict()
    assert len(figures["bare_client_before_and_after"]) == 2
    json.dumps(figures)  # what --json prints
    assert "before the list" in summary(result)[1]
    assert "CPU per bare client SMS" in "\n".join(summary(result))
