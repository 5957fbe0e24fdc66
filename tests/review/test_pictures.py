"""The report's images: one thumbnail and one capped full view per row, a placeholder for a row
without a readable image."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from review import signals
from review.pictures import FULL_MAX_SIDE, MISSING, THUMB_SIDE, write_pictures
from search_core.collection import Collection
from tests.fixtures.images import draw_image
from tests.fixtures.synthetic_collection import unit_vectors, write_collection


def jpeg(size: tuple[int, int], seed: int) -> bytes:
    buf = io.BytesIO()
    draw_image(seed, size).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def test_sizes_and_placeholder(tmp_path: Path) -> None:
    """A large scan's full view is capped, a small image is never enlarged, a broken one gets the placeholder."""
    images = [jpeg((3000, 2000), 1), jpeg((120, 90), 2), b"not an image"]
    collection = Collection.open(write_collection(tmp_path / "c", unit_vectors(3, 8), images=images))
    out = tmp_path / "out"
    pictures = write_pictures(collection, [2, 0, 1, 0, 1], out, workers=2)
    assert sorted(pictures) == [0, 1, 2]
    big, small, broken = pictures[0], pictures[1], pictures[2]
    with Image.open(out / big.full) as full, Image.open(out / big.thumb) as thumb:
        assert full.size == (FULL_MAX_SIDE, FULL_MAX_SIDE * 2 // 3)
        assert thumb.size == (THUMB_SIDE, THUMB_SIDE * 2 // 3) == (big.width, big.height)
    with Image.open(out / small.full) as full:
        assert full.size == (120, 90) and (small.width, small.height) == (120, 90)
    assert not broken.available and broken.thumb.endswith(MISSING)
    assert (out / broken.thumb).read_text().startswith("<svg")
    assert len(list((out / "img").iterdir())) == 5    # two files per readable row, one placeholder


def test_a_sized_decode_is_used_where_the_collection_has_one(tmp_path: Path) -> None:
    collection = Collection.open(write_collection(tmp_path / "c", unit_vectors(1, 8), images=[jpeg((64, 48), 3)]))
    asked = []

    def sized(row: int, side: int) -> Image.Image:
        asked.append((row, side))
        return Image.new("RGB", (10, 10))

    assert signals.image_at_most(collection, 0, 500).size == (64, 48)
    collection.thumbnail = sized   # what a collection with a sized decode offers
    assert signals.image_at_most(collection, 0, 500).size == (10, 10) and asked == [(0, 500)]
