"""Read and decode one source image, or say in a few words why it cannot be used.

Every way a file can be bad (missing, zero bytes, truncated, not an image, a decompression
bomb) becomes an `UnusableImage` with a short reason, so the build skips and lists it instead of
crashing. Decoding is `search_core.images.decode_image`, the query path's decoder, so a file is
embedded exactly as it is later searched with (EXIF rotation, 16-bit scans, transparency).
"""

from __future__ import annotations

from typing import Any

import fsspec
from PIL import Image

from search_core.images import MAX_SOURCE_PIXELS, UndecodableImage, decode_image


class UnusableImage(Exception):
    """The file cannot be embedded; the message is the reason listed in skipped.jsonl."""


def read_bytes(item: Any) -> bytes:
    """The encoded bytes of an undecoded `datasets.Image` value ({"bytes", "path"})."""
    if isinstance(item, dict):
        if item.get("bytes") is not None:
            return item["bytes"]
        path = item.get("path")
    else:
        path = item
    if not path:
        raise UnusableImage("no image data")
    # Local files with plain open: fsspec costs 114 us of Python a file against 25 us (measured
    # here), which the GPU build's 10,000 files/s cannot spare. URLs and archive members
    # (zip://...::https://...) need fsspec. Both raise the same errors for the same files.
    local = isinstance(path, str) and "://" not in path and "::" not in path
    try:
        with (open(path, "rb") if local else fsspec.open(path, "rb")) as f:
            return f.read()
    except FileNotFoundError:
        raise UnusableImage("file not found") from None
    except OSError as exc:
        raise UnusableImage(f"unreadable file: {exc.strerror or type(exc).__name__}") from None


def decode(data: bytes, *, max_pixels: int = MAX_SOURCE_PIXELS) -> Image.Image:
    """A fully loaded RGB image; UnusableImage, with decode_image's short reason, for anything else."""
    try:
        return decode_image(data, max_pixels=max_pixels)
    except UndecodableImage as exc:
        raise UnusableImage(exc.reason) from None


def load_image(item: Any) -> Image.Image:
    """read_bytes + decode."""
    return decode(read_bytes(item))
