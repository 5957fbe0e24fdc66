"""scripts.gpu.memory: the batch size follows the GPU's memory and halves on out-of-memory."""

from __future__ import annotations

import pytest
import torch

from scripts.gpu.memory import PER_IMAGE_BYTES, BatchSizer, choose_batch_size, is_out_of_memory

GIB = 2**30


@pytest.mark.parametrize("free_gib,preferred,expected", [
    (139, 256, 256),                               # H200: memory is no limit, the measured best holds
    (139, 1024, 1024),
    (8, 1024, int(8 * GIB * 0.5) // PER_IMAGE_BYTES),   # a small GPU gets what fits in half its memory
    (0.01, 256, 1),                                # never below one image
])
def test_batch_size_from_free_memory(free_gib: float, preferred: int, expected: int) -> None:
    assert choose_batch_size(int(free_gib * GIB), preferred=preferred) == expected


def test_batch_size_grows_with_memory() -> None:
    sizes = [choose_batch_size(g * GIB, preferred=10_000) for g in (1, 2, 4, 8, 16)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_cuda_out_of_memory_is_recognised_whoever_raised_it() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    # torchvision wraps what nvJPEG's allocations raise into a RuntimeError of its own.
    assert is_out_of_memory(RuntimeError("Error while decoding JPEG images: CUDA out of memory."))
    assert not is_out_of_memory(RuntimeError("Error while decoding JPEG images: Failed to decode batch: 7"))
    assert not is_out_of_memory(ValueError("out of memory"))


class FakeGpu:
    """fn(chunk) that runs out of memory above `limit` items, and records every call."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.calls: list[int] = []
        self.freed = 0

    def __call__(self, chunk):
        self.calls.append(len(chunk))
        if len(chunk) > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory with {len(chunk)}")
        return [x * 2 for x in chunk]

    def free(self) -> None:
        self.freed += 1


def test_out_of_memory_halves_and_goes_on() -> None:
    """The failed chunk is retried in halves; every item is processed once, in order; the smaller
    size is kept for the chunks after it."""
    gpu = FakeGpu(limit=40)
    sizer = BatchSizer(256, on_oom=gpu.free)
    out = sizer.run(list(range(200)), gpu)
    assert [x for chunk in out for x in chunk] == [x * 2 for x in range(200)]
    assert gpu.calls == [200, 100, 50] + [25] * 8
    assert sizer.size == 25 and sizer.halvings == 3 and gpu.freed == 3
    later = sizer.run(list(range(100)), gpu)
    assert [len(chunk) for chunk in later] == [25] * 4


def test_out_of_memory_at_one_item_is_raised() -> None:
    sizer = BatchSizer(8)
    with pytest.raises(torch.OutOfMemoryError):
        sizer.run([1, 2, 3], FakeGpu(limit=0))
    assert sizer.size == 1


def test_other_errors_are_not_taken_for_memory() -> None:
    def broken(chunk):
        raise RuntimeError("shape mismatch")

    sizer = BatchSizer(8)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        sizer.run([1, 2, 3], broken)
    assert sizer.size == 8 and sizer.halvings == 0


def test_tensors_are_split_like_lists() -> None:
    """The model stage hands the sizer a pixel tensor: chunks are row slices of it."""
    def model(chunk: torch.Tensor) -> torch.Tensor:
        if len(chunk) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return chunk * 2

    out = BatchSizer(16).run(torch.arange(10), model)
    assert [len(c) for c in out] == [2, 2, 2, 2, 2]
    assert torch.equal(torch.cat(out), torch.arange(10) * 2)
