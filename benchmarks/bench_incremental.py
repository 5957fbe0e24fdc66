"""Item 1 of issue 9: what adding 1% new images to a collection costs, against building it from scratch.

Through the real command (`python -m scripts.cli build`, a process each): a folder of --rows tiny
JPEGs (benchmarks/tiny_jpegs.py) is built from scratch, 1% more images are added to it, and the
same command runs again. Each build's stage lines give where the time went. Target: the
incremental build costs at most 5% of the full build, plus its index step.

The model is the tiny random CLIP (fp32): the real ViT-B/32 would take 100,000 / 17 images/s, about
1.6 hours, for one full build on this 2-core CPU. With the tiny model the fixed costs (scan, index,
grouping, writing every row's bytes again) weigh far more against the embedding than they would
with the real one; the projection line replaces each build's embed stage by the ViT-B/32's own
rate, measured here on 64 of the same images with the build's precision.

Second part, the index step alone: at --index-rows rows of 512-d vectors (benchmarks/hard_data.py),
the chooser's index built and tuned as an update builds it, and the share of that which training is.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import CACHE, header, ratio, verdict
from benchmarks.tiny_jpegs import POOL, pool, relative_path, source

TARGET_SHARE = 0.05
STAGE = re.compile(r"^(scan|embed|index|group|write): .* in ([0-9.]+) s")
COUNTS = re.compile(r"added ([\d,]+), changed ([\d,]+), removed ([\d,]+), kept ([\d,]+)")


def tiny_model() -> Path:
    folder = CACHE / "tiny-clip"
    if not (folder / "modules.json").is_file():
        from tests.fixtures.tiny_clip import build_tiny_clip

        build_tiny_clip(folder)
    return folder


def run_build(src: Path, out: Path, model: Path, work: Path) -> tuple[float, dict[str, float], str]:
    """(seconds, seconds per stage, stderr) of one `imagesearch build`."""
    cmd = [sys.executable, "-m", "scripts.cli", "build", str(src), "--out", str(out), "--model", str(model),
           "--device", "cpu", "--precision", "fp32", "--batch-size", "256", "--no-progress"]
    env = {**os.environ, "HF_DATASETS_CACHE": str(work / "hf-datasets")}
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"build failed:\n{done.stderr[-3000:]}")
    stages = {}
    for line in done.stderr.splitlines():
        match = STAGE.match(line)
        if match:
            stages[match.group(1)] = float(match.group(2))
    return seconds, stages, done.stderr


def vit_rate(n: int = 64) -> float:
    """Images/s of the random ViT-B/32 at the build's precision on tiny JPEGs (decode + model)."""
    from PIL import Image

    from benchmarks.common import vit_b32
    from search_core.encoder import Encoder

    encoder = Encoder.load(str(vit_b32()), device="cpu", precision="auto")
    files = [POOL / relative_path(i) for i in range(n)]
    encoder.encode_images([Image.open(files[0]).convert("RGB")])      # warm-up
    started = time.perf_counter()
    for i in range(0, n, 32):
        encoder.encode_images([Image.open(f).convert("RGB") for f in files[i:i + 32]])
    return n / (time.perf_counter() - started)


def builds(rows: int) -> dict:
    added = max(1, rows // 100)
    header(f"incremental build: {rows:,} tiny JPEGs, then {added:,} more (1%)")
    pool(rows + added)
    model = tiny_model()
    work = Path(tempfile.mkdtemp(prefix="bench-incremental-"))
    try:
        src = source(rows, work / "src")
        out = work / "coll"
        full_s, full_stages, _ = run_build(src, out, model, work)
        print(f"full build:        {full_s:7.1f} s  ({_stages(full_stages)})", flush=True)
        for i in range(rows, rows + added):
            rel = relative_path(i)
            os.link(POOL / rel, src / rel)
        incr_s, incr_stages, stderr = run_build(src, out, model, work)
        counts = COUNTS.search(stderr)
        print(f"incremental build: {incr_s:7.1f} s  ({_stages(incr_stages)})", flush=True)
        print(f"  it said: {counts.group(0) if counts else 'NO COUNTS LINE'}")
        expected = f"added {added:,}, changed 0, removed 0, kept {rows:,}"
        assert counts and counts.group(0) == expected, f"expected '{expected}'"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    index_s = incr_stages.get("index", 0.0)
    share = (incr_s - index_s) / full_s
    print(f"incremental without its index step: {incr_s - index_s:.1f} s = {share:.1%} of the full build "
          f"(target <= {TARGET_SHARE:.0%}): {verdict(share <= TARGET_SHARE)}; index step {index_s:.1f} s")
    rate = vit_rate()
    full_vit = full_s - full_stages.get("embed", 0.0) + rows / rate
    incr_vit = incr_s - incr_stages.get("embed", 0.0) + added / rate
    vit_share = (incr_vit - index_s) / full_vit
    print(f"projected with the ViT-B/32 ({rate:.1f} images/s measured here): full {full_vit / 60:.0f} min, "
          f"incremental {incr_vit:.0f} s = {vit_share:.2%} of it without the index step: "
          f"{verdict(vit_share <= TARGET_SHARE)}")
    return {"full_s": full_s, "incremental_s": incr_s, "index_s": index_s, "share": share,
            "full_stages": full_stages, "incremental_stages": incr_stages, "vit_rate": rate, "vit_share": vit_share}


def index_step(rows: int) -> dict:
    """The index step an update runs at `rows` rows (+1%), and the share of it that training is.

    The build trains the index again on every update. Reusing the old index's training could save at
    most the training share measured here; it is not done, because the large collections' int8
    codes carry a scale fitted to the rows (scripts/indexing.py _fit_int8_scale): a new row past the
    old largest component would wrap around in its code, silently.
    """
    import faiss

    from benchmarks.hard_data import generate
    from scripts.index_choice import choose_index
    from scripts.indexing import (
        _fit_int8_scale,
        _train_many_lists,
        _training_sample,
        all_threads,
        build_index,
    )

    header(f"index step: {rows:,} rows of 512-d (hard data) +1%, the build's index and tuning")
    data = generate(rows + rows // 100, queries=64, seed=3)
    vectors = data.vectors
    spec = choose_index(len(vectors), vectors.shape[1])
    started = time.perf_counter()
    index, info = build_index(vectors, spec, text_queries=data.text_queries)
    index_s = time.perf_counter() - started
    started = time.perf_counter()
    with all_threads():
        trained = faiss.index_factory(vectors.shape[1], spec, faiss.METRIC_INNER_PRODUCT)
        _fit_int8_scale(trained, vectors, spec, 0)
        _train_many_lists(trained, vectors, 0)
        if not trained.is_trained:
            trained.train(_training_sample(trained, vectors, 0))
    train_s = time.perf_counter() - started
    print(f"{spec}: index step {index_s:.1f} s (recall@10 {info.recall_at_10} images, {info.text_recall_at_10} "
          f"text at {info.params}); training alone {train_s:.1f} s = {ratio(train_s, index_s)} of it "
          "(the most that reusing the old training could save)")
    assert index.ntotal == len(vectors)
    return {"spec": spec, "index_s": index_s, "train_s": train_s, "recall": info.recall_at_10,
            "text_recall": info.text_recall_at_10}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_incremental", description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="images in the collection before adding 1%%")
    parser.add_argument("--index-rows", default="100000", help="comma-separated sizes for the index step")
    args = parser.parse_args(argv)
    results = {"builds": builds(args.rows)}
    results["index"] = [index_step(int(n)) for n in args.index_rows.split(",") if n.strip()]
    return results


def _stages(stages: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in stages.items())


if __name__ == "__main__":
    main()
