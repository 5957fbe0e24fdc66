"""Safe decoding of untrusted images: query images (CLI ``--image``, Discord attachments) and,
through the same `decode_image`, the build's source images.

An upload can be anything: empty, huge, a PDF renamed .jpg, a truncated JPEG, or a tiny file
that decodes to billions of pixels. Each is refused with a `QueryError` the user can read, and
the size is checked from the header before any pixel is decoded.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from search_core.errors import ImageSearchError, QueryError
from search_core.phone_formats import register_phone_formats

log = logging.getLogger(__name__)

# Discord's largest attachment for most users is 10-25 MB; a query image needs far less.
MAX_QUERY_BYTES = 20 * 1024 * 1024
# 40 megapixels (e.g. 8000 x 5000) covers camera photos and scans; decoded as RGB that is ~120 MB.
MAX_QUERY_PIXELS = 40_000_000
# Collection images (build sources, and their stored copies read back): Pillow's default
# MAX_IMAGE_PIXELS (~89 MP). Larger than a chat upload's limit because archive scans can be large;
# checked from the header like every limit here.
MAX_SOURCE_PIXELS = 89_478_485
# The formats people upload; restricting Image.open to these keeps exotic decoders off the path.
# Phone photos, HEIF (.heic) and AVIF, where this install can decode them (search_core.phone_formats).
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", *register_phone_formats())
_FORMAT_NAMES = {"WEBP": "WebP"}
BACKGROUND = (255, 255, 255)


class UndecodableImage(ImageSearchError):
    """`decode_image` refused the bytes.

    The message is a sentence for the person who sent the image; `reason` is the short phrase a
    build lists in skipped.jsonl.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def decode_image(data: bytes, *, max_pixels: int, formats: Sequence[str] | None = None) -> Image.Image:
    """Encoded bytes to a fully loaded 8-bit RGB image, upright as it is displayed.

    The one decoder for the build and for query images: if the build
    embedded a file differently from how a query decodes it (unrotated, a 16-bit scan clipped to
    white, the hidden colour under transparent pixels), that file would not find itself.
    The pixel count is compared with ``max_pixels`` from the header, before any pixel is decoded,
    rather than through Pillow's DecompressionBombWarning: warnings filters are process-wide and
    not thread-safe, and the build decodes in many threads. Animated images give their first frame.
    Raises UndecodableImage for every way the bytes can fail to decode.
    """
    img = _open(data, max_pixels=max_pixels, formats=formats)
    _load_upright(img)
    return to_rgb(img)


def decode_thumbnail(data: bytes, size: int, *, max_pixels: int,
                     formats: Sequence[str] | None = None) -> Image.Image:
    """Like `decode_image`, shrunk to fit ``size`` x ``size`` (never enlarged), decoding no more than that needs.

    For contact sheets: a page of 25 hits of 6000x8000 scans that held 25 full decodes peaked at
    4.6 GiB; one at a time through here, 47 MiB for JPEGs and 221 MiB for PNGs, about one PNG's
    own decode (BENCHMARKS.md, section 6). A JPEG is decoded at 1/2, 1/4 or 1/8 scale by its DCT
    (Pillow ``draft``), still at least twice the thumbnail's size so the final Lanczos resize
    stays sharp; other formats decode whole, then shrink before any full-size conversion.
    EXIF rotation, 16-bit scaling and transparency on white come out as `decode_image` makes
    them, and the same header pixel limit applies. Raises UndecodableImage like `decode_image`.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, not {size}")
    img = _open(data, max_pixels=max_pixels, formats=formats)
    target = _fitted(_display_size(img), size)
    if img.format == "JPEG":
        stored = target[::-1] if _swaps_axes(img) else target
        img.draft(None, (stored[0] * 2, stored[1] * 2))   # a no-op unless the DCT can scale down
    _load_upright(img)
    if img.mode in ("P", "PA", "1"):
        img = _expand_palette(img)     # resampling a palette image would pick, not average, colours
    if img.mode == "F":
        img = _scale_to_l(img)         # its stretch to 0..255 reads the whole image's range
    if img.size != target:
        # reduce() (box averaging before Lanczos) is much faster on big images but has no 16-bit form.
        gap = None if img.mode.startswith("I;16") else 3.0
        img = img.resize(target, Image.Resampling.LANCZOS, reducing_gap=gap)
    return to_rgb(img)


def _open(data: bytes, *, max_pixels: int, formats: Sequence[str] | None) -> Image.Image:
    """Image.open with every failure as UndecodableImage, and the pixel limit checked from the header."""
    if not data:
        raise UndecodableImage("The image file is empty (0 bytes).", "empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard: an error past twice its limit (a warning only where warnings are errors).
        raise _bomb(exc) from exc
    except UnidentifiedImageError as exc:
        accepted = f" in a supported format ({_names(formats)})" if formats else ""
        raise UndecodableImage(f"The file is not an image{accepted}.", "not an image file") from exc
    except Exception as exc:   # untrusted bytes: see _broken
        raise _broken(exc) from exc
    width, height = img.size
    if width * height > max_pixels:
        raise UndecodableImage(
            f"The image is too large ({width} x {height} pixels); the limit is {max_pixels / 1e6:g} megapixels.",
            f"decompression bomb refused ({width} x {height} pixels, limit {max_pixels})")
    return img


def _load_upright(img: Image.Image) -> None:
    """Decode the first frame now (a truncated file fails here, not later in a worker) and apply
    EXIF rotation in place: ``exif_transpose`` without ``in_place`` copies even an upright image."""
    try:
        img.seek(0)
        img.load()
        ImageOps.exif_transpose(img, in_place=True)
    except Image.DecompressionBombError as exc:
        raise _bomb(exc) from exc
    except Exception as exc:   # untrusted bytes: see _broken
        raise _broken(exc) from exc


def _swaps_axes(img: Image.Image) -> bool:
    """Whether the EXIF orientation turns the stored image by 90 degrees (orientations 5-8)."""
    try:
        return img.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8)
    except Exception as exc:   # untrusted bytes: see _broken (decode_image fails on them in exif_transpose)
        raise _broken(exc) from exc


def _display_size(img: Image.Image) -> tuple[int, int]:
    return (img.height, img.width) if _swaps_axes(img) else img.size


def _fitted(size: tuple[int, int], box: int) -> tuple[int, int]:
    """``size`` scaled to fit box x box with its aspect kept, never enlarged: ImageOps.contain's rounding."""
    width, height = size
    if width <= box and height <= box:
        return size
    if width >= height:
        return box, max(1, round(height / width * box))
    return max(1, round(width / height * box)), box


def _expand_palette(img: Image.Image) -> Image.Image:
    """Palette and bilevel images to a mode that resamples by averaging; to_rgb then finishes them."""
    if img.mode == "PA" or (img.mode == "P" and "transparency" in img.info):
        return img.convert("RGBA")
    return img.convert("RGB")


def _bomb(exc: Exception) -> UndecodableImage:
    return UndecodableImage("The image has too many pixels to process.", f"decompression bomb refused ({exc})")


def _broken(exc: Exception) -> UndecodableImage:
    """Any exception from Pillow while it parses a file means the file is broken. Its plugins raise
    many types for malformed input (OSError, SyntaxError, ValueError, EOFError, IndexError,
    struct.error, a BLP's NotImplementedError, ...) and the set changes between versions, so
    catching a list would let the next one stop a build on every resume."""
    return UndecodableImage("The image file is damaged or incomplete.",
                            f"broken image: {exc or type(exc).__name__}")


def load_query_image(data: bytes, *, max_bytes: int = MAX_QUERY_BYTES,
                     max_pixels: int = MAX_QUERY_PIXELS) -> Image.Image:
    """Decode an uploaded image to RGB, or raise QueryError with a sentence for the user.

    Decoded by `decode_image`, exactly as the build decoded the collection, so a photo finds itself.
    Animated images give their first frame. EXIF rotation is applied, so a phone photo is
    searched the way it looks.
    """
    if len(data) > max_bytes:
        raise QueryError(f"The image file is too large ({_mb(len(data))}); the limit is {_mb(max_bytes)}.")
    try:
        return decode_image(data, max_pixels=max_pixels, formats=ACCEPTED_FORMATS)
    except UndecodableImage as exc:
        raise QueryError(str(exc)) from exc


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


def accepted_format_names() -> str:
    """The accepted formats for a message: "JPEG, PNG, WebP, GIF, BMP, TIFF, HEIF or AVIF"."""
    return _names(ACCEPTED_FORMATS)


def _names(formats: Sequence[str]) -> str:
    """("JPEG", "PNG", "WEBP") -> "JPEG, PNG or WebP"."""
    names = [_FORMAT_NAMES.get(f, f) for f in formats]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"
