"""load_query_image: every accepted kind of upload comes out RGB and right; every bad one is refused."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from search_core.errors import QueryError
from search_core.images import MAX_QUERY_PIXELS, load_query_image, to_rgb

RED = (220, 30, 30)


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def centre(img: Image.Image) -> tuple[int, ...]:
    return img.getpixel((img.width // 2, img.height // 2))


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_common_formats_load_as_rgb(fmt: str) -> None:
    """JPEG, PNG, WebP, BMP, TIFF and GIF uploads decode to RGB with their colours kept."""
    img = load_query_image(encode(Image.new("RGB", (40, 30), RED), fmt))
    assert img.mode == "RGB" and img.size == (40, 30)
    assert close(centre(img), RED, tol=20)


def test_animated_gif_gives_first_frame() -> None:
    """An animated GIF is searched by its first frame."""
    frames = [Image.new("RGB", (20, 20), c) for c in (RED, (30, 30, 220))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert close(centre(load_query_image(data)), RED, tol=20)


def test_transparent_png_is_composited_on_white() -> None:
    """Fully transparent pixels become white, not black (plain convert('RGB') gives black)."""
    img = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    img.paste((*RED, 255), (0, 0, 10, 20))
    out = load_query_image(encode(img, "PNG"))
    assert out.getpixel((15, 10)) == (255, 255, 255)
    assert close(out.getpixel((5, 10)), RED, tol=0)


def test_palette_with_transparency() -> None:
    """A palette image whose transparent index is set shows white there."""
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0] + list(RED) + [0] * 762)
    img.paste(1, (0, 0, 5, 10))
    out = load_query_image(encode(img, "PNG", transparency=0))
    assert out.getpixel((8, 5)) == (255, 255, 255)
    assert out.getpixel((2, 5)) == RED


def test_cmyk_jpeg_converts_to_rgb() -> None:
    """A CMYK JPEG (print scans) comes out with the right colour, not inverted."""
    cmyk = Image.new("CMYK", (20, 20), (0, 255, 255, 0))          # pure red in print terms
    out = load_query_image(encode(cmyk, "JPEG", quality=95))
    assert out.mode == "RGB"
    assert close(centre(out), (255, 0, 0), tol=30)


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    """16-bit greyscale mid-grey stays mid-grey (clipping would make it white)."""
    arr = np.full((10, 10), 32768, dtype=np.uint16)
    out = load_query_image(encode(Image.fromarray(arr), "PNG"))
    assert out.mode == "RGB"
    assert close(centre(out), (127, 127, 127), tol=2)


def test_greyscale_with_alpha() -> None:
    """Greyscale plus alpha (LA) is composited on white too."""
    img = Image.new("LA", (10, 10), (0, 0))
    out = load_query_image(encode(img, "PNG"))
    assert centre(out) == (255, 255, 255)


def test_plain_greyscale() -> None:
    """An 8-bit greyscale image becomes grey RGB."""
    out = load_query_image(encode(Image.new("L", (10, 10), 90), "PNG"))
    assert centre(out) == (90, 90, 90)


def test_float_image_is_scaled_to_full_range() -> None:
    """A 32-bit float image (mode F, e.g. scientific TIFF) is stretched to 0..255."""
    arr = np.linspace(0.0, 0.001, 100, dtype=np.float32).reshape(10, 10)
    out = to_rgb(Image.fromarray(arr, mode="F"))
    assert out.getpixel((0, 0)) == (0, 0, 0) and out.getpixel((9, 9)) == (255, 255, 255)


# --- refusals --------------------------------------------------------------------------------

def test_empty_upload_refused() -> None:
    """Zero bytes is refused, saying the file is empty."""
    with pytest.raises(QueryError, match="empty"):
        load_query_image(b"")


def test_oversized_upload_refused() -> None:
    """A file over max_bytes is refused before decoding, naming the limit."""
    data = encode(Image.new("RGB", (64, 64), RED), "BMP")
    with pytest.raises(QueryError, match="too large"):
        load_query_image(data, max_bytes=len(data) - 1)


@pytest.mark.parametrize("data", [
    b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n",
    b"a text file, not a picture\n" * 10,
    b"\x00" * 500,
])
def test_non_images_refused(data: bytes) -> None:
    """A PDF, text or zeros is refused as not an image of a supported format."""
    with pytest.raises(QueryError, match="not an image"):
        load_query_image(data)


def test_unsupported_image_format_refused() -> None:
    """An image format outside the accepted list (here ICO) is refused the same way."""
    with pytest.raises(QueryError, match="not an image"):
        load_query_image(encode(Image.new("RGB", (16, 16), RED), "ICO"))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image_refused(fmt: str) -> None:
    """An upload cut short is refused as damaged, not half-decoded."""
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8))
    data = encode(noisy, fmt)
    with pytest.raises(QueryError, match="damaged or incomplete"):
        load_query_image(data[: len(data) // 2])


def test_corrupt_body_refused() -> None:
    """A valid PNG header over a garbage body is refused as damaged."""
    data = bytearray(encode(Image.new("RGB", (40, 40), RED), "PNG"))
    data[60:] = b"\xff" * (len(data) - 60)
    with pytest.raises(QueryError, match="damaged or incomplete"):
        load_query_image(bytes(data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but holds almost no data (how a bomb looks before decoding)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("width", "height"), [(8000, 8000), (60000, 60000)])
def test_decompression_bomb_refused_from_header(width: int, height: int) -> None:
    """Over max_pixels is refused from the header alone: the file here could not even be decoded,
    so a 'too large' answer proves nothing was decoded first. 60000^2 also trips Pillow's own guard."""
    assert width * height > MAX_QUERY_PIXELS
    with pytest.raises(QueryError, match="too (large|many pixels)"):
        load_query_image(png_header_only(width, height))


def test_max_pixels_is_configurable() -> None:
    """A caller's smaller max_pixels applies (the bot may want a tighter limit)."""
    with pytest.raises(QueryError, match="100 x 100 pixels"):
        load_query_image(encode(Image.new("RGB", (100, 100), RED), "PNG"), max_pixels=5000)
