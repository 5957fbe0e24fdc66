"""Run every benchmark, each in a fresh process (clean memory figures, one failure does not stop
the rest): ``python -m benchmarks`` (what ``make bench`` runs). Defaults fit 20 minutes on the
2-core machine; ``--quick`` runs small sizes only, for a smoke test.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks.common import machine

# (module, default args, quick args)
BENCHMARKS = [
    ("bench_encode", [], ["--precisions", "fp32,auto", "--queries", "10", "--image-queries", "5",
                          "--fidelity-images", "32"]),
    ("bench_build", [], ["--images", "64"]),
    ("bench_search", [], ["--sizes", "10000", "--queries", "200"]),
    ("bench_filters", [], ["--sizes", "10000", "--queries", "50"]),
    ("bench_text_model", [], ["--images", "100", "--no-cost"]),
    ("bench_bot", [], ["--users", "10", "--images", "32"]),
    ("bench_memory", [], ["--rows", "10000", "--queries", "50"]),
    ("bench_page_memory", [], ["--hits", "4", "--size", "1500x2000"]),
    # 200k rows in `make bench` (building a second 1M collection costs 4-11 min); the 1M figures of
    # BENCHMARKS.md come from running it alone.
    ("bench_verify", ["--rows", "200000"], ["--rows", "10000"]),
    ("bench_review", [], ["--rows", "10000", "--no-baseline"]),
    # 100k rows in `make bench` (a 1M hard-ish collection takes ~12 min to index on 2 busy cores);
    # the 1M figures of BENCHMARKS.md come from running it alone.
    ("bench_duplicates", ["--rows", "100000"],
     ["--rows", "20000", "--originals", "3", "--model", "tiny", "--queries", "100"]),
    ("bench_preprocess", [], ["--images", "32"]),
    # After bench_verify, whose 200k collection it reuses; the 1M + 100k figures come from running it alone.
    ("bench_collections", ["--rows", "200000,10000"], ["--rows", "10000,10000", "--queries", "50"]),
    # Smaller than the figures in BENCHMARKS.md 13 (100k rows + 1%, and 25k-200k images: about 20 min
    # together on 2 cores), which come from running each alone.
    ("bench_incremental", ["--rows", "20000", "--index-rows", "20000"], ["--rows", "2000", "--index-rows", "5000"]),
    ("bench_build_memory", ["--sizes", "10000,20000,40000"], ["--sizes", "2000,4000"]),
    # Skips itself (exit 0) without the ray extra.
    ("bench_ray", [], ["--images", "32", "--workers", "1"]),
]
# Not in the list: bench_gpu needs a CUDA GPU (python -m benchmarks.bench_gpu on one);
# bench_index_candidates builds eight 1M indexes on first run (~25 min; python -m benchmarks.bench_index_candidates).


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated names, e.g. search,encode")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not figures")
    args = parser.parse_args(argv)
    only = {f"bench_{n.strip().removeprefix('bench_')}" for n in args.only.split(",") if n.strip()}
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    failed = []
    started = time.perf_counter()
    for name, full, quick in BENCHMARKS:
        if only and name not in only:
            continue
        t = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}", *(quick if args.quick else full)])
        print(f"[{name}: {time.perf_counter() - t:.0f} s, exit {rc}]", flush=True)
        if rc:
            failed.append(name)
    print(f"\nall benchmarks: {time.perf_counter() - started:.0f} s; failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
