"""The GPU embed stream: bytes read on threads, decoded by nvJPEG (the CPU decoder for the rest),
preprocessed as tensor ops on the GPU, embedded by the fp16 model, all overlapped.

Same interface as `scripts.embedding.embed_stream` (batches of positions with a fetch in,
`EmbeddedBatch` out, in order), so the build takes either. Three stages run at once:

1. reading: ``fetch()`` then `read_batch` on reader threads, a few batches ahead; each file is
   routed and the CPU decoder's share starts decoding on ``workers`` threads right away;
2. decoding: one thread (torchvision's decoder is one lock) runs nvJPEG on the batch, waits for
   the CPU's share, and preprocesses all of it on the GPU, on its own CUDA stream;
3. the model: the calling thread embeds the previous batch on the default stream meanwhile.

Measured on an H200 (anchors/gpu_decode_results.md): nvJPEG + fp16 ViT-B/32 on bytes already in
memory, 13,500 images/s; the model alone, 27,400-29,500; so reading is kept off the critical
path and ahead of it. Nothing here needs a GPU: on a CPU device (the tests) the same stages run
with a stand-in for nvJPEG.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scripts.embedding import EmbeddedBatch
from scripts.gpu.decoding import DecodeCounts, GpuDecode, HybridDecoder, RoutedBatch
from scripts.gpu.memory import BatchSizer, choose_batch_size
from scripts.gpu.preprocess import ClipPreprocessing
from scripts.gpu.reader import read_batch
from search_core.encoder import Encoder

log = logging.getLogger(__name__)

READ_AHEAD = 3           # batches read (and CPU-decoding) ahead of the decoding thread
DECODE_AHEAD = 2         # batches decoded ahead of the model: one waiting while one is embedded
IO_THREADS = 16          # file reads: they wait on the disk, not the CPU
# Upper bound for the memory-chosen batch: the model gains nothing past 256-1024 (anchors).
MAX_BATCH = 1024


@dataclass
class StreamStats:
    """What the stream did: decode routes, the batch size it settled on, its out-of-memory halvings."""

    counts: DecodeCounts = field(default_factory=DecodeCounts)
    batch_size: int = 0
    halvings: int = 0


@dataclass
class _Prepared:
    positions: list[int]
    pixels: Any                       # [n, 3, H, W] model input on the device, or None
    skipped: list[tuple[int, str]]
    ready: Any = None                 # CUDA event: pixels written on the decoding stream


def gpu_embed_stream(encoder: Encoder, batches: Iterable[tuple[list[int], Callable[[], Sequence[Any]]]], *,
                     workers: int = 1, decode: GpuDecode | None = None,
                     preprocessing: ClipPreprocessing | None = None, batch_size: int | None = None,
                     stats: StreamStats | None = None) -> Iterator[EmbeddedBatch]:
    """Embed batches in order, decoding on the GPU. `decode` defaults to nvJPEG on the encoder's
    device; `batch_size` (images a GPU step holds at most) defaults to what its memory allows."""
    import torch

    device = torch.device(encoder.device)
    cuda = device.type == "cuda"
    if decode is None:
        from scripts.gpu.nvjpeg import nvjpeg_decoder

        decode = nvjpeg_decoder(device)
    preprocessing = preprocessing or ClipPreprocessing.from_encoder(encoder)
    dtype = _model_dtype(encoder)
    stats = stats if stats is not None else StreamStats()
    sizer = BatchSizer(batch_size or _batch_size_for(device), on_oom=torch.cuda.empty_cache if cuda else None)
    stats.batch_size = sizer.size
    side = torch.cuda.Stream(device) if cuda else None
    log.info("GPU stream on %s: up to %d images a step, %d CPU decoding threads", device, sizer.size, workers)

    with ThreadPoolExecutor(IO_THREADS, thread_name_prefix="read-io") as io_pool, \
            ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="read") as read_pool, \
            ThreadPoolExecutor(max(1, workers), thread_name_prefix="cpu-decode") as cpu_pool, \
            ThreadPoolExecutor(1, thread_name_prefix="gpu-decode") as decode_pool:
        decoder = HybridDecoder(decode, cpu_pool, device)
        stats.counts = decoder.counts

        def read(positions: list[int], fetch: Callable[[], Sequence[Any]]) -> RoutedBatch:
            return decoder.route(read_batch(positions, fetch(), io_pool))

        def prepare(read_future: Future[RoutedBatch]) -> _Prepared:
            batch = read_future.result()
            with torch.cuda.stream(side) if cuda else contextlib.nullcontext():
                parts = sizer.run(range(len(batch.encoded.data)),
                                  lambda idx: _preprocessed(decoder.decode(batch, idx), preprocessing, dtype))
                positions = [p for part_positions, _, _ in parts for p in part_positions]
                pixels = [px for _, px, _ in parts if px is not None]
                # Unreadable and undecodable files in one list in position order, as the CPU stream lists them.
                skipped = sorted(batch.encoded.skipped + [s for _, _, skips in parts for s in skips])
                prepared = _Prepared(positions=positions, pixels=torch.cat(pixels) if pixels else None,
                                     skipped=skipped)
                if cuda:
                    prepared.ready = torch.cuda.Event()
                    prepared.ready.record(side)
            return prepared

        reads: deque[Future[RoutedBatch]] = deque()
        prepares: deque[Future[_Prepared]] = deque()
        source = iter(batches)

        def refill() -> None:
            while len(reads) < READ_AHEAD:
                nxt = next(source, None)
                if nxt is None:
                    break
                reads.append(read_pool.submit(read, *nxt))
            while reads and len(prepares) < DECODE_AHEAD:
                prepares.append(decode_pool.submit(prepare, reads.popleft()))

        try:
            refill()
            while prepares:
                prepared = prepares.popleft().result()
                refill()     # queue the next batches before the model blocks this thread
                embedded = _embed(encoder, prepared, sizer, device if cuda else None)
                stats.halvings = sizer.halvings
                yield embedded
        finally:
            for fut in (*prepares, *reads):
                fut.cancel()
    log.info("GPU stream: %s", stats.counts)


def _preprocessed(part: Any, preprocessing: ClipPreprocessing, dtype: Any) -> tuple[list[int], Any, list]:
    pixels = preprocessing(part.images, dtype=dtype) if part.images else None
    return part.positions, pixels, part.skipped


def _embed(encoder: Encoder, prepared: _Prepared, sizer: BatchSizer, cuda_device: Any) -> EmbeddedBatch:
    if prepared.pixels is None:
        return EmbeddedBatch(prepared.positions, np.zeros((0, 0), dtype=np.float32), prepared.skipped)
    if cuda_device is not None:
        import torch

        current = torch.cuda.current_stream(cuda_device)
        current.wait_event(prepared.ready)
        prepared.pixels.record_stream(current)   # its memory is not reused before the model is done
    chunks = sizer.run(prepared.pixels, lambda px: encoder.embed_preprocessed({"pixel_values": px,
                                                                               "modality": "image"}))
    return EmbeddedBatch(prepared.positions, np.concatenate(chunks), prepared.skipped)


def _model_dtype(encoder: Encoder) -> Any:
    """The dtype of the image tower's patch embedding, which CLIP casts its input to anyway:
    preprocessing hands fp16 to fp16 weights and halves the batch's memory. None if not found."""
    try:
        return encoder.model[0].model.vision_model.embeddings.patch_embedding.weight.dtype
    except (AttributeError, TypeError, IndexError, KeyError):
        return None


def _batch_size_for(device: Any) -> int:
    """On CUDA, from the memory free now; elsewhere (the tests) no limit beyond MAX_BATCH."""
    import torch

    if device.type != "cuda":
        return MAX_BATCH
    free, _ = torch.cuda.mem_get_info(device)
    return choose_batch_size(free, preferred=MAX_BATCH)
