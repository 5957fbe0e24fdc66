"""`imagesearch review` at scale: 100 prompts on a 1M-row collection, end to end (target < 60 s).

The collection is bench_search's synthetic 1M rows (its embeddings and index, linked, not copied)
with a dataset of its own: file names, years, titles, and images referenced by path to a pool of
realistic 600x450 JPEGs (1M stored copies would be ~60 GB), and a manifest naming the
random-weight ViT-B/32, so the review loads and runs that model exactly as it would the real one.
Hits are random rows for random-weight text vectors, so thumbnails are rarely shared between
prompts here: the row cache saves less than on a real collection, where prompts share hits.

Baseline, in the same process: the same prompts done the obvious way: each encoded on its own,
each hit's image decoded and written per hit (no cache by row, no threads), as a loop around
`imagesearch search --sheet` would.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import CACHE, header, measure_load, mib, ratio, verdict, vit_b32

TARGET_S = 60.0
POOL = 1000                 # distinct image files the rows point at
POOL_SIZE = (600, 450)
PROMPTS = 100
TERMS = 40                  # a realistic moderation configuration
CONCEPTS = 12


def review_collection(n: int, rebuild: bool = False) -> Path:
    """bench_search's synthetic collection of n rows, given images, titles and the ViT-B/32 as model."""
    from benchmarks.synthetic import synthetic_collection
    from search_core import layout
    from search_core.encoder import Encoder

    syn = synthetic_collection(n, CACHE / f"synthetic-{n}")
    if syn.build_s is not None:
        print(f"built the synthetic collection with the build's index code in {syn.build_s:.0f} s")
    folder = CACHE / f"review-{n}"
    if (folder / layout.MANIFEST).is_file() and not rebuild:
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started = time.perf_counter()
    pool = _image_pool(CACHE / "review-image-pool")
    for name in (layout.EMBEDDINGS, layout.INDEX):
        (tmp / name).symlink_to(syn.path / name)
    _write_dataset(syn.path / layout.DATASET_DIR, tmp / layout.DATASET_DIR, pool)
    model = str(vit_b32())
    probe = Encoder.load(model, device="cpu", precision="auto").encode_text([layout.MODEL_PROBE_TEXT])[0]
    raw = json.loads((syn.path / layout.MANIFEST).read_text())
    raw.update(model=model, model_probe=[float(x) for x in probe], source="benchmarks.bench_review")
    (tmp / layout.MANIFEST).write_text(json.dumps(raw))
    tmp.rename(folder)
    print(f"built the review collection ({n:,} rows, {POOL} pooled images) in {time.perf_counter() - started:.0f} s")
    return folder


def _image_pool(folder: Path) -> list[str]:
    """POOL distinct engraving-sized JPEGs (shapes over grain, ~30-60 KB each), made once."""
    from PIL import Image

    from tests.fixtures.images import draw_image

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:05d}.jpg" for i in range(POOL)]
    for i, path in enumerate(paths):
        if not path.is_file():
            img = draw_image(50_000 + i, POOL_SIZE)
            grain = Image.effect_noise(POOL_SIZE, 40).convert("RGB")
            Image.blend(img, grain, 0.25).save(path, "JPEG", quality=88)
    return [str(p) for p in paths]


def _write_dataset(source: Path, out: Path, pool: list[str]) -> None:
    """The synthetic rows' names and years, plus a title and an image path per row.

    The image column is a plain {bytes, path} struct: datasets embeds files named by an Image
    column when saving, and a million copies is what this avoids. Collection.image reads it as an
    undecoded Image column either way.
    """
    import pyarrow as pa
    from datasets import Dataset, load_from_disk

    rows = load_from_disk(str(source)).data.table
    n = rows.num_rows
    index = np.arange(n) % len(pool)
    images = pa.StructArray.from_arrays(
        [pa.nulls(n, pa.binary()), pa.array(np.asarray(pool, dtype=object)[index], pa.string())],
        names=["bytes", "path"])
    titles = pa.array(np.asarray([f"Synthetic book {i}" for i in range(997)], dtype=object)[np.arange(n) % 997],
                      pa.string())
    table = pa.table({"image": images, "file_name": rows.column("file_name"), "year": rows.column("year"),
                      "title": titles})
    Dataset(table).save_to_disk(str(out))


def prompts_file(folder: Path) -> Path:
    """The default review set, topped up to PROMPTS with the build's probe prompts (`+FILE` adds)."""
    from review.prompts import default_probes
    from search_core.probes import load_probe_prompts

    have = {p.text.casefold() for p in default_probes().probes}
    extra = [p for p in load_probe_prompts() if p.casefold() not in have][:PROMPTS - len(have)]
    path = folder / "prompts.txt"
    path.write_text("[Bench]\n" + "".join(f"extra: {p}\n" for p in extra), encoding="utf-8")
    return path


def moderation_files(folder: Path) -> tuple[Path, Path]:
    blocklist, concepts = folder / "blocklist.txt", folder / "concepts.txt"
    blocklist.write_text("".join(f"blockedterm{i}\n" for i in range(TERMS)), encoding="utf-8")
    concepts.write_text("".join(f"category{i % 4}: a blocked concept number {i}\n" for i in range(CONCEPTS)),
                        encoding="utf-8")
    return blocklist, concepts


def baseline(collection: Path, prompts: list[str], k: int, out: Path) -> float:
    """One prompt at a time; every hit decoded and written per hit, on one thread."""
    from review.pictures import FULL_MAX_SIDE, THUMB_SIDE
    from search_core.encoder import Encoder
    from search_core.search import SearchService

    started = time.perf_counter()
    service = SearchService.open(collection)
    assert isinstance(service.encoder, Encoder)
    out.mkdir(parents=True, exist_ok=True)
    for i, prompt in enumerate(prompts):
        for hit in service.search(prompt, k=k).hits:
            image = service.collection.image(hit.row)
            image.thumbnail((FULL_MAX_SIDE, FULL_MAX_SIDE))
            image.save(out / f"{i}-{hit.rank}.jpg", "JPEG", quality=90)
            image.thumbnail((THUMB_SIDE, THUMB_SIDE))
            image.save(out / f"{i}-{hit.rank}.t.jpg", "JPEG", quality=80)
    return time.perf_counter() - started


def worst_case_images(collection: Path, rows: int, out: Path) -> float:
    """The images stage for `rows` distinct random rows: what a review costs when no two hits
    share a row (random-weight text vectors here share many, real prompts share some)."""
    from review.pictures import write_pictures
    from search_core.collection import Collection

    opened = Collection.open(collection)
    chosen = np.random.default_rng(0).choice(opened.rows, size=rows, replace=False)
    started = time.perf_counter()
    write_pictures(opened, chosen.tolist(), out)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_review", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("-k", type=int, default=12)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached review collection")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args(argv)
    header(f"review: {PROMPTS} prompts, top {args.k}, on {args.rows:,} rows")

    from review.prompts import load_probes
    from review.report import ReviewOptions, write_review
    from search_core.encoder import quiet_model_loading

    quiet_model_loading()
    collection = review_collection(args.rows, rebuild=args.rebuild)
    work = Path(tempfile.mkdtemp(prefix="bench-review-", dir=CACHE))
    try:
        prompts = prompts_file(work)
        spec = f"+{prompts}"
        n_prompts = len(load_probes(spec).probes)
        blocklist, concepts = moderation_files(work)
        out = work / "report"
        with measure_load() as load:
            t = time.perf_counter()
            summary = write_review(ReviewOptions(collection=collection, out=out, prompts=spec, blocklist=blocklist,
                                                 concepts=concepts, k=args.k), progress=lambda _: None)
            ours = time.perf_counter() - t
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items())
        print(f"ours: {ours:.1f} s for {n_prompts} prompts, {summary.images} distinct rows written "
              f"({stages}; {load})  (target < {TARGET_S:.0f} s: {verdict(ours < TARGET_S)})")
        page = (out / "index.html").stat().st_size
        thumbs = sum(p.stat().st_size for p in (out / "img").glob("*.t.jpg"))
        fulls = sum(p.stat().st_size for p in (out / "img").glob("*.jpg")) - thumbs
        print(f"page weight: index.html {mib(page)} + thumbnails {mib(thumbs)} (lazy-loaded); "
              f"full views behind links {mib(fulls)}")
        result = {"seconds": ours, "prompts": n_prompts, "rows_written": summary.images, **summary.seconds,
                  "page_bytes": page, "thumb_bytes": thumbs}
        worst = worst_case_images(collection, n_prompts * args.k, work / "worst")
        projected = ours - summary.seconds["images"] + worst
        print(f"worst case, every hit a different row: {n_prompts * args.k} rows written in {worst:.1f} s; "
              f"projected total {projected:.1f} s (target < {TARGET_S:.0f} s: {verdict(projected < TARGET_S)})")
        result.update(worst_images=worst, worst_total=projected)
        if not args.no_baseline:
            texts = [p.text for p in load_probes(spec).probes]
            with measure_load() as load:
                base = baseline(collection, texts, args.k, work / "baseline")
            print(f"baseline (one prompt at a time, every hit written, one thread): {base:.1f} s ({load}); "
                  f"ours is {ratio(base, ours)} faster")
            result["baseline_seconds"] = base
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
