"""nvJPEG through torchvision: ``decode_jpeg(list_of_tensors, device="cuda")``, one call a batch.

Batched on purpose: one call for 256 files reached 26,000-30,000 images/s on an H200, and more
host threads did not raise it (4 threads: 23,871/s; torchvision holds one decoder behind a lock),
so one thread decodes (anchors/gpu_decode_results.md). torchvision is optional: it is imported
here only, and only on a machine where the build runs on CUDA.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any


class GpuDecodeUnavailable(Exception):
    """Why the GPU cannot decode JPEGs here; the build then decodes on the CPU."""


def nvjpeg_decoder(device: Any) -> Any:
    """A callable decoding a list of JPEG bytes to uint8 [3, H, W] tensors on `device`, after
    checking that it works on one small JPEG (a torchvision built without nvJPEG, or one that
    does not match torch, fails here rather than in the middle of a build)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        raise GpuDecodeUnavailable(f"CUDA is not available for {device}")
    try:
        decode = batch_decoder(device)
    except Exception as exc:   # ImportError, or a RuntimeError from a torchvision built for another torch
        raise GpuDecodeUnavailable(f"torchvision is not usable ({type(exc).__name__}: {exc})") from exc
    try:
        (probe,) = decode([_probe_jpeg()])
        if tuple(probe.shape) != (3, 8, 16):
            raise GpuDecodeUnavailable(f"decoded a 16x8 test JPEG to shape {tuple(probe.shape)}")
    except GpuDecodeUnavailable:
        raise
    except Exception as exc:
        raise GpuDecodeUnavailable(f"torchvision cannot decode JPEGs on {device} ({type(exc).__name__}: "
                                   f"{exc})") from exc
    return decode


def batch_decoder(device: Any) -> Any:
    """``decode_jpeg`` on a list, RGB out, on `device` (nvJPEG on CUDA; libjpeg on a CPU)."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    def decode(datas: Sequence[bytes]) -> list[Any]:
        # bytearray: torch.frombuffer on immutable bytes warns that the tensor would be read-only.
        tensors = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in datas]
        return decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)

    return decode


def _probe_jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 8), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()
