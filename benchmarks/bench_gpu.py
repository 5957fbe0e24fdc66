"""Issue 13 on a GPU machine, in one command with nothing to download:

    python -m benchmarks.bench_gpu

It writes its own collection of files (400x300 JPEGs at quality 90, with a share of PNGs and
EXIF-rotated JPEGs and a few files of every other kind, broken ones included), builds the real
ViT-B/32 configuration with random weights, and prints, all in one process on one GPU:
  (a) the seed's pipeline: ``load_dataset("imagefolder")`` + ``map(model.encode, batch_size=32)``, fp32;
  ours: files on disk to embeddings on the host through the GPU stream (nvJPEG, tensor
      preprocessing, fp16), and the whole ``imagesearch build --device cuda``;
  (b) the model alone: fp16, pixels already on the GPU, embeddings copied to the host;
images/s, ratios (targets: >= 10,000 images/s end to end, >= 35x the seed), GPU utilisation
(pynvml or nvidia-smi when present), where files were decoded, and the vector check against
the CPU/Pillow path with the same fp16 model (mean cosine >= 0.999, min >= 0.99, top-10
overlap >= 0.97), with the skipped files of both paths compared.

On a machine without CUDA and torchvision it prints one line saying so and exits with status 2.
``--cpu-dry-run`` runs the same code on the CPU with a Pillow stand-in for nvJPEG and small sizes
(a check of the script itself, its figures mean nothing). The run stops itself past --budget-s.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import header, machine, ratio, verdict, vit_b32

TARGET_IMAGES_PER_S = 10_000
TARGET_VS_SEED = 35.0
YEARS = (1850, 1870, 1890, 1900)
# Every kind of file a build meets, a few of each (on top of the JPEG / PNG / EXIF shares).
ODD_KINDS = ("grey-jpeg", "444-jpeg", "xmp-rotated-jpeg", "progressive-jpeg", "cmyk-jpeg", "rgb-coded-jpeg",
             "rgba-png", "16-bit-png", "webp", "gif", "tiff", "truncated-jpeg", "not-an-image")
_STARTED = [time.monotonic()]


def elapsed() -> float:
    return time.monotonic() - _STARTED[0]


def say(message: str) -> None:
    print(f"[{elapsed():6.1f} s] {message}", flush=True)


# --- What this machine has ---------------------------------------------------------------------

def gpu_missing() -> str | None:
    """Why this machine cannot run the GPU path, in a few words; None when it can."""
    try:
        import torch
    except ImportError as exc:
        return f"torch is not installed ({exc})"
    if not torch.cuda.is_available():
        return f"no CUDA device is available to torch {torch.__version__}"
    try:
        import datasets  # noqa: F401
        import sentence_transformers  # noqa: F401

        from scripts.gpu.nvjpeg import GpuDecodeUnavailable, nvjpeg_decoder
    except ImportError as exc:
        return f"the project's dependencies are not installed ({exc}; pip install -e .)"

    try:
        nvjpeg_decoder("cuda")
    except GpuDecodeUnavailable as exc:
        return str(exc)
    return None


def describe_gpu() -> str:
    import torch

    props = torch.cuda.get_device_properties(0)
    import torchvision

    return (f"{props.name}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, "
            f"torchvision {torchvision.__version__}, CUDA {torch.version.cuda}")


@dataclass
class Utilisation:
    """GPU utilisation samples over a with-block, and where they came from."""

    source: str = "none"
    samples: list[float] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.samples:
            return f"GPU utilisation not measured (source: {self.source})"
        return (f"GPU utilisation mean {np.mean(self.samples):.0f}%, max {max(self.samples):.0f}% "
                f"({len(self.samples)} samples, {self.source})")


def _utilisation_reader(index: int) -> tuple[str, Callable[[], float] | None, tuple[type[BaseException], ...]]:
    """pynvml when installed and working, else the nvidia-smi command, else nothing."""
    errors: tuple[type[BaseException], ...] = (OSError, ValueError, IndexError, subprocess.SubprocessError)
    try:
        import pynvml
    except ImportError:
        pynvml = None
    if pynvml is not None:
        try:
            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            return "pynvml", lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu), \
                errors + (pynvml.NVMLError,)
        except pynvml.NVMLError:
            pass
    if shutil.which("nvidia-smi"):
        def smi() -> float:
            out = subprocess.run(["nvidia-smi", f"--id={index}", "--query-gpu=utilization.gpu",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5,
                                 check=True)
            return float(out.stdout.strip().splitlines()[0])

        return "nvidia-smi", smi, errors
    return "none (no pynvml, no nvidia-smi)", None, errors


@contextmanager
def gpu_utilisation(enabled: bool, index: int = 0, interval: float = 0.1) -> Iterator[Utilisation]:
    """Sample the GPU's utilisation in a thread while the block runs; a failing sampler stops quietly."""
    if not enabled:
        yield Utilisation(source="no GPU")
        return
    source, read, errors = _utilisation_reader(index)
    result = Utilisation(source=source)
    stop = threading.Event()
    if source == "nvidia-smi":
        interval = max(interval, 0.25)

    def sample() -> None:
        while read is not None and not stop.is_set():
            try:
                result.samples.append(read())
            except errors:
                return
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join(timeout=10)


# --- Files ---------------------------------------------------------------------------------------

def plan(n: int, png_share: float, exif_share: float, odd_each: int, grey_share: float = 0.0) -> list[str]:
    """The kind of each file, interleaved as a real collection would be."""
    kinds = [k for k in ODD_KINDS for _ in range(odd_each)]
    kinds += ["png"] * round(n * png_share) + ["exif-rotated-jpeg"] * round(n * exif_share)
    kinds += ["grey-jpeg"] * round(n * grey_share)
    kinds += ["jpeg"] * max(0, n - len(kinds))
    rng = np.random.default_rng(0)
    return [kinds[i] for i in rng.permutation(len(kinds))]


def _write_one(job: tuple[int, str, str, tuple[int, int]]) -> None:
    from tests.fixtures.encodings import KINDS

    seed, kind, path, size = job
    Path(path).write_bytes(KINDS[kind](seed, size))


def write_files(root: Path, kinds: list[str], size: tuple[int, int], workers: int) -> list[Path]:
    from tests.fixtures.encodings import extension

    paths = [root / str(YEARS[i % len(YEARS)]) / f"{i:06d}_{kind}{extension(kind)}" for i, kind in enumerate(kinds)]
    for year in YEARS:
        (root / str(year)).mkdir(parents=True, exist_ok=True)
    jobs = [(10_000 + i, kind, str(path), size) for i, (kind, path) in enumerate(zip(kinds, paths))]
    if workers > 1:
        # spawn, not fork: this process already holds CUDA and torch's thread pools.
        with get_context("spawn").Pool(workers) as pool:
            pool.map(_write_one, jobs, chunksize=64)
    else:
        for job in jobs:
            _write_one(job)
    return paths


def seed_subset(paths: list[Path], kinds: list[str], root: Path, n: int) -> Path:
    """Hard links to the first n files the seed can read (its map stops at the first broken file)."""
    readable = [p for p, k in zip(paths, kinds) if k in ("jpeg", "png", "exif-rotated-jpeg")][:n]
    for p in readable:
        target = root / p.parent.name / p.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(p, target)
        except OSError:
            shutil.copyfile(p, target)
    return root


def batches_of(paths: list[Path], size: int, epochs: int = 1) -> Iterator[tuple[list[int], Callable]]:
    items = [{"path": str(p), "bytes": None} for p in paths]
    for _ in range(epochs):
        for start in range(0, len(items), size):
            chunk = items[start:start + size]
            yield list(range(start, start + len(chunk))), (lambda chunk=chunk: chunk)


# --- The runs ------------------------------------------------------------------------------------

def sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def model_alone(encoder: Any, batch: int, seconds: float, cuda: bool) -> float:
    import torch

    from scripts.gpu.preprocess import ClipPreprocessing

    height, width = ClipPreprocessing.from_encoder(encoder).crop
    dtype = next(encoder.model.parameters()).dtype
    pixels = torch.randn(batch, 3, height, width, device=encoder.device, dtype=dtype)
    features = {"pixel_values": pixels, "modality": "image"}
    for _ in range(3):
        encoder.embed_preprocessed(features)
    sync(cuda)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or done == 0:
        encoder.embed_preprocessed(features)
        done += batch
    sync(cuda)
    return done / (time.perf_counter() - started)


def ours(encoder: Any, paths: list[Path], *, batch: int, epochs: int, workers: int, decode: Any,
         cuda: bool, stats: Any = None) -> tuple[float, list]:
    from scripts.gpu.stream import gpu_embed_stream

    sync(cuda)
    started = time.perf_counter()
    out = list(gpu_embed_stream(encoder, batches_of(paths, batch, epochs), workers=workers, decode=decode,
                                stats=stats))
    sync(cuda)
    seconds = time.perf_counter() - started
    return len(paths) * epochs / seconds, out[-(len(out) // epochs):] if epochs > 1 else out


def seed_pipeline(source: Path, model_path: str, device: str, cache: Path) -> float:
    """The seed blog's pipeline, literally, on this device."""
    from datasets import load_dataset
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device=device)
    started = time.perf_counter()
    dataset = load_dataset("imagefolder", data_dir=str(source), cache_dir=str(cache))["train"]
    with_embeddings = dataset.map(lambda example: {"embeddings": model.encode(example["image"], device=device)},
                                  batched=True, batch_size=32)
    sync(device.startswith("cuda"))
    seconds = time.perf_counter() - started
    assert len(with_embeddings) == len(dataset)
    return len(dataset) / seconds


def flatten(out: list) -> tuple[list[int], list, np.ndarray]:
    positions = [p for b in out for p in b.positions]
    skipped = [s for b in out for s in b.skipped]
    vectors = [b.vectors for b in out if len(b.positions)]
    return positions, skipped, np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32)


def agreement(encoder: Any, paths: list[Path], kinds: list[str], ours_out: list, *, batch: int,
              workers: int) -> dict:
    """Ours against the CPU/Pillow path (Pillow decode, the model's own processor, same model)."""
    from scripts.embedding import embed_stream
    from search_core.encoder import compare_embeddings

    ref_positions, ref_skipped, ref_vectors = flatten(list(embed_stream(encoder, batches_of(paths, batch),
                                                                        workers=workers)))
    positions, skipped, vectors = flatten(ours_out)
    same_rows = positions == ref_positions and skipped == ref_skipped
    result: dict[str, Any] = {"same_rows_and_skips": same_rows, "skipped": len(skipped),
                              "skipped_reasons": Counter(r for _, r in skipped)}
    if not same_rows or len(positions) < 2:
        return result
    fidelity = compare_embeddings(ref_vectors, vectors)
    cosines = np.einsum("ij,ij->i", ref_vectors, vectors)
    by_kind: dict[str, float] = {}
    for p, c in zip(positions, cosines):
        by_kind[kinds[p]] = min(by_kind.get(kinds[p], 1.0), float(c))
    result.update(mean_cosine=fidelity.mean_cosine, min_cosine=fidelity.min_cosine,
                  top10_overlap=fidelity.top_k_overlap, min_cosine_by_kind=by_kind,
                  passes=fidelity.mean_cosine >= 0.999 and fidelity.min_cosine >= 0.99
                  and fidelity.top_k_overlap >= 0.97)
    return result


def pixel_check(paths: list[Path], kinds: list[str], decode: Any, n: int = 16) -> str:
    """nvJPEG's pixels against Pillow's on plain JPEGs, in 8-bit levels."""
    from scripts.decode import decode as pillow_decode

    files = [p for p, k in zip(paths, kinds) if k == "jpeg"][:n]
    datas = [p.read_bytes() for p in files]
    diffs = [np.abs(t.cpu().numpy().astype(int) - np.array(pillow_decode(d)).transpose(2, 0, 1).astype(int))
             for t, d in zip(decode(datas), datas)]
    return (f"decoded pixels vs Pillow on {len(files)} JPEGs: mean |diff| {np.mean([d.mean() for d in diffs]):.2f} "
            f"levels, max {max(int(d.max()) for d in diffs)}")


def full_build(source: Path, out: Path, model: str, device: str) -> Any:
    from scripts.build import build_collection

    return build_collection(str(source), out, model=model, device=device, progress=False)


# --- The stand-in for a dry run on a CPU ---------------------------------------------------------

def pillow_stand_in(datas: list[bytes]) -> list:
    """nvJPEG's job done by Pillow, failing the batch on a non-JPEG as nvJPEG does (dry run only)."""
    import torch
    from PIL import Image

    out = []
    for data in datas:
        img = Image.open(io.BytesIO(data))
        if img.format != "JPEG":
            raise RuntimeError("Error while decoding JPEG images: not a JPEG")
        out.append(torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1))
    return out


# --- Main ----------------------------------------------------------------------------------------

def watchdog(budget_s: float) -> threading.Timer:
    """Bounded runtime whatever happens: past the budget (plus a grace minute) the process ends."""
    def stop() -> None:
        print(f"bench_gpu: stopped after {budget_s + 60:.0f} s, over its time budget", flush=True)
        os._exit(3)

    timer = threading.Timer(budget_s + 60, stop)
    timer.daemon = True
    timer.start()
    return timer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16384, help="files written and embedded (default 16384)")
    parser.add_argument("--png-share", type=float, default=0.05)
    parser.add_argument("--exif-share", type=float, default=0.05)
    parser.add_argument("--grey-share", type=float, default=0.0,
                        help="share of greyscale JPEGs (scanned pages often are; default 0)")
    parser.add_argument("--odd-each", type=int, default=8, help="files of each other kind (default 8)")
    parser.add_argument("--size", default="400x300", help="JPEG size (default 400x300)")
    parser.add_argument("--batch", type=int, default=256, help="images per batch (the build's CUDA default)")
    parser.add_argument("--epochs", type=int, default=2, help="passes over the files in one timed run")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of ours (the best is reported)")
    parser.add_argument("--seed-images", type=int, default=2048, help="files the seed pipeline embeds")
    parser.add_argument("--agree-images", type=int, default=4096, help="files in the vector check")
    parser.add_argument("--no-build", action="store_true", help="skip the whole `imagesearch build` run")
    parser.add_argument("--model", default=None, help="model folder (default: the random-weight ViT-B/32)")
    parser.add_argument("--workers", type=int, default=None, help="CPU decoding threads (default: cores, at most 16)")
    parser.add_argument("--budget-s", type=float, default=420, help="stop starting new parts after this (default 420)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="check this script on a CPU with a Pillow stand-in for nvJPEG (figures meaningless)")
    args = parser.parse_args(argv)

    if not args.cpu_dry_run:
        missing = gpu_missing()
        if missing:
            print(f"bench_gpu needs a CUDA GPU and torchvision built with CUDA (nvJPEG); here: {missing}.")
            return 2
    _STARTED[0] = time.monotonic()
    timer = watchdog(args.budget_s)
    cuda = not args.cpu_dry_run
    device = "cuda" if cuda else "cpu"
    workers = args.workers or min(16, os.cpu_count() or 1)
    width, height = (int(x) for x in args.size.lower().split("x"))
    results: dict[str, Any] = {"machine": machine(), "device": device}

    def time_left() -> float:
        return args.budget_s - elapsed()

    # Libraries first: whichever pipeline ran first would otherwise pay their import.
    import datasets
    import sentence_transformers  # noqa: F401
    import torch

    from scripts.gpu.nvjpeg import nvjpeg_decoder
    from scripts.gpu.stream import StreamStats
    from search_core.encoder import Encoder, quiet_model_loading

    quiet_model_loading()
    datasets.disable_progress_bars()
    header("GPU build (issue 13)" + (" -- CPU DRY RUN, figures meaningless" if not cuda else ""))
    print(f"machine: {results['machine']}")
    if cuda:
        results["gpu"] = describe_gpu()
        print(f"GPU: {results['gpu']}")
    work = Path(tempfile.mkdtemp(prefix="imagesearch-bench-gpu-"))
    try:
        kinds = plan(args.images, args.png_share, args.exif_share, args.odd_each, args.grey_share)
        say(f"writing {len(kinds)} files ({Counter(kinds).most_common(3)} ...) with {workers} processes")
        paths = write_files(work / "images", kinds, (width, height), workers)
        size_mib = sum(p.stat().st_size for p in paths) / 2**20
        say(f"wrote {size_mib:.0f} MiB, mean {size_mib * 1024 / len(paths):.1f} KiB a file (in the page cache now)")

        model = str(args.model or vit_b32())
        encoder = Encoder.load(model, device=device, precision="fp16" if cuda else "fp32")
        decode = nvjpeg_decoder(device) if cuda else pillow_stand_in
        say(f"model {model} on {device}, images in {encoder.precision}")

        limit = model_alone(encoder, args.batch, 3.0 if cuda else 0.5, cuda)
        results["model_alone"] = limit
        with gpu_utilisation(cuda) as util:
            model_alone(encoder, args.batch, 2.0 if cuda else 0.2, cuda)
        say(f"(b) model alone, {encoder.precision}, batch {args.batch}, pixels on the device, vectors to the "
            f"host: {limit:,.0f} images/s; {util}")

        warm = paths[:min(len(paths), 4 * args.batch)]
        ours(encoder, warm, batch=args.batch, epochs=1, workers=workers, decode=decode, cuda=cuda)
        say("ours: warmed up (nvJPEG, CUDA kernels, threads)")
        runs, last_out, stats = [], [], StreamStats()
        for r in range(max(1, args.repeats)):
            if r and time_left() < 120:
                say("ours: skipping further repeats, time budget")
                break
            stats = StreamStats()
            with gpu_utilisation(cuda) as util:
                rate, last_out = ours(encoder, paths, batch=args.batch, epochs=args.epochs, workers=workers,
                                      decode=decode, cuda=cuda, stats=stats)
            runs.append(rate)
            say(f"ours, files on disk -> embeddings on the host: {rate:,.0f} images/s "
                f"({len(paths)} files x {args.epochs} epochs); {util}")
            results.setdefault("gpu_utilisation", []).append(str(util))
        best = max(runs)
        results.update(ours=best, ours_runs=runs, batch_size=stats.batch_size, halvings=stats.halvings,
                       decoded=str(stats.counts))
        print(f"  decoding (last run, all epochs): {stats.counts}")
        print(f"  batch: {args.batch} images read at once, up to {stats.batch_size} a GPU step "
              f"(from free GPU memory); out-of-memory halvings: {stats.halvings}")
        if cuda:
            print(f"  {pixel_check(paths, kinds, decode)}")

        chosen = _agreement_sample(kinds, args.agree_images)
        agree_paths, agree_kinds = [paths[i] for i in chosen], [kinds[i] for i in chosen]
        if len(chosen) < len(paths):
            _, agree_out = ours(encoder, agree_paths, batch=args.batch, epochs=1, workers=workers, decode=decode,
                                cuda=cuda)
        else:
            agree_out = last_out
        check = agreement(encoder, agree_paths, agree_kinds, agree_out, batch=args.batch, workers=workers)
        results["agreement"] = {k: (dict(v) if isinstance(v, Counter) else v) for k, v in check.items()}
        if "mean_cosine" in check:
            say(f"vectors vs the CPU/Pillow path, same {encoder.precision} model, {len(agree_paths)} files: mean cosine "
                f"{check['mean_cosine']:.5f} (>= 0.999), min {check['min_cosine']:.5f} (>= 0.99), top-10 overlap "
                f"{check['top10_overlap']:.3f} (>= 0.97) -> {'PASS' if check['passes'] else 'FAIL'}")
            print("  min cosine by kind: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(check["min_cosine_by_kind"].items())))
        else:
            say("vectors vs the CPU/Pillow path: FAIL, the two paths embedded or skipped different files")
        print(f"  same rows embedded and same files skipped with the same reasons: "
              f"{check['same_rows_and_skips']} ({check['skipped']} skipped: {dict(check['skipped_reasons'])})")

        if time_left() > 90:
            seed_n = min(args.seed_images, len(paths))
            seed_root = seed_subset(paths, kinds, work / "seed", seed_n)
            seed = seed_pipeline(seed_root, model, device, work / "hf-cache")
            results["seed"] = seed
            say(f"(a) seed pipeline (imagefolder + map(model.encode, batch_size=32), fp32), {seed_n} files: "
                f"{seed:,.1f} images/s")
        else:
            say("(a) seed pipeline: skipped, time budget")

        if not args.no_build and time_left() > 120:
            del encoder
            if cuda:
                torch.cuda.empty_cache()
            started = time.perf_counter()
            summary = full_build(work / "images", work / "collection", model, device)
            wall = time.perf_counter() - started
            results.update(build_embedding_stage=summary.images_per_second, build_wall=summary.source_rows / wall)
            say(f"ours, `imagesearch build --device {device}` end to end (model load, scan, embed, index, write): "
                f"{summary.source_rows / wall:,.0f} images/s over {wall:.1f} s; embedding stage "
                f"{summary.images_per_second:,.0f} images/s; {summary.rows} rows, {len(summary.skipped)} skipped")
        elif not args.no_build:
            say("whole build: skipped, time budget")

        header("summary")
        print(f"ours end to end (files -> host embeddings): {best:,.0f} images/s "
              f"(target >= {TARGET_IMAGES_PER_S:,}: {verdict(best >= TARGET_IMAGES_PER_S)})")
        if "seed" in results:
            print(f"ours / (a) seed: {ratio(best, results['seed'])} (target >= {TARGET_VS_SEED:.0f}x: "
                  f"{verdict(best >= TARGET_VS_SEED * results['seed'])})")
        print(f"ours / (b) model alone: {best / limit:.0%}")
        if "passes" in check:
            print(f"vector check: {'PASS' if check['passes'] else 'FAIL'}")
        results["elapsed_s"] = elapsed()
        print(f"bench_gpu took {results['elapsed_s']:.0f} s")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
        return 0
    finally:
        timer.cancel()
        shutil.rmtree(work, ignore_errors=True)


def _agreement_sample(kinds: list[str], n: int) -> list[int]:
    """Indices of every file of the rarer kinds, then plain JPEGs up to n files, in order."""
    if n >= len(kinds):
        return list(range(len(kinds)))
    rare = [i for i, k in enumerate(kinds) if k != "jpeg"]
    plain = [i for i, k in enumerate(kinds) if k == "jpeg"][:max(0, n - len(rare))]
    return sorted(rare + plain)


if __name__ == "__main__":
    sys.exit(main())
