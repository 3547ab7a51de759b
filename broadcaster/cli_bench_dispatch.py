"""`broadcaster bench dispatch`: the dispatcher's benchmark on the command line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from broadcaster.cli_types import positive_int
from broadcaster.settings import LoadedSettings

__all__ = ["add_dispatch_bench"]


def cmd_bench_dispatch(loaded: LoadedSettings, args: argparse.Namespace) -> None:
    from broadcaster import event_loop
    from broadcaster.dispatch.bench import run_dispatch_bench, summary

    result = event_loop.run(
        run_dispatch_bench(
            loaded,
            contacts_count=args.contacts,
            baseline_requests=args.baseline_requests,
            rounds=args.rounds,
            database_url=args.database_url,
            workers=args.workers,
        )
    )
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print("\n".join(summary(result)))


def add_dispatch_bench(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    summary = (
        "Fan-out speed against the emulators: durable SMS deliveries per second for a big list "
        "(next to a bare aiohttp client), approval-to-confirmed on 8 channels, cancel-to-"
        "corrected. Prints figures."
    )
    bench = commands.add_parser("dispatch", help=summary, description=summary, parents=parents)
    bench.set_defaults(handler=cmd_bench_dispatch)
    bench.add_argument(
        "--contacts", type=positive_int, default=100_000, help="people on the SMS list (100000)"
    )
    bench.add_argument(
        "--baseline-requests",
        type=positive_int,
        default=20_000,
        help="SMS the bare aiohttp client sends (20000)",
    )
    bench.add_argument(
        "--rounds", type=positive_int, default=50, help="alerts for the latency figures (50)"
    )
    bench.add_argument(
        "--database-url",
        help="a database to run on, e.g. postgresql+asyncpg://USER@HOST/DB (migrated, no "
        "alerts in it); default: a fresh SQLite file",
    )
    bench.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="dispatchers for the big list: the in-process one and N-1 `broadcaster worker` "
        "processes (1: on a 2-core machine the emulators have the other core)",
    )
    bench.add_argument("--json", action="store_true", help="print JSON")
