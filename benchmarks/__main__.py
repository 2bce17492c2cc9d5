"""``python -m benchmarks [suite ...]``: run benchmark suites and print a table."""
from __future__ import annotations

import argparse
import importlib
import sys

from benchmarks.common import Result, format_table

SUITES = ("plugin", "sysinv", "ansible", "cluster", "dra")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("suites", nargs="*", metavar="suite",
                        help=f"suites to run: {', '.join(SUITES)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite {unknown[0]!r} (choose from {', '.join(SUITES)})")
    results: list[Result] = []
    for name in args.suites or SUITES:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name} ==", flush=True)
        suite_results = module.run()
        print(format_table(suite_results), flush=True)
        results.extend(suite_results)
    print("\n== summary ==")
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
