"""scripts.decode: the build decodes a file exactly as a query decodes it, and skips every bad one."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from scripts.decode import MAX_SOURCE_PIXELS, UnusableImage, decode
from search_core.collection import Collection
from search_core.images import load_query_image
from tests.fixtures.synthetic_collection import unit_vectors, write_collection

ORIENTATION = 0x0112


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def exif_rotated_jpeg() -> bytes:
    """A 40 x 20 JPEG whose EXIF says 'rotate 90 degrees to display' (how phones store portraits)."""
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 40, 3), dtype=np.uint8))
    exif = img.getexif()
    exif[ORIENTATION] = 6
    return encode(img, "JPEG", exif=exif.tobytes())


def sixteen_bit(fmt: str) -> bytes:
    """A 16-bit greyscale gradient (archive scans): clipping to 8 bits would make it all white."""
    return encode(Image.fromarray(np.linspace(0, 65535, 600, dtype=np.uint16).reshape(20, 30)), fmt)


def hidden_colour_png() -> bytes:
    """RGBA whose right half is fully transparent over pure blue: displayed white, not blue."""
    arr = np.zeros((20, 20, 4), dtype=np.uint8)
    arr[..., 2] = 255
    arr[:, :10] = (220, 30, 30, 255)
    return encode(Image.fromarray(arr, mode="RGBA"), "PNG")


TRICKY = {
    "exif-rotated-jpeg": exif_rotated_jpeg,
    "16-bit-png": lambda: sixteen_bit("PNG"),
    "16-bit-tiff": lambda: sixteen_bit("TIFF"),
    "rgba-hidden-colour": hidden_colour_png,
}


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but holds no pixel data: decoding it would fail."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("name", list(TRICKY))
def test_build_and_query_decode_to_identical_pixels(name: str) -> None:
    """The build embeds the very pixels a query with the same file is decoded to, so it finds itself."""
    data = TRICKY[name]()
    built, queried = decode(data), load_query_image(data)
    assert (built.mode, built.size) == (queried.mode, queried.size)
    assert built.tobytes() == queried.tobytes()


@pytest.mark.parametrize("name", list(TRICKY))
def test_collection_image_shows_what_was_embedded(name: str, tmp_path: Path) -> None:
    """A stored image comes back (for contact sheets) as the pixels the build embedded: upright, not white."""
    data = TRICKY[name]()
    collection = Collection.open(write_collection(tmp_path / "c", unit_vectors(1, 8), years=[1900], images=[data]))
    shown = collection.image(0)
    assert shown.size == decode(data).size
    assert shown.tobytes() == decode(data).tobytes()


def corrupt_blp() -> bytes:
    """A real BLP file whose compression field is garbage: Pillow raises a NotImplementedError."""
    data = bytearray(encode(Image.new("P", (32, 32), 3), "BLP"))
    data[4:12] = b"\xff" * 8
    return bytes(data)


def test_file_pillow_fails_on_with_unusual_exception_is_skipped() -> None:
    """A broken file on which Pillow raises something other than OSError is skipped, not a crashed build."""
    with pytest.raises(UnusableImage, match="broken image"):
        decode(corrupt_blp())


@pytest.mark.parametrize("error", [EOFError(), IndexError("tile index"), struct.error("unpack requires 4 bytes")])
def test_every_decode_error_becomes_unusable_image(error: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    """EOFError, IndexError and struct.error (which Pillow raises for some broken files) are skipped too."""
    def fail(self: ImageFile.ImageFile) -> None:
        raise error
    monkeypatch.setattr(ImageFile.ImageFile, "load", fail)
    with pytest.raises(UnusableImage, match="broken image"):
        decode(encode(Image.new("RGB", (8, 8)), "PNG"))


def test_bomb_skipped_from_header_whatever_the_warnings_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    """A header-only 100 MP PNG is skipped as a bomb without being decoded, even when another thread has
    just reset the process-wide warnings filters (simulated here just before Image.open)."""
    real_open = Image.open

    def open_after_another_thread_reset_filters(*args, **kwargs):
        warnings.resetwarnings()
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", open_after_another_thread_reset_filters)
    assert 10_000 * 10_000 > MAX_SOURCE_PIXELS
    with warnings.catch_warnings(), pytest.raises(UnusableImage, match="bomb"):
        decode(png_header_only(10_000, 10_000))


def test_build_pixel_limit_is_configurable() -> None:
    """The limit is an explicit comparison with max_pixels, so a smaller one applies from the header."""
    with pytest.raises(UnusableImage, match="bomb"):
        decode(png_header_only(2_000, 2_000), max_pixels=1_000_000)


def test_a_damaged_stored_image_is_a_collection_error(tmp_path: Path) -> None:
    """Reading a collection's image goes through the same decoder: however Pillow fails on the
    stored bytes (here a NotImplementedError from a corrupt BLP), the reader gets CollectionError,
    never a raw exception that would reach the user as a traceback."""
    from search_core.errors import CollectionError

    folder = write_collection(tmp_path / "c", unit_vectors(2, 8), images=[encode(Image.new("RGB", (4, 4)), "PNG"),
                                                                           corrupt_blp()])
    collection = Collection.open(folder)
    assert collection.image(0).size == (4, 4)
    with pytest.raises(CollectionError, match="Image 1"):
        collection.image(1)
