"""Command line: ``python -m rql_lite <command>``; ``--help`` lists the commands."""
from __future__ import annotations

import argparse
import sys


def _bench(args) -> int:
    from rql_lite.bench import format_report, run_bench

    payload, path = run_bench(args.configs, num_seeds=args.seeds, updates_per_dispatch=args.updates_per_dispatch,
                              min_seconds=args.min_seconds, out_dir=args.out)
    print(format_report(payload))
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rql_lite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="measure updates/s, FLOPs per update and FLOP/s")
    bench.add_argument("--configs", nargs="+", default=["paper", "smoke"], help="which configurations (paper, smoke)")
    bench.add_argument("--seeds", type=int, default=4, help="also time this many vmapped seeds (1 to skip)")
    bench.add_argument("--updates-per-dispatch", type=int, default=None,
                       help="updates per lax.scan call (default: 10 on CPU for paper, 200 for smoke, 1000 on GPU)")
    bench.add_argument("--min-seconds", type=float, default=10.0, help="time each measurement for at least this long")
    bench.add_argument("--out", default="results/bench", help="directory for the JSON record")
    bench.set_defaults(func=_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # bad input: one clear line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
