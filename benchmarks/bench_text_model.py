"""Issue #10 item 2: where a text model's alignment with the image model stops being usable.

Tiny random-weight students distilled from the tiny test CLIP (``tests/fixtures/tiny_text_model``)
at three widths, an unrelated model (random Dense layer) and a student of another CLIP are
measured on the shipped probe prompts: ``search_core.text_model.measure_alignment`` (mean cosine,
top-5) beside what a user sees, the overlap of each prompt's top 10 images with the top 10 of the
image model's own text vector. Then the cost of the alignment check at the real models' sizes
(a random-weight ViT-B/32 and a 6-layer DistilBERT): what `--text-model` adds to start-up.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import CACHE, header, vit_b32
from search_core.errors import TextModelMismatchError

TOP = 10


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def overlap(a: np.ndarray, b: np.ndarray, images: np.ndarray) -> float:
    """Mean share of the top TOP images two sets of query vectors (row for row) have in common."""
    ta = np.argsort(-(a @ images.T), axis=1)[:, :TOP]
    tb = np.argsort(-(b @ images.T), axis=1)[:, :TOP]
    return float(np.mean([len(set(x) & set(y)) / TOP for x, y in zip(ta.tolist(), tb.tolist())]))


def alignment_table(images_n: int) -> None:
    from sentence_transformers import SentenceTransformer

    from search_core.text_model import alignment_probes, measure_alignment
    from tests.fixtures.images import draw_image
    from tests.fixtures.tiny_clip import build_tiny_clip
    from tests.fixtures.tiny_text_model import PARALLEL, build_tiny_text_model

    header(f"text model alignment vs search agreement ({images_n} generated images, tiny CLIP)")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        clip_dir, other_dir = build_tiny_clip(d / "clip"), build_tiny_clip(d / "clip-other", seed=1)
        clip = SentenceTransformer(str(clip_dir), device="cpu")
        images = _unit(clip.encode([draw_image(10_000 + i) for i in range(images_n)]))
        probes = alignment_probes()
        reference = _unit(clip.encode(probes))
        english = [e for e, ts in PARALLEL.items() for _ in ts]
        translations = [t for ts in PARALLEL.values() for t in ts]
        english_ref = _unit(clip.encode(english))
        students = [
            ("distilled, width 768", {"clip_folder": clip_dir, "hidden": 768}),
            ("distilled, width 512", {"clip_folder": clip_dir, "hidden": 512}),
            ("distilled, width 256", {"clip_folder": clip_dir, "hidden": 256}),
            ("random Dense (unrelated model)", {"clip_folder": clip_dir, "fit": False}),
            ("distilled from another CLIP", {"clip_folder": other_dir, "hidden": 768}),
        ]
        print(f"{'model':<32} {'mean cos':>8} {'top-5':>6} {'top-10 overlap':>14} {'translations: cos':>18} "
              f"{'overlap':>8}  verdict")
        for i, (name, kwargs) in enumerate(students):
            folder = build_tiny_text_model(d / f"student-{i}", **kwargs)
            student = SentenceTransformer(str(folder), device="cpu")
            ours = _unit(student.encode(probes))
            a = measure_alignment(ours, reference)
            translated = _unit(student.encode(translations))
            t_cos = float(np.mean(np.sum(translated * english_ref, axis=1)))
            print(f"{name:<32} {a.mean_cosine:>8.2f} {a.top5:>6.2f} {overlap(ours, reference, images):>14.2f} "
                  f"{t_cos:>18.2f} {overlap(translated, english_ref, images):>8.2f}  "
                  f"{'accepted' if a.aligned else 'refused'}", flush=True)


def check_cost(repeats: int) -> None:
    """Seconds the alignment check adds at start-up with models of the real sizes."""
    from search_core.encoder import Encoder
    from search_core.text_model import TextModel
    from tests.fixtures.tiny_text_model import build_tiny_text_model

    header("alignment check cost at real sizes (random ViT-B/32 text tower, 6-layer DistilBERT-768)")
    clip_dir = vit_b32()
    student_dir = CACHE / "distilbert-6x768-random"
    if not (student_dir / "modules.json").is_file():
        print(f"building the random 6-layer DistilBERT in {student_dir} (once)", flush=True)
        build_tiny_text_model(student_dir, clip_dir, hidden=768, layers=6, fit=False)
    image_encoder = Encoder.load(str(clip_dir), device="cpu")
    times = []
    for _ in range(repeats):
        text_model = TextModel.load(str(student_dir), device="cpu")
        t = time.perf_counter()
        try:
            text_model.check_aligned(image_encoder)
            kind = "accepted"
        except TextModelMismatchError:   # random weights are refused: the cost is what is measured
            kind = "refused"
        times.append(time.perf_counter() - t)
    print(f"check_aligned on the shipped probes: {np.median(times):.2f} s median of {repeats} "
          f"({kind}, as random weights should be); a second collection on the same image "
          f"model: {_cached_cost(text_model, image_encoder) * 1000:.3f} ms (measured once per image model)")


def _cached_cost(text_model, image_encoder) -> float:
    t = time.perf_counter()
    with contextlib.suppress(TextModelMismatchError):
        text_model.check_aligned(image_encoder)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=500, help="generated images searched (default 500)")
    parser.add_argument("--repeats", type=int, default=3, help="timed alignment checks (default 3)")
    parser.add_argument("--no-cost", action="store_true", help="skip the real-size timing")
    args = parser.parse_args(argv)
    alignment_table(args.images)
    if not args.no_cost:
        check_cost(args.repeats)


if __name__ == "__main__":
    main()
