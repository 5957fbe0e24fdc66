"""Batch size from the GPU's memory, and halving it when CUDA runs out of memory anyway.

The build's shards hold a fixed number of rows, whatever the batch size, so a build that still
fails at one image a batch resumes from its last shard when retried; here a batch that does not
fit is split and the run goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# What one image of a batch may hold on the GPU at once, at most: its decoded pixels (uint8),
# their float32 copy for the antialiased resize, and the fp16 ViT-B/32's activations (under
# 1 MiB an image at 224 px). 32 MiB covers a decoded scan of about 2 megapixels with its float
# copy; bigger scans in a batch are what the halving below is for.
PER_IMAGE_BYTES = 32 * 2**20
# Share of the free memory a batch may plan on: the CUDA context, the allocator's fragments and
# a second batch being prepared while this one runs need the rest.
MEMORY_SHARE = 0.5


def choose_batch_size(free_bytes: int, *, preferred: int, per_image_bytes: int = PER_IMAGE_BYTES,
                      share: float = MEMORY_SHARE) -> int:
    """The largest batch up to `preferred` whose images fit in `share` of `free_bytes` (at least 1).

    256 is the measured best on an H200 (anchors: the fp16 model gains nothing past it and
    nvJPEG peaks there), so a large GPU keeps 256 and a small one gets what fits.
    """
    if preferred < 1:
        raise ValueError(f"preferred batch size must be >= 1, not {preferred}")
    fits = int(free_bytes * share) // max(1, per_image_bytes)
    return max(1, min(preferred, fits))


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA out of memory, whether torch raised it or a library (nvJPEG through torchvision)
    wrapped it into a RuntimeError whose message still says so."""
    try:
        import torch

        oom_type = torch.cuda.OutOfMemoryError
    except (ImportError, AttributeError):
        oom_type = ()
    if oom_type and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class BatchSizer:
    """The batch size both GPU stages use; halved on out-of-memory, shared, never grown again.

    `run` processes items in chunks of the current size; a chunk that runs out of memory is
    retried in halves (after `on_oom`, which frees the allocator's cache) until it fits. Out of
    memory at one item is raised: nothing smaller can be tried.
    """

    def __init__(self, size: int, *, on_oom: Callable[[], None] | None = None,
                 oom_test: Callable[[BaseException], bool] = is_out_of_memory) -> None:
        if size < 1:
            raise ValueError(f"batch size must be >= 1, not {size}")
        self.size = size
        self.halvings = 0
        self._on_oom = on_oom
        self._is_oom = oom_test
        self._lock = threading.Lock()

    def run(self, items: Sequence[T], fn: Callable[[Sequence[T]], R]) -> list[R]:
        """fn on consecutive chunks of `items`, in order; one result per chunk."""
        out: list[R] = []
        start = 0
        while start < len(items):
            size = self.size
            chunk = items[start:start + size]
            try:
                out.append(fn(chunk))
            except Exception as exc:
                if not self._is_oom(exc) or len(chunk) == 1:
                    raise
                self._halve(len(chunk))
                continue
            start += len(chunk)
        return out

    def _halve(self, failed: int) -> None:
        with self._lock:
            if self.size >= failed:      # another stage may have halved it already
                self.size = max(1, failed // 2)
                self.halvings += 1
                log.warning("CUDA out of memory with a batch of %d images; going on with %d", failed, self.size)
        if self._on_oom is not None:
            self._on_oom()
