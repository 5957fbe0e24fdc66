"""Thumbnails for contact sheets: decoded at reduced scale, one at a time, and equal (closely) to a
downscaled full decode; a row whose image cannot be shown is ImageUnavailable, and a sheet draws it
as a placeholder instead of failing."""

from __future__ import annotations

import gc
import io
import logging
import shutil
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps, JpegImagePlugin

from search_core.collection import Collection
from search_core.errors import CollectionError, ImageUnavailable
from search_core.images import MAX_SOURCE_PIXELS, UndecodableImage, decode_image, decode_thumbnail
from search_core.search import Hit
from search_core.sheet import PAD, render_contact_sheet, render_page_sheet
from tests.fixtures.images import draw_image
from tests.fixtures.synthetic_collection import unit_vectors, write_collection

ORIENTATION = 0x0112
THUMB = 64


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def picture(size: tuple[int, int] = (800, 600), seed: int = 3) -> Image.Image:
    return draw_image(seed, size)


def rotated(fmt: str) -> bytes:
    """Stored landscape, EXIF says 'rotate 90 degrees to display': shown portrait."""
    img = picture()
    exif = img.getexif()
    exif[ORIENTATION] = 6
    return encode(img, fmt, exif=exif.tobytes())


def sixteen_bit(fmt: str) -> bytes:
    """A 16-bit greyscale gradient over the whole 0..65535 range (clipping would make it white)."""
    return encode(Image.fromarray(np.linspace(0, 65535, 600 * 800).reshape(600, 800).astype(np.uint16)), fmt)


def rgba_hidden_colour() -> bytes:
    """Opaque red left half, fully transparent blue right half (shown white), a half-transparent patch."""
    arr = np.zeros((600, 800, 4), dtype=np.uint8)
    arr[..., 2] = 255
    arr[:, :400] = (220, 30, 30, 255)
    arr[100:200, 500:700] = (10, 200, 10, 128)
    return encode(Image.fromarray(arr, mode="RGBA"), "PNG")


INPUTS = {
    "jpeg": lambda: encode(picture(), "JPEG", quality=92),
    "png": lambda: encode(picture(), "PNG"),
    "jpeg-exif-rotated": lambda: rotated("JPEG"),
    "png-exif-rotated": lambda: rotated("PNG"),
    "png-16-bit": lambda: sixteen_bit("PNG"),
    "tiff-16-bit": lambda: sixteen_bit("TIFF"),
    "png-rgba-hidden-colour": rgba_hidden_colour,
    "png-palette-transparent": lambda: encode(picture().convert("P"), "PNG", transparency=0),
    "jpeg-cmyk": lambda: encode(picture().convert("CMYK"), "JPEG", quality=92),
    "gif": lambda: encode(picture(), "GIF"),
    "png-portrait": lambda: encode(picture((300, 900)), "PNG"),
}


def downscaled_full_decode(data: bytes, size: int) -> Image.Image:
    """What a contact sheet showed before thumbnails: the full decode, fitted into the cell."""
    return ImageOps.contain(decode_image(data, max_pixels=MAX_SOURCE_PIXELS), (size, size), Image.Resampling.LANCZOS)


# --- decode_thumbnail -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(INPUTS))
def test_thumbnail_matches_downscaled_full_decode(name: str) -> None:
    """Same size and orientation, and pixels within a few levels of the full decode shrunk the old way:
    EXIF rotation, 16-bit scaling and transparency on white all survive the reduced-scale path."""
    data = INPUTS[name]()
    expected = downscaled_full_decode(data, THUMB)
    thumb = decode_thumbnail(data, THUMB, max_pixels=MAX_SOURCE_PIXELS)
    assert thumb.mode == "RGB"
    assert thumb.size == expected.size
    diff = np.abs(np.asarray(thumb, dtype=int) - np.asarray(expected, dtype=int))
    assert diff.mean() < 1.5, diff.mean()
    assert np.percentile(diff, 99) <= 12


def test_rotated_thumbnail_is_upright() -> None:
    """A landscape JPEG whose EXIF says 'rotate' comes out portrait, its top-left corner where the display puts it."""
    img = Image.new("RGB", (800, 600), (255, 255, 255))
    img.paste((200, 20, 20), (0, 0, 200, 150))           # stored top-left corner is red
    exif = img.getexif()
    exif[ORIENTATION] = 6                                  # displayed turned 90 degrees clockwise
    thumb = decode_thumbnail(encode(img, "JPEG", quality=95, exif=exif.tobytes()), THUMB,
                             max_pixels=MAX_SOURCE_PIXELS)
    assert thumb.size == (48, 64)
    r, g, b = thumb.getpixel((44, 4))                      # so it shows at the top right
    assert r > 150 and g < 80 and b < 80


def test_transparent_pixels_are_white_not_their_hidden_colour() -> None:
    """The fully transparent half is white, not the blue stored under it."""
    thumb = decode_thumbnail(rgba_hidden_colour(), THUMB, max_pixels=MAX_SOURCE_PIXELS)
    assert thumb.getpixel((THUMB - 3, thumb.height - 3)) == (255, 255, 255)


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    """The 16-bit gradient runs from black to white, not clipped to white."""
    thumb = decode_thumbnail(sixteen_bit("PNG"), THUMB, max_pixels=MAX_SOURCE_PIXELS)
    grey = np.asarray(thumb)[..., 0]
    assert grey[0, 0] < 10 and grey[-1, -1] > 245 and 100 < grey[grey.shape[0] // 2, grey.shape[1] // 2] < 155


def test_jpeg_is_decoded_at_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4000 x 3000 JPEG shrunk to 256 is decoded by the JPEG decoder at 1/4 scale (the smallest
    that is still twice the thumbnail), a sixteenth of the pixels, not at full size."""
    decoded_sizes = []
    real_load = JpegImagePlugin.JpegImageFile.load

    def spy(self):
        decoded_sizes.append(self.size)
        return real_load(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", spy)
    data = encode(picture((4000, 3000)), "JPEG", quality=85)
    thumb = decode_thumbnail(data, 256, max_pixels=MAX_SOURCE_PIXELS)
    assert thumb.size == (256, 192)
    assert decoded_sizes and set(decoded_sizes) == {(1000, 750)}


def test_small_image_is_not_enlarged() -> None:
    """An image already inside the box keeps its size (the sheet enlarges it to its cell itself)."""
    thumb = decode_thumbnail(encode(picture((40, 30)), "PNG"), THUMB, max_pixels=MAX_SOURCE_PIXELS)
    assert thumb.size == (40, 30)


def png_header_only(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_pixel_limit_is_checked_from_the_header() -> None:
    """Over the pixel limit is refused before decoding (this file has no pixels to decode)."""
    with pytest.raises(UndecodableImage, match="too large"):
        decode_thumbnail(png_header_only(2_000, 2_000), THUMB, max_pixels=1_000_000)


@pytest.mark.parametrize("data", [b"", b"not an image at all", encode(picture(), "PNG")[:400]])
def test_bad_bytes_are_undecodable(data: bytes) -> None:
    """Empty, non-image and truncated bytes raise UndecodableImage, like decode_image."""
    with pytest.raises(UndecodableImage):
        decode_thumbnail(data, THUMB, max_pixels=MAX_SOURCE_PIXELS)


# --- Collection.thumbnail and ImageUnavailable ----------------------------------------------------

def replace_images(folder: Path, images: dict[int, dict | None] | None) -> None:
    """Rewrite a collection's image column: some rows get another entry (a path, or None for no
    image); with images=None the column is dropped (a collection made from embeddings only).

    The column is saved as a plain {bytes, path} struct: saving an Image() column would copy a
    referenced file's bytes in, and the row would no longer refer to the file."""
    from datasets import Image as ImageFeature
    from datasets import Value, load_from_disk

    dataset = load_from_disk(str(folder / "dataset"))
    if images is None:
        dataset = dataset.remove_columns("image")
    else:
        dataset = dataset.cast_column("image", ImageFeature(decode=False)).map(
            lambda row, i: {"image": images.get(i, row["image"])}, with_indices=True)
        dataset = dataset.cast_column("image", {"bytes": Value("binary"), "path": Value("string")})
    dataset.save_to_disk(str(folder / "dataset.new"))
    del dataset
    shutil.rmtree(folder / "dataset")
    (folder / "dataset.new").rename(folder / "dataset")


@pytest.fixture
def three_rows(tmp_path: Path) -> Path:
    images = [encode(picture(seed=i), "JPEG", quality=90) for i in range(3)]
    return write_collection(tmp_path / "c", unit_vectors(3, 8), years=[1850, 1860, 1870], images=images,
                            file_names=["a.jpg", "b.jpg", "c.jpg"])


def test_collection_thumbnail_matches_its_image(three_rows: Path) -> None:
    """Collection.thumbnail is Collection.image fitted into the box, decoded at reduced scale."""
    collection = Collection.open(three_rows)
    thumb = collection.thumbnail(1, THUMB)
    expected = ImageOps.contain(collection.image(1), (THUMB, THUMB), Image.Resampling.LANCZOS)
    assert thumb.size == expected.size
    assert np.abs(np.asarray(thumb, dtype=int) - np.asarray(expected, dtype=int)).mean() < 2


@pytest.mark.parametrize("case", ["no-image", "file-moved", "undecodable", "no-image-column"])
def test_unavailable_image_raises_image_unavailable(three_rows: Path, tmp_path: Path, case: str) -> None:
    """Every way one row's image can be missing is the one ImageUnavailable (a CollectionError)
    naming the row, from image() and thumbnail() alike; the other rows still read."""
    moved = tmp_path / "moved.jpg"
    entries = {
        "no-image": {1: None},
        "file-moved": {1: {"bytes": None, "path": str(moved)}},
        "undecodable": {1: {"bytes": b"\xff\xd8 not really a jpeg", "path": None}},
        "no-image-column": None,
    }[case]
    moved.write_bytes(encode(picture(), "JPEG"))     # there when the collection was written...
    replace_images(three_rows, entries)
    moved.unlink()                                   # ...and moved away since
    collection = Collection.open(three_rows)
    for read in (collection.image, lambda row: collection.thumbnail(row, THUMB)):
        with pytest.raises(ImageUnavailable, match="Image 1") as info:
            read(1)
        assert isinstance(info.value, CollectionError) and info.value.row == 1
        assert str(tmp_path) not in str(info.value)        # a server path never reaches a message
    if case != "no-image-column":
        assert collection.thumbnail(0, THUMB).size == (THUMB, 48)


# --- contact sheets draw one image at a time, and placeholders -----------------------------------

def hits(n: int) -> list[Hit]:
    return [Hit(rank=i + 1, row=i, score=0.5, file_name=f"000{i}_scan_{i}.jpg", title=f"Book {i}", year=1850)
            for i in range(n)]


def test_sheet_asks_a_loader_for_one_image_at_a_time() -> None:
    """With a loader, each image is dropped before the next is asked for: never two alive at once."""
    alive: list[weakref.ref] = []
    asked = []

    def load(hit: Hit) -> Image.Image:
        gc.collect()
        assert all(ref() is None for ref in alive), "an earlier image is still held"
        asked.append(hit.rank)
        img = picture((300, 200), seed=hit.row)
        alive.append(weakref.ref(img))
        return img

    sheet = render_contact_sheet(hits(5), load, columns=3, thumb=THUMB)
    assert asked == [1, 2, 3, 4, 5]
    assert sheet.size[0] == 3 * THUMB + 4 * PAD


def cell(sheet: Image.Image, i: int, columns: int = 3, thumb: int = THUMB) -> np.ndarray:
    from search_core.sheet import CAPTION_HEIGHT

    x = PAD + (i % columns) * (thumb + PAD)
    y = PAD + (i // columns) * (thumb + CAPTION_HEIGHT + PAD)
    return np.asarray(sheet)[y:y + thumb, x:x + thumb].astype(int)


def test_unavailable_image_is_a_placeholder_and_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """A loader raising ImageUnavailable (or giving None) gives a grey cell with dark text and one
    warning naming the file; the other cells show their images."""
    red = Image.new("RGB", (100, 100), (220, 20, 20))

    def load(hit: Hit) -> Image.Image | None:
        if hit.row == 1:
            raise ImageUnavailable("Image 1 in dataset/ cannot be read: its file moved.jpg cannot be read", 1)
        return None if hit.row == 2 else red

    with caplog.at_level(logging.WARNING, logger="search_core.sheet"):
        sheet = render_contact_sheet(hits(3), load, columns=3, thumb=THUMB)
    lines = [r.getMessage() for r in caplog.records if r.name == "search_core.sheet"]
    assert len(lines) == 1 and "0001_scan_1.jpg" in lines[0]
    assert (np.abs(cell(sheet, 0) - (220, 20, 20)).sum(axis=2) < 30).mean() > 0.95      # the image
    for i in (1, 2):
        placeholder = cell(sheet, i)
        assert (np.abs(placeholder - (220, 20, 20)).sum(axis=2) < 30).mean() == 0      # no image in it
        assert (placeholder.min(axis=2) < 100).sum() > 30                              # but text


def test_placeholder_shows_the_file_name() -> None:
    """A placeholder cell's text is the file name: two files of different names draw differently."""
    def sheet_for(name: str) -> np.ndarray:
        hit = Hit(rank=1, row=0, score=0.5, file_name=name, title="Same title", year=1850)
        return cell(render_contact_sheet([hit], [None], columns=1, thumb=128), 0, columns=1, thumb=128)

    assert not np.array_equal(sheet_for("000499442_0_000579_1_[Poems]_1920.jpg"), sheet_for("other.png"))


def test_page_sheet_survives_a_moved_file(three_rows: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """render_page_sheet over a collection whose middle row's file is gone still draws every cell."""
    gone = tmp_path / "gone.jpg"
    gone.write_bytes(encode(picture(), "JPEG"))
    replace_images(three_rows, {1: {"bytes": None, "path": str(gone)}})
    gone.unlink()
    collection = Collection.open(three_rows)
    page = [Hit(rank=i + 1, row=i, score=0.5, file_name=n, title=None, year=None)
            for i, n in enumerate(["a.jpg", "b.jpg", "c.jpg"])]
    with caplog.at_level(logging.WARNING, logger="search_core.sheet"):
        sheet = render_page_sheet(collection, page, columns=3, thumb=THUMB)
    assert sheet.size[0] == 3 * THUMB + 4 * PAD
    assert [r.getMessage() for r in caplog.records if "b.jpg" in r.getMessage()]


def test_bot_page_with_a_moved_file_is_still_answered(three_rows: Path, tmp_path: Path) -> None:
    """The bot's render_page sends a sheet for a page whose hits include an image that moved away."""
    from bot.results import Query, render_page
    from search_core.search import SearchService
    from tests.fixtures.synthetic_collection import FakeEncoder

    gone = tmp_path / "gone.jpg"
    gone.write_bytes(encode(picture(), "JPEG"))
    replace_images(three_rows, {0: {"bytes": None, "path": str(gone)}})
    gone.unlink()
    service = SearchService(Collection.open(three_rows), FakeEncoder(8))
    query = Query(label="x", k=3, collection="three", version="v1", vector=unit_vectors(1, 8, seed=5)[0])
    rendered = render_page(service, query, 0, max_upload_bytes=10_000_000)
    assert len(rendered.page.hits) == 3 and 0 in {h.row for h in rendered.page.hits}
    assert Image.open(io.BytesIO(rendered.sheet)).width == 3 * 256 + 4 * PAD


def test_cli_sheet_with_a_moved_file(collection_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                     caplog: pytest.LogCaptureFixture) -> None:
    """`imagesearch search --sheet` over rows whose files moved saves the sheet, exits 0 and logs one
    line per placeholder."""
    from search_core.cli import main

    folder = tmp_path / "copy"
    shutil.copytree(collection_dir, folder)
    gone = tmp_path / "gone.jpg"
    gone.write_bytes(encode(picture(), "JPEG"))
    replace_images(folder, {row: {"bytes": None, "path": str(gone)} for row in range(24)})
    gone.unlink()
    out = tmp_path / "sheet.png"
    with caplog.at_level(logging.WARNING, logger="search_core.sheet"):
        code = main(["search", str(folder), "a ship", "-k", "2", "--sheet", str(out)])
    _, err = capsys.readouterr()
    assert len([r for r in caplog.records if r.name == "search_core.sheet"]) == 2
    assert code == 0, err
    assert Image.open(out).size[0] == 2 * 256 + 3 * PAD
    assert "error" not in err and "Traceback" not in err
