"""Decode a batch on the GPU where nvJPEG can, on CPU threads where it cannot; nothing lost.

Each file is routed from its header (scripts/gpu/routing.py). The CPU's share starts decoding
in worker threads as soon as its batch is read, well before the GPU gets to that batch, with
the build's own decoder (`scripts.decode.decode`: EXIF rotation, 16-bit, transparency, the
pixel limit, the skip reasons). The GPU's share is decoded as one nvJPEG batch; torchvision
fails a whole batch for one bad file, so a failed batch is split in halves until the files
nvJPEG refuses are found, and those go to the CPU decoder too. A file the CPU decoder cannot
use either is skipped and listed with its reason, exactly as the CPU build lists it.

The GPU decoder is any callable (list of bytes -> list of uint8 [3, H, W] tensors), so the
tests drive all of this on the CPU with a stand-in that refuses some files.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scripts.decode import UnusableImage, decode
from scripts.gpu.memory import is_out_of_memory
from scripts.gpu.reader import EncodedBatch
from scripts.gpu.routing import Route, route
from search_core.images import MAX_SOURCE_PIXELS

log = logging.getLogger(__name__)

GpuDecode = Callable[[Sequence[bytes]], Sequence[Any]]


@dataclass
class DecodeCounts:
    """Where the images went; the build logs it and the benchmark prints it."""

    gpu: int = 0                 # decoded by nvJPEG
    cpu: int = 0                 # decoded by the CPU decoder (routed there, or refused by the GPU)
    gpu_refused: int = 0         # routed to the GPU, refused by it, decoded (or skipped) on the CPU
    skipped: int = 0             # unusable: listed with a reason
    cpu_reasons: Counter = field(default_factory=Counter)   # why files were routed to the CPU

    def add(self, other: DecodeCounts) -> None:
        self.gpu += other.gpu
        self.cpu += other.cpu
        self.gpu_refused += other.gpu_refused
        self.skipped += other.skipped
        self.cpu_reasons.update(other.cpu_reasons)

    def __str__(self) -> str:
        reasons = ", ".join(f"{n} {r}" for r, n in self.cpu_reasons.most_common())
        return (f"{self.gpu} decoded on the GPU, {self.cpu} on the CPU ({reasons or 'none routed'}; "
                f"{self.gpu_refused} refused by the GPU), {self.skipped} skipped")


@dataclass
class RoutedBatch:
    """A read batch with its routes, the CPU's share already decoding."""

    encoded: EncodedBatch
    routes: list[Route]
    cpu: dict[int, Future]       # index into encoded.data -> future of an RGB array or UnusableImage


@dataclass
class DecodedPart:
    """Some of a batch's images decoded, in build order, on the target device."""

    positions: list[int]
    images: list[Any]            # uint8 [3, H, W] tensors
    skipped: list[tuple[int, str]]


class HybridDecoder:
    """nvJPEG for what it takes, the CPU decoder's threads for the rest."""

    def __init__(self, gpu_decode: GpuDecode, cpu_pool: Executor, device: Any, *,
                 max_pixels: int = MAX_SOURCE_PIXELS) -> None:
        self.gpu_decode = gpu_decode
        self.cpu_pool = cpu_pool
        self.device = device
        self.max_pixels = max_pixels
        self.counts = DecodeCounts()

    def route(self, encoded: EncodedBatch) -> RoutedBatch:
        """Route each file and start the CPU's share decoding now (runs on a reader thread)."""
        routes = [route(data, max_pixels=self.max_pixels) for data in encoded.data]
        cpu = {i: self.cpu_pool.submit(_decode_on_cpu, encoded.data[i])
               for i, r in enumerate(routes) if not r.gpu}
        return RoutedBatch(encoded=encoded, routes=routes, cpu=cpu)

    def decode(self, batch: RoutedBatch, indices: Sequence[int]) -> DecodedPart:
        """Decode the images at `indices` of `batch` onto the device (on the decoding thread).

        Raises CUDA out-of-memory so the caller can retry with fewer; anything else one file
        does ends as a skip reason.
        """
        import torch

        gpu_idx = [i for i in indices if batch.routes[i].gpu and i not in batch.cpu]
        # Counted apart and added once the part is done: an out-of-memory retry must not count twice.
        counts = DecodeCounts()
        decoded: dict[int, Any] = {}
        for i, img in zip(gpu_idx, self._decode_on_gpu([batch.encoded.data[i] for i in gpu_idx])):
            expected = (3, batch.routes[i].height, batch.routes[i].width)
            if img is not None and tuple(img.shape) == expected and img.dtype == torch.uint8:
                decoded[i] = img
            else:       # refused, or not what the header promised: the CPU decoder decides
                batch.cpu[i] = self.cpu_pool.submit(_decode_on_cpu, batch.encoded.data[i])
                counts.gpu_refused += 1
        part = DecodedPart(positions=[], images=[], skipped=[])
        for i in indices:
            position = batch.encoded.positions[i]
            if i in decoded:
                img = decoded[i]
                counts.gpu += 1
            else:
                result = batch.cpu[i].result()
                if not batch.routes[i].gpu:
                    counts.cpu_reasons[batch.routes[i].reason] += 1
                if isinstance(result, UnusableImage):
                    part.skipped.append((position, str(result)))
                    counts.skipped += 1
                    continue
                img = torch.from_numpy(result).permute(2, 0, 1).to(self.device)
                counts.cpu += 1
            part.positions.append(position)
            part.images.append(img)
        self.counts.add(counts)
        return part

    def _decode_on_gpu(self, datas: list[bytes]) -> list[Any]:
        """One image (or None where nvJPEG refused the file) per input; out of memory is raised."""
        if not datas:
            return []
        try:
            images = list(self.gpu_decode(datas))
            if len(images) != len(datas):
                raise RuntimeError(f"the GPU decoder returned {len(images)} images for {len(datas)} files")
            return images
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            if len(datas) == 1:
                log.debug("nvJPEG refused a file (%s); decoding it on the CPU", exc)
                return [None]
        half = len(datas) // 2
        return self._decode_on_gpu(datas[:half]) + self._decode_on_gpu(datas[half:])


def _decode_on_cpu(data: bytes) -> np.ndarray | UnusableImage:
    """The build's decoder, as an RGB array, or the reason it cannot be used (worker threads)."""
    try:
        return np.array(decode(data))    # a writable copy: torch.from_numpy takes it as is
    except UnusableImage as exc:
        return exc
