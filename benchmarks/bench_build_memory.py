"""Item 2 of issue 9: peak memory of `imagesearch build` against the number of images.

The real command (`python -m scripts.cli build`, a process of its own) builds folders of 25k, 50k,
100k and 200k tiny JPEGs (benchmarks/tiny_jpegs.py) with a tiny random-weight CLIP of 16
dimensions, so the embeddings themselves are small (64 bytes a row) and what grows with the rows
is the pipeline's own memory. Each build's peak resident memory is the kernel's (``ru_maxrss`` from
``os.wait4``: anonymous and file-backed pages, memory-mapped files included); the anonymous part
is sampled from /proc every 50 ms. A straight line through the peaks gives the bytes per row
(with and without the final embeddings' 4·dim bytes) and the extrapolation to 1M and 10M rows,
for this model and for the ViT-B/32's 512 dimensions. The baseline is the smallest build of the
same run: the slope is the ratio that matters. Every size gets the same kind of index (IVF-SQ8,
16 + 8 bytes a row at 16-d) so that the automatic choice switching from Flat (64 bytes a row) at
160k rows does not bend the line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import CACHE, header, verdict
from benchmarks.tiny_jpegs import source

SIZES = (25_000, 50_000, 100_000, 200_000)
DIM = 16
# What "a small constant per row" means here: the row's metadata as Arrow columns (file name,
# title, book id, ints; ~150 bytes at BL name lengths) and its path, plus the year order and the
# shard bookkeeping (~40 bytes), with room to spare. Today's build measured ~1.9 KB.
TARGET_BYTES_PER_ROW = 512
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class BuildRun:
    rows: int
    peak_bytes: int          # ru_maxrss of the build process
    peak_anon_bytes: int     # largest RssAnon sampled
    seconds: float


def tiny_model(dim: int = DIM) -> Path:
    folder = CACHE / f"tiny-clip-{dim}d"
    if not (folder / "modules.json").is_file():
        from tests.fixtures.tiny_clip import build_tiny_clip

        build_tiny_clip(folder, projection_dim=dim)
    return folder


def run_build(src: Path, out: Path, model: Path, work: Path, extra: list[str] | None = None) -> tuple[int, int, float]:
    """Run `imagesearch build` in a child process; (peak RSS, peak anonymous RSS, seconds)."""
    cmd = [sys.executable, "-m", "scripts.cli", "build", str(src), "--out", str(out), "--model", str(model),
           "--device", "cpu", "--precision", "fp32", "--batch-size", "256", "--no-progress", *(extra or [])]
    env = {**os.environ, "HF_DATASETS_CACHE": str(work / "hf-datasets")}
    log = work / "build.log"
    started = time.perf_counter()
    with open(log, "wb") as stderr:
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        anon = [0]
        done = threading.Event()

        def poll() -> None:
            status = Path(f"/proc/{child.pid}/status")
            while not done.is_set():
                try:
                    for line in status.read_text().splitlines():
                        if line.startswith("RssAnon:"):
                            anon[0] = max(anon[0], int(line.split()[1]) * 1024)
                except OSError:
                    return
                done.wait(POLL_SECONDS)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, usage = os.wait4(child.pid, 0)
        done.set()
        poller.join()
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"build of {src} failed:\n{log.read_text()[-3000:]}")
    return usage.ru_maxrss * 1024, anon[0], seconds


def fit(xs: list[int], ys: list[int]) -> tuple[float, float]:
    """Least-squares line: (bytes per row, intercept bytes)."""
    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(slope), float(intercept)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_build_memory", description=__doc__)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated image counts")
    parser.add_argument("--index", default="ivf-sq8", help="the builds' --index (default ivf-sq8 at every size)")
    parser.add_argument("--keep", action="store_true", help="keep the sources and collections (printed)")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    header(f"build peak memory: {', '.join(f'{n:,}' for n in sizes)} tiny JPEGs, {DIM}-d tiny CLIP")
    model = tiny_model()
    work = Path(tempfile.mkdtemp(prefix="bench-build-memory-"))
    runs: list[BuildRun] = []
    try:
        for n in sizes:
            src = source(n, work / f"src-{n}")
            out = work / f"coll-{n}"
            peak, anon, seconds = run_build(src, out, model, work, ["--index", args.index])
            runs.append(BuildRun(n, peak, anon, seconds))
            print(f"{n:>9,} images: peak RSS {peak / 2**20:7.1f} MiB (anonymous {anon / 2**20:7.1f} MiB), "
                  f"{seconds:6.1f} s", flush=True)
            if not args.keep:
                shutil.rmtree(src)
                shutil.rmtree(out)
    finally:
        if args.keep:
            print(f"kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    results: dict = {"runs": [r.__dict__ for r in runs]}
    if len(runs) < 2:
        return results
    rows = [r.rows for r in runs]
    slope, intercept = fit(rows, [r.peak_bytes for r in runs])
    anon_slope, _ = fit(rows, [r.peak_anon_bytes for r in runs])
    embedding = 4 * DIM
    excluded = slope - embedding
    print(f"slope: {slope:,.0f} bytes/row with the embeddings, {excluded:,.0f} without ({embedding} bytes/row "
          f"of float32 embeddings); anonymous memory {anon_slope:,.0f} bytes/row; fixed {intercept / 2**20:,.0f} MiB")
    for n in (1_000_000, 10_000_000):
        tiny = intercept + slope * n
        vit = intercept + (excluded + 4 * 512) * n
        print(f"extrapolated to {n:>10,} rows: {tiny / 2**30:6.2f} GiB with this {DIM}-d model, "
              f"{vit / 2**30:6.2f} GiB with 512-d embeddings (ViT-B/32)")
    print(f"per-row overhead {excluded:,.0f} bytes <= {TARGET_BYTES_PER_ROW}: {verdict(excluded <= TARGET_BYTES_PER_ROW)}")
    results.update(slope=slope, slope_without_embeddings=excluded, anon_slope=anon_slope, intercept=intercept)
    return results


if __name__ == "__main__":
    main()
