"""Issue 12: `imagesearch build --engine ray` against the local engine on this machine.

Same JPEGs (400x300, the seed's layout), same model (the random-weight ViT-B/32), same precision
rules; the whole build is timed (images/s end to end) and its embed stage (images/s of the stage
line). Ray runs with 1 and 2 workers on a local instance started here, once, before the Ray
builds; the local engine runs before and after them, and the ratios are against the mean of the two
(the machine is shared). Ray's fixed costs are reported apart:
- start: `ray.init()` of a local instance (and `ray.shutdown()`);
- per build: a Ray build of a handful of images minus a local build of the same, i.e. the workers'
  process start and model load, the precision probe and Ray Data's planning.
On one machine Ray has the same cores as the local engine and more moving parts, so the question
answered here is what it costs, not what it gains: that needs more machines (BENCHMARKS.md).
"oth" (other processes' share of the cores) counts Ray's own worker processes during Ray builds.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.bench_build import make_jpegs
from benchmarks.common import header, measure_load, vit_b32

FIXED_IMAGES = 8


def build(source: Path, out: Path, model: str, **engine) -> tuple[float, object]:
    from scripts.build import build_collection

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    summary = build_collection(str(source), out, model=model, device="cpu", progress=False, **engine)
    return time.perf_counter() - t, summary


def local_build(source: Path, out: Path, model: str, figures: dict, when: str) -> tuple[float, float]:
    """(images/s end to end, images/s of the embed stage) of the local engine, printed and kept."""
    with measure_load() as load:
        seconds, summary = build(source, out, model)
    rate = summary.rows / seconds
    print(f"local engine ({summary.precision}), {when}: {rate:.1f} images/s end to end, embed stage "
          f"{summary.images_per_second:.1f} images/s ({load})")
    figures[f"local_{when}"], figures[f"local_{when}_embed"] = rate, summary.images_per_second
    return rate, summary.images_per_second


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_ray", description=__doc__)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--model", default=None, help="model folder (default: the random ViT-B/32)")
    args = parser.parse_args(argv)
    try:
        import ray
    except ImportError:
        print("bench_ray: Ray is not installed (pip install '.[ray]'); nothing measured")
        return {}

    from scripts.ray_engine.cluster import quiet_core_logs
    from scripts.ray_engine.options import RayOptions
    from search_core.encoder import quiet_model_loading

    quiet_model_loading()

    model = str(args.model or vit_b32())
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    header(f"build on Ray vs the local engine, {args.images} JPEGs 400x300, ViT-B/32 on {os.cpu_count()} CPUs")
    work = Path(tempfile.mkdtemp(prefix="imagesearch-bench-ray-"))
    # Ray's session files in a short folder of their own (its socket paths must stay short).
    ray_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    out: dict = {}
    try:
        source = make_jpegs(work / "images", args.images)
        small = make_jpegs(work / "small", FIXED_IMAGES)
        build(small, work / "warm", model)          # imports and the page cache warm for everyone

        local = local_build(source, work / "local", model, out, "before")

        t = time.perf_counter()
        with quiet_core_logs():
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                     _temp_dir=str(ray_dir))
        start = time.perf_counter() - t
        print(f"Ray local instance start: {start:.1f} s")
        out["ray_start"] = start

        local_small, _ = build(small, work / "small-local", model)
        ray_small, _ = build(small, work / "small-ray", model, engine="ray", ray=RayOptions(workers=1))
        fixed = ray_small - local_small
        print(f"Ray fixed cost per build: {fixed:.1f} s ({FIXED_IMAGES} images: {ray_small:.1f} s on Ray, "
              f"{local_small:.1f} s locally)")
        out["ray_fixed"] = fixed

        rays = {}
        for workers in counts:
            with measure_load() as load:
                seconds, summary = build(source, work / f"ray{workers}", model, engine="ray",
                                         ray=RayOptions(workers=workers))
            rays[workers] = (summary.rows / seconds, summary.images_per_second, summary.precision, load)
        t = time.perf_counter()
        ray.shutdown()
        print(f"Ray local instance stop: {time.perf_counter() - t:.1f} s")

        # The baseline again, after Ray: on a shared machine the load moves between runs.
        after = local_build(source, work / "local", model, out, "after")
        base, base_embed = (local[0] + after[0]) / 2, (local[1] + after[1]) / 2
        print(f"local engine, mean of before and after: {base:.1f} images/s end to end, embed stage "
              f"{base_embed:.1f} images/s")
        for workers, (rate, embed, precision, load) in rays.items():
            print(f"ray, {workers} worker{'s' if workers > 1 else ''} ({precision}): {rate:.1f} images/s end to end "
                  f"({rate / base:.2f}x local), embed stage {embed:.1f} images/s ({embed / base_embed:.2f}x) ({load})")
            out[f"ray{workers}"], out[f"ray{workers}_embed"] = rate, embed
        return out
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(ray_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
