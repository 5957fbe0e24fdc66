"""The CLIP image processor as batched tensor operations, on any device.

What the model's own processor does to a decoded RGB image (transformers' CLIPImageProcessor, the
Pillow or the torchvision backend): resize the shortest side to ``size`` (bicubic, antialiased
when shrinking, the long side truncated as transformers computes it), round to 8 bits, crop the
centre to ``crop_size``, rescale by 1/255 and normalise by ``image_mean``/``image_std``. Every one
of those figures is read from the processor of the model in use, never assumed, so another
CLIP's settings are followed; a setting this module cannot reproduce exactly (another resample
filter, padding, a longest-edge cap) raises `UnsupportedProcessor` and the build keeps the
CPU path.

On a GPU the decoded images never leave it; on a CPU the same code runs for the tests, which
compare it with the processor pixel for pixel (tests/test_gpu_preprocess.py).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# PIL resample numbers (what transformers stores) and torchvision's names, to torch's modes.
# Only the filters torch's antialiased interpolation reproduces: Pillow's bicubic (a = -0.5) and
# bilinear, both widened when shrinking exactly as Pillow does.
_RESAMPLE = {2: "bilinear", 3: "bicubic", "bilinear": "bilinear", "bicubic": "bicubic"}
# Images converted to float at once when resizing: 32 megapixels, 384 MiB of float32.
_RESIZE_PIXELS = 32_000_000
# transformers' processor options that change pixels, which a sentence-transformers module's
# processing_kwargs may override.
_OPTIONS = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
            "do_normalize", "image_mean", "image_std", "do_pad")


class UnsupportedProcessor(Exception):
    """The model's image processor does something these tensor operations do not reproduce."""


@dataclass(frozen=True)
class ClipPreprocessing:
    """Resize shortest side, centre crop, rescale, normalise: a CLIP processor's settings."""

    shortest_edge: int                        # resize so the short side is this long
    crop: tuple[int, int]                     # (height, width) of the centre crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale: float = 1 / 255
    resample: str = "bicubic"
    # Which of its two resize passes the processor runs first: torchvision and Pillow before 13
    # always go horizontal first; Pillow 13 goes vertical first when the height shrinks by more
    # than twice what the width does (python-pillow/Pillow#9549, fitted here on 300 random sizes).
    # The order moves a few pixels at sharp edges by a few levels; following it keeps them within one.
    pillow_pass_order: bool = False

    @classmethod
    def from_encoder(cls, encoder: Any) -> ClipPreprocessing:
        """Read from the loaded model: a sentence-transformers CLIP module holds the transformers
        processor (``model[0].processor``), plus optional per-module processing overrides."""
        try:
            module = encoder.model[0]
        except (TypeError, IndexError, KeyError, AttributeError):
            raise UnsupportedProcessor("the model has no sentence-transformers module with a processor") from None
        processor = getattr(module, "processor", None)
        image_processor = getattr(processor, "image_processor", processor)
        if image_processor is None or not hasattr(image_processor, "image_mean"):
            raise UnsupportedProcessor(f"{type(module).__name__} has no image processor")
        overrides: dict[str, Any] = {}
        kwargs = getattr(module, "processing_kwargs", None) or {}
        for key in ("common", "image"):
            overrides.update({k: v for k, v in (kwargs.get(key) or {}).items() if k in _OPTIONS})
        return cls.from_processor(image_processor, overrides)

    @classmethod
    def from_processor(cls, processor: Any, overrides: Mapping[str, Any] | None = None) -> ClipPreprocessing:
        """From a transformers image processor (either backend) and optional overrides."""
        def opt(name: str, default: Any = None) -> Any:
            if overrides and name in overrides:
                return overrides[name]
            return getattr(processor, name, default)

        if opt("do_pad"):
            raise UnsupportedProcessor("the processor pads images")
        resample = opt("resample", 2)
        mode = _RESAMPLE.get(getattr(resample, "value", resample))
        if mode is None:
            raise UnsupportedProcessor(f"resample filter {resample!r} (only bicubic and bilinear are reproduced)")

        if not opt("do_resize", True):
            raise UnsupportedProcessor("the processor does not resize: images of any size cannot form one batch")
        size = _size_dict(opt("size"))
        if set(size) != {"shortest_edge"}:
            raise UnsupportedProcessor(f"resize to {size} (only a shortest edge is reproduced)")
        shortest = size["shortest_edge"]
        if not opt("do_center_crop", False):
            raise UnsupportedProcessor("no centre crop: images of different sizes cannot form one batch")
        crop_size = _size_dict(opt("crop_size"))
        if not crop_size.get("height") or not crop_size.get("width"):
            raise UnsupportedProcessor(f"centre crop to {crop_size}")
        crop = (int(crop_size["height"]), int(crop_size["width"]))
        if max(crop) > shortest:
            raise UnsupportedProcessor(f"crop {crop} larger than the resized image: the processor would pad")

        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        if opt("do_normalize", True):
            mean, std = _three(opt("image_mean"), "image_mean"), _three(opt("image_std"), "image_std")
        rescale = float(opt("rescale_factor", 1 / 255)) if opt("do_rescale", True) else 1.0
        return cls(shortest_edge=int(shortest), crop=crop, mean=mean, std=std,
                   rescale=rescale, resample=mode, pillow_pass_order=_pillow_orders_passes(processor))

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """transformers' get_resize_output_image_size: short side = size, long side truncated."""
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.shortest_edge * long / short)
        return (new_long, self.shortest_edge) if width <= height else (self.shortest_edge, new_long)

    def __call__(self, images: Sequence[Any], dtype: Any = None) -> Any:
        """uint8 images [3, H, W] (any sizes, one device) -> model input [N, 3, crop_h, crop_w]."""
        import torch

        if not images:
            raise ValueError("no images to preprocess")
        device = images[0].device
        # Same-sized images are resized in one call (a collection of one camera's photos is one
        # call a batch); bounded to _RESIZE_PIXELS of float at a time. The pieces are put back in
        # order by one stack on the device: indexing with a list would copy it from the host and
        # make this thread wait for the GPU each time.
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            if img.dim() != 3 or img.shape[0] != 3 or img.dtype != torch.uint8:
                raise ValueError(f"expected uint8 [3, H, W], got {img.dtype} {tuple(img.shape)}")
            groups.setdefault((int(img.shape[1]), int(img.shape[2])), []).append(i)
        pieces: list[Any] = [None] * len(images)
        for (height, width), members in groups.items():
            step = max(1, _RESIZE_PIXELS // (height * width))
            for lo in range(0, len(members), step):
                idx = members[lo:lo + step]
                resized = self._resize_crop(torch.stack([images[i] for i in idx]).float())
                for j, i in enumerate(idx):
                    pieces[i] = resized[j]
        mean, std = _normalisation(self.mean, self.std, str(device))
        out = torch.stack(pieces).mul_(self.rescale).sub_(mean).div_(std)
        return out if dtype is None else out.to(dtype)

    def _interpolate(self, stack: Any, size: tuple[int, int]) -> Any:
        import torch.nn.functional as F

        return F.interpolate(stack, size=size, mode=self.resample, antialias=True,
                             align_corners=False).round_().clamp_(0, 255)

    def _resize_crop(self, stack: Any) -> Any:
        """float [n, 3, H, W] holding 0..255 -> float [n, 3, crop_h, crop_w] of 8-bit values."""
        height, width = stack.shape[-2:]
        new_h, new_w = self.resized_size(height, width)
        # Pillow and torchvision resize in two passes, each rounded and clipped to 8 bits (bicubic
        # overshoots at sharp edges, and the clip keeps that from reaching the second pass); torch's
        # antialiased interpolate reproduces each pass, and is the identity along an unchanged axis.
        vertical_first = (self.pillow_pass_order and new_h < height
                          and height - new_h > 2 * (width - new_w))
        if vertical_first and new_h != height:
            stack = self._interpolate(stack, (new_h, width))
        if new_w != width:
            stack = self._interpolate(stack, (stack.shape[-2], new_w))
        if new_h != stack.shape[-2]:
            stack = self._interpolate(stack, (new_h, new_w))
        crop_h, crop_w = self.crop
        top, left = (new_h - crop_h) // 2, (new_w - crop_w) // 2
        return stack[:, :, top:top + crop_h, left:left + crop_w]


@functools.lru_cache(maxsize=8)
def _normalisation(mean: tuple[float, ...], std: tuple[float, ...], device: str) -> tuple[Any, Any]:
    """Mean and std as [1, 3, 1, 1] tensors on `device`, made once (a copy to the GPU waits for it)."""
    import torch

    def column(values: tuple[float, ...]) -> Any:
        return torch.tensor(values, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    return column(mean), column(std)


def _pillow_orders_passes(processor: Any) -> bool:
    """Whether the processor resizes with Pillow 13 or later (transformers' PIL backend)."""
    backend = getattr(processor, "backend", None)
    if backend is None:   # transformers before 5: the fast processors are the torchvision ones
        backend = "torchvision" if type(processor).__name__.endswith("Fast") else "pil"
    if backend != "pil":
        return False
    import PIL

    return int(PIL.__version__.split(".")[0]) >= 13


def _size_dict(size: Any) -> dict[str, int]:
    """transformers' SizeDict, a plain dict or an int, as a dict of its set fields."""
    if size is None:
        return {}
    if isinstance(size, int):
        return {"shortest_edge": size}
    try:
        items = size.items() if isinstance(size, Mapping) else dict(size).items()  # SizeDict yields pairs
    except (TypeError, ValueError):
        raise UnsupportedProcessor(f"size {size!r}") from None
    return {k: int(v) for k, v in items if v is not None}


def _three(values: Any, name: str) -> tuple[float, float, float]:
    if isinstance(values, (int, float)):
        values = [values] * 3
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise UnsupportedProcessor(f"{name} has {len(values)} values, not 3")
    return values  # type: ignore[return-value]
