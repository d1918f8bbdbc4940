"""Every benchmark of issue 10 in one run: a summary table and bench/results.json.

    .venv/bin/python -m bench                        # full size (make bench)
    .venv/bin/python -m bench --quick                # small sizes, a smoke run (make bench-quick)
    .venv/bin/python -m bench --only ga udp          # a subset, in the order given

Each benchmark prints its own lines (sizes, the machine's load, details) as it finishes; then
one table lists every figure with its baseline from the same run, the ratio, the target and
whether it was met (`-`: no target at that size). results.json is a list of
{"name", "value", "unit", "baseline", "ratio", "target", "met"}. Quick sizes are for checking
that everything runs: their figures are not comparable with the targets. A benchmark that
fails is reported and the others still run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench import extender_latency, ga, memory_startup, sched_throughput, udp_ingest, ws_broadcast
from bench.common import load_line

Result = tuple[list[dict[str, Any]], list[str]]
Run = Callable[[], Result]
COLUMNS = ("name", "value", "unit", "baseline", "ratio", "target", "met")
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.json"

# name -> (full size: each benchmark's defaults, the sizes; quick size)
BENCHES: dict[str, tuple[Run, Run]] = {
    "latency": (extender_latency.run, partial(extender_latency.run, [100], 100)),
    "throughput": (sched_throughput.run, partial(sched_throughput.run, 50, 100)),
    "udp": (udp_ingest.run, partial(udp_ingest.run, [5000], 2.0)),
    "ws": (ws_broadcast.run, partial(ws_broadcast.run, clients=10, nodes=200, seconds=5.0, workers=1)),
    "ga": (ga.run, partial(ga.run, (30, 100), (8, 6), repeats=1, milp_limit_s=30.0)),
    "memory": (memory_startup.run, partial(memory_startup.run, 500, 5000)),
}


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


def table(results: list[dict[str, Any]]) -> list[str]:
    rows = [list(COLUMNS)] + [[cell(r[c]) for c in COLUMNS] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    numeric = {"value", "baseline", "ratio"}
    return [
        "  ".join(text.rjust(w) if c in numeric else text.ljust(w) for c, text, w in zip(COLUMNS, row, widths, strict=True))
        .rstrip()
        for row in rows
    ]


def run_one(name: str, bench: Run) -> Result | None:
    """Run one benchmark, print its lines; None (and the error) when it failed."""
    started = time.monotonic()
    print(f"== {name}", flush=True)
    try:
        results, lines = bench()
    except (Exception, SystemExit):  # SystemExit: the benchmarks' own "could not measure" exits
        traceback.print_exc()
        print(f"== {name} FAILED after {time.monotonic() - started:.0f}s", flush=True)
        return None
    print("\n".join(lines))
    print(f"== {name}: {time.monotonic() - started:.0f}s", flush=True)
    return results, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(BENCHES), metavar="BENCH",
                        help=f"run only these, in this order ({', '.join(BENCHES)})")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that everything runs")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results file (default bench/results.json)")
    args = parser.parse_args(argv)
    print(f"machine at start: {load_line()}", flush=True)
    results: list[dict[str, Any]] = []
    failed = []
    for name in args.only or list(BENCHES):
        full, quick = BENCHES[name]
        outcome = run_one(name, quick if args.quick else full)
        if outcome is None:
            failed.append(name)
        else:
            results += outcome[0]
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nmachine at end: {load_line()}{' (quick sizes)' if args.quick else ''}")
    print("\n".join(table(results)))
    print(f"written: {args.output}")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
