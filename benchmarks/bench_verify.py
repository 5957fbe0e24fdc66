"""Item 12: what the integrity check costs: the bot's start-up check and a full `imagesearch verify`.

A synthetic collection of --rows rows (bench_search's vectors and index choice, in a folder of its
own, with checksums) is verified quick (what the bot runs at every start: all but the image Arrow
files hashed) and full, each with its files first dropped from the page cache (posix_fadvise
DONTNEED on this collection's files only: a bot starting after a reboot) and then warm. Baseline,
in the same process: loading the ViT-B/32 the way the bot does at every start (precision auto).
The synthetic rows hold no image bytes, so the full figure here is a lower bound: a real
collection adds its image bytes at the sha256 rate printed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

from benchmarks.common import CACHE, header, measure_load, ratio, vit_b32


def drop_from_page_cache(folder: Path) -> None:
    """Evict this collection's files (and only them) from the page cache."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def sha256_rate() -> float:
    """Bytes per second of hashlib.sha256 on 256 MiB in memory (no disk)."""
    data = os.urandom(256 << 20)
    t = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    return len(data) / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_verify", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    header(f"integrity check: {args.rows:,} rows")

    from benchmarks.synthetic import synthetic_collection
    from search_core.encoder import Encoder
    from search_core.integrity import verify_collection

    syn = synthetic_collection(args.rows, CACHE / f"verify-{args.rows}", queries=1)
    if syn.build_s is not None:
        print(f"(built the synthetic collection first: {syn.build_s:.0f} s)")
    sizes = {p.relative_to(syn.path).as_posix(): p.stat().st_size for p in syn.path.rglob("*") if p.is_file()}
    print("files: " + ", ".join(f"{name} {size / 2**20:,.0f} MiB" for name, size in sorted(sizes.items())
                                if size > 2**20))

    t = time.perf_counter()
    Encoder.load(str(vit_b32()), device="cpu", precision="auto")
    model_s = time.perf_counter() - t
    rate = sha256_rate()
    print(f"baseline: the bot's model load {model_s:.2f} s; sha256 in memory {rate / 2**30:.2f} GiB/s")

    figures = {"model_s": model_s, "sha256_gib_s": rate / 2**30}
    for quick in (True, False):
        for cache in ("cold", "warm"):
            if cache == "cold":
                drop_from_page_cache(syn.path)
            with measure_load() as load:
                t = time.perf_counter()
                report = verify_collection(syn.path, quick=quick)
                seconds = time.perf_counter() - t
            assert report.ok, report.problems
            name = "quick (bot start-up)" if quick else "full (imagesearch verify)"
            print(f"{name}, {cache} cache: {seconds:.2f} s, {report.bytes_hashed / 2**20:,.0f} MiB hashed, "
                  f"{report.sampled_rows} rows sampled; {ratio(seconds, model_s)} of the model load ({load})")
            figures[f"{'quick' if quick else 'full'}_{cache}_s"] = seconds
    return figures


if __name__ == "__main__":
    main()
