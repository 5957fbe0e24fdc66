"""Item 1: build throughput of `imagesearch build` on a few hundred 400x300 JPEGs, against
(a) the seed's own pipeline on the same images and model, run literally:
    load_dataset("imagefolder") then map(lambda ex: {"embeddings": model.encode(ex["image"])},
    batched=True, batch_size=32)
and (b) the model alone on already-preprocessed tensors (the limit), at fp32 and at the precision
the build used. All in one process, on the random-weight ViT-B/32.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import header, measure_load, ratio, verdict, vit_b32

BATCH = 32


def make_jpegs(root: Path, n: int) -> Path:
    """n distinct 400x300 JPEGs in the seed's imagefolder layout (year folders, BL file names)."""
    from tests.fixtures.images import bl_file_name, draw_image

    for i in range(n):
        year = (1850, 1870, 1890, 1900)[i % 4]
        folder = root / str(year)
        folder.mkdir(parents=True, exist_ok=True)
        draw_image(10_000 + i, (400, 300)).save(folder / bl_file_name(400_000 + i, 0, i, 1, "Bench", year),
                                                "JPEG", quality=90)
    return root


def seed_pipeline(source: Path, model_path: str, cache: Path) -> tuple[float, str]:
    """The seed blog's pipeline, literally (its `device='cuda'` dropped: there is no GPU here)."""
    from datasets import load_dataset
    from sentence_transformers import SentenceTransformer

    with measure_load() as load:
        t = time.perf_counter()
        model = SentenceTransformer(model_path)
        dataset = load_dataset("imagefolder", data_dir=str(source), cache_dir=str(cache))["train"]
        ds_with_embeddings = dataset.map(lambda example: {"embeddings": model.encode(example["image"])},
                                         batched=True, batch_size=BATCH)
        seconds = time.perf_counter() - t
    assert len(ds_with_embeddings) == len(dataset)
    return len(dataset) / seconds, str(load)


def model_only(model_path: str, precision: str, source: Path, n: int) -> tuple[float, str]:
    """The model alone on preprocessed batches: what no pipeline can beat at this precision."""
    from PIL import Image

    from search_core.encoder import Encoder

    enc = Encoder.load(model_path, device="cpu", precision=precision)
    files = sorted(source.rglob("*.jpg"))[:n]
    batches = [enc.preprocess_images([Image.open(f).convert("RGB") for f in files[i:i + BATCH]])
               for i in range(0, len(files), BATCH)]
    enc.embed_preprocessed(batches[0])  # warm-up
    with measure_load() as load:
        t = time.perf_counter()
        for b in batches:
            enc.embed_preprocessed(b)
        seconds = time.perf_counter() - t
    return len(files) / seconds, str(load)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_build", description=__doc__)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--precision", default="auto", help="the build's --precision")
    parser.add_argument("--no-seed", action="store_true")
    parser.add_argument("--model", default=None, help="model folder (default: the random ViT-B/32)")
    args = parser.parse_args(argv)

    # Import both pipelines' libraries before timing either: whichever ran first would otherwise
    # pay ~4 s of imports (sentence-transformers, transformers, datasets) that the other skips.
    import datasets  # noqa: F401
    import sentence_transformers  # noqa: F401
    from transformers import CLIPModel  # noqa: F401

    from scripts.build import build_collection

    model = str(args.model or vit_b32())
    header(f"build throughput, {args.images} JPEGs 400x300, ViT-B/32 on the CPU")
    work = Path(tempfile.mkdtemp(prefix="imagesearch-bench-build-"))
    try:
        source = make_jpegs(work / "images", args.images)
        with measure_load() as load:
            t = time.perf_counter()
            summary = build_collection(str(source), work / "collection", model=model, device="cpu",
                                       precision=args.precision, progress=False)
            ours = summary.rows / (time.perf_counter() - t)
        print(f"ours: imagesearch build ({summary.precision}, index {summary.index.spec}): {ours:.1f} images/s "
              f"end to end incl. model load, index and write; embedding stage {summary.images_per_second:.1f} "
              f"images/s ({load})")
        limit, limit_load = model_only(model, summary.precision, source, args.images)
        print(f"(b) model only, {summary.precision}, preprocessed batches of {BATCH}: {limit:.1f} images/s ({limit_load})")
        fp32, fp32_load = (limit, limit_load) if summary.precision == "fp32" else model_only(model, "fp32", source,
                                                                                             args.images)
        print(f"(b) model only, fp32: {fp32:.1f} images/s ({fp32_load})")
        out = {"ours": ours, "limit": limit, "fp32_limit": fp32, "precision": summary.precision}
        share = ours / limit
        print(f"ours / (b) at {summary.precision}: {share:.0%} end to end (target >= 90%: "
              f"{verdict(share >= 0.9)}); embedding stage / (b): {summary.images_per_second / limit:.0%} "
              f"(the rest is ~1 s of model load, folder scan and writing, fixed per build)")
        out["embedding_stage"] = summary.images_per_second
        if not args.no_seed:
            seed, seed_load = seed_pipeline(source, model, work / "hf-cache")
            print(f"(a) seed pipeline (load_dataset imagefolder + map(model.encode), fp32): {seed:.1f} images/s "
                  f"({seed_load})")
            print(f"ours / (a): {ratio(ours, seed)} (target >= 2x: {verdict(ours >= 2 * seed)}); "
                  f"seed / (b) fp32: {seed / fp32:.0%}")
            out["seed"] = seed
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
