"""The GPU build path (issue 13): JPEG bytes decoded by nvJPEG on the GPU, CLIP preprocessing as
tensor operations there, the fp16 model fed from the same device.

- reader.py       a batch's encoded bytes, read on threads (never one loader item per file)
- routing.py      which files nvJPEG takes and which go to the CPU decoder (pure)
- decoding.py     the hybrid decode: nvJPEG batches, CPU threads for the rest, skips listed
- nvjpeg.py       torchvision's ``decode_jpeg(list, device="cuda")`` (the only torchvision import)
- preprocess.py   the model's CLIP processor as batched tensor operations, on any device
- memory.py       batch size from GPU memory, halved on out-of-memory
- stream.py       the stages overlapped, with `embed_stream`'s interface

`select_embed_stream` is the one place the build chooses: this path where the build runs on
CUDA and torchvision with nvJPEG is importable, else the CPU decoding stream, unchanged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from scripts.embedding import embed_stream
from search_core.encoder import Encoder

log = logging.getLogger(__name__)

EmbedStream = Callable[..., object]


def select_embed_stream(encoder: Encoder) -> EmbedStream:
    """`gpu_embed_stream` bound to nvJPEG and the model's preprocessing when the encoder runs on
    CUDA and both work here; otherwise `scripts.embedding.embed_stream` (Pillow decoding in
    threads), with a warning that says why when the encoder is on CUDA."""
    if not str(encoder.device).startswith("cuda"):
        return embed_stream
    from scripts.gpu.nvjpeg import GpuDecodeUnavailable, nvjpeg_decoder
    from scripts.gpu.preprocess import ClipPreprocessing, UnsupportedProcessor
    from scripts.gpu.stream import gpu_embed_stream

    try:
        decode = nvjpeg_decoder(encoder.device)
        preprocessing = ClipPreprocessing.from_encoder(encoder)
    except (GpuDecodeUnavailable, UnsupportedProcessor) as exc:
        log.warning("decoding images on the CPU, not the GPU: %s. GPU decoding needs torchvision "
                    "built for this torch with CUDA (pip install torchvision).", exc)
        return embed_stream
    return functools.partial(gpu_embed_stream, decode=decode, preprocessing=preprocessing)
