"""The report's images: one thumbnail and one capped full view per row, a placeholder for a row
without a readable image."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from review.pictures import FULL_MAX_SIDE, MISSING, THUMB_SIDE, web_extension, write_pictures
from search_core.collection import Collection
from tests.fixtures.images import draw_image
from tests.fixtures.synthetic_collection import unit_vectors, write_collection


def encoded(size: tuple[int, int], seed: int, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    draw_image(seed, size).save(buf, fmt)
    return buf.getvalue()


def test_originals_converted_views_and_placeholder(tmp_path: Path) -> None:
    """A JPEG or PNG full view is the stored file itself; a BMP scan becomes a capped JPEG; a
    broken image gets the placeholder; thumbnails fit THUMB_SIDE and small ones are not enlarged."""
    images = [encoded((3000, 2000), 1, "BMP"), encoded((120, 90), 2), encoded((500, 400), 3, "PNG"),
              b"not an image", b"\xff\xd8\xff but a damaged JPEG"]
    collection = Collection.open(write_collection(tmp_path / "c", unit_vectors(5, 8), images=images))
    out = tmp_path / "out"
    pictures = write_pictures(collection, [3, 0, 1, 0, 2, 1, 4], out, workers=2)
    assert sorted(pictures) == [0, 1, 2, 3, 4]
    bmp, small, png = pictures[0], pictures[1], pictures[2]
    with Image.open(out / bmp.full) as full, Image.open(out / bmp.thumb) as thumb:
        assert full.format == "JPEG" and full.size == (FULL_MAX_SIDE, FULL_MAX_SIDE * 2 // 3)
        assert thumb.size == (THUMB_SIDE, THUMB_SIDE * 2 // 3) == (bmp.width, bmp.height)
    assert (out / small.full).read_bytes() == images[1] and small.full.endswith(".jpg")
    assert (out / png.full).read_bytes() == images[2] and png.full.endswith(".png")
    with Image.open(out / small.thumb) as thumb:
        assert thumb.size == (120, 90) == (small.width, small.height)
    with Image.open(out / png.thumb) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (THUMB_SIDE, THUMB_SIDE * 4 // 5)
    for broken in (pictures[3], pictures[4]):
        assert not broken.available and broken.thumb.endswith(MISSING)
    assert (out / pictures[3].thumb).read_text().startswith("<svg")
    assert len(list((out / "img").iterdir())) == 7    # two files per readable row, one placeholder


def test_web_extension_by_signature() -> None:
    assert web_extension(encoded((32, 24), 1)) == "jpg"
    assert web_extension(encoded((32, 24), 1, "PNG")) == "png"
    assert web_extension(encoded((32, 24), 1, "GIF")) == "gif"
    assert web_extension(encoded((32, 24), 1, "WEBP")) == "webp"
    assert web_extension(encoded((32, 24), 1, "BMP")) is None
    assert web_extension(encoded((32, 24), 1, "TIFF")) is None
    assert web_extension(b"") is None
