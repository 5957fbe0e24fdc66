"""Issue 13, the part a CPU can check: the GPU path's tensor preprocessing
(scripts/gpu/preprocess.py) against the model's own CLIP processor, through the full-size
random-weight ViT-B/32 (target: mean cosine >= 0.999, min >= 0.99, top-10 overlap >= 0.97), on
Pillow-decoded images of many sizes; with the pixel differences, and both preprocessings'
speed on this CPU. The same code runs on the GPU in the GPU build (bench_gpu measures that).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import header, measure_load, ratio, verdict, vit_b32

BATCH = 32
# Photo shapes, portraits, panoramas, tall pages, small images (enlarged) and page scans.
SIZES = [(400, 300), (300, 400), (640, 480), (1024, 768), (500, 1400), (1600, 500), (180, 120),
         (1201, 1601), (2400, 1800), (333, 1000)]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_preprocess", description=__doc__)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--model", default=None, help="model folder (default: the random ViT-B/32)")
    args = parser.parse_args(argv)

    import torch

    from scripts.gpu.preprocess import ClipPreprocessing
    from search_core.encoder import Encoder, compare_embeddings
    from tests.fixtures.encodings import picture

    model = str(args.model or vit_b32())
    header(f"tensor preprocessing vs the model's CLIP processor, {args.images} images, ViT-B/32 on the CPU")
    encoder = Encoder.load(model, device="cpu", precision="fp32")
    pre = ClipPreprocessing.from_encoder(encoder)
    processor = encoder.model[0].processor.image_processor
    print(f"processor: {type(processor).__name__} (size {pre.shortest_edge}, crop {pre.crop}, {pre.resample}); "
          f"read from the model, as the build reads it")
    images = [picture(i, SIZES[i % len(SIZES)]) for i in range(args.images)]
    tensors = [torch.from_numpy(np.array(img)).permute(2, 0, 1) for img in images]
    chunks = [range(i, min(len(images), i + BATCH)) for i in range(0, len(images), BATCH)]

    with measure_load() as load:
        t = time.perf_counter()
        reference_inputs = [encoder.preprocess_images([images[i] for i in c]) for c in chunks]
        processor_rate = len(images) / (time.perf_counter() - t)
        t = time.perf_counter()
        our_inputs = [pre([tensors[i] for i in c]) for c in chunks]
        tensor_rate = len(images) / (time.perf_counter() - t)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    levels = torch.cat([((ours - ref["pixel_values"]) * std / pre.rescale).abs()
                        for ours, ref in zip(our_inputs, reference_inputs)])
    print(f"pixels: mean |diff| {levels.mean():.4f} levels, max {levels.max():.1f}, "
          f"share off by more than one level {(levels > 1.01).float().mean():.2e}")
    print(f"speed on this CPU: processor {processor_rate:.0f} images/s, tensor ops {tensor_rate:.0f} images/s "
          f"({ratio(tensor_rate, processor_rate)}; {load})")

    reference = np.concatenate([encoder.embed_preprocessed(f) for f in reference_inputs])
    ours = np.concatenate([encoder.embed_preprocessed({"pixel_values": px, "modality": "image"})
                           for px in our_inputs])
    fidelity = compare_embeddings(reference, ours)
    passes = fidelity.mean_cosine >= 0.999 and fidelity.min_cosine >= 0.99 and fidelity.top_k_overlap >= 0.97
    print(f"embeddings: mean cosine {fidelity.mean_cosine:.6f} (>= 0.999), min {fidelity.min_cosine:.6f} "
          f"(>= 0.99), top-10 overlap {fidelity.top_k_overlap:.3f} (>= 0.97): {verdict(passes)}")
    return {"mean_cosine": fidelity.mean_cosine, "min_cosine": fidelity.min_cosine,
            "top10_overlap": fidelity.top_k_overlap, "max_levels": float(levels.max()),
            "processor_images_per_s": processor_rate, "tensor_images_per_s": tensor_rate, "passes": passes}


if __name__ == "__main__":
    main()
