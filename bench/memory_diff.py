"""What grew between two tracemalloc snapshots of the server (``BENCH_TRACEMALLOC``, see
bench/serve_lag.py), grouped by allocation traceback, biggest growth first.

    python -m bench.memory_diff OLD.pickle NEW.pickle [--top 25] [--frames 8]
"""

from __future__ import annotations

import argparse
import tracemalloc


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.memory_diff", description=__doc__)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--frames", type=int, default=8, help="traceback frames shown per entry")
    p.add_argument("--group", choices=("traceback", "lineno", "filename"), default="traceback")
    args = p.parse_args()
    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
    ]
    old = tracemalloc.Snapshot.load(args.old).filter_traces(ignore)
    new = tracemalloc.Snapshot.load(args.new).filter_traces(ignore)
    total = sum(s.size for s in new.statistics("filename")) - sum(
        s.size for s in old.statistics("filename")
    )
    print(f"traced memory grew by {total / 1024:.1f} KiB")
    for stat in new.compare_to(old, args.group)[: args.top]:
        print(
            f"\n{stat.size_diff / 1024:+.1f} KiB ({stat.count_diff:+d} blocks), "
            f"now {stat.size / 1024:.1f} KiB in {stat.count} blocks"
        )
        for line in stat.traceback.format(limit=args.frames, most_recent_first=True):
            print("   ", line)


if __name__ == "__main__":
    main()
