"""`broadcaster bench inbound`: the triage queue's ingestion benchmark on the command line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from broadcaster import event_loop
from broadcaster.cli_types import positive_int
from broadcaster.settings import LoadedSettings

__all__ = ["add_inbound_bench"]


def cmd_bench_inbound(loaded: LoadedSettings, args: argparse.Namespace) -> None:
    from broadcaster.triage.bench import run_inbound_bench, summary

    result = event_loop.run(
        run_inbound_bench(
            loaded,
            reports=args.reports,
            concurrency=args.concurrency,
            replays=args.replays,
            database_url=args.database_url,
            per_call=args.per_call,
        )
    )
    if args.json:
        print(
            json.dumps(
                {
                    "reports_per_second": round(result.per_second, 1),
                    "p50_ms": round(result.percentile(0.50) * 1000, 1),
                    "p99_ms": round(result.percentile(0.99) * 1000, 1),
                    "calls": result.sent,
                    "reports": result.unique,
                    "missing": result.missing,
                    "errors": result.errors,
                    "load_average": result.load_average,
                    "load_average_end": result.load_average_end,
                    "backend": result.backend,
                    "event_loop": result.loop,
                    "service_cpu_us_per_report": round(
                        result.server_cpu / max(1, result.unique) * 1e6
                    ),
                    "writer_process_cpu_us_per_report": round(
                        result.writer_cpu / max(1, result.unique) * 1e6
                    ),
                },
                indent=2,
            )
        )
    else:
        print("\n".join(summary(result)))


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError("must be at least 0 and below 1")
    return value


def add_inbound_bench(
    bench_commands: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    parents: Sequence[argparse.ArgumentParser] = (),
) -> None:
    summary = (
        "Signed webhook reports per second into the triage queue (dedupe, clustering and "
        "scoring included) and p99 latency from webhook to the live queue."
    )
    inbound = bench_commands.add_parser(
        "inbound", help=summary, description=summary, parents=list(parents)
    )
    inbound.set_defaults(handler=cmd_bench_inbound)
    inbound.add_argument(
        "--reports", type=positive_int, default=30_000, help="webhook calls (default 30000)"
    )
    inbound.add_argument(
        "--concurrency", type=positive_int, default=256, help="calls in flight (default 256)"
    )
    inbound.add_argument(
        "--per-call",
        type=positive_int,
        default=1,
        help="messages per webhook call, as X and Meta batch them in a flood (default 1)",
    )
    inbound.add_argument(
        "--replays",
        type=_fraction,
        default=0.05,
        help="share of calls that repeat an earlier one, as platforms retry (default 0.05)",
    )
    inbound.add_argument(
        "--database-url",
        help="database to use (default: a temporary SQLite file); it must be empty and "
        "upgraded (`broadcaster db upgrade`)",
    )
    inbound.add_argument("--json", action="store_true", help="print JSON")
