"""Item 3 (and the precision table behind Encoder's `auto`): query encoding latency on the CPU
with a random-weight ViT-B/32, per precision, against fp32 in the same process, with the
fidelity check (mean cosine >= 0.99 and top-10 overlap >= 0.95 against fp32).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import header, measure_load, time_calls, verdict, vit_b32

PROMPTS = ["a steam engine", "a portrait of a woman in a hat", "a map of London", "a ship at sea in a storm",
           "a castle on a hill", "botanical drawing of a flower", "a horse and cart", "an ornate capital letter",
           "a church interior", "a crowd in a market square"]
TEXT_TARGET_MS = 20.0


def _images(n: int, seed: int = 0) -> list:
    from tests.fixtures.images import draw_image

    return [draw_image(seed * 100_000 + i, (400, 300)) for i in range(n)]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_encode", description=__doc__)
    parser.add_argument("--precisions", default="fp32,bf16,int8,auto")
    parser.add_argument("--queries", type=int, default=50, help="text queries timed per precision")
    parser.add_argument("--image-queries", type=int, default=20)
    parser.add_argument("--fidelity-images", type=int, default=128)
    parser.add_argument("--model", default=None, help="model folder (default: the random ViT-B/32)")
    args = parser.parse_args(argv)

    import torch

    from search_core.encoder import Encoder, compare_embeddings

    model = str(args.model or vit_b32())
    header("query encoding and precision paths (ViT-B/32, CPU)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"capability {torch.backends.cpu.get_cpu_capability()}")
    fid_images = _images(args.fidelity_images, seed=7)
    prompts = [f"{p} ({i})" if i >= len(PROMPTS) else p for i, p in
               ((i, PROMPTS[i % len(PROMPTS)]) for i in range(max(args.queries, 40)))]
    reference: dict[str, np.ndarray] = {}
    results: dict[str, dict] = {}
    for name in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        enc = Encoder.load(model, device="cpu", precision=name)
        label = f"{name} (images {enc.precision}, text {enc.text_precision})" if name == "auto" else name
        text = time_calls(lambda i, enc=enc: enc.encode_text([prompts[i % len(prompts)]]), args.queries)
        qimgs = _images(args.image_queries, seed=3)
        image = time_calls(lambda i, enc=enc, qimgs=qimgs: enc.encode_images([qimgs[i]]), args.image_queries)
        feats = enc.preprocess_images(fid_images[:32])
        enc.embed_preprocessed(feats)
        with measure_load() as load:
            t = time.perf_counter()
            for _ in range(2):
                enc.embed_preprocessed(feats)
            ips = 64 / (time.perf_counter() - t)
        img_vecs = np.concatenate([enc.embed_preprocessed(enc.preprocess_images(fid_images[i:i + 32]))
                                   for i in range(0, len(fid_images), 32)])
        txt_vecs = enc.encode_text(prompts)
        if not reference:
            reference = {"img": img_vecs, "txt": txt_vecs}
        fi = compare_embeddings(reference["img"], img_vecs)
        ft = compare_embeddings(reference["txt"], txt_vecs)
        # What a user sees: text queries in this precision against an fp32-built collection.
        t2i = _overlap(reference["txt"] @ reference["img"].T, txt_vecs @ reference["img"].T)
        print(f"{label}:")
        print(f"  text query    {text}  (target p50 <= {TEXT_TARGET_MS:.0f} ms: {verdict(text.p50 <= TEXT_TARGET_MS)})")
        print(f"  image query   {image}")
        print(f"  model only, batch 32 preprocessed: {ips:.1f} images/s ({load})")
        print(f"  fidelity vs fp32: images cos {fi.mean_cosine:.5f} (min {fi.min_cosine:.5f}), top-10 overlap "
              f"{fi.top_k_overlap:.3f} -> {'PASS' if fi.passes else 'FAIL'}; text cos {ft.mean_cosine:.5f}, "
              f"top-10 {ft.top_k_overlap:.3f} -> {'PASS' if ft.passes else 'FAIL'}; "
              f"text->image top-10 vs fp32 collection {t2i:.3f}")
        results[name] = {"text_p50": text.p50, "text_p95": text.p95, "image_p50": image.p50,
                         "image_p95": image.p95, "images_per_s": ips, "img_fidelity": fi, "txt_fidelity": ft,
                         "t2i_overlap": t2i}
    if "fp32" in results:
        for name, r in results.items():
            if name != "fp32":
                print(f"{name} vs fp32: text p50 {results['fp32']['text_p50'] / r['text_p50']:.2f}x faster, "
                      f"images/s {r['images_per_s'] / results['fp32']['images_per_s']:.2f}x")
    return results


def _overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    ta = np.argsort(-a, axis=1)[:, :k]
    tb = np.argsort(-b, axis=1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(ta.tolist(), tb.tolist())]))


if __name__ == "__main__":
    main()
