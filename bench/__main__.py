"""``python -m bench [scenario] [--size N] [--seconds S]``.

Without a scenario, runs all of them at their default sizes, prints the
table and writes ``docs/benchmarks.md``. With one, runs only that scenario
and prints its figures. Exit status: 0 when every target is met, 1 when one
is missed, 2 for bad arguments or a benchmark that broke.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

from bench.procs import DEFAULT_POSTGRES
from bench.procs import ROOT
from bench.report import Result
from bench.report import result_table
from bench.report import summary_table
from bench.report import write_docs
from bench.scenarios import SCENARIOS
from bench.scenarios import Options

DOCS = ROOT / "docs" / "benchmarks.md"
MISSED = 1
BROKEN = 2


def parse(argv: list[str]) -> argparse.Namespace:
    sizes = "\n".join(f"  {s.name:<9} {s.title}: size = {s.size_help} (default {s.size:,})" for s in SCENARIOS.values())
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of issue 7, each a ratio against a baseline from the same run.",
        epilog="scenarios:\n" + sizes,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS), help="run only this one")
    parser.add_argument("--size", type=int, help="scale of the run (see below)")
    parser.add_argument("--seconds", type=float, help="length of time-boxed loads")
    parser.add_argument("--tiny", action="store_true", help="the smoke test's sizes: seconds, not minutes")
    parser.add_argument("--threads", type=int, default=16, help="delivery threads per worker (and baseline)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("WEBHOOKS_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="server for the PostgreSQL parts ('' skips them); a fresh database is made per run",
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help="where the full run writes its results")
    args = parser.parse_args(argv)
    if args.size is not None and args.scenario is None:
        parser.error("--size needs a scenario")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    names = [args.scenario] if args.scenario else list(SCENARIOS)
    results: list[Result] = []
    for name in names:
        scenario = SCENARIOS[name]
        options = Options(
            size=args.size or (scenario.tiny if args.tiny else scenario.size),
            seconds=args.seconds or (scenario.tiny_seconds if args.tiny else scenario.seconds),
            postgres_url=args.postgres or None,
            threads=args.threads,
        )
        print(f"== {scenario.title} (size {options.size:,})", flush=True)
        started = time.monotonic()
        try:
            result = scenario.run(options)
        except Exception:
            traceback.print_exc()
            print(f"== {scenario.title}: BROKEN", flush=True)
            return BROKEN
        result.elapsed = time.monotonic() - started
        results.append(result)
        print(result_table(result), flush=True)
        print(f"== {scenario.title}: {'pass' if result.passed else 'MISSED'} in {result.elapsed:.0f} s\n", flush=True)
    if len(results) > 1:
        print(summary_table(results), flush=True)
    if args.scenario is None:
        python = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
        command = " ".join([python, "-m", "bench", *map(shlex.quote, argv)])
        write_docs(args.docs, results, command)
        print(f"wrote {args.docs}", flush=True)
    return 0 if all(result.passed for result in results) else MISSED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
