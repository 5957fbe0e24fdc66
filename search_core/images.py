"""Safe loading of untrusted query images (CLI ``--image``, Discord attachments).

An upload can be anything: empty, huge, a PDF renamed .jpg, a truncated JPEG, or a tiny file
that decodes to billions of pixels. Each is refused with a `QueryError` the user can read, and
the size is checked from the header before any pixel is decoded.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from search_core.errors import QueryError

log = logging.getLogger(__name__)

# Discord's largest attachment for most users is 10-25 MB; a query image needs far less.
MAX_QUERY_BYTES = 20 * 1024 * 1024
# 40 megapixels (e.g. 8000 x 5000) covers camera photos and scans; decoded as RGB that is ~120 MB.
MAX_QUERY_PIXELS = 40_000_000
# The formats people upload; restricting Image.open to these keeps exotic decoders off the path.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
BACKGROUND = (255, 255, 255)


def load_query_image(data: bytes, *, max_bytes: int = MAX_QUERY_BYTES,
                     max_pixels: int = MAX_QUERY_PIXELS) -> Image.Image:
    """Decode an uploaded image to RGB, or raise QueryError with a sentence for the user.

    Animated images give their first frame. EXIF rotation is applied, so a phone photo is
    searched the way it looks.
    """
    if not data:
        raise QueryError("The image file is empty (0 bytes).")
    if len(data) > max_bytes:
        raise QueryError(f"The image file is too large ({_mb(len(data))}); the limit is {_mb(max_bytes)}.")
    with warnings.catch_warnings():
        # Pillow warns (and past twice its own limit, raises) about large images; we check our own limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        except Image.DecompressionBombError as exc:
            raise QueryError("The image has too many pixels to process.") from exc
        except UnidentifiedImageError as exc:
            raise QueryError("The file is not an image in a supported format "
                             "(JPEG, PNG, WebP, GIF, BMP or TIFF).") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise QueryError("The image file is damaged or incomplete.") from exc
        width, height = img.size
        if width * height > max_pixels:
            raise QueryError(f"The image is too large ({width} x {height} pixels); the limit is "
                             f"{max_pixels / 1e6:g} megapixels.")
        try:
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb(img)
        except Image.DecompressionBombError as exc:
            raise QueryError("The image has too many pixels to process.") from exc
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
            raise QueryError("The image file is damaged or incomplete.") from exc


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: transparency composited on white, 16-bit and float scaled.

    Plain ``convert("RGB")`` drops alpha onto black and clips 16-bit greyscale to white, so a
    transparent logo or a 16-bit scan would be searched as a different picture.
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        img = _scale_to_l(img)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, BACKGROUND)
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")


def _scale_to_l(img: Image.Image) -> Image.Image:
    """16-bit or float greyscale to 8-bit, scaled rather than clipped."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        arr = (arr - lo) / (hi - lo or 1.0) * 255.0
    else:  # 16-bit samples (mode "I" from a 16-bit PNG or TIFF holds 0..65535)
        arr = arr / 257.0
    return Image.fromarray(np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8), mode="L")


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"
