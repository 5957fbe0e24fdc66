"""Contact sheets and fitting them under an upload limit."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from search_core.errors import ImageSearchError
from search_core.search import Hit
from search_core.sheet import CAPTION_HEIGHT, PAD, encode_image, render_contact_sheet, sheet_size


def hits_and_images(n: int) -> tuple[list[Hit], list[Image.Image]]:
    hits = [Hit(rank=i + 1, row=i, score=0.9 - i / 100, file_name=f"f{i}.jpg",
                title="A very long title of a nineteenth century book " * 3, year=1850 + i) for i in range(n)]
    colours = [(200, 40 * i % 256, 30) for i in range(n)]
    sizes = [(300, 120), (90, 400), (50, 50)]      # wide, tall, smaller than a thumbnail
    return hits, [Image.new("RGB", sizes[i % 3], colours[i]) for i in range(n)]


def test_sheet_is_a_valid_png_of_the_expected_size() -> None:
    """Nine hits in 3 columns make a 3x3 grid of thumb cells plus captions, saved as a readable PNG."""
    hits, images = hits_and_images(9)
    sheet = render_contact_sheet(hits, images, columns=3, thumb=128)
    data, ext = encode_image(sheet, max_bytes=10_000_000)
    assert ext == "png" and data[:8] == b"\x89PNG\r\n\x1a\n"
    reopened = Image.open(io.BytesIO(data))
    reopened.verify()
    assert reopened.size == (3 * 128 + 4 * PAD, 3 * (128 + CAPTION_HEIGHT + PAD) + PAD)


def test_partial_last_row_and_few_hits() -> None:
    """Four hits in 3 columns take two rows; two hits take only two columns."""
    assert render_contact_sheet(*hits_and_images(4), thumb=64).size == sheet_size(4, 3, 64)
    assert sheet_size(4, 3, 64)[1] == 2 * (64 + CAPTION_HEIGHT + PAD) + PAD
    assert render_contact_sheet(*hits_and_images(2), thumb=64).size[0] == 2 * 64 + 3 * PAD


def test_thumbnails_keep_aspect_and_are_centred() -> None:
    """A wide image fills the cell's width, keeps its shape and sits in the middle of its cell."""
    hits, images = hits_and_images(1)
    sheet = render_contact_sheet(hits, images, columns=1, thumb=100)
    arr = np.asarray(sheet)
    cell = arr[PAD:PAD + 100, PAD:PAD + 100]
    red_rows = np.flatnonzero((np.abs(cell.astype(int) - (200, 0, 30)).sum(axis=2) < 20).all(axis=1))
    assert len(red_rows) == 40                     # 300x120 scaled to 100x40
    assert red_rows[0] == 30                       # centred: (100 - 40) / 2


def test_captions_are_drawn_under_each_cell() -> None:
    """The caption band under a thumbnail holds dark text pixels (rank, score, year, title)."""
    sheet = render_contact_sheet(*hits_and_images(3), columns=3, thumb=96)
    caption = np.asarray(sheet)[PAD + 96:PAD + 96 + CAPTION_HEIGHT, PAD:PAD + 96]
    assert (caption.min(axis=2) < 100).sum() > 50


def test_no_hits_gives_a_one_cell_sheet() -> None:
    """An empty page still renders (one cell saying there are no results) so callers need no special case."""
    sheet = render_contact_sheet([], [], thumb=64)
    assert sheet.size == (64 + 2 * PAD, 64 + CAPTION_HEIGHT + 2 * PAD)


def test_mismatched_inputs_rejected() -> None:
    """Hits and images must pair up one to one."""
    hits, images = hits_and_images(3)
    with pytest.raises(ValueError):
        render_contact_sheet(hits, images[:2])


def test_encode_falls_back_to_jpeg_to_fit() -> None:
    """A sheet whose PNG is over the limit comes back as a JPEG under it."""
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8))
    png_size = len(encode_image(noise, max_bytes=10**9)[0])
    data, ext = encode_image(noise, max_bytes=png_size // 4)
    assert ext == "jpg" and len(data) <= png_size // 4
    assert Image.open(io.BytesIO(data)).format == "JPEG"


def test_encode_shrinks_when_jpeg_quality_is_not_enough() -> None:
    """Past the lowest JPEG quality the image is scaled down until it fits."""
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 255, (400, 400, 3), dtype=np.uint8))
    data, ext = encode_image(noise, max_bytes=8_000)
    assert ext == "jpg" and len(data) <= 8_000
    assert Image.open(io.BytesIO(data)).width < 400


def test_encode_gives_up_clearly_when_impossible() -> None:
    """A limit no sensible image can meet is an ImageSearchError, not an endless loop."""
    with pytest.raises(ImageSearchError, match="cannot be made smaller"):
        encode_image(Image.new("RGB", (200, 200), (1, 2, 3)), max_bytes=10)
