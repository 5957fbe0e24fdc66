"""Decode tasks: encoded images in, the model's resized and centre-cropped pixels out, or a reason.

These run as Ray tasks beside the embedding actors. Reading and decoding are the local engine's
(`scripts.decode`): the same bad file gets the same reason in skipped.jsonl. Resize and crop are
the model's own image processor, stopped before rescaling and normalising: uint8 crops are a
quarter of float32 in Ray's object store, and the worker finishes them with the same processor
(`FINISH`: rescale and normalise only), which gives exactly the pixel values the local engine
feeds the model (tests/ray_engine/test_decoding.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from scripts.decode import UnusableImage, load_image

# What a CPU worker passes to the module's preprocess for already cropped uint8 pixels.
FINISH = {"image": {"do_resize": False, "do_center_crop": False}}
# The processor's own settings that a sentence-transformers module may override per modality.
_KWARG_GROUPS = ("common", "image")


@dataclass(frozen=True)
class Cropper:
    """The model's image processor up to the crop; picklable, so it travels to the decode tasks."""

    processor: Any                       # the module's transformers processor
    kwargs: dict[str, Any]               # the module's own image processing overrides
    shape: tuple[int, int, int]          # [3, height, width] of a crop

    @classmethod
    def from_encoder(cls, encoder: Any) -> Cropper:
        module = encoder.model[0]
        groups = getattr(module, "processing_kwargs", None) or {}
        kwargs = {k: v for g in _KWARG_GROUPS for k, v in (groups.get(g) or {}).items() if k != "return_tensors"}
        cropper = cls(processor=module.processor, kwargs=kwargs, shape=(3, 1, 1))
        probe = cropper.crop([Image.new("RGB", (64, 48))])
        return cls(processor=module.processor, kwargs=kwargs, shape=tuple(int(x) for x in probe.shape[1:]))

    def crop(self, images: list[Image.Image]) -> np.ndarray:
        """uint8 [n, 3, h, w]: resized and cropped exactly as the processor does, not yet normalised."""
        out = self.processor(images=images, **self.kwargs, do_rescale=False, do_normalize=False,
                             return_tensors="np")["pixel_values"]
        return np.clip(np.rint(np.asarray(out)), 0, 255).astype(np.uint8)


def decode_batch(batch: dict[str, np.ndarray], cropper: Cropper) -> dict[str, np.ndarray]:
    """{key, bytes, path} rows -> {key, pixels, reason}: reason "" for a usable image, else why not
    (its pixels are zeros, and the worker only lists it)."""
    keys = np.asarray(batch["key"], dtype=np.uint64)
    pixels = np.zeros((len(keys), *cropper.shape), dtype=np.uint8)
    reasons = [""] * len(keys)
    good, images = [], []
    for i, (data, path) in enumerate(zip(batch["bytes"], batch["path"])):
        try:
            images.append(load_image({"bytes": data if isinstance(data, bytes) else None,
                                      "path": path if isinstance(path, str) else None}))
            good.append(i)
        except UnusableImage as exc:
            reasons[i] = str(exc) or "unusable image"
    if images:
        pixels[good] = cropper.crop(images)
    return {"key": keys, "pixels": pixels, "reason": np.array(reasons, dtype=object)}


def device_finish(encoder: Any) -> Callable[[np.ndarray], dict] | None:
    """On a GPU: rescale and normalise the uint8 crops there, as the local GPU engine does
    (scripts/gpu), instead of in float32 on the worker's one CPU, then a 4x larger copy to the GPU.
    None where the processor's settings cannot be read (the worker then uses the processor)."""
    import torch

    from scripts.gpu.preprocess import ClipPreprocessing, UnsupportedProcessor

    try:
        settings = ClipPreprocessing.from_encoder(encoder)
    except UnsupportedProcessor:
        return None
    device = encoder.device
    mean = torch.tensor(settings.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(settings.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def finish(crops: np.ndarray) -> dict:
        pixels = torch.from_numpy(np.ascontiguousarray(crops)).to(device, non_blocking=True).float()
        return {"pixel_values": pixels.mul_(settings.rescale).sub_(mean).div_(std), "modality": "image"}

    return finish
