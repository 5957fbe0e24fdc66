"""Read and decode one source image, or say in a few words why it cannot be used.

Every way a file can be bad (missing, zero bytes, truncated, not an image, a decompression
bomb) becomes an `UnusableImage` with a short reason, so the build skips and lists it instead of
crashing. PIL's DecompressionBombWarning is treated as an error: an image that large would
stall or exhaust memory long before it was worth embedding.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import fsspec
from PIL import Image, UnidentifiedImageError


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
    try:
        with fsspec.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise UnusableImage("file not found") from None
    except OSError as exc:
        raise UnusableImage(f"unreadable file: {exc.strerror or type(exc).__name__}") from None


def decode(data: bytes) -> Image.Image:
    """A fully loaded RGB image; UnusableImage for anything PIL cannot decode completely."""
    if not data:
        raise UnusableImage("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()   # decode now: a truncated file fails here, not later in a worker
                return im.convert("RGB")
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise UnusableImage(f"decompression bomb refused ({exc})") from None
        except UnidentifiedImageError:
            raise UnusableImage("not an image file") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise UnusableImage(f"broken image: {exc}") from None


def load_image(item: Any) -> Image.Image:
    """read_bytes + decode."""
    return decode(read_bytes(item))
